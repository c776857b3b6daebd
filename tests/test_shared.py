import numpy as np
import pytest

from dreamflow_utils import Config, init_weights
from dreamflow_utils.engines.numpy_engine import NumpyEngine
from dreamflow_utils.model import Weights
from dreamflow_utils.shared import (SharedConfig, SharedEngine, SharedWeights, grid_origins, init_shared,
                                    plot_shared_tapestry, predict_vote, shared_tapestry, shift_images, train_shared,
                                    translate)
from helpers import synthetic_data

DATA = synthetic_data()


@pytest.mark.parametrize("grid,stride,n", [("block", 9, 9), ("overlap", 9, 13), ("stride", 9, 9),
                                           ("stride", 4, 25), ("stride", 3, 49), ("stride", 2, 100), ("stride", 1, 400)])
def test_grids(grid, stride, n):
    o = grid_origins(grid, stride)
    assert len(o) == n and all(0 <= r <= 19 and 0 <= c <= 19 for r, c in o)
    assert SharedConfig(grid=grid, stride=stride, C_s=3).N1 == 3 * n


def test_overlap_grid_is_the_logs():
    from dreamflow_utils.layouts import patch_origins
    assert sorted(grid_origins("overlap")) == sorted(patch_origins("overlap"))


def test_pooling_sizes_and_values():
    c = SharedConfig(grid="stride", stride=2, C_s=3, N2=5, pool=2)
    assert c.n_positions == 100 and c.n_pooled == 25 and c.N1 == 75
    assert SharedConfig(grid="stride", stride=3, C_s=3, pool=2).n_pooled == 16  # 7x7 -> 4x4 (padded)
    e = SharedEngine(c)
    x = DATA[0][0][:7]
    unpooled = SharedEngine(c.replace(pool=1), SharedWeights(e.W, np.ones((300, 5)), e.w3)).codes(x)
    u = unpooled.reshape(7, 10, 10, 3)
    expect = u.reshape(7, 5, 2, 5, 2, 3).max(axis=(2, 4)).reshape(7, -1)
    assert np.array_equal(e.codes(x), expect)
    s = SharedEngine(c.replace(pool_mode="sum"), e.weights()).codes(x)
    assert np.allclose(s, u.reshape(7, 5, 2, 5, 2, 3).sum(axis=(2, 4)).reshape(7, -1))
    with pytest.raises(ValueError):
        SharedConfig(grid="overlap", pool=2)


def test_one_winner_per_position_and_onehot():
    c = SharedConfig(grid="stride", stride=4, C_s=5, N2=7)
    e = SharedEngine(c)
    x = DATA[0][0][:20]
    v = e.codes(x).reshape(20, 25, 5)
    assert ((v != 0).sum(axis=2) <= 1).all()
    oh = SharedEngine(c.replace(code="onehot"), e.weights()).codes(x).reshape(20, 25, 5)
    assert np.array_equal(oh != 0, v != 0) and set(np.unique(oh)) <= {0.0, 1.0}
    nrm = SharedEngine(c.replace(norm=True), e.weights()).codes(x)
    assert np.allclose(np.linalg.norm(nrm, axis=1)[np.linalg.norm(v.reshape(20, -1), axis=1) > 0], 1)


def _faithful_twin(C=4, N2=12, seed=3):
    """A faithful block model (wta="cluster") whose 9 clusters all start from one shared bank."""
    rng = np.random.default_rng(seed)
    sc = SharedConfig(grid="block", C_s=C, N2=N2, B=20, T_s=400)
    sw = SharedWeights(rng.uniform(0, 1, (C, 81)), rng.uniform(0, 1, (9 * C, N2)), rng.uniform(0, 1, (10, N2)))
    fc = Config(layout="block", C_s=C, N2=N2, B=20, T_s=400, wta="cluster")
    # shared position p = row*3 + col; faithful cluster k = col*3 + row (the log's x-outer loop)
    perm = np.array([((p % 3) * 3 + p // 3) * C + c for p in range(9) for c in range(C)])
    w1 = init_weights(fc).w1.copy()
    idx = NumpyEngine(fc, init_weights(fc)).unit_pixels
    w1[:] = 0
    for u in range(9 * C):
        w1[idx[u], u] = sw.W[u % C]
    w2f = np.empty_like(sw.w2)
    w2f[perm] = sw.w2
    return sc, sw, fc, Weights(w1, w2f, sw.w3.copy()), perm


def test_block_grid_matches_faithful_engine_for_one_batch():
    """On the block grid the shared engine is the faithful rule with the 9 clusters' updates
    summed into one bank: layer 2 and the label layer are updated identically."""
    sc, sw, fc, fw, perm = _faithful_twin()
    (x, y), _ = DATA
    s, f = SharedEngine(sc, sw.copy()), NumpyEngine(fc, fw)
    assert np.allclose(s.codes(x[:50]), _faithful_codes(NumpyEngine(fc, fw), x[:50])[:, perm])
    W1_before = f.W1.copy()
    s.train_batches(x[:20], y[:20])
    f.train_batches(x[:20], y[:20])
    assert np.allclose(s.w2, f.w2[perm]) and np.allclose(s.w3, f.w3)
    dS = (f.W1 - W1_before).reshape(9, sc.C_s, 81).sum(axis=0)  # summed per-cluster updates
    assert np.allclose(s.W - sw.W, sc.xi * dS / np.abs(dS).max())


def _faithful_codes(engine, x):
    unit, val = engine._layer1(x)
    out = np.zeros((len(x), engine.config.N1))
    np.add.at(out, (np.broadcast_to(np.arange(len(x)), unit.shape).ravel(), unit.ravel()), val.ravel())
    return out


def test_predict_matches_faithful_read_out():
    sc, sw, fc, fw, perm = _faithful_twin()
    (x, y), (tx, ty) = DATA
    assert np.array_equal(SharedEngine(sc, sw).predict(tx), NumpyEngine(fc, fw).predict(tx))


def test_training_is_repeatable_and_learns_something():
    c = SharedConfig(grid="stride", stride=4, C_s=4, N2=10, B=20, T_s=400, Nep=2, pool=2, shift=1)
    a, b = train_shared(c, DATA), train_shared(c, DATA)
    assert a.test_accuracy == b.test_accuracy and np.array_equal(a.engine.W, b.engine.W)
    assert 0 <= a.test_accuracy <= 1 and np.all(np.isfinite(a.engine.w2))
    assert not np.array_equal(a.engine.W, init_shared(c).W)


def test_vote():
    l2 = np.array([[3.0, 2.0, 1.0], [0.0, 1.0, 5.0]])
    w3 = np.zeros((10, 3))
    w3[1, 0], w3[2, 1], w3[2, 2] = 1, 1, 0.1
    assert list(predict_vote(l2, w3, 1)) == [1, 2]
    assert list(predict_vote(l2, w3, 2)) == [1, 2]  # ties go to the lower class
    assert list(predict_vote(l2, w3, 3)) == [2, 2]


def test_shift_images():
    x = DATA[0][0][:50]
    rng = np.random.default_rng(0)
    assert np.array_equal(shift_images(x, 0, rng), x)
    s = shift_images(x, 2, rng)
    assert s.shape == x.shape and np.all(s.sum(axis=1) <= x.sum(axis=1) + 1e-9) and not np.array_equal(s, x)
    moved = translate(x, -2, -2)  # helpers' images have empty top and left 2-pixel borders
    assert np.allclose(moved.sum(axis=1), x.sum(axis=1)) and np.array_equal(translate(moved, 2, 2), x)
    img = np.zeros((1, 784))
    img[0, 10 * 28 + 10] = 1
    assert translate(img, 2, -3)[0, 12 * 28 + 7] == 1


def test_tapestry():
    W = np.random.default_rng(0).uniform(0, 1, (10, 81))
    t = shared_tapestry(W)
    assert t.shape == (3 * 10 - 1, 4 * 10 - 1) and np.allclose(t[:9, :9], W[0].reshape(9, 9))
    fig = plot_shared_tapestry(W, "bank")
    assert fig.axes


@pytest.mark.parametrize("name,value", [
    ("grid", "hex"), ("pool_mode", "mean"), ("code", "dense"), ("C_s", 0), ("N2", -1), ("stride", 1.5),
    ("pool", True), ("vote", 0), ("T_s", 0), ("Nep", 0), ("B", 0), ("shift", -1), ("seed", -2),
    ("label_gain", 0.0), ("xi", float("nan")), ("prec", -1e-20), ("xi_decay", 1.5), ("B", 70000)])
def test_bad_shared_config_value_is_named(name, value):
    with pytest.raises(ValueError, match=f"^{name} "):
        SharedConfig(**{name: value})
