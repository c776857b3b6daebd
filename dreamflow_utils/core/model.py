"""The model's weights: initialisation as in the log, validation, save and load."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .config import N_CLASSES, Config
from .files import atomic_write
from .geometry import PATCH, SIDE, patch_indices


class Weights(NamedTuple):
    """w1 input -> layer 1: (784, N1) for clusters, the bank (81, C_s) for layer1="shared";
    w2 (N1, N2) layer 1 -> layer 2; w3 (10, N2) label -> layer 2."""

    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray

    def copy(self) -> "Weights":
        return Weights(*(w.copy() for w in self))


class WeightsError(ValueError):
    """Weights that do not fit their config, or a weights file that cannot be read."""


def init_weights(config: Config) -> Weights:
    """Draw the initial weights in the log's order from `default_rng(config.seed)`: layer 1
    (clusters: one uniform 9x9 patch per unit, cluster by cluster; shared: the bank, detector
    by detector; krotov: N(0, 1) synapses, unit by unit), then w2, then w3 (uniform)."""
    rng = np.random.default_rng(config.seed)
    if config.layer1 == "clusters":
        idx = patch_indices(config.layout, config.stride)
        w1 = np.zeros(config.w1_shape)
        for u in range(config.N1):
            w1[idx[u // config.C_s], u] = rng.uniform(0, 1, (PATCH, PATCH)).ravel()
    elif config.layer1 == "shared":
        w1 = rng.uniform(0, 1, (config.C_s, PATCH * PATCH)).T.copy()
    else:  # krotov: the authors' N(0, 1) synapses, one row per unit
        w1 = rng.normal(0, 1, (config.C_s, SIDE * SIDE)).T.copy()
    w2 = rng.uniform(0, 1, (config.N1, config.N2))
    w3 = rng.uniform(0, 1, (N_CLASSES, config.N2))
    return Weights(w1, w2, w3)


def check_weights(config: Config, weights, what: str = "weights") -> Weights:
    """`weights` as float64 `Weights` after checking them against `config`: three real 2-D
    arrays of the config's shapes, finite, and (layer1="clusters") zero outside each unit's
    patch. Raises WeightsError naming the array and the problem."""
    if not isinstance(weights, tuple) or len(weights) != 3:
        raise WeightsError(f"{what} must be (w1, w2, w3), got {type(weights).__name__}")
    shapes = {"w1": config.w1_shape, "w2": (config.N1, config.N2), "w3": (N_CLASSES, config.N2)}
    out = []
    for (name, shape), w in zip(shapes.items(), weights):
        a = np.asarray(w)
        if a.dtype.kind not in "fiu" or a.dtype == bool:
            raise WeightsError(f"{what}: {name} must hold real numbers, got dtype {a.dtype}")
        if a.shape != shape:
            raise WeightsError(f"{what}: {name} has shape {a.shape}, the config needs {shape} "
                               f"(layer1={config.layer1!r}, layout={config.layout!r}, C_s={config.C_s}, N2={config.N2})")
        a = a.astype(np.float64)
        bad = ~np.isfinite(a)
        if bad.any():
            raise WeightsError(f"{what}: {name} holds {int(bad.sum())} non-finite values (NaN or inf)")
        out.append(a)
    if config.layer1 == "clusters":
        outside = out[0].T.copy()
        np.put_along_axis(outside, np.repeat(patch_indices(config.layout, config.stride), config.C_s, axis=0),
                          0, axis=1)
        if np.any(outside):
            units = np.flatnonzero(outside.any(axis=1))
            raise WeightsError(f"{what}: w1 has non-zero weights outside the patch of {len(units)} unit(s) "
                               f"(first: unit {units[0]}); they do not fit layout={config.layout!r}")
    return Weights(*out)


def save_weights(path, weights: Weights, config: Config | None = None) -> Path:
    """Write weights (and the config as JSON) to an .npz, atomically."""
    extra = {"config": np.array(json.dumps(config.to_dict()))} if config else {}
    buf = io.BytesIO()
    np.savez(buf, **weights._asdict(), **extra)
    return atomic_write(path, buf.getvalue())


def load_weights(path) -> tuple[Weights, Config | None]:
    """Read what `save_weights` wrote; returns (weights, config or None). Every problem (missing,
    empty, truncated or corrupted file, not an .npz of weights, arrays that do not fit the stored
    config) raises WeightsError (or FileNotFoundError) naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise WeightsError(f"{path}: empty file, not a weights file")
    if head.startswith(b"\x93NUMPY"):
        raise WeightsError(f"{path}: a single array (.npy), not a weights file (.npz with w1, w2, w3)")
    if not head.startswith(b"PK"):
        raise WeightsError(f"{path}: not an .npz file (it starts with {head!r}); weights files come from save_weights")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"w1", "w2", "w3"} - set(f.files)
            if missing:
                raise WeightsError(f"{path}: not a weights file, missing {sorted(missing)}")
            arrays = [f[k] for k in ("w1", "w2", "w3")]
            config = Config(**json.loads(str(f["config"]))) if "config" in f.files else None
    except WeightsError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as e:
        raise WeightsError(f"{path}: cannot read weights ({type(e).__name__}: {e}); is it a complete .npz "
                           "written by save_weights?") from e
    for name, a in zip(("w1", "w2", "w3"), arrays):
        if a.ndim != 2:
            raise WeightsError(f"{path}: {name} must be a 2-D array, got shape {a.shape}")
    weights = Weights(*arrays)
    if config is not None:
        check_weights(config, weights, what=str(path))
    return weights, config
