"""The compiled shared engine (layer1="shared") against its oracle, SharedReference."""
import numba
import numpy as np
import pytest
from helpers import synthetic_data

from dreamflow_utils.core.config import Config
from dreamflow_utils.engines import make_engine
from dreamflow_utils.engines.shared_engine import SharedEngine
from dreamflow_utils.engines.shared_reference import SharedReference
from dreamflow_utils.core.model import Weights, WeightsError, init_weights

TOL = 1e-12

# (name, config changes, batch size); every run is 60 batches with xi changed after 30
CASES = [
    ("block", dict(layout="block", C_s=10, N2=50), 20),
    ("overlap", dict(layout="overlap", C_s=7, N2=30, xi=0.05), 10),
    ("stride4-norm", dict(layout="stride", stride=4, C_s=20, N2=200, norm=True, xi=0.05), 20),
    ("stride4-onehot-vote5", dict(layout="stride", stride=4, C_s=12, N2=80, code="onehot", vote=5), 15),
    ("stride4-gain-unitnorm", dict(layout="stride", stride=4, C_s=6, N2=40, label_gain=2.5, unit_norm=True,
                                   norm=True), 20),
    ("stride2-pool2-max", dict(layout="stride", stride=2, C_s=8, N2=100, pool=2, xi=0.05), 20),
    ("stride2-pool3-sum-onehot", dict(layout="stride", stride=2, C_s=8, N2=60, pool=3, pool_mode="sum",
                                      code="onehot", norm=True, label_gain=3.0, unit_norm=True, vote=5), 10),
    ("stride2-pool3-sum-value", dict(layout="stride", stride=2, C_s=5, N2=50, pool=3, pool_mode="sum",
                                     label_gain=0.5), 25),
    ("stride4-pool2-onehot-max", dict(layout="stride", stride=4, C_s=5, N2=100, pool=2, code="onehot"), 20),
    ("block-pool2-norm", dict(layout="block", C_s=9, N2=70, pool=2, norm=True, unit_norm=True), 20),
    ("stride3-one-detector", dict(layout="stride", stride=3, C_s=1, N2=13, pool=2), 20),
    ("stride1-norm", dict(layout="stride", stride=1, C_s=4, N2=20, norm=True, xi=0.05), 10),
    ("stride1-pool4-sum", dict(layout="stride", stride=1, C_s=3, N2=16, pool=4, pool_mode="sum"), 10),
    # patch_norm, pixels, l2_winners: each alone, then together
    ("block-patchnorm", dict(layout="block", C_s=10, N2=50, patch_norm=True), 20),
    ("stride2-pool2-max-patchnorm", dict(layout="stride", stride=2, C_s=8, N2=100, pool=2, patch_norm=True, xi=0.05),
     20),
    ("stride4-pixels", dict(layout="stride", stride=4, C_s=8, N2=60, pixels=1.0), 20),
    ("stride4-onehot-norm-pixels", dict(layout="stride", stride=4, C_s=12, N2=80, code="onehot", norm=True,
                                        pixels=0.4, vote=5), 15),
    ("overlap-winners2", dict(layout="overlap", C_s=7, N2=30, l2_winners=2, xi=0.05), 10),
    ("stride4-winners3-unitnorm", dict(layout="stride", stride=4, C_s=6, N2=40, l2_winners=3, unit_norm=True,
                                       norm=True, label_gain=2.5), 20),
    ("stride2-pool3-sum-all", dict(layout="stride", stride=2, C_s=8, N2=60, pool=3, pool_mode="sum", norm=True,
                                   patch_norm=True, pixels=0.5, l2_winners=4, unit_norm=True, vote=3), 10),
    ("stride1-norm-all", dict(layout="stride", stride=1, C_s=4, N2=20, norm=True, xi=0.05, patch_norm=True,
                              pixels=2.0, l2_winners=3), 10),
    ("stride1-pool4-sum-all", dict(layout="stride", stride=1, C_s=3, N2=16, pool=4, pool_mode="sum", patch_norm=True,
                                   pixels=1.0, l2_winners=2), 10),
    ("block-pool2-onehot-all", dict(layout="block", C_s=9, N2=70, pool=2, code="onehot", patch_norm=True, pixels=3.0,
                                    l2_winners=5), 20),
]
N_BATCHES = 60


@pytest.fixture(scope="module")
def data():
    return synthetic_data(n_train=1500, n_test=120, seed=3)


def config_of(changes, B):
    return Config(layer1="shared", B=B, T_s=B * N_BATCHES, **changes)


def train_split(engine, x, y, B, xi):
    """N_BATCHES batches, in two calls, xi changed between them (an xi schedule)."""
    half = N_BATCHES // 2
    engine.train_batches(x[:half * B], y[:half * B])
    engine.set_xi(xi)
    engine.train_batches(x[half * B:N_BATCHES * B + B // 2], y[half * B:N_BATCHES * B + B // 2])  # + a partial batch


def max_diff(a, b):
    return max(np.abs(u - v).max() for u, v in zip(a, b))


@pytest.mark.parametrize("changes, B", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_equals_reference(data, changes, B):
    (x, y), (xt, yt) = data
    config = config_of(changes, B)
    weights = init_weights(config)
    ref, eng = SharedReference(config, weights), SharedEngine(config, weights)
    for engine in (ref, eng):
        train_split(engine, x, y, B, 1.5 * config.xi)
    assert max_diff(ref.weights(), eng.weights()) <= TOL
    assert not np.array_equal(eng.weights().w1, weights.w1)  # it learned
    np.testing.assert_array_equal(eng.predict(xt), ref.predict(xt))
    assert np.abs(eng.scores(xt) - ref.scores(xt)).max() <= TOL
    for kind in ("value", "onehot"):
        assert np.abs(eng.codes(xt, kind) - ref.codes(xt, kind)).max() <= TOL
    assert eng.codes(xt).shape == (len(xt), config.N1)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
@pytest.mark.parametrize("changes, B", [c[1:] for c in CASES if c[0] in
                                        ("stride4-norm", "stride2-pool3-sum-onehot", "block-pool2-norm",
                                         "stride2-pool3-sum-all")])
def test_thread_count_does_not_matter(data, changes, B):
    """1 or 2 threads, updates serial or in parallel: bit-identical."""
    (x, y), (xt, _) = data
    config = config_of(changes, B)
    results = []
    threads = numba.get_num_threads()
    try:
        for n, parallel_update in ((1, None), (2, None), (2, 0), (1, 0)):
            numba.set_num_threads(n)
            eng = SharedEngine(config, init_weights(config))
            if parallel_update is not None:
                eng.parallel_update = parallel_update  # every batch's update in parallel
            train_split(eng, x, y, B, 2 * config.xi)
            results.append((*eng.weights(), eng.scores(xt), eng.codes(xt)))
    finally:
        numba.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_registered_and_weights_roundtrip(data):
    config = Config(layer1="shared", layout="stride", stride=4, C_s=6, N2=20, B=10, T_s=100)
    eng = make_engine(config)
    assert isinstance(eng, SharedEngine)
    w = init_weights(config)
    for a, b in zip(eng.weights(), w):
        np.testing.assert_array_equal(a, b)
    got = eng.weights()
    got.w2[:] = 0  # a copy
    assert eng.weights().w2.any()


def test_refuses_wrong_weights():
    config = Config(layer1="shared", layout="stride", stride=4, C_s=6, N2=20, B=10, T_s=100)
    w1, w2, w3 = init_weights(config)
    bad = [Weights(w1.T, w2, w3), Weights(w1, w2[:-1], w3), Weights(w1, w2, w3[:, :-1]), (w1, w2),
           Weights(np.full_like(w1, np.nan), w2, w3)]
    for weights in bad:
        with pytest.raises(WeightsError):
            SharedEngine(config, weights)


def test_refuses_bad_inputs(data):
    (x, y), _ = data
    config = Config(layer1="shared", layout="block", C_s=6, N2=20, B=10, T_s=100)
    eng = SharedEngine(config, init_weights(config))
    with pytest.raises(ValueError):
        eng.train_batches(x[:20, :-1], y[:20])
    with pytest.raises(ValueError):
        eng.train_batches(x[:20], y[:20] + 10)
    with pytest.raises(ValueError):
        eng.predict(x[:5].reshape(5, 28, 28))
    with pytest.raises(ValueError):
        eng.codes(x[:5], "dense")
    assert eng.predict(x[:0]).shape == (0,)


def test_nan_propagates(data):
    """No fast-math: a NaN input reaches the weights (the trainer checks them for non-finite values)."""
    (x, y), _ = data
    config = Config(layer1="shared", layout="block", C_s=6, N2=20, B=10, T_s=100)
    eng = SharedEngine(config, init_weights(config))
    x = x[:20].copy()
    x[3, 300] = np.nan
    eng.train_batches(x, y[:20])
    assert not all(np.isfinite(w).all() for w in eng.weights())


def test_argmax_is_numpys():
    """The winner search of layer 2 (`_argmax_wide`, `_argmax`): the first maximum, or the first NaN."""
    from dreamflow_utils.engines.shared_kernels import _argmax, _argmax_wide

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 5, n).astype(float) for n in (1, 3, 7, 8, 9, 13, 100, 2001)]  # ties
    rows += [rng.normal(size=n) for n in (5, 64, 1003)]
    rows += [np.full(9, -np.inf), np.array([-0.0, 0.0] * 6), np.array([0.0, -0.0] * 6)]
    for r in list(rows):
        for at in (0, len(r) // 2, len(r) - 1):
            with_nan = r.copy()
            with_nan[at] = np.nan
            rows.append(with_nan)
            if len(r) > 2:
                two = with_nan.copy()
                two[-1] = np.nan
                rows.append(two)
    for r in rows:
        assert _argmax_wide(r) == np.argmax(r), r
        assert _argmax(r, len(r)) == np.argmax(r), r


def test_layer2_by_rows_is_bit_identical():
    """Layer 2 sample by sample or turned around by rows of w2 (dense codes): the same numbers."""
    from dreamflow_utils.engines.shared_kernels import _layer2, _layer2_by_rows

    rng = np.random.default_rng(1)
    n, N1, N2, M = 7, 300, 2500, 120
    w2, w3 = rng.uniform(size=(N1, N2)), rng.uniform(size=(10, N2))
    nnz = rng.integers(0, M + 1, n)
    code_i = np.zeros((n, M), np.int64)
    for b in range(n):
        code_i[b, :nnz[b]] = np.sort(rng.choice(N1, nnz[b], replace=False))
    code_v = rng.normal(size=(n, M))
    for labels in (rng.integers(0, 10, n), np.zeros(0, np.int64)):
        a, b = np.empty((n, N2)), np.empty((n, N2))
        _layer2(code_i, code_v, nnz, w2, a, w3, labels, 1.7)
        _layer2_by_rows(code_i, code_v, nnz, w2, b, w3, labels, 1.7)
        np.testing.assert_array_equal(a, b)
        dense = np.zeros((n, N1))
        for r in range(n):
            dense[r, code_i[r, :nnz[r]]] = code_v[r, :nnz[r]]
        expect = dense @ w2 + (1.7 * w3[labels] if len(labels) else 0)
        np.testing.assert_allclose(a, expect, rtol=1e-12, atol=1e-12)


def test_l2_winners_ties_go_to_the_lower_units(data):
    """Layer-2 inputs all equal (w2, w3 constant): the units 0..l2_winners-1 are active, as in the oracle."""
    (x, y), _ = data
    config = Config(layer1="shared", layout="stride", stride=4, C_s=5, N2=20, B=10, T_s=100, l2_winners=3)
    w = init_weights(config)
    tied = Weights(w.w1, np.ones_like(w.w2), np.ones_like(w.w3))
    ref, eng = SharedReference(config, tied), SharedEngine(config, tied)
    for engine in (ref, eng):
        engine.train_batches(x[:10], y[:10])
    assert max_diff(ref.weights(), eng.weights()) <= TOL
    np.testing.assert_array_equal(np.flatnonzero((eng.weights().w2 != 1).any(axis=0)), [0, 1, 2])
