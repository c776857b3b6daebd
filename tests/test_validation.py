"""Bad input gets a clear error naming the problem before work starts (or, for a step size that
blows the weights up, after the epoch where it happens), never a silent wrong result."""
import json
import zipfile

import numpy as np
import pytest

from dreamflow_utils import Config, TrainingDiverged, Weights, evaluate, init_weights, load_weights, save_weights, train
from dreamflow_utils.engines import make_engine
from dreamflow_utils.core.model import WeightsError
from helpers import synthetic_data

DATA = synthetic_data()
SMALL = dict(layout="block", C_s=4, N2=12, B=20, T_s=400, Nep=2, seed=1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("engine,xi", [("numpy", 1e300), ("reference", 1e300)])
def test_a_step_size_that_blows_up_names_xi_and_keeps_the_last_finite_weights(engine, xi):
    with pytest.raises(TrainingDiverged, match=r"non-finite.*xi=1e\+300") as e:
        train(Config(**SMALL, engine=engine, xi=xi), DATA)
    assert e.value.epoch == 1
    assert all(np.isfinite(w).all() for w in e.value.weights)
    assert all(np.array_equal(a, b) for a, b in zip(e.value.weights, init_weights(Config(**SMALL))))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_shared_model_diverges_loudly_too():
    config = Config(layer1="shared", layout="stride", stride=4, C_s=3, N2=6, B=20, T_s=400, xi=1e300)
    with pytest.raises(TrainingDiverged, match="xi"):
        train(config, DATA)


def test_tensorflow_float32_diverges_loudly():
    pytest.importorskip("tensorflow")
    with pytest.raises(TrainingDiverged, match="xi"):
        train(Config(**{**SMALL, "Nep": 1}, engine="tensorflow", dtype="float32", xi=1e30), DATA)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_non_finite_initial_weights_are_refused(bad, which):
    config = Config(**SMALL)
    w = [a.copy() for a in init_weights(config)]
    w[which][w[which] != 0] = bad
    name = "w1 w2 w3".split()[which]
    with pytest.raises(WeightsError, match=f"{name} holds .* non-finite"):
        train(config, DATA, weights=Weights(*w))
    for engine in ("reference", "numpy"):
        with pytest.raises(WeightsError, match=name):
            make_engine(config.replace(engine=engine), Weights(*w))


def test_weights_of_another_layout_with_the_same_shapes_are_refused():
    """block and stride-9 both have 9 positions, in another order: same shapes, other patches."""
    block, stride9 = Config(**SMALL), Config(**{**SMALL, "layout": "stride"}, stride=9)
    for engine in ("reference", "numpy"):
        with pytest.raises(WeightsError, match="outside the patch"):
            make_engine(stride9.replace(engine=engine), init_weights(block))


@pytest.mark.parametrize("spoil,match", [
    (lambda w: Weights(w.w1[:, :-1], w.w2, w.w3), r"w1 has shape \(784, 35\)"),
    (lambda w: Weights(w.w1, w.w2.T, w.w3), "w2 has shape"),
    (lambda w: Weights(w.w1, w.w2, w.w3.astype(complex)), "w3 must hold real numbers"),
    (lambda w: (w.w1, w.w2), r"\(w1, w2, w3\)"),
])
def test_weights_that_do_not_fit_are_refused(spoil, match):
    config = Config(**SMALL)
    with pytest.raises(WeightsError, match=match):
        train(config, DATA, weights=spoil(init_weights(config)))


def test_numpy_scalar_parameters_give_a_json_record(tmp_path):
    config = Config(**{**SMALL, "C_s": np.int64(4), "N2": np.int32(12), "xi": np.float32(0.01), "seed": np.int64(1)})
    r = train(config, DATA)
    json.dumps(r.record())
    r.save_record(tmp_path / "r.json")
    w, c = load_weights(r.save_weights(tmp_path / "w.npz"))
    assert c == config and c.xi == float(np.float32(0.01))


# ----------------------------------------------------------------------------- weights files
@pytest.fixture
def saved(tmp_path):
    config = Config(**SMALL)
    return save_weights(tmp_path / "w.npz", init_weights(config), config), config


def test_load_weights_names_the_file_and_the_problem(tmp_path, saved):
    path, config = saved
    data = path.read_bytes()
    cases = {
        "empty.npz": (b"", "empty file"),
        "truncated.npz": (data[:len(data) // 2], "cannot read weights"),
        "text.npz": (b"w1,w2,w3\n1,2,3\n", "not an .npz file"),
    }
    for name, (content, match) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(WeightsError, match=f"{name}.*{match}|{match}.*{name}"):
            load_weights(p)
    npy = tmp_path / "single.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(WeightsError, match="single.npy.*single array"):
        load_weights(npy)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_weights(tmp_path / "missing.npz")


def test_load_weights_detects_corruption(tmp_path, saved):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("w2.npy")
    at = info.header_offset + 30 + len(info.filename) + 200  # inside w2's stored (uncompressed) bytes
    raw[at] ^= 0xFF
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="crc.npz.*cannot read"):
        load_weights(bad)


def test_load_weights_checks_the_arrays_against_the_stored_config(tmp_path, saved):
    _, config = saved
    w = init_weights(config)
    p = tmp_path / "mismatch.npz"
    np.savez(p, w1=w.w1, w2=w.w2[:, :5], w3=w.w3, config=np.array(json.dumps(config.to_dict())))
    with pytest.raises(WeightsError, match="mismatch.npz.*w2 has shape"):
        load_weights(p)
    p1 = tmp_path / "flat.npz"
    np.savez(p1, w1=w.w1.ravel(), w2=w.w2, w3=w.w3)
    with pytest.raises(WeightsError, match="flat.npz.*w1 must be a 2-D array"):
        load_weights(p1)
    p2 = tmp_path / "nan.npz"
    w.w3[0, 0] = np.nan
    np.savez(p2, w1=w.w1, w2=w.w2, w3=w.w3, config=np.array(json.dumps(config.to_dict())))
    with pytest.raises(WeightsError, match="nan.npz.*w3 holds 1 non-finite"):
        load_weights(p2)


# ----------------------------------------------------------------------------- data
def test_evaluate_checks_its_data_as_train_does():
    config = Config(**SMALL)
    w = init_weights(config)
    (_, _), (tx, ty) = DATA
    result = train(config, DATA)  # evaluate gives what train measured, on the same weights
    assert evaluate(config, result.weights, tx, ty) == result.test_accuracy
    assert evaluate(config, w, tx, ty) == np.mean(make_engine(config, w).predict(tx) == ty)
    with pytest.raises(ValueError, match="test_y has length 1"):
        evaluate(config, w, tx, ty[:1])
    with pytest.raises(ValueError, match="labels outside 0..9"):
        evaluate(config, w, tx, ty + 100)
    with pytest.raises(ValueError, match="complex"):
        evaluate(config, w, tx.astype(complex), ty)


def test_complex_and_object_images_are_refused():
    (x, y), test = DATA
    for bad in (x.astype(complex), x.astype(object)):
        with pytest.raises(ValueError, match="train_x has dtype"):
            train(Config(**SMALL), ((bad, y), test))
