"""The engine interface every model computes through, and what all engines share.

An engine is built as ``Engine(config, weights)`` (weights checked by `model.check_weights`)
and offers:

- ``train_batches(x, y)``: len(x) // B consecutive batches of B samples, in order
  (x (n, 784) floats, y (n,) labels 0..9);
- ``predict(x)``: class predictions (n,), the model's own read-out (``config.vote``);
- ``weights()``: a copy of the current weights (`model.Weights`);
- ``codes(x, kind="value")``: the layer-1 code (n, N1) that layer 2 reads ("value"), the
  winners as 1 ("onehot") or, for layer1="clusters", every unit's output before the
  winner-take-all ("dense");
- ``scores(x)``: layer 2's input without the label (n, N2), what its winner-take-all and
  `predict_vote` read;
- ``set_xi(xi)``: the step size of the following updates (an xi schedule).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..core.config import N_CLASSES, Config
from ..core.geometry import SIDE
from ..core.model import Weights

CODE_KINDS = ("value", "onehot", "dense")


@runtime_checkable
class Engine(Protocol):
    config: Config

    def train_batches(self, x: np.ndarray, y: np.ndarray) -> None: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def weights(self) -> Weights: ...

    def codes(self, x: np.ndarray, kind: str = "value") -> np.ndarray: ...

    def scores(self, x: np.ndarray) -> np.ndarray: ...

    def set_xi(self, xi: float) -> None: ...


def predict_vote(scores, w3, k: int = 1) -> np.ndarray:
    """Class predictions from layer-2 inputs (n, N2).

    k=1: the log's read-out, ``argmax(s_j * w3[:, j])`` for the winner j.
    k>1: the k most active units each add their class distribution ``w3[:, j] / sum(w3[:, j])``."""
    n = len(scores)
    if k == 1:
        j = scores.argmax(axis=1)
        return (scores[np.arange(n), j][:, None] * w3.T[j]).argmax(axis=1)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    p = (w3 / np.maximum(w3.sum(axis=0, keepdims=True), 1e-300)).T  # (N2, 10)
    return p[top].sum(axis=1).argmax(axis=1)


def images(x) -> np.ndarray:
    """x as float64 (n, 784), C-contiguous; the compiled kernels do not check bounds."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == bool:
        raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != SIDE * SIDE:
        raise ValueError(f"x must have shape (n, {SIDE * SIDE}), got {x.shape}")
    return x


def labels(y, n: int) -> np.ndarray:
    """y as int64 (n,) in 0..9."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu" or y.shape != (n,) or np.any((y < 0) | (y >= N_CLASSES)):
        raise ValueError(f"y must hold {n} integer labels in 0..{N_CLASSES - 1}")
    return y.astype(np.int64)


def check_kind(kind: str, allowed=CODE_KINDS):
    if kind not in allowed:
        raise ValueError(f"kind must be one of {', '.join(map(repr, allowed))}; got {kind!r}")


def in_chunks(fn, x, chunk: int = 2000) -> np.ndarray:
    """fn applied to slices of x, concatenated (bounds the temporaries)."""
    return np.concatenate([fn(x[s:s + chunk]) for s in range(0, max(len(x), 1), chunk)])
