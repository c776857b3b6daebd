"""Does the network find the symmetry?  Translation measurements.

- :func:`translation_match`: how far the learned 9x9 detectors of *different* clusters
  (different patch positions) of an unshared layout are translated copies of each other.
  For every unit ``u`` and every other cluster ``k'``, the best Pearson correlation
  between ``u``'s weights moved by ``(dy, dx)`` (``|dy|, |dx| <= max_shift``, compared on
  the overlapping part) and any unit of ``k'``; averaged over units and clusters.  With
  ``max_shift=0`` it measures plain copies; the gain from 0 to ``max_shift`` is what
  translation adds.  Weights at their random initialisation score the chance level of
  this max-statistic (compute it with the untrained weights).  A shared bank scores 1 by
  construction.
- :func:`code_shift_similarity`: mean cosine similarity between the layer-2 input codes of
  test images and of the same images moved by a given number of pixels (how "unrelated"
  a shifted digit looks to the network).
- :func:`shifted_accuracy`: accuracy on test images moved by ``(dy, dx)``.
"""
from __future__ import annotations

import numpy as np

from ..core.geometry import PATCH, patch_indices, translate

__all__ = ["unit_patches", "translation_match", "code_shift_similarity", "shifted_accuracy"]


def unit_patches(w1, layout: str, C_s: int, stride: int | None = None) -> np.ndarray:
    """Each layer-1 unit's 9x9 weights, shape (N1, 9, 9), from a faithful w1 (784, N1)."""
    idx = np.repeat(patch_indices(layout, stride), C_s, axis=0)
    return np.take_along_axis(np.asarray(w1).T, idx, axis=1).reshape(-1, PATCH, PATCH)


def _zscore(a):
    a = a - a.mean(axis=1, keepdims=True)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n > 1e-12, n, np.inf)


def translation_match(patches, C_s: int, max_shift: int = 2) -> dict:
    """Translation-copy score of unit patches (N1, 9, 9) grouped in clusters of C_s units.

    Returns ``{"score": mean best correlation, "score_no_shift": same with max_shift=0,
    "best_shift_fraction": fraction of (unit, cluster) pairs whose best match needs a
    non-zero shift, "per_unit": (N1,) scores}``."""
    P = np.asarray(patches, dtype=np.float64)
    N1 = len(P)
    cl = np.arange(N1) // C_s
    K = cl.max() + 1
    best = np.full((N1, K), -np.inf)
    best0 = np.full((N1, K), -np.inf)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            # unit u moved by (dy, dx) vs unit v: compare u[y, x] with v[y + dy, x + dx]
            ys = slice(max(0, -dy), PATCH - max(0, dy))
            xs = slice(max(0, -dx), PATCH - max(0, dx))
            yt = slice(max(0, dy), PATCH - max(0, -dy))
            xt = slice(max(0, dx), PATCH - max(0, -dx))
            a = _zscore(P[:, ys, xs].reshape(N1, -1))
            b = _zscore(P[:, yt, xt].reshape(N1, -1))
            corr = a @ b.T  # (N1, N1)
            per_cluster = np.full((N1, K), -np.inf)
            for k in range(K):
                per_cluster[:, k] = corr[:, cl == k].max(axis=1)
            best = np.maximum(best, per_cluster)
            if dy == 0 and dx == 0:
                best0 = per_cluster
    other = cl[:, None] != np.arange(K)[None, :]
    per_unit = np.where(other, best, 0).sum(axis=1) / other.sum(axis=1)
    return {"score": float(per_unit.mean()),
            "score_no_shift": float((np.where(other, best0, 0).sum(axis=1) / other.sum(axis=1)).mean()),
            "best_shift_fraction": float(np.mean((best > best0 + 1e-12)[other])),
            "per_unit": per_unit}


def code_shift_similarity(codes_fn, x, shift: int = 1) -> float:
    """Mean cosine similarity of ``codes_fn(x)`` and ``codes_fn(x moved by shift pixels)``,
    averaged over the four directions (down, up, right, left)."""
    a = codes_fn(x)
    na = np.linalg.norm(a, axis=1)
    sims = []
    for dy, dx in ((shift, 0), (-shift, 0), (0, shift), (0, -shift)):
        b = codes_fn(translate(np.asarray(x), dy, dx))
        nb = np.linalg.norm(b, axis=1)
        sims.append(np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12))
    return float(np.mean(sims))


def shifted_accuracy(predict, x, y, dy: int, dx: int) -> float:
    return float(np.mean(predict(translate(np.asarray(x), dy, dx)) == np.asarray(y)))
