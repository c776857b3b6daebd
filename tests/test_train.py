import json

import numpy as np
import pytest

from dreamflow_utils import Config, init_weights, load_weights, train
from dreamflow_utils.engines import make_engine
from dreamflow_utils.core.geometry import shift_images
from helpers import learnable_data, synthetic_data

DATA = synthetic_data()
SMALL = dict(layout="block", C_s=4, N2=12, B=20, T_s=400, Nep=3, seed=1)


def test_train_contract_and_callback():
    seen = []
    r = train(Config(**SMALL), DATA, callback=lambda e, w, a: seen.append((e, w.w1.shape, a)))
    assert [s[0] for s in seen] == [1, 2, 3] and seen[0][1] == (784, 36)
    assert r.epoch_accuracies == [s[2] for s in seen]
    assert r.test_accuracy == r.epoch_accuracies[-1] and 0 <= r.test_accuracy <= 1
    assert len(r.epoch_seconds) == 3 and r.seconds > 0
    assert r.predictions.shape == (200,)
    rec = json.loads(json.dumps(r.record()))
    assert rec["seed"] == 1 and rec["config"]["C_s"] == 4 and "numpy" in rec["versions"]


def test_train_matches_engine_in_log_order():
    """train() runs T_s // B batches per epoch over the first T_s samples, unshuffled."""
    config = Config(**SMALL)
    r = train(config, DATA)
    (x, y), (tx, ty) = DATA
    e = make_engine(config, init_weights(config))
    for _ in range(config.Nep):
        e.train_batches(x[:400], y[:400])
    for a, b in zip(r.weights, e.weights()):
        assert np.array_equal(a, b)
    assert r.test_accuracy == np.mean(e.predict(tx) == ty)


def test_same_seed_is_repeatable():
    a, b = train(Config(**SMALL), DATA), train(Config(**SMALL), DATA)
    assert all(np.array_equal(p, q) for p, q in zip(a.weights, b.weights))
    assert a.epoch_accuracies == b.epoch_accuracies


def test_weights_round_trip(tmp_path):
    r = train(Config(**SMALL, ), DATA)
    path = r.save_weights(tmp_path / "w.npz")
    w, config = load_weights(path)
    assert config == r.config and all(np.array_equal(p, q) for p, q in zip(w, r.weights))
    assert not list(tmp_path.glob("*.tmp"))


def test_progress_bar_shows_batches_and_changes_nothing(capsys):
    config = Config(**SMALL)
    r = train(config, DATA, progress=True)
    err = capsys.readouterr().err  # tqdm writes to stderr
    n = config.T_s // config.B
    assert f"{n}/{n}" in err and "epoch" in err.lower()
    quiet = train(config, DATA)
    assert capsys.readouterr().err == ""
    assert r.epoch_accuracies == quiet.epoch_accuracies and np.array_equal(r.weights.w1, quiet.weights.w1)


def test_t_s_larger_than_data():
    with pytest.raises(ValueError, match="T_s"):
        train(Config(**{**SMALL, "T_s": 10_000}), DATA)


@pytest.mark.parametrize("spoil,match", [
    (lambda x: x.__setitem__((0, 0), np.nan), "NaN"),
    (lambda x: x.__setitem__((0, 0), np.inf), "inf"),
    (lambda x: x.__setitem__((0, 0), 2.0), "train_x"),
])
def test_bad_inputs_are_refused(spoil, match):
    (x, y), test = DATA
    x = x.copy()
    spoil(x)
    with pytest.raises(ValueError, match=match):
        train(Config(**SMALL), ((x, y), test))


@pytest.mark.parametrize("layer1", ["clusters", "shared"])
def test_epoch_hooks_shift_and_xi_schedule(layer1):
    """shift: each epoch a fresh shifted copy drawn from seed + 1; xi_decay: xi *= d after every epoch."""
    extra = {} if layer1 == "clusters" else {"layer1": "shared"}
    config = Config(**SMALL, shift=2, xi_decay=0.5, **extra)
    r = train(config, DATA)
    (x, y), (tx, ty) = DATA
    e = make_engine(config)
    rng, xi = np.random.default_rng(config.seed + 1), config.xi
    for _ in range(config.Nep):
        e.train_batches(shift_images(x[:400], 2, rng), y[:400])
        xi *= 0.5
        e.set_xi(xi)
    for a, b in zip(r.weights, e.weights()):
        assert np.array_equal(a, b)
    assert r.test_accuracy == np.mean(e.predict(tx) == ty)


def test_dataset_is_loaded_from_the_config(monkeypatch):
    import sys
    T = sys.modules["dreamflow_utils.core.train"]  # the module (the package exports the function under its name)
    asked = []
    monkeypatch.setattr(T, "load_dataset", lambda name: asked.append(name) or DATA)
    r = train(Config(**SMALL, dataset="fashion"))
    assert asked == ["fashion"] and r.record()["dataset"] == "fashion"


def test_shuffled_labels_follow_their_images():
    """shuffle: each epoch visits (image, label) pairs in a fresh order drawn from seed + 2."""
    config = Config(**SMALL, shuffle=True)
    r = train(config, DATA)
    (x, y), (tx, ty) = DATA
    e = make_engine(config, init_weights(config))
    rng = np.random.default_rng(config.seed + 2)
    for _ in range(config.Nep):
        order = rng.permutation(config.T_s)
        e.train_batches(x[:400][order], y[:400][order])
    for a, b in zip(r.weights, e.weights()):
        assert np.array_equal(a, b)
    assert r.test_accuracy == np.mean(e.predict(tx) == ty)
    assert not np.array_equal(r.weights.w2, train(Config(**SMALL), DATA).weights.w2)  # the order matters


def test_a_shuffled_model_still_learns():
    """With labels that follow their images, shuffling keeps the learnable task learnable."""
    data = learnable_data(n_train=1000, n_test=300)
    r = train(Config(layout="block", C_s=5, N2=30, T_s=1000, B=20, xi=0.1, Nep=2, seed=3, shuffle=True), data)
    assert r.test_accuracy >= 0.9, r.test_accuracy
