"""The TensorFlow engine against the numpy engine and the reference, on synthetic
MNIST-like data (sparse strokes, blank patches, blank images), CPU only.

float64 must agree to 1e-9 (max abs weight difference) with identical predictions.
float32 is checked loosely: after 50 batches its weights stay within 1e-4 of float64's
(float32 rounding is ~6e-8 per operation; measured ~5e-7 after 60 MNIST batches)
and its test predictions agree with numpy's on >= 95% of the images.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from dreamflow_utils import Config, init_weights, train  # noqa: E402
from dreamflow_utils.engines import make_engine  # noqa: E402
from dreamflow_utils.engines.numpy_engine import NumpyEngine  # noqa: E402
from dreamflow_utils.engines.reference import ReferenceEngine  # noqa: E402
from dreamflow_utils.engines.tensorflow_engine import TensorFlowEngine, _argmax_first  # noqa: E402
from dreamflow_utils.bench import VARIANTS, build, interleaved  # noqa: E402
from dreamflow_utils.core.geometry import patch_indices  # noqa: E402
from dreamflow_utils.core.model import Weights  # noqa: E402

TOL = 1e-9
XLA_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.NotFoundError,
              tf.errors.InternalError)  # what a missing/unsupported XLA raises


def strokes(n, seed):
    """MNIST-like images in [0, 1]: 1-3 random strokes each, some patches blanked,
    ~5% of images fully blank; random labels."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, 28, 28))
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            r0, c0 = rng.uniform(2, 26, 2)
            angle, length = rng.uniform(0, 2 * np.pi), rng.integers(4, 18)
            t = np.arange(length)
            rr = np.clip(np.round(r0 + t * np.sin(angle)), 0, 27).astype(int)
            cc = np.clip(np.round(c0 + t * np.cos(angle)), 0, 27).astype(int)
            img[i, rr, cc] = rng.uniform(0.2, 1.0, length)
            img[i, np.clip(rr + 1, 0, 27), cc] = np.maximum(img[i, np.clip(rr + 1, 0, 27), cc],
                                                             rng.uniform(0, 0.5, length))
    x = img.reshape(n, 784)
    idx = patch_indices("overlap")
    for i in range(n):
        x[i, idx[rng.choice(13, rng.integers(0, 5), replace=False)].ravel()] = 0
    x[rng.random(n) < 0.05] = 0
    return x, rng.integers(0, 10, n)


def with_negatives(w: Weights, C: int) -> Weights:
    """Cluster 0 all negative (its outputs are < 0 on any non-blank patch: the quirk's
    unit-C branch), cluster 3 all negative (max < 0: unit 0), cluster 1 half negative."""
    w1 = w.w1.copy()
    w1[:, :C] *= -1
    w1[:, 3 * C:4 * C] *= -1
    w1[:, C:C + C // 2] *= -1
    return Weights(w1, w.w2, w.w3)


def tf_engine(cfg, w, **kw):
    return TensorFlowEngine(cfg.replace(engine="tensorflow", **kw), w)


def max_diff(a: Weights, b: Weights):
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a, b))


@pytest.fixture(scope="module")
def data():
    return strokes(1600, seed=1), strokes(500, seed=2)


CASES = [  # layout, wta, C_s, N2, B, negative w1
    ("block", "full_row", 10, 100, 20, False),
    ("overlap", "full_row", 3, 7, 10, False),
    ("block", "own_units", 5, 13, 25, False),
    ("overlap", "own_units", 10, 30, 16, False),
    ("block", "full_row", 4, 9, 10, True),
    ("overlap", "full_row", 6, 11, 16, True),
    ("overlap", "own_units", 4, 5, 12, True),
]


@pytest.mark.parametrize("layout,wta,C,N2,B,neg", CASES)
def test_matches_numpy(data, layout, wta, C, N2, B, neg):
    (x, y), (tx, ty) = data
    cfg = Config(layout=layout, wta=wta, C_s=C, N2=N2, B=B, T_s=1000 // B * B, seed=C + N2)
    w = init_weights(cfg)
    if neg:
        w = with_negatives(w, C)
    n = 60 * B
    ne, te = NumpyEngine(cfg, w), tf_engine(cfg, w)
    ne.train_batches(x[:n], y[:n])
    te.train_batches(x[:n], y[:n])
    assert max_diff(ne.weights(), te.weights()) <= TOL
    assert np.array_equal(ne.predict(tx), te.predict(tx))
    assert np.array_equal(ne.predict(x[:300]), te.predict(x[:300]))


def test_quirk_branches_are_exercised(data):
    """The data and negative weights really hit both quirk branches and duplicate units."""
    (x, _), _ = data
    cfg = Config(layout="overlap", C_s=6, N2=11, B=16, T_s=992)
    w1 = with_negatives(init_weights(cfg), 6).w1
    top = (x[:500] @ w1).reshape(500, cfg.n_positions, 6).max(axis=2)  # each cluster's best output
    assert (top[:, 0] < 0).any()  # cluster 0 all negative -> unit C
    assert (top[:, 1:] < 0).any() and (top[:, 1:] == 0).any()  # max <= 0 -> unit 0
    assert ((top[:, 1:] <= 0).sum(axis=1) >= 2).any()  # unit 0 picked twice for a sample
    blank = (x[:500, patch_indices("overlap")] == 0).all(axis=2)  # (n, K) blank patches
    assert blank.any() and not blank.all(axis=1).all()


def test_matches_reference_small(data):
    (x, y), (tx, _) = data
    for layout, wta, neg in (("overlap", "full_row", True), ("block", "own_units", False)):
        cfg = Config(layout=layout, wta=wta, C_s=3, N2=6, B=8, T_s=1000, seed=5)
        w = init_weights(cfg)
        if neg:
            w = with_negatives(w, 3)
        re, te = ReferenceEngine(cfg, w), tf_engine(cfg, w)
        re.train_batches(x[:400], y[:400])
        te.train_batches(x[:400], y[:400])
        assert max_diff(re.weights(), te.weights()) <= TOL
        assert np.array_equal(re.predict(tx[:200]), te.predict(tx[:200]))


def test_chunks_and_partial_batches(data):
    """Calls of any size run the same consecutive batches; a trailing partial batch is
    dropped; several compiled calls per train_batches (chunk_rows) change nothing."""
    (x, y), _ = data
    cfg = Config(layout="block", C_s=4, N2=10, B=10, T_s=1000)
    w = init_weights(cfg)
    one, many = NumpyEngine(cfg, w), tf_engine(cfg, w)
    many.chunk_rows = 30  # 3 batches per compiled call
    one.train_batches(x[:500], y[:500])
    many.train_batches(x[:130], y[:130])  # 13 batches, 3 samples dropped
    many.train_batches(x[130:133], y[130:133])  # no full batch: nothing
    many.train_batches(x[130:500], y[130:500])
    assert max_diff(one.weights(), many.weights()) <= TOL


def test_weights_round_trip_and_validation():
    cfg = Config(layout="overlap", C_s=3, N2=5, engine="tensorflow")
    w = init_weights(cfg)
    e = make_engine(cfg, w)
    assert isinstance(e, TensorFlowEngine)
    got = e.weights()
    assert all(g.dtype == np.float64 and np.array_equal(g, o) for g, o in zip(got, w))
    bad = w.w1.copy()
    bad[0, 5] = 0.5  # pixel 0 is outside cluster 1's patch
    with pytest.raises(ValueError, match="outside"):
        TensorFlowEngine(cfg, Weights(bad, w.w2, w.w3))


def test_argmax_first_matches_numpy():
    """Ties (frequent: blank patches give all-zero clusters) go to the first index, as numpy's."""
    rng = np.random.default_rng(0)
    a = rng.integers(-2, 3, (7, 50, 6)).astype(np.float64)  # many ties
    a[0, 0] = 0.0
    a[0, 1] = [-0.0, 0.0, -0.0, 0.0, -1, -1]  # -0 == 0: first wins
    want = a.argmax(axis=-1)
    for dtype in (tf.float64, tf.float32):
        t = tf.constant(a, dtype)
        assert np.array_equal(_argmax_first(t).numpy(), want)
        assert np.array_equal(tf.function(_argmax_first)(t).numpy(), want)
        try:
            got = tf.function(_argmax_first, jit_compile=True)(t).numpy()
        except XLA_ERRORS:
            continue
        assert np.array_equal(got, want)


def test_eager_matches_numpy(data):
    """compiled=False runs the same code op by op (no tf.function)."""
    (x, y), (tx, _) = data
    cfg = Config(layout="overlap", wta="full_row", C_s=3, N2=6, B=10, T_s=1000)
    w = with_negatives(init_weights(cfg), 3)
    eager, ne = TensorFlowEngine(cfg.replace(engine="tensorflow"), w, compiled=False), NumpyEngine(cfg, w)
    eager.train_batches(x[:100], y[:100])  # 10 batches: eager is slow
    ne.train_batches(x[:100], y[:100])
    assert max_diff(eager.weights(), ne.weights()) <= TOL
    assert np.array_equal(eager.predict(tx), ne.predict(tx))


F32_TOL = 2e-6  # float32 against numpy's float64 after 50 batches: measured 4.1e-7 (graph), 3.5e-7 (XLA)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_float32_stays_close(data, jit_compile):
    (x, y), (tx, _) = data
    cfg = Config(layout="overlap", C_s=10, N2=30, B=20, T_s=1000)
    w = init_weights(cfg)
    ne, te = NumpyEngine(cfg, w), tf_engine(cfg, w, dtype="float32", jit_compile=jit_compile)
    try:
        te.train_batches(x[:1000], y[:1000])
    except XLA_ERRORS as err:
        pytest.skip(f"XLA (jit_compile=True) unavailable on this machine: {str(err).splitlines()[0]}")
    ne.train_batches(x[:1000], y[:1000])
    got = te.weights()
    assert got.w1.dtype == np.float64
    assert 0 < max_diff(ne.weights(), got) <= F32_TOL  # float32 really ran (not 0), and stayed close
    assert np.mean(ne.predict(tx) == te.predict(tx)) >= 0.99


def test_xla_matches_numpy(data):
    (x, y), (tx, _) = data
    cfg = Config(layout="overlap", wta="full_row", C_s=6, N2=11, B=16, T_s=992)
    w = with_negatives(init_weights(cfg), 6)
    ne, te = NumpyEngine(cfg, w), tf_engine(cfg, w, jit_compile=True)
    te.chunk_rows = 400  # 25 batches per call: 25, 25, then 10 zero-padded to 25
    try:
        te.train_batches(x[:960], y[:960])  # the first call compiles with XLA
    except XLA_ERRORS as err:
        pytest.skip(f"XLA (jit_compile=True) unavailable on this machine: {str(err).splitlines()[0]}")
    ne.train_batches(x[:960], y[:960])
    assert max_diff(ne.weights(), te.weights()) <= TOL
    assert np.array_equal(ne.predict(tx), te.predict(tx))


def test_train_end_to_end(data):
    (x, y), (tx, ty) = data
    cfg = Config(layout="block", C_s=4, N2=12, B=20, T_s=1000, Nep=2, seed=3)
    got = train(cfg.replace(engine="tensorflow"), ((x, y), (tx, ty)))
    want = train(cfg, ((x, y), (tx, ty)))
    assert got.test_accuracy == want.test_accuracy and len(got.epoch_accuracies) == 2
    assert np.array_equal(got.predictions, want.predictions)
    assert max_diff(got.weights, want.weights) <= TOL
    assert "tensorflow" in got.record()["versions"]


def test_benchmark_builds_and_times_every_variant(data):
    (x, y), _ = data
    config = Config(layout="block", C_s=3, N2=5, B=10)
    engines = [build(config, *v) for v in VARIANTS.values()]
    ms = interleaved(engines, x, y, n_batches=3, repeats=1, slow={len(engines) - 1})
    assert len(ms) == len(VARIANTS) and all(0 < m < 1e4 for m in ms)


def test_xi_schedule_matches_numpy(data):
    """set_xi (an xi schedule, Config.xi_decay) changes the step of the compiled loop as numpy's."""
    (x, y), (tx, _) = data
    cfg = Config(layout="block", C_s=4, N2=10, B=10, T_s=1000)
    ne, te = NumpyEngine(cfg, init_weights(cfg)), tf_engine(cfg, init_weights(cfg))
    for e in (ne, te):
        e.train_batches(x[:300], y[:300])
        e.set_xi(0.002)
        e.train_batches(x[300:600], y[300:600])
    assert max_diff(ne.weights(), te.weights()) <= TOL
    assert np.array_equal(ne.predict(tx), te.predict(tx))
    assert np.allclose(te.codes(tx), ne.codes(tx)) and np.allclose(te.scores(tx), ne.scores(tx))
