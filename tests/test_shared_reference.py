"""The weight-shared model's oracle (`engines.shared_reference`): what its math means, checked
against the faithful engine it generalises and against hand-built cases."""
import numpy as np
import pytest

from dreamflow_utils import Config, Weights, init_weights, train
from dreamflow_utils.engines import make_engine
from dreamflow_utils.core.geometry import patch_indices
from helpers import synthetic_data

DATA = synthetic_data()
SMALL = dict(layer1="shared", engine="reference", B=20, T_s=400)


def test_pooling_onehot_and_norm_codes():
    c = Config(layout="stride", stride=2, C_s=3, N2=5, pool=2, **SMALL)
    w = init_weights(c)
    x = DATA[0][0][:7]
    unpooled = make_engine(c.replace(pool=1), Weights(w.w1, np.ones((300, 5)), w.w3)).codes(x)
    u = unpooled.reshape(7, 10, 10, 3)
    assert ((u != 0).sum(axis=3) <= 1).all()  # one winner per position
    assert np.array_equal(make_engine(c, w).codes(x), u.reshape(7, 5, 2, 5, 2, 3).max(axis=(2, 4)).reshape(7, -1))
    s = make_engine(c.replace(pool_mode="sum"), w).codes(x)
    assert np.allclose(s, u.reshape(7, 5, 2, 5, 2, 3).sum(axis=(2, 4)).reshape(7, -1))
    oh = make_engine(c.replace(pool=1, code="onehot"), Weights(w.w1, np.ones((300, 5)), w.w3)).codes(x)
    assert np.array_equal(oh != 0, unpooled != 0) and set(np.unique(oh)) <= {0.0, 1.0}
    assert np.array_equal(make_engine(c.replace(pool=1), Weights(w.w1, np.ones((300, 5)), w.w3)).codes(x, "onehot"), oh)
    nrm = make_engine(c.replace(norm=True), w).codes(x)
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1)


def test_a_blank_patch_switches_nothing_on():
    c = Config(layout="block", C_s=4, N2=5, **SMALL)
    x = np.zeros((1, 784))
    x[0, patch_indices("block")[4]] = 0.5
    codes = make_engine(c).codes(x).reshape(9, 4)
    assert np.count_nonzero(codes) == 1 and np.count_nonzero(codes[4]) == 1


def _faithful_twin(C=4, N2=12, seed=3):
    """A faithful block model (wta="own_units") whose 9 clusters all start from one shared bank."""
    sc = Config(layout="block", C_s=C, N2=N2, **SMALL)
    sw = init_weights(sc.replace(seed=seed))
    fc = Config(layout="block", C_s=C, N2=N2, B=20, T_s=400, wta="own_units")
    idx = np.repeat(patch_indices("block"), C, axis=0)
    w1 = np.zeros((784, 9 * C))
    for u in range(9 * C):
        w1[idx[u], u] = sw.w1[:, u % C]
    return sc, sw, fc, Weights(w1, sw.w2.copy(), sw.w3.copy())


def test_block_grid_is_the_faithful_rule_with_tied_clusters():
    """On the block grid the shared model is the faithful rule (wta="own_units") with the 9
    clusters' updates summed into one bank: codes, layer 2 and the label layer agree."""
    sc, sw, fc, fw = _faithful_twin()
    (x, y), (tx, _) = DATA
    s, f = make_engine(sc, sw), make_engine(fc, fw)
    assert np.allclose(s.codes(x[:50]), f.codes(x[:50]))
    assert np.array_equal(s.predict(tx), f.predict(tx))
    s.train_batches(x[:20], y[:20])
    f.train_batches(x[:20], y[:20])
    ws, wf = s.weights(), f.weights()
    assert np.allclose(ws.w2, wf.w2) and np.allclose(ws.w3, wf.w3)
    dW = (np.stack([wf.w1[idx, u] for u, idx in enumerate(np.repeat(patch_indices("block"), 4, axis=0))])
          - np.tile(sw.w1.T, (9, 1))).reshape(9, 4, 81).sum(axis=0)  # the faithful clusters' updates, summed
    # the faithful engine scales each cluster's update by one max over all of w1; the bank by its own max
    assert np.allclose(ws.w1 - sw.w1, sc.xi * dW.T / np.abs(dW).max())


def test_label_gain_and_unit_norm():
    c = Config(layout="stride", stride=4, C_s=3, N2=6, label_gain=3.0, unit_norm=True, **SMALL)
    (x, y), _ = DATA
    e = make_engine(c)
    e.train_batches(x[:200], y[:200])
    w2 = e.weights().w2
    touched = ~np.isclose(w2, init_weights(c).w2).all(axis=0)
    assert touched.any() and np.allclose(np.linalg.norm(w2[:, touched], axis=0), 1)


def test_training_is_repeatable_and_moves_the_bank():
    """(That it learns: tests/test_learning.py, on a task with a known answer.)"""
    c = Config(layout="stride", stride=4, C_s=4, N2=10, Nep=2, pool=2, shift=1, xi_decay=0.5, **SMALL)
    a, b = train(c, DATA), train(c, DATA)
    assert a.epoch_accuracies == b.epoch_accuracies and np.array_equal(a.weights.w1, b.weights.w1)
    assert not np.array_equal(a.weights.w1, init_weights(c).w1)


@pytest.mark.parametrize("bad", [np.ones((784, 4)), np.ones((81, 5))])
def test_weights_must_fit_the_config(bad):
    c = Config(layout="stride", stride=4, C_s=4, N2=10, **SMALL)
    w = init_weights(c)
    with pytest.raises(ValueError, match="w1 has shape"):
        make_engine(c, Weights(bad, w.w2, w.w3))


def test_patch_norm_makes_the_model_contrast_invariant():
    """patch_norm: every patch is divided by its length before the detectors see it and as the
    bank's target, so images scaled by any factor give the same codes and the same training;
    a blank patch stays 0 (no NaN)."""
    c = Config(layout="stride", stride=4, C_s=4, N2=10, patch_norm=True, **SMALL)
    (x, y), _ = DATA
    x = x[:200].copy()
    x[0] = 0.0  # a blank image
    scaled = x * np.random.default_rng(0).uniform(0.1, 10, (len(x), 1))
    a, b = make_engine(c), make_engine(c)
    np.testing.assert_allclose(a.codes(scaled), a.codes(x), rtol=1e-12, atol=1e-15)
    assert not a.codes(x)[0].any() and np.isfinite(a.codes(x)).all()
    a.train_batches(x, y[:200])
    b.train_batches(scaled, y[:200])
    for u, v in zip(a.weights(), b.weights()):
        np.testing.assert_allclose(u, v, rtol=1e-9)
    plain = make_engine(c.replace(patch_norm=False))
    assert not np.allclose(plain.codes(scaled), plain.codes(x))  # without it the codes follow the contrast
    block = Config(layout="block", C_s=4, N2=5, patch_norm=True, **SMALL)
    single, patch = np.zeros((1, 784)), np.linspace(0.1, 2, 81)
    single[0, patch_indices("block")[4]] = patch
    out = make_engine(block).codes(single).reshape(9, 4)
    assert np.count_nonzero(out) == 1
    assert out[4].max() == pytest.approx((patch / np.linalg.norm(patch) @ init_weights(block).w1).max(), rel=1e-12)


def test_pixels_append_the_pooled_image_to_layer_2s_input():
    """pixels: layer 2 reads [code, pixels * p], p the image's 2x2 block means (row by row) over
    their length; w2 reconstructs the side channel like the code; the bank learns as without it."""
    c = Config(layout="stride", stride=4, C_s=3, N2=8, norm=True, pixels=2.5, **SMALL)
    (x, y), _ = DATA
    x = x[:40].copy()
    x[1] = 0.0  # an all-zero image: its side channel is 0
    w = init_weights(c)
    off = c.replace(pixels=0.0)
    w_off = Weights(w.w1, w.w2[:off.N1], w.w3)
    got = make_engine(c, w).codes(x)
    assert got.shape == (40, 75 + 196)
    np.testing.assert_array_equal(got[:, :75], make_engine(off, w_off).codes(x))
    img = x.reshape(40, 28, 28)
    p = np.array([[img[:, 2 * r:2 * r + 2, 2 * s:2 * s + 2].mean(axis=(1, 2)) for s in range(14)] for r in range(14)])
    p = p.transpose(2, 0, 1).reshape(40, 196)
    p[0] /= np.linalg.norm(p[0])
    p[2:] /= np.linalg.norm(p[2:], axis=1, keepdims=True)
    np.testing.assert_allclose(got[:, 75:], 2.5 * p, rtol=1e-12, atol=1e-15)
    assert not got[1, 75:].any()
    np.testing.assert_allclose(make_engine(c, w).scores(x), got @ w.w2, rtol=1e-12)
    e, e_off = make_engine(c, w), make_engine(off, w_off)
    e.train_batches(x, y[:40])
    e_off.train_batches(x, y[:40])
    assert np.array_equal(e.weights().w1, e_off.weights().w1)  # the bank's update does not see layer 2
    assert not np.array_equal(e.weights().w2[75:], w.w2[75:])  # w2's side-channel rows learn


@pytest.mark.parametrize("k", [1, 3])
def test_l2_winners_units_learn_per_sample(k):
    """l2_winners=k: the k most active layer-2 units of each sample (input incl. the label) learn;
    with equal inputs the lower units win, as argmax."""
    c = Config(layout="stride", stride=4, C_s=3, N2=12, l2_winners=k, **SMALL)
    (x, y), _ = DATA
    w = init_weights(c)
    e = make_engine(c, w)
    l2_in = e.codes(x[:20]) @ w.w2 + w.w3[y[:20]]
    e.train_batches(x[:20], y[:20])
    changed = np.flatnonzero((e.weights().w2 != w.w2).any(axis=0))
    expect = np.unique(np.argsort(-l2_in, axis=1, kind="stable")[:, :k])
    np.testing.assert_array_equal(changed, expect)
    np.testing.assert_array_equal(np.flatnonzero((e.weights().w3 != w.w3).any(axis=0)), expect)
    tied = make_engine(c, Weights(w.w1, np.ones_like(w.w2), np.ones_like(w.w3)))
    tied.train_batches(x[:20], y[:20])
    np.testing.assert_array_equal(np.flatnonzero((tied.weights().w2 != 1).any(axis=0)), np.arange(k))
