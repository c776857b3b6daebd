"""The clusters engines: the numpy engine against the literal reference (the test oracle), and
the interface every registered engine offers."""
import os

import numba
import numpy as np
import pytest

from dreamflow_utils import Config, init_weights
from dreamflow_utils.engines import REGISTRY, Engine, make_engine, predict_vote
from dreamflow_utils.engines import share_cores
from dreamflow_utils.core.geometry import patch_indices
from helpers import synthetic_data

DATA = synthetic_data(n_train=1200, n_test=300)


def run_both(config, weights=None, n=None):
    (x, y), (tx, ty) = DATA
    weights = weights if weights is not None else init_weights(config)
    engines = [make_engine(config.replace(engine=e), weights) for e in ("reference", "numpy")]
    for e in engines:
        e.train_batches(x[:n], y[:n])
    return engines, tx


@pytest.mark.parametrize("layout", ["block", "overlap"])
@pytest.mark.parametrize("wta", ["full_row", "own_units"])
@pytest.mark.parametrize("C_s,N2,B", [(3, 7, 20), (10, 30, 10), (12, 50, 24)])
def test_numpy_matches_reference(layout, wta, C_s, N2, B):
    config = Config(layout=layout, wta=wta, C_s=C_s, N2=N2, B=B, T_s=1200, seed=C_s)
    (ref, fast), tx = run_both(config, n=max(50, 1200 // B) * B)
    for a, b in zip(ref.weights(), fast.weights()):
        assert np.max(np.abs(a - b)) <= 1e-9
    np.testing.assert_array_equal(ref.predict(tx), fast.predict(tx))
    for kind in ("value", "onehot", "dense"):
        assert np.max(np.abs(ref.codes(tx, kind) - fast.codes(tx, kind))) <= 1e-12
    assert np.max(np.abs(ref.scores(tx) - fast.scores(tx))) <= 1e-12


@pytest.mark.parametrize("wta", ["full_row", "own_units"])
def test_stride_layout_and_options_match_reference(wta):
    """The log's model on a denser grid (overlapping patches), with an xi schedule and a vote."""
    config = Config(layout="stride", stride=6, wta=wta, C_s=4, N2=20, B=20, T_s=1200, seed=2, vote=3)
    (x, y), (tx, _) = DATA
    weights = init_weights(config)
    engines = [make_engine(config.replace(engine=e), weights) for e in ("reference", "numpy")]
    for e in engines:
        e.train_batches(x[:600], y[:600])
        e.set_xi(0.003)
        e.train_batches(x[600:], y[600:])
    ref, fast = engines
    for a, b in zip(ref.weights(), fast.weights()):
        assert np.max(np.abs(a - b)) <= 1e-9
    np.testing.assert_array_equal(ref.predict(tx), fast.predict(tx))


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_every_registered_engine_offers_the_interface(key):
    engine, layer1 = key
    if engine == "tensorflow":
        pytest.importorskip("tensorflow")
    extra = {"shared": {"layout": "stride", "stride": 4}, "clusters": {"layout": "block"},
             "krotov": {"layout": None, "kh_epochs": 1, "kh_k": 2, "Nep": 2}}[layer1]
    config = Config(engine=engine, layer1=layer1, C_s=3, N2=6, B=20, T_s=200, **extra)
    e = make_engine(config)
    assert isinstance(e, Engine)
    (x, y), (tx, _) = DATA
    e.train_batches(x[:200], y[:200])
    assert e.predict(tx).shape == (len(tx),) and e.scores(tx).shape == (len(tx), 6)
    assert e.codes(tx).shape == (len(tx), config.N1)
    w = e.weights()
    assert tuple(a.shape for a in w) == (config.w1_shape, (config.N1, 6), (10, 6))


@pytest.mark.parametrize("layout", ["block", "overlap"])
def test_negative_weights_follow_the_logs_argmax(layout):
    """Clusters whose outputs are all negative: the log's full-row argmax lands on a
    masked zero (unit 0, or unit C_s for cluster 0); both engines must agree."""
    config = Config(layout=layout, C_s=4, N2=9, B=10, T_s=1200, seed=5)
    w = init_weights(config)
    w.w1[w.w1 > 0] -= 0.6  # many patches now sum to negative outputs
    (ref, fast), tx = run_both(config, w, n=600)
    for a, b in zip(ref.weights(), fast.weights()):
        assert np.max(np.abs(a - b)) <= 1e-9
    np.testing.assert_array_equal(ref.predict(tx), fast.predict(tx))


def test_quirk_switches_on_unit_0_for_a_blank_patch():
    """Ink in patches 0 and 4 only; cluster 0's winner is unit 1. The log's argmax makes
    the 7 blank clusters switch on unit 0 as well; wta="own_units" does not."""
    config = Config(layout="block", C_s=5, N2=4, B=1, T_s=1)
    w = init_weights(config)
    w.w1[:, 1] *= 10
    idx = patch_indices("block")
    x = np.zeros((1, 784))
    x[0, idx[0]] = x[0, idx[4]] = 1.0
    centre = 20 + np.argmax(x @ w.w1[:, 20:25])
    for wta, expected in (("full_row", {0, 1, centre}), ("own_units", {1, centre})):
        for engine in ("reference", "numpy"):
            codes = make_engine(config.replace(engine=engine, wta=wta), w).codes(x)
            assert set(np.flatnonzero(codes[0])) == expected


@pytest.mark.parametrize("engine", ["reference", "numpy"])
def test_same_seed_same_weights(engine):
    config = Config(layout="overlap", C_s=4, N2=10, B=20, T_s=600, engine=engine, seed=7)
    (x, y), _ = DATA
    out = []
    for _ in range(2):
        e = make_engine(config, init_weights(config))
        e.train_batches(x[:600], y[:600])
        out.append(e.weights())
    for a, b in zip(*out):
        assert np.array_equal(a, b)
    other = init_weights(config.replace(seed=8))
    assert not np.array_equal(init_weights(config).w2, other.w2)


@pytest.mark.parametrize("layout", ["block", "overlap"])
def test_weights_stay_inside_their_patch(layout):
    config = Config(layout=layout, C_s=6, N2=10, B=20, T_s=1200)
    (x, y), _ = DATA
    e = make_engine(config, init_weights(config))
    e.train_batches(x, y)
    w1 = e.weights().w1
    idx = patch_indices(layout)
    for u in range(config.N1):
        inside = np.zeros(784, bool)
        inside[idx[u // config.C_s]] = True
        assert np.all(w1[~inside, u] == 0) and np.all(w1[inside, u] != 0)


def test_init_follows_the_logs_loops():
    """Cluster order: x outer, y inner (down the columns of the 3x3 grid), then the offset 2x2."""
    config = Config(layout="overlap", C_s=2, N2=3)
    w1 = init_weights(config).w1.reshape(28, 28, -1)
    for u, (r, c) in enumerate([(0, 0), (9, 0), (18, 0), (0, 9), (9, 9), (18, 9), (0, 18), (9, 18),
                                (18, 18), (4, 4), (13, 4), (4, 13), (13, 13)]):
        for unit in (2 * u, 2 * u + 1):
            rows, cols = np.nonzero(w1[:, :, unit])
            assert (rows.min(), cols.min(), rows.max(), cols.max()) == (r, c, r + 8, c + 8)
    rng = np.random.default_rng(0)
    assert np.array_equal(w1[0:9, 0:9, 0], rng.uniform(0, 1, (9, 9)))


def test_numpy_engine_rejects_weights_outside_patches():
    config = Config(layout="block", C_s=2, N2=3)
    w = init_weights(config)
    w.w1[783, 0] = 0.5
    with pytest.raises(ValueError, match="outside"):
        make_engine(config, w)


def test_share_cores_gives_each_job_its_share(monkeypatch):
    monkeypatch.setenv("NUMBA_NUM_THREADS", "restored after the test")
    try:
        assert share_cores(10**6) == 1 == numba.get_num_threads()
        assert os.environ["NUMBA_NUM_THREADS"] == "1"  # for the processes this one starts
        assert share_cores(1) == min(numba.config.NUMBA_NUM_THREADS, os.cpu_count()) == numba.get_num_threads()
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_numpy_engine_refuses_what_its_kernels_cannot_check():
    config = Config(layout="block", C_s=3, N2=5, B=10, T_s=100)
    e = make_engine(config, init_weights(config))
    x, y = np.zeros((20, 784)), np.arange(20) % 10
    with pytest.raises(ValueError, match="x must have shape"):
        e.train_batches(x[:, :700], y)
    with pytest.raises(ValueError, match="x must have shape"):
        e.predict(x[:, :700])
    with pytest.raises(ValueError, match="labels in 0..9"):
        e.train_batches(x, np.where(y == 3, 10, y))
    with pytest.raises(ValueError, match="labels in 0..9"):
        e.train_batches(x, y[:19])
    with pytest.raises(ValueError, match="real numbers"):
        e.train_batches(x.astype(complex), y)


def test_vote_counts_the_most_active_units():
    """vote k: the k most active layer-2 units each add their class distribution w3[:, j] / sum(w3[:, j])."""
    w3 = np.zeros((10, 6))
    w3[2, 0] = 100.0  # unit 0: class 2, however large its weights
    w3[4, 1] = w3[4, 2] = 1.0  # units 1 and 2: class 4
    w3[8, 3:] = 5.0  # units 3 to 5: class 8
    scores = np.array([[9.0, 8.0, 7.0, 0.0, 1.0, 2.0],
                       [0.0, 1.0, 2.0, 9.0, 8.0, 7.0],
                       [7.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    assert predict_vote(scores, w3, 1).tolist() == [2, 8, 2]  # the winner's class (argmax s_j * w3[:, j])
    assert predict_vote(scores, w3, 3).tolist() == [4, 8, 8]  # two votes beat one, whatever the weights' scale
    assert predict_vote(scores, w3, 2).tolist() == [2, 8, 2]  # a tie of votes: the lower class
    assert predict_vote(scores, w3, 6).tolist() == [8, 8, 8]  # every unit votes
    assert predict_vote(scores, w3, 50).tolist() == [8, 8, 8]  # k beyond N2: every unit
