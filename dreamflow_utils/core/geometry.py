"""Image geometry: where every layer-1 patch lies (each layout's origins and pixel indices,
and how positions pool), and translations of whole images."""
from __future__ import annotations

import numpy as np

SIDE = 28  # image side
PATCH = 9  # patch side
LAYOUTS = ("block", "overlap", "stride")
LAST = SIDE - PATCH  # the largest patch origin, 19


def patch_origins(layout: str, stride: int | None = None) -> list[tuple[int, int]]:
    """(row, col) of every patch position, in unit order.

    "block": the log's 3x3 grid of disjoint 9x9 patches; the log's loops run `for x: for y:`,
    so positions go down the columns first. "overlap": those 9 plus the 2x2 grid shifted by
    4 pixels, same order (the log's 13 clusters). "stride": origins 0, s, 2s, ... <= 19 in
    both axes, row by row (stride=9 is the block grid in row order).
    """
    if layout == "block":
        return [(y * PATCH, x * PATCH) for x in range(3) for y in range(3)]
    if layout == "overlap":
        return patch_origins("block") + [(y * PATCH + 4, x * PATCH + 4) for x in range(2) for y in range(2)]
    if layout == "stride":
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= LAST:
            raise ValueError(f"stride must be an int in 1..{LAST} for layout 'stride', got {stride!r}")
        r = range(0, LAST + 1, int(stride))
        return [(a, b) for a in r for b in r]
    raise ValueError(f"layout must be one of {', '.join(map(repr, LAYOUTS))}; got {layout!r}")


def patch_indices(layout: str, stride: int | None = None) -> np.ndarray:
    """Flat pixel indices of every position's patch, shape (K, 81), row-major inside the patch."""
    r = np.arange(PATCH)
    return np.stack([((r0 + r)[:, None] * SIDE + (c0 + r)[None, :]).ravel()
                     for r0, c0 in patch_origins(layout, stride)])


def grid_side(layout: str, stride: int | None = None) -> int | None:
    """Positions per axis of a square grid ("block": 3, "stride": len(range(0, 20, s))); None for "overlap"."""
    if layout == "overlap":
        return None
    return 3 if layout == "block" else len(range(0, LAST + 1, stride))


def pool_cells(layout: str, stride: int | None, pool: int) -> np.ndarray:
    """The pooled cell of every position (K,): positions in the same `pool` x `pool` square of
    the grid share a cell; cells are numbered row by row over the ceil(side / pool)^2 squares."""
    side = grid_side(layout, stride)
    if side is None:
        raise ValueError("pooling needs a square grid of positions (layout 'block' or 'stride'), not 'overlap'")
    step = PATCH if layout == "block" else stride
    per_side = -(-side // pool)
    return np.array([(r // step // pool) * per_side + (c // step // pool) for r, c in patch_origins(layout, stride)])


def n_cells(layout: str, stride: int | None, pool: int) -> int:
    """Number of pooled cells (positions when pool == 1)."""
    if pool == 1:
        return len(patch_origins(layout, stride))
    return (-(-grid_side(layout, stride) // pool)) ** 2


def translate(img, dy: int, dx: int) -> np.ndarray:
    """Images (n, 28, 28) (or flat (n, 784)) moved down by dy and right by dx, zero-filled."""
    flat = img.ndim == 2
    img = img.reshape(len(img), SIDE, SIDE)
    out = np.zeros_like(img)
    ys, yd = (slice(0, SIDE - dy), slice(dy, SIDE)) if dy >= 0 else (slice(-dy, SIDE), slice(0, SIDE + dy))
    xs, xd = (slice(0, SIDE - dx), slice(dx, SIDE)) if dx >= 0 else (slice(-dx, SIDE), slice(0, SIDE + dx))
    out[:, yd, xd] = img[:, ys, xs]
    return out.reshape(len(img), -1) if flat else out


def shift_images(x, max_shift: int, rng) -> np.ndarray:
    """Each image moved by a random integer (dy, dx) in [-max_shift, max_shift]^2, zero-filled."""
    x = np.asarray(x)
    if max_shift == 0:
        return x.copy()
    n = len(x)
    img = x.reshape(n, SIDE, SIDE)
    d = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    out = np.zeros_like(img)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            sel = np.flatnonzero((d[:, 0] == dy) & (d[:, 1] == dx))
            if len(sel):
                out[sel] = translate(img[sel], dy, dx)
    return out.reshape(n, -1)
