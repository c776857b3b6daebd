"""The Krotov & Hopfield peer (layer1="krotov") against their rule written as literally as their
public notebook, and its read-out against the DreamFlow rule written densely."""
import numpy as np
import pytest

from dreamflow_utils import Config, init_weights, train
from dreamflow_utils.engines import make_engine
from helpers import synthetic_data

DATA = synthetic_data(n_train=600, n_test=200)
BASE = dict(layer1="krotov", layout=None, C_s=30, N2=12, B=20, T_s=600, Nep=3, kh_epochs=2, kh_p=3.0, kh_k=4,
            kh_delta=0.4, kh_eps0=0.04, kh_n=2.0)


def notebook_rule(S, x, config, epochs):
    """Krotov & Hopfield's notebook, transcribed: synapses (hid, N), argsort ranking, eps decay."""
    S = S.copy()
    hid, p, k, delta, B = config.C_s, config.kh_p, config.kh_k, config.kh_delta, config.B
    for nep in range(epochs):
        eps = config.kh_eps0 * (1 - nep / config.kh_epochs)
        for i in range(len(x) // B):
            inputs = np.transpose(x[i * B:(i + 1) * B])
            sig = np.sign(S)
            tot_input = np.dot(sig * np.absolute(S) ** (p - 1), inputs)
            y = np.argsort(tot_input, axis=0)
            yl = np.zeros((hid, B))
            yl[y[hid - 1, :], np.arange(B)] = 1.0
            yl[y[hid - k], np.arange(B)] = -delta
            xx = np.sum(np.multiply(yl, tot_input), 1)
            ds = np.dot(yl, np.transpose(inputs)) - np.multiply(np.tile(xx.reshape(xx.shape[0], 1), (1, x.shape[1])), S)
            nc = np.amax(np.absolute(ds))
            if nc < config.prec:
                nc = config.prec
            S += eps * np.true_divide(ds, nc)
    return S


def dense_code(S, x):
    """BASE's code relu(I) ** kh_n, densely: I = x @ (sign(S) |S| ** (kh_p - 1)).T, S (units, 784)."""
    return np.maximum(x @ (np.sign(S) * np.abs(S) ** 2).T, 0) ** 2.0


def normalised(code):
    return code / np.linalg.norm(code, axis=1, keepdims=True)


def winner_only(l2_in):
    """Layer 2 with one winner per sample: its input kept, the others 0."""
    l2 = np.zeros_like(l2_in)
    l2[np.arange(len(l2_in)), l2_in.argmax(1)] = l2_in.max(1)
    return l2


def dreamflow_step(W, target, l2, config):
    """W after one dense DreamFlow step: dW = W * sum_b l2_b (x) err_b, scaled so that max |dW| = xi."""
    pred = l2 @ W.T
    err = (target - pred) / np.where(pred > config.prec, pred, 1)
    dw = W * np.einsum("bi,bj->ij", err, l2)
    return W + config.xi / np.abs(dw).max() * dw


def test_layer1_is_the_notebooks_rule():
    config = Config(**BASE)
    w = init_weights(config)
    (x, y), _ = DATA
    e = make_engine(config, w)
    for _ in range(config.kh_epochs):
        e.train_batches(x, y)
    S = notebook_rule(w.w1.T, x, config, config.kh_epochs)
    assert np.max(np.abs(e.weights().w1.T - S)) <= 1e-9
    assert np.array_equal(e.weights().w2, w.w2)  # layer 2 waits for the unsupervised epochs


def test_readout_is_the_dreamflow_rule():
    config = Config(**BASE, norm=True, label_gain=2.0)
    w = init_weights(config)
    (x, y), _ = DATA
    e = make_engine(config, w)
    e.batches = config.kh_epochs * (config.T_s // config.B)  # layer 1 done: the read-out learns
    e.train_batches(x[:20], y[:20])
    # the same batch, densely: l2 winner only, dW = w * sum_b post (x) err
    l1 = normalised(dense_code(w.w1.T, x[:20]))
    cl = 2.0 * np.eye(10)[y[:20]]
    l2 = winner_only(l1 @ w.w2 + cl @ w.w3)
    expect = [dreamflow_step(W, target, l2, config) for W, target in ((w.w2, l1), (w.w3, cl))]
    got = e.weights()
    assert np.max(np.abs(got.w2 - expect[0])) <= 1e-9 and np.max(np.abs(got.w3 - expect[1])) <= 1e-9
    assert np.array_equal(got.w1, w.w1)


def readout_phase(config, w):
    """An engine whose layer 1 is done: its next batches train the read-out."""
    e = make_engine(config, w)
    e.batches = config.kh_epochs * (config.T_s // config.B)
    return e


def test_set_xi_sets_the_size_of_the_next_updates():
    """The read-out's updates move each weight matrix by at most xi, exactly xi at its largest change."""
    config = Config(**BASE)
    (x, y), _ = DATA
    e = readout_phase(config, init_weights(config))
    for xi, batch in ((config.xi, slice(0, 20)), (0.002, slice(20, 40)), (0.03, slice(40, 60))):
        if xi != config.xi:
            e.set_xi(xi)
        before = e.weights()
        e.train_batches(x[batch], y[batch])
        after = e.weights()
        assert np.max(np.abs(after.w2 - before.w2)) == pytest.approx(xi, rel=1e-9)
        assert np.max(np.abs(after.w3 - before.w3)) == pytest.approx(xi, rel=1e-9)


def test_train_applies_the_xi_schedule_to_the_readout():
    """xi_decay: xi halves after every epoch, the unsupervised ones included; one batch per epoch."""
    config = Config(**{**BASE, "T_s": 20, "Nep": 4, "kh_epochs": 1}, xi=0.02, xi_decay=0.5)
    seen = [init_weights(config)]
    train(config, DATA, callback=lambda epoch, w, acc: seen.append(w))
    assert np.array_equal(seen[1].w2, seen[0].w2)  # epoch 1 trains layer 1 only
    for epoch, xi in ((2, 0.01), (3, 0.005), (4, 0.0025)):
        assert np.max(np.abs(seen[epoch].w2 - seen[epoch - 1].w2)) == pytest.approx(xi, rel=1e-9)
        assert np.max(np.abs(seen[epoch].w3 - seen[epoch - 1].w3)) == pytest.approx(xi, rel=1e-9)


def test_unit_norm_rescales_each_updated_column():
    """unit_norm: after the DreamFlow step, every winning unit's w2 column has length 1; the others stay."""
    config = Config(**BASE, unit_norm=True, label_gain=2.0)
    w = init_weights(config)
    (x, y), _ = DATA
    e = readout_phase(config, w)
    e.train_batches(x[:20], y[:20])
    # the same batch, densely: l2 winner only, dW = w * sum_b post (x) err, then winners' columns / their length
    l1 = dense_code(w.w1.T, x[:20])
    l2_in = l1 @ w.w2 + 2.0 * w.w3[y[:20]]
    won = np.unique(l2_in.argmax(1))
    expect = dreamflow_step(w.w2, l1, winner_only(l2_in), config)
    expect[:, won] /= np.linalg.norm(expect[:, won], axis=0)
    got = e.weights().w2
    assert 0 < len(won) < config.N2
    assert np.max(np.abs(got - expect)) <= 1e-9
    np.testing.assert_allclose(np.linalg.norm(got[:, won], axis=0), 1.0, rtol=1e-12)
    others = np.setdiff1d(np.arange(config.N2), won)
    assert np.array_equal(got[:, others], w.w2[:, others])
    assert np.all(np.abs(np.linalg.norm(w.w2[:, won], axis=0) - 1) > 0.1)  # not unit length before


def test_train_runs_both_phases_and_float32():
    r = train(Config(**BASE, eval_every=3), DATA)
    assert r.epoch_accuracies[:2] == [None, None] and 0 <= r.epoch_accuracies[2] <= 1
    r32 = train(Config(**BASE, eval_every=3, dtype="float32"), DATA)
    assert np.max(np.abs(r32.weights.w1 - r.weights.w1)) < 1e-3
    e = make_engine(r.config, r.weights)
    assert e.codes(DATA[1][0]).shape == (200, 30) and set(np.unique(e.codes(DATA[1][0], "onehot"))) <= {0, 1}


@pytest.mark.parametrize("changes,name", [({"kh_epochs": None}, "kh_epochs"), ({"kh_epochs": 3}, "kh_epochs"),
                                          ({"kh_k": 1}, "kh_k"), ({"kh_k": 31}, "kh_k"), ({"layout": "block"}, "layout"),
                                          ({"pool": 2}, "pool"), ({"wta": "full_row"}, "wta"), ({"kh_delta": -1.0}, "kh_delta")])
def test_krotov_config_checks(changes, name):
    with pytest.raises(ValueError, match=name):
        Config(**{**BASE, **changes})
    with pytest.raises(ValueError, match="kh_p"):
        Config(layout="block", kh_p=2.0)


def test_readout_with_l2_winners_is_the_dense_rule():
    """l2_winners=3: each sample's 3 most active units keep their inputs (l2), pred = l2 @ W.T sums
    over them, dW = W * sum_b l2_b (x) err_b, and unit_norm rescales every active unit's column."""
    config = Config(**BASE, norm=True, label_gain=2.0, unit_norm=True, l2_winners=3)
    w = init_weights(config)
    (x, y), _ = DATA
    e = readout_phase(config, w)
    e.train_batches(x[:20], y[:20])
    l1 = normalised(dense_code(w.w1.T, x[:20]))
    cl = 2.0 * np.eye(10)[y[:20]]
    l2_in = l1 @ w.w2 + cl @ w.w3
    top = np.argsort(-l2_in, axis=1, kind="stable")[:, :3]
    l2 = np.zeros_like(l2_in)
    np.put_along_axis(l2, top, np.take_along_axis(l2_in, top, axis=1), axis=1)
    expect = [dreamflow_step(W, target, l2, config) for W, target in ((w.w2, l1), (w.w3, cl))]
    won = np.unique(top)
    expect[0][:, won] /= np.linalg.norm(expect[0][:, won], axis=0)
    got = e.weights()
    assert len(won) > len(np.unique(top[:, 0]))
    assert np.max(np.abs(got.w2 - expect[0])) <= 1e-9 and np.max(np.abs(got.w3 - expect[1])) <= 1e-9
    others = np.setdiff1d(np.arange(config.N2), won)
    assert np.array_equal(got.w2[:, others], w.w2[:, others])


def test_kh_top_keeps_each_samples_largest_code_values():
    """kh_top=5: the code is relu(I)^n with all but each sample's 5 largest values set to 0 (ties
    to the lower unit), then normalised; the read-out learns on that code by the dense rule."""
    config = Config(**BASE, norm=True, kh_top=5)
    w = init_weights(config)
    (x, y), _ = DATA
    dense = dense_code(w.w1.T, x[:20])
    expect = np.zeros_like(dense)
    for b, row in enumerate(dense):
        keep = sorted(range(len(row)), key=lambda u: (-row[u], u))[:5]
        expect[b, keep] = row[keep]
    expect = normalised(expect)
    e = readout_phase(config, w)
    np.testing.assert_allclose(e.codes(x[:20]), expect, rtol=0, atol=1e-12)
    assert (np.count_nonzero(e.codes(x[:20]), axis=1) <= 5).all()
    l2 = winner_only(expect @ w.w2 + np.eye(10)[y[:20]] @ w.w3)
    e.train_batches(x[:20], y[:20])
    assert np.max(np.abs(e.weights().w2 - dreamflow_step(w.w2, expect, l2, config))) <= 1e-9


def test_kh_top_ties_go_to_the_lower_unit():
    config = Config(**BASE, kh_top=2)
    w = init_weights(config)
    tied = type(w)(np.ones_like(w.w1), w.w2, w.w3)  # every unit the same: all code values equal
    code = make_engine(config, tied).codes(DATA[0][0][:3])
    assert (np.flatnonzero(code[0]) == [0, 1]).all()


def test_kh_center_is_the_notebooks_rule_on_centred_images():
    """kh_center: the rule and the code see every image minus its own mean pixel value."""
    config = Config(**BASE, kh_center=True)
    w = init_weights(config)
    (x, y), _ = DATA
    centred = x - x.mean(axis=1, keepdims=True)
    e = make_engine(config, w)
    for _ in range(config.kh_epochs):
        e.train_batches(x, y)
    S = notebook_rule(w.w1.T, centred, config, config.kh_epochs)
    assert np.max(np.abs(e.weights().w1.T - S)) <= 1e-9
    np.testing.assert_allclose(e.codes(x[:20]), dense_code(S, centred[:20]), rtol=1e-9, atol=1e-12)
    assert (e.codes(x[:20], "onehot").argmax(1) == (centred[:20] @ (np.sign(S) * np.abs(S) ** 2).T).argmax(1)).all()
