import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from dreamflow_utils.core import data as D

NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("t10k", "images"): "t10k-images-idx3-ubyte",
    ("t10k", "labels"): "t10k-labels-idx1-ubyte",
}


def idx_bytes(arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else (0x803 if arr.ndim == 3 else 0x801)
    return struct.pack(f">{1 + arr.ndim}i", magic, *arr.shape) + arr.tobytes()


def make_arrays(seed=0, n_train=20, n_test=10):
    rng = np.random.default_rng(seed)
    return {
        ("train", "images"): rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        ("train", "labels"): rng.integers(0, 10, n_train, dtype=np.uint8),
        ("t10k", "images"): rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        ("t10k", "labels"): rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_dir(d, arrays, gz=True, override=None):
    """Write the four IDX files; override maps a key to raw (uncompressed) bytes to write instead."""
    d.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        raw = (override or {}).get(key, idx_bytes(arr))
        name = NAMES[key] + (".gz" if gz else "")
        (d / name).write_bytes(gzip.compress(raw) if gz else raw)
    return d


def check_matches(data, arrays):
    (trx, try_), (tex, tey) = data
    assert trx.dtype == np.float64 and trx.shape == (20, 784)
    assert tex.dtype == np.float64 and tex.shape == (10, 784)
    assert try_.dtype == np.int64 and tey.dtype == np.int64
    np.testing.assert_array_equal(trx, arrays["train", "images"].reshape(20, 784) / 255.0)
    np.testing.assert_array_equal(try_, arrays["train", "labels"])
    np.testing.assert_array_equal(tex, arrays["t10k", "images"].reshape(10, 784) / 255.0)
    np.testing.assert_array_equal(tey, arrays["t10k", "labels"])


def save_npz(path, arrays, **changes):
    kw = dict(x_train=arrays["train", "images"], y_train=arrays["train", "labels"],
              x_test=arrays["t10k", "images"], y_test=arrays["t10k", "labels"])
    kw.update(changes)
    np.savez(path, **{k: v for k, v in kw.items() if v is not None})
    return path


@pytest.fixture
def arrays():
    return make_arrays()


@pytest.fixture(autouse=True)
def no_ambient_data(monkeypatch, tmp_path):
    """Isolate from the user's env vars, Keras cache and network."""
    monkeypatch.delenv("DREAMFLOW_MNIST", raising=False)
    monkeypatch.delenv("DREAMFLOW_FASHION_MNIST", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))

    def no_download():
        raise OSError("no network in tests")
    monkeypatch.setattr(D, "_keras_download", no_download)

# -----------------------------------------------------------------------------
# good inputs

@pytest.mark.parametrize("gz", [True, False])
def test_idx_dir(tmp_path, arrays, gz):
    d = write_idx_dir(tmp_path / "mnist", arrays, gz=gz)
    check_matches(D.load_mnist(d), arrays)
    check_matches(D.load_mnist(str(d)), arrays)
    check_matches(D.load_idx_dir(d), arrays)


def test_idx_dot_variant(tmp_path, arrays):
    d = write_idx_dir(tmp_path / "mnist", arrays)
    for p in d.iterdir():
        p.rename(d / p.name.replace("-idx", ".idx"))
    check_matches(D.load_mnist(d), arrays)


def test_npz_file_and_dir(tmp_path, arrays):
    f = save_npz(tmp_path / "mnist.npz", arrays)
    check_matches(D.load_mnist(f), arrays)
    check_matches(D.load_mnist(tmp_path), arrays)


def test_env_var(tmp_path, arrays, monkeypatch):
    d = write_idx_dir(tmp_path / "mnist", arrays)
    monkeypatch.setenv("DREAMFLOW_MNIST", str(d))
    check_matches(D.load_mnist(), arrays)


def test_keras_cache(tmp_path, arrays):
    cache = Path(os.environ["KERAS_HOME"]) / "datasets"
    cache.mkdir(parents=True)
    save_npz(cache / "mnist.npz", arrays)
    check_matches(D.load_mnist(), arrays)


def test_keras_download_used_last(arrays, monkeypatch):
    a = arrays
    monkeypatch.setattr(D, "_keras_download", lambda: ((a["train", "images"], a["train", "labels"]),
                                                       (a["t10k", "images"], a["t10k", "labels"])))
    check_matches(D.load_mnist(), arrays)


def test_fashion_path_and_env(tmp_path, arrays, monkeypatch):
    d = write_idx_dir(tmp_path / "fashion", arrays)
    check_matches(D.load_fashion_mnist(d), arrays)
    monkeypatch.setenv("DREAMFLOW_FASHION_MNIST", str(d))
    check_matches(D.load_fashion_mnist(), arrays)


def test_each_dataset_name_loads_its_own_data(tmp_path, monkeypatch):
    """"mnist" and "fashion" (by env var, through load_dataset and the studies' loader) each give
    their own folder's data, parsed or from the cache."""
    from dreamflow_utils import studies

    mnist, fashion = make_arrays(seed=1), make_arrays(seed=2)  # same sizes: only the content tells them apart
    monkeypatch.setenv("DREAMFLOW_MNIST", str(write_idx_dir(tmp_path / "mnist", mnist)))
    monkeypatch.setenv("DREAMFLOW_FASHION_MNIST", str(write_idx_dir(tmp_path / "fashion", fashion)))
    monkeypatch.setenv("DREAMFLOW_CACHE", str(tmp_path / "cache"))
    studies._load.cache_clear()
    try:
        for _ in range(2):  # the first load parses and caches, the second reads the cache
            for name, arrays in (("fashion", fashion), ("mnist", mnist)):
                check_matches(D.load_dataset(name), arrays)
                check_matches(studies.study_data(name), arrays)
            studies._load.cache_clear()
        assert len(list((tmp_path / "cache").iterdir())) == 2
        check_matches(D.load_fashion_mnist(), fashion)
        check_matches(D.load_mnist(), mnist)
    finally:
        studies._load.cache_clear()  # later tests must not see these data sets


def test_fashion_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FASHION_DEBIAN_DIR", tmp_path / "nope")
    with pytest.raises(D.MnistNotFound, match="dataset-fashion-mnist"):
        D.load_fashion_mnist()
    with pytest.raises(D.MnistNotFound, match="DREAMFLOW_FASHION_MNIST"):
        D.load_fashion_mnist(tmp_path / "nope")

# -----------------------------------------------------------------------------
# bad IDX files

def bad_dir(tmp_path, arrays, key, raw, gz=True):
    return write_idx_dir(tmp_path / "bad", arrays, gz=gz, override={key: raw})


def test_wrong_magic(tmp_path, arrays):
    raw = idx_bytes(arrays["train", "images"], magic=0x801)
    d = bad_dir(tmp_path, arrays, ("train", "images"), raw)
    with pytest.raises(D.MnistFormatError, match=r"train-images-idx3-ubyte\.gz.*magic"):
        D.load_mnist(d)


def test_wrong_image_size(tmp_path, arrays):
    raw = idx_bytes(np.zeros((20, 27, 29), np.uint8))
    d = bad_dir(tmp_path, arrays, ("train", "images"), raw)
    with pytest.raises(D.MnistFormatError, match="28x28"):
        D.load_mnist(d)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated(tmp_path, arrays, gz):
    raw = idx_bytes(arrays["t10k", "images"])[:-100]
    d = bad_dir(tmp_path, arrays, ("t10k", "images"), raw, gz=gz)
    with pytest.raises(D.MnistFormatError, match="t10k-images-idx3-ubyte.*truncated"):
        D.load_mnist(d)


def test_truncated_header(tmp_path, arrays):
    d = bad_dir(tmp_path, arrays, ("train", "labels"), b"\x00\x00\x08")
    with pytest.raises(D.MnistFormatError, match="train-labels-idx1-ubyte.*too short"):
        D.load_mnist(d)


def test_trailing_bytes(tmp_path, arrays):
    raw = idx_bytes(arrays["train", "labels"]) + b"\x00\x01"
    d = bad_dir(tmp_path, arrays, ("train", "labels"), raw)
    with pytest.raises(D.MnistFormatError, match="train-labels-idx1-ubyte.*2 trailing bytes"):
        D.load_mnist(d)


def test_corrupt_gzip(tmp_path, arrays):
    d = write_idx_dir(tmp_path / "bad", arrays)
    p = d / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-12])  # cut the stream short
    with pytest.raises(D.MnistFormatError, match="t10k-labels-idx1-ubyte.gz.*corrupt gzip"):
        D.load_mnist(d)
    p.write_bytes(b"this is not gzip at all")
    with pytest.raises(D.MnistFormatError, match="corrupt gzip"):
        D.load_mnist(d)


def test_label_out_of_range(tmp_path, arrays):
    labels = arrays["train", "labels"].copy()
    labels[3] = 10
    d = bad_dir(tmp_path, arrays, ("train", "labels"), idx_bytes(labels))
    with pytest.raises(D.MnistFormatError, match="train-labels-idx1-ubyte.*label 10"):
        D.load_mnist(d)


def test_count_mismatch(tmp_path, arrays):
    d = bad_dir(tmp_path, arrays, ("train", "labels"), idx_bytes(arrays["train", "labels"][:19]))
    with pytest.raises(D.MnistFormatError, match="20 images but .* 19 labels"):
        D.load_mnist(d)

# -----------------------------------------------------------------------------
# bad npz

@pytest.mark.parametrize("change, match", [
    (dict(y_test=None), "missing keys"),
    (dict(x_train=np.zeros((20, 784), np.uint8)), r"x_train has shape \(20, 784\)"),
    (dict(x_train=np.zeros((20, 28, 28), np.float32)), "x_train has dtype float32"),
    (dict(x_test=np.full((10, 28, 28), 256, np.int64)), "x_test values outside 0..255"),
    (dict(y_train=np.full(20, 10, np.uint8)), "y_train values outside 0..9"),
    (dict(y_test=np.zeros(9, np.uint8)), r"y_test has shape \(9,\)"),
])
def test_bad_npz(tmp_path, arrays, change, match):
    f = save_npz(tmp_path / "mnist.npz", arrays, **change)
    with pytest.raises(D.MnistFormatError, match=match):
        D.load_mnist(f)


def test_unreadable_npz(tmp_path):
    f = tmp_path / "mnist.npz"
    f.write_bytes(b"garbage")
    with pytest.raises(D.MnistFormatError, match="unreadable npz"):
        D.load_mnist(f)

# -----------------------------------------------------------------------------
# not found

def test_missing_directory(tmp_path):
    with pytest.raises(D.MnistNotFound, match="nope.*does not exist") as e:
        D.load_mnist(tmp_path / "nope")
    assert "DREAMFLOW_MNIST=" in str(e.value)


def test_missing_file(tmp_path, arrays):
    d = write_idx_dir(tmp_path / "mnist", arrays)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(D.MnistNotFound, match="missing t10k-labels-idx1-ubyte"):
        D.load_mnist(d)


def test_wrong_env_var_does_not_fall_through(tmp_path, arrays, monkeypatch):
    cache = Path(os.environ["KERAS_HOME"]) / "datasets"
    cache.mkdir(parents=True)
    save_npz(cache / "mnist.npz", arrays)  # a good source that must NOT be used
    monkeypatch.setenv("DREAMFLOW_MNIST", str(tmp_path / "nope"))
    with pytest.raises(D.MnistNotFound, match="DREAMFLOW_MNIST=.*nope"):
        D.load_mnist()


def test_everything_missing():
    with pytest.raises(D.MnistNotFound) as e:
        D.load_mnist()
    msg = str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    for text in ("DREAMFLOW_MNIST", "Keras cache", "mnist.npz", "no network in tests",
                 "DREAMFLOW_MNIST=/dir/with/the/four/idx/files", "path=", "../shared/data/mnist"):
        assert text in msg, text
    assert e.value.__cause__ is None and e.value.__suppress_context__

# -----------------------------------------------------------------------------
# validate_data, describe, demo data

def good_data():
    rng = np.random.default_rng(1)
    return (rng.random((20, 784)), rng.integers(0, 10, 20)), (rng.random((10, 784)), rng.integers(0, 10, 10))


def test_validate_ok():
    (trx, try_), (tex, tey) = good_data()
    data = ((trx.reshape(20, 28, 28).astype(np.float32), try_.astype(np.float64)), (tex, tey.astype(np.uint8)))
    (a, b), (c, d) = D.validate_data(data)
    assert a.shape == (20, 784) and a.dtype == np.float64 and b.dtype == np.int64 and d.dtype == np.int64
    np.testing.assert_allclose(a, trx, rtol=1e-6)


def _broken(split, which, fn):
    (trx, try_), (tex, tey) = good_data()
    arrs = {"train_x": trx, "train_y": try_, "test_x": tex, "test_y": tey}
    key = f"{split}_{which}"
    arrs[key] = fn(arrs[key].copy())
    return (arrs["train_x"], arrs["train_y"]), (arrs["test_x"], arrs["test_y"])


def _set(i, v):
    def fn(a):
        a.flat[i] = v
        return a
    return fn


@pytest.mark.parametrize("split, which, fn, match", [
    ("train", "x", _set(5, np.nan), "train_x contains NaN"),
    ("test", "x", _set(5, np.inf), "test_x contains inf"),
    ("train", "x", _set(5, 1.5), r"train_x values outside \[0, 1\]"),
    ("test", "x", _set(5, -0.1), r"test_x values outside \[0, 1\]"),
    ("train", "x", lambda a: a[:, :783], r"train_x has shape \(20, 783\)"),
    ("train", "y", _set(0, 10), "train_y labels outside 0..9"),
    ("test", "y", lambda a: a[:9], "test_y has length 9"),
    ("train", "y", lambda a: a + 0.5, "train_y is not integer-valued"),
    ("test", "y", lambda a: a.reshape(10, 1), "test_y has shape"),
])
def test_validate_failures(split, which, fn, match):
    with pytest.raises(ValueError, match=match):
        D.validate_data(_broken(split, which, fn))


def test_describe():
    s = D.describe(D.validate_data(good_data()))
    assert s.startswith("train 20x784") and "test 10x784" in s


def test_digits_demo():
    with pytest.warns(UserWarning, match="^DEMO DATA.*NOT comparable"):
        data = D.load_digits_demo()
    (trx, try_), (tex, tey) = D.validate_data(data)
    assert trx.shape == (1500, 784) and tex.shape == (297, 784)
    assert trx.dtype == np.float64 and try_.dtype == np.int64
    img = trx[0].reshape(28, 28)
    assert img[:2].sum() == 0 and img[:, :2].sum() == 0 and img.max() <= 1


# -----------------------------------------------------------------------------
# the real thing

def real_mnist_dir():
    env = os.environ.get("DREAMFLOW_MNIST")  # read at import, before the autouse fixture clears it
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared/data/mnist"


REAL_MNIST = real_mnist_dir()
REAL_FASHION = Path(os.environ.get("DREAMFLOW_FASHION_MNIST")
                    or Path(__file__).resolve().parents[2] / "shared/data/fashion-mnist")


@pytest.mark.skipif(not REAL_MNIST.exists(), reason=f"real MNIST not found at {REAL_MNIST}; set DREAMFLOW_MNIST")
def test_real_mnist():
    (trx, try_), (tex, tey) = D.load_mnist(REAL_MNIST)
    assert trx.shape == (60000, 784) and tex.shape == (10000, 784)
    assert try_.shape == (60000,) and tey.shape == (10000,)
    assert try_[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert tey[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert trx.sum() == pytest.approx(1_567_298_545 / 255, rel=1e-9)
    assert tex.sum() == pytest.approx(264_923_200 / 255, rel=1e-9)
    assert np.bincount(try_).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_fashion_mnist():
    where = REAL_FASHION if REAL_FASHION.is_dir() else None  # else Debian's package, if installed
    try:
        (trx, try_), (tex, tey) = D.load_fashion_mnist(where)
    except D.MnistNotFound:
        pytest.skip("Fashion-MNIST not available ($DREAMFLOW_FASHION_MNIST or apt-get install dataset-fashion-mnist)")
    assert trx.shape == (60000, 784) and tex.shape == (10000, 784)
    assert np.bincount(try_).tolist() == [6000] * 10 and np.bincount(tey).tolist() == [1000] * 10
    assert try_[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert D.load_dataset("fashion", where)[0][1][:10].tolist() == try_[:10].tolist()
