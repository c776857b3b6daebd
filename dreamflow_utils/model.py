"""The model's weights: initialisation as in the log, save and load."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .config import Config
from .files import atomic_write
from .layouts import PATCH, SIDE, patch_indices

N_CLASSES = 10


class Weights(NamedTuple):
    """w1 (784, N1) input->layer 1; w2 (N1, N2) layer 1->layer 2; w3 (10, N2) label->layer 2."""

    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray

    def copy(self) -> "Weights":
        return Weights(*(w.copy() for w in self))


def init_weights(config: Config) -> Weights:
    """Draw the initial weights exactly in the log's order from `default_rng(config.seed)`:
    one uniform 9x9 patch per layer-1 unit (cluster by cluster), then w2, then w3."""
    rng = np.random.default_rng(config.seed)
    idx = patch_indices(config.layout)
    w1 = np.zeros((SIDE * SIDE, config.N1))
    for u in range(config.N1):
        w1[idx[u // config.C_s], u] = rng.uniform(0, 1, (PATCH, PATCH)).ravel()
    w2 = rng.uniform(0, 1, (config.N1, config.N2))
    w3 = rng.uniform(0, 1, (N_CLASSES, config.N2))
    return Weights(w1, w2, w3)


def save_weights(path, weights: Weights, config: Config | None = None) -> Path:
    """Write weights (and the config as JSON) to an .npz, atomically."""
    extra = {"config": np.array(json.dumps(config.to_dict()))} if config else {}
    buf = io.BytesIO()
    np.savez(buf, **weights._asdict(), **extra)
    return atomic_write(path, buf.getvalue())


def load_weights(path) -> tuple[Weights, Config | None]:
    """Read what `save_weights` wrote; returns (weights, config or None)."""
    with np.load(path) as f:
        missing = {"w1", "w2", "w3"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: not a weights file, missing {sorted(missing)}")
        weights = Weights(f["w1"], f["w2"], f["w3"])
        config = Config(**json.loads(str(f["config"]))) if "config" in f.files else None
    return weights, config
