"""Patch geometry: which 9x9 patch of the 28x28 image each layer-1 cluster sees."""
from __future__ import annotations

import numpy as np

SIDE = 28  # image side
PATCH = 9  # patch side


def patch_origins(layout: str) -> list[tuple[int, int]]:
    """(row, col) of each cluster's patch, in the log's unit order.

    The log's loops run `for x: for y:`, so clusters go down the columns of the 3x3
    grid first; "overlap" then adds the 2x2 grid shifted by 4 pixels, same order.
    """
    origins = [(y * PATCH, x * PATCH) for x in range(3) for y in range(3)]
    if layout == "overlap":
        origins += [(y * PATCH + 4, x * PATCH + 4) for x in range(2) for y in range(2)]
    elif layout != "block":
        raise ValueError(f"layout must be 'block' or 'overlap'; got {layout!r}")
    return origins


def patch_indices(layout: str) -> np.ndarray:
    """Flat pixel indices of every cluster's patch, shape (K, 81), row-major inside the patch."""
    r = np.arange(PATCH)
    return np.stack([((r0 + r)[:, None] * SIDE + (c0 + r)[None, :]).ravel()
                     for r0, c0 in patch_origins(layout)])

