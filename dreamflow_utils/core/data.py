"""
MNIST-format data loading and validation.

Every loader returns ((train_x, train_y), (test_x, test_y)) with x float64 of
shape (N, 784) in [0, 1] (uint8 / 255) and y int64 of shape (N,) in 0..9.
"""

import gzip
import os
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "MnistNotFound",
    "MnistFormatError",
    "load_mnist",
    "load_fashion_mnist",
    "load_dataset",
    "validation_split",
    "validate_split",
    "load_idx_dir",
    "read_idx",
    "load_npz",
    "load_digits_demo",
    "validate_data",
    "describe",
]

IMAGES_MAGIC = 0x00000803  # uint8, 3 dims (N, 28, 28)
LABELS_MAGIC = 0x00000801  # uint8, 1 dim (N,)
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
MNIST_HOWTO = ("Supply the data: set DREAMFLOW_MNIST=/dir/with/the/four/idx/files (e.g. ../shared/data/mnist), "
               "or pass load_mnist(path=...) a directory of the four IDX files (.gz or raw), "
               "a directory holding mnist.npz, or an .npz file (keys x_train, y_train, x_test, y_test).")
FASHION_HOWTO = ("Supply it: `apt-get install dataset-fashion-mnist`, or set "
                 "DREAMFLOW_FASHION_MNIST=/dir/with/the/four/idx/files, or pass load_fashion_mnist(path=...).")


class MnistNotFound(FileNotFoundError):
    """The data set (or a file of it) could not be found."""


class MnistFormatError(ValueError):
    """A data file exists but is malformed (bad header, size, labels, gzip, ...)."""

# -----------------------------------------------------------------------------
# IDX files

def read_idx(path, magic):
    """Read one IDX file (gzipped or raw) fully into memory and check it; returns a uint8 array."""
    path = Path(path)
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise MnistFormatError(f"{path}: corrupt gzip ({e})") from None
    if len(data) < 4:
        raise MnistFormatError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    got = int.from_bytes(data[:4], "big")
    if got != magic:
        raise MnistFormatError(f"{path}: bad magic number 0x{got:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistFormatError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    if magic == IMAGES_MAGIC and dims[1:] != (28, 28):
        raise MnistFormatError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = header + int(np.prod(dims))
    if len(data) < expected:
        raise MnistFormatError(f"{path}: truncated, header declares {dims} = {expected} bytes, file has {len(data)}")
    if len(data) > expected:
        raise MnistFormatError(f"{path}: {len(data) - expected} trailing bytes after the declared {dims}")
    arr = np.frombuffer(data, np.uint8, offset=header).reshape(dims)
    if magic == LABELS_MAGIC and arr.size and arr.max() > 9:
        raise MnistFormatError(f"{path}: label {arr.max()} out of range 0..9")
    return arr


def _find_idx(directory, prefix, kind):
    """Path of e.g. train-images-idx3-ubyte[.gz] (or the train-images.idx3-ubyte variant), or None."""
    idx = "idx3" if kind == "images" else "idx1"
    for sep in "-.":
        for ext in (".gz", ""):
            p = directory / f"{prefix}-{kind}{sep}{idx}-ubyte{ext}"
            if p.is_file():
                return p
    return None


def load_idx_dir(directory, prefix_train="train", prefix_test="t10k"):
    """Load the four IDX files (train/test images/labels) from a directory. Once read and checked,
    their arrays are kept in a cache file (`cache_folder`) keyed by the files' paths, sizes and
    modification times, so later loads skip the parsing."""
    directory = Path(directory).expanduser()
    if not directory.exists():
        raise MnistNotFound(f"{directory} does not exist")
    if not directory.is_dir():
        raise MnistNotFound(f"{directory} is not a directory")
    files = []
    for prefix in (prefix_train, prefix_test):
        ipath, lpath = _find_idx(directory, prefix, "images"), _find_idx(directory, prefix, "labels")
        for p, kind, idx in ((ipath, "images", "idx3"), (lpath, "labels", "idx1")):
            if p is None:
                raise MnistNotFound(f"{directory}: missing {prefix}-{kind}-{idx}-ubyte[.gz]")
        files += [ipath, lpath]
    cache = _cache_path(files)
    data = _read_cache(cache)
    if data is None:
        splits = []
        for ipath, lpath in (files[:2], files[2:]):
            images, labels = read_idx(ipath, IMAGES_MAGIC), read_idx(lpath, LABELS_MAGIC)
            if len(images) != len(labels):
                raise MnistFormatError(f"{ipath} has {len(images)} images but {lpath} has {len(labels)} labels")
            splits.append(_to_float(images, labels))
        data = tuple(splits)
        _write_cache(cache, data)
    return data


CACHE_ENV = "DREAMFLOW_CACHE"  # folder of the parsed-data cache ("off": no cache)


def cache_folder() -> Path | None:
    """Where parsed IDX files are kept: $DREAMFLOW_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/dreamflow_utils;
    None when $DREAMFLOW_CACHE is "off"."""
    env = os.environ.get(CACHE_ENV, "")
    if env == "off":
        return None
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dreamflow_utils"


_CACHED = ("x_train", "y_train", "x_test", "y_test")


def _cache_path(files) -> Path | None:
    """The cache folder of these IDX files (their paths, sizes and modification times make the key)."""
    import hashlib

    folder = cache_folder()
    if folder is None:
        return None
    key = "\n".join(f"{p.resolve()} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files)
    return folder / f"idx-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def _read_cache(path):
    """((train_x, train_y), (test_x, test_y)) from a cache folder, or None. The arrays are stored as
    loaded (float64 images): reading a file into memory is ~10x faster than converting uint8 to float64
    in place (the new pages are filled by the system, not touched one by one)."""
    if path is None or not path.is_dir():
        return None
    try:
        a = [np.load(path / f"{k}.npy", allow_pickle=False) for k in _CACHED]
    except Exception:  # missing or unreadable: parse the IDX files again
        return None
    return (a[0], a[1]), (a[2], a[3])


def _write_cache(path, data):
    """Write the cache folder (each file atomically); a folder that cannot be written means no cache."""
    if path is None:
        return
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        for k, a in zip(_CACHED, (*data[0], *data[1])):
            with tempfile.NamedTemporaryFile(dir=path, prefix=f".{k}.", suffix=".npy", delete=False) as f:
                np.save(f, a)
            os.chmod(f.name, 0o644)
            os.replace(f.name, path / f"{k}.npy")
    except OSError:
        pass


# -----------------------------------------------------------------------------
# Keras-format npz

def _check_uint8_arrays(x_train, y_train, x_test, y_test, where):
    """Check raw (N, 28, 28) images in 0..255 and labels in 0..9; returns the float/int splits."""
    splits = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise MnistFormatError(f"{where}: x_{split} has shape {x.shape}, expected (N, 28, 28)")
        if y.ndim != 1 or len(y) != len(x):
            raise MnistFormatError(f"{where}: y_{split} has shape {y.shape}, expected ({len(x)},)")
        for name, a, hi in ((f"x_{split}", x, 255), (f"y_{split}", y, 9)):
            if not np.issubdtype(a.dtype, np.integer):
                raise MnistFormatError(f"{where}: {name} has dtype {a.dtype}, expected integers")
            if a.size and (a.min() < 0 or a.max() > hi):
                raise MnistFormatError(f"{where}: {name} values outside 0..{hi} ({a.min()}..{a.max()})")
        splits.append(_to_float(x, y))
    return tuple(splits)


def load_npz(path):
    """Load a Keras-format mnist.npz (keys x_train, y_train, x_test, y_test)."""
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise MnistFormatError(f"{path}: missing keys {missing} (has {f.files})")
            arrays = [f[k] for k in keys]
    except MnistFormatError:
        raise
    except Exception as e:  # BadZipFile, ValueError, OSError, EOFError...
        raise MnistFormatError(f"{path}: unreadable npz ({type(e).__name__}: {e})") from None
    return _check_uint8_arrays(*arrays, where=path)

# -----------------------------------------------------------------------------
# loaders

def _to_float(images, labels):
    return images.reshape(len(images), 784).astype(np.float64) / 255.0, labels.astype(np.int64)


def _load_path(path, what, howto, npz_name):
    """Load from an explicit location: IDX directory, directory holding npz_name, or an .npz file."""
    p = Path(path).expanduser()
    try:
        if p.is_file() and p.suffix == ".npz":
            return load_npz(p)
        if p.is_dir() and _find_idx(p, "train", "images") is None and (p / npz_name).is_file():
            return load_npz(p / npz_name)
        if p.is_file():
            raise MnistNotFound(f"{p} is neither a directory nor an .npz file")
        return load_idx_dir(p)
    except MnistNotFound as e:
        raise MnistNotFound(f"{what}: {e}.\n{howto}") from None


def _keras_cache():
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets" / "mnist.npz"


def _keras_download():
    """Keras' own MNIST download (needs network); imported lazily."""
    from tensorflow.keras.datasets import mnist
    return mnist.load_data()


def load_mnist(path=None):
    """
    Load MNIST from, in order: `path`, $DREAMFLOW_MNIST, Keras' cache
    ($KERAS_HOME or ~/.keras)/datasets/mnist.npz, Keras' download.
    An explicit path or env var that does not work is an error, not a fallthrough.
    """
    if path is not None:
        return _load_path(path, f"path={str(path)!r}", MNIST_HOWTO, "mnist.npz")
    env = os.environ.get("DREAMFLOW_MNIST")
    if env:
        return _load_path(env, f"DREAMFLOW_MNIST={env}", MNIST_HOWTO, "mnist.npz")
    cache = _keras_cache()
    if cache.is_file():
        return load_npz(cache)
    try:
        (xtr, ytr), (xte, yte) = _keras_download()
    except Exception as e:  # no network, no tensorflow, ...
        reason = f"{type(e).__name__}: {e}"[:200]
    else:
        return _check_uint8_arrays(xtr, ytr, xte, yte, where="keras download")
    raise MnistNotFound(
        "MNIST not found. Looked in:\n"
        "  - path argument (not given)\n"
        "  - $DREAMFLOW_MNIST (not set)\n"
        f"  - Keras cache {cache} (missing)\n"
        f"  - Keras download (failed: {reason})\n" + MNIST_HOWTO
    ) from None


def load_fashion_mnist(path=None):
    """Load Fashion-MNIST from `path`, $DREAMFLOW_FASHION_MNIST, or the Debian dataset-fashion-mnist package."""
    if path is not None:
        return _load_path(path, f"path={str(path)!r}", FASHION_HOWTO, "fashion-mnist.npz")
    env = os.environ.get("DREAMFLOW_FASHION_MNIST")
    if env:
        return _load_path(env, f"DREAMFLOW_FASHION_MNIST={env}", FASHION_HOWTO, "fashion-mnist.npz")
    if FASHION_DEBIAN_DIR.is_dir():
        return load_idx_dir(FASHION_DEBIAN_DIR)
    raise MnistNotFound(
        "Fashion-MNIST not found. Looked in: path argument (not given), $DREAMFLOW_FASHION_MNIST (not set), "
        f"{FASHION_DEBIAN_DIR} (missing).\n" + FASHION_HOWTO
    )


LOADERS = {"mnist": load_mnist, "fashion": load_fashion_mnist}


def load_dataset(name: str = "mnist", path=None):
    """The data set `name` ("mnist" or "fashion") from `path` or its default places (see
    `load_mnist`, `load_fashion_mnist`); their own errors say how to supply it."""
    if name not in LOADERS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, LOADERS))}; got {name!r}")
    return LOADERS[name](path)


def load_digits_demo():
    """scikit-learn's bundled 8x8 digits, upsampled to 28x28; train = first 1500, test = the rest 297."""
    from sklearn.datasets import load_digits
    warnings.warn(
        "DEMO DATA: sklearn 8x8 digits upsampled to 28x28 (1500 train / 297 test). "
        "Results on it are NOT comparable to the log's MNIST numbers.", UserWarning, stacklevel=2)
    digits = load_digits()
    img = np.kron(digits.images, np.ones((1, 3, 3)))             # (N, 24, 24)
    img = np.pad(img, ((0, 0), (2, 2), (2, 2))) / 16.0           # (N, 28, 28) in [0, 1]
    x, y = img.reshape(len(img), 784).astype(np.float64), digits.target.astype(np.int64)
    return (x[:1500], y[:1500]), (x[1500:], y[1500:])

# -----------------------------------------------------------------------------
# validation

def validate_data(data):
    """Check ((train_x, train_y), (test_x, test_y)); returns it with float64 (N, 784) x and int64 y."""
    try:
        (train_x, train_y), (test_x, test_y) = data
    except (TypeError, ValueError):
        raise ValueError("data must be ((train_x, train_y), (test_x, test_y))") from None
    return validate_split(train_x, train_y, "train"), validate_split(test_x, test_y, "test")


def validate_split(x, y, split="test"):
    """Check images x ((N, 784) or (N, 28, 28), real, in [0, 1]) and labels y ((N,), integers 0..9);
    returns (float64 (N, 784), int64 (N,)). Errors name `split`_x / `split`_y."""
    xn, yn = f"{split}_x", f"{split}_y"
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 3 and x.shape[1:] == (28, 28):
        x = x.reshape(len(x), 784)
    if x.ndim != 2 or x.shape[1] != 784:
        raise ValueError(f"{xn} has shape {x.shape}, expected (N, 784) or (N, 28, 28)")
    if len(x) == 0:
        raise ValueError(f"{xn} is empty")
    if x.dtype.kind not in "fiub":
        raise ValueError(f"{xn} has dtype {x.dtype}; images must be real numbers (not complex, object or text)")
    x = x.astype(np.float64, copy=False)  # no copy of float64 images: a copy of MNIST costs a second
    lo, hi = x.min(), x.max()  # NaN propagates to both, inf to one: no temporaries of x's size
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"{xn} contains NaN")
    if np.isinf(lo) or np.isinf(hi):
        raise ValueError(f"{xn} contains inf")
    if lo < 0 or hi > 1:
        raise ValueError(f"{xn} values outside [0, 1] (min {lo:g}, max {hi:g}); scale by 1/255?")
    if y.ndim != 1:
        raise ValueError(f"{yn} has shape {y.shape}, expected 1-D")
    if len(y) != len(x):
        raise ValueError(f"{yn} has length {len(y)} but {xn} has {len(x)} rows")
    if y.dtype.kind not in "fiu":
        raise ValueError(f"{yn} has dtype {y.dtype}; labels must be integers 0..9")
    if not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError(f"{yn} is not integer-valued")
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"{yn} labels outside 0..9 (min {y.min()}, max {y.max()})")
    return x, y.astype(np.int64)


def validation_split(data, n_val: int = 10000):
    """((train_x[:-n_val], ...), (train_x[-n_val:], ...)): the last n_val training images as the
    held-out set on which settings are chosen; the test set stays untouched."""
    (x, y), _ = data
    if not 0 < n_val < len(x):
        raise ValueError(f"n_val must be in 1..{len(x) - 1}, got {n_val!r}")
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


def describe(data):
    """One-line summary: split sizes and label histograms."""
    parts = []
    for split, (x, y) in zip(("train", "test"), data):
        hist = np.bincount(np.asarray(y, dtype=np.int64), minlength=10)
        parts.append(f"{split} {x.shape[0]}x{x.shape[1]} labels {hist.tolist()}")
    return "; ".join(parts)
