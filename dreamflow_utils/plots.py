"""Static figures for the DreamFlow Local reproduction.

Everything here builds ``matplotlib.figure.Figure`` objects directly (no pyplot), so
nothing leaks into pyplot's global figure registry and the module works with the Agg
backend, headless, in tests and under papermill.  In a notebook a returned Figure is
shown by the inline backend; :func:`save_figure` + :func:`show_png` keep a static PNG
in the saved notebook.

Shapes used throughout (``K`` clusters of ``C_s`` layer-1 units, ``N1 = K * C_s``)::

    w1  (784, N1)   column u = unit u's weights over the 28x28 image (row-major);
                    unit u = k * C_s + c belongs to cluster k
    w2  (N1, N2)    layer-1 -> layer-2 weights
    w3  (10, N2)    class -> layer-2 weights; a layer-2 unit's class is argmax(w3[:, j])
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from .files import atomic_write

__all__ = [
    "IMAGE_SIDE",
    "tapestry",
    "plot_tapestry",
    "bank_tapestry",
    "plot_bank",
    "plot_layer1",
    "plot_accuracy",
    "confusion_matrix",
    "plot_confusion",
    "code_fields",
    "layer2_images",
    "plot_layer2",
    "figure_to_png",
    "save_figure",
    "show_png",
]

IMAGE_SIDE = 28
_L = IMAGE_SIDE * IMAGE_SIDE
_P = 9  # patch side
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers
def _as_w1(w1) -> np.ndarray:
    w1 = np.asarray(w1)
    if w1.ndim != 2 or w1.shape[0] != _L:
        raise ValueError(
            f"w1 must have shape (784, N1) (one column per layer-1 unit), got {w1.shape}"
        )
    if w1.shape[1] == 0:
        raise ValueError("w1 has no units (shape[1] == 0)")
    return w1


def _check_C_s(C_s, n1: int) -> int:
    if isinstance(C_s, bool) or not isinstance(C_s, (int, np.integer)) or C_s <= 0:
        raise ValueError(f"C_s must be a positive int, got {C_s!r}")
    C_s = int(C_s)
    if n1 % C_s != 0:
        raise ValueError(
            f"w1 has {n1} units, which is not a multiple of C_s={C_s} "
            "(expected N1 = K * C_s)"
        )
    return C_s


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# ----------------------------------------------------------------------------- tapestry
def tapestry(w1, C_s: int) -> np.ndarray:
    """Layer-1 weights as one image of shape ``(28 * K, 28 * C_s)``, ``K = N1 // C_s``.

    Row ``k`` of tiles holds cluster ``k``'s units left to right; the tile of unit
    ``u = k * C_s + c`` is ``w1[:, u].reshape(28, 28)`` at rows ``28k:28k+28`` and
    columns ``28c:28c+28`` -- the layout of the log's ``draw_weights(w1.T, C_s, K, fig)``.
    """
    w1 = _as_w1(w1)
    C_s = _check_C_s(C_s, w1.shape[1])
    K = w1.shape[1] // C_s
    s = IMAGE_SIDE
    # w1[r*28 + q, k*C_s + c] -> t[k, r, c, q]
    t = w1.reshape(s, s, K, C_s).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(t.reshape(K * s, C_s * s))


def _tapestry_figsize(K: int, C_s: int) -> tuple[float, float]:
    # ~0.5 inch per tile, the image at most 28 in wide (C_s=100: ~1 px per weight at
    # dpi 100) and 14 in tall.
    w_img = min(0.5 * C_s, 28.0)
    h_img = w_img * K / C_s
    if h_img > 14.0:
        w_img *= 14.0 / h_img
        h_img = 14.0
    w_img = max(w_img, 2.5)
    return (w_img + 1.3, h_img + 0.7)


def plot_tapestry(w1, C_s: int, title: str | None = None) -> Figure:
    """Figure of :func:`tapestry`: cmap "Reds", vmin 0, vmax = the maximum weight.

    As in the log, the colorbar has ticks ``[0, max]``; negative weights (if any) are
    drawn as 0.  Thin grey lines separate the clusters (rows).  The figure width grows
    with ``C_s`` (about half an inch per unit, capped) so C_s = 10 .. 100 stay legible.
    """
    w1 = _as_w1(w1)
    C_s = _check_C_s(C_s, w1.shape[1])
    K = w1.shape[1] // C_s
    img = tapestry(w1, C_s)
    finite = img[np.isfinite(img)]
    vmax = float(finite.max()) if finite.size else 1.0
    if not vmax > 0:
        vmax = 1.0  # all-zero / non-positive weights: keep a valid colour scale

    fig = Figure(figsize=_tapestry_figsize(K, C_s))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(img, cmap="Reds", vmin=0.0, vmax=vmax, interpolation="nearest")
    s = IMAGE_SIDE
    for k in range(1, K):
        ax.axhline(k * s - 0.5, color="0.6", linewidth=0.4)
    ax.set_axis_off()
    ratio = img.shape[0] / img.shape[1]
    cb = fig.colorbar(im, ax=ax, ticks=[0.0, vmax], fraction=0.046 * ratio, pad=0.01)
    cb.ax.set_yticklabels(["0", _fmt(vmax)])
    cb.ax.tick_params(labelsize=8)
    ax.set_title(title if title is not None else f"layer 1: {K} clusters x {C_s} units",
                 fontsize=10)
    return fig


def bank_tapestry(bank, cols: int | None = None, gap: int = 1) -> np.ndarray:
    """A shared bank w1 (81, C_s) as one image, one 9x9 tile per detector, `cols` tiles per row
    (default: a square), NaN between the tiles."""
    bank = np.asarray(bank)
    if bank.ndim != 2 or bank.shape[0] != _P * _P:
        raise ValueError(f"a shared bank must have shape (81, C_s), got {bank.shape}")
    C = bank.shape[1]
    cols = cols or int(np.ceil(np.sqrt(C)))
    rows = -(-C // cols)
    t = np.full((rows * (_P + gap) - gap, cols * (_P + gap) - gap), np.nan)
    for i in range(C):
        r, q = divmod(i, cols)
        t[r * (_P + gap):r * (_P + gap) + _P, q * (_P + gap):q * (_P + gap) + _P] = bank[:, i].reshape(_P, _P)
    return t


def plot_bank(bank, title: str | None = None, cols: int | None = None) -> Figure:
    """Figure of :func:`bank_tapestry`, each detector scaled to its own maximum (cmap "Reds")."""
    bank = np.asarray(bank)
    img = bank_tapestry(bank / np.maximum(bank.max(axis=0, keepdims=True), 1e-300), cols)
    h, w = img.shape
    fig = Figure(figsize=(max(3.0, w / 8), max(3.0, h / 8) + 0.4))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(img), cmap="Reds", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"shared bank: {bank.shape[1]} detectors", fontsize=9)
    fig.tight_layout()
    return fig


def plot_layer1(w1, C_s: int, title: str | None = None) -> Figure:
    """The layer-1 weights as the model holds them: the log's tapestry (w1 (784, N1)), the
    shared bank's tiles (w1 (81, C_s)) or, for one group of many whole-image units (Krotov's
    layer), the first 100 in rows of 10."""
    if np.shape(w1)[0] == _P * _P:
        return plot_bank(w1, title, cols=min(C_s, 10))
    if np.shape(w1)[1] == C_s and C_s > 20:  # one group of whole-image units (layer1="krotov"): the first 100
        n = min(C_s, 100)
        return plot_tapestry(np.asarray(w1)[:, :n - n % 10], 10, title)
    return plot_tapestry(w1, C_s, title)


# ----------------------------------------------------------------------------- accuracy
def _to_percent(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    finite = a[np.isfinite(a)]
    if finite.size and np.all(np.abs(finite) <= 1.0):
        a = a * 100.0
    return a


def plot_accuracy(epoch_accuracies: Sequence[float], log_accuracy: float | None = None,
                  title: str | None = None,
                  figsize: tuple[float, float] = (5.0, 3.2)) -> Figure:
    """Test accuracy (%) against epoch 1..n, with the log's number as a dashed line.

    Accuracies may be fractions in [0, 1] or percentages: a series whose values all lie
    in [0, 1] (and a ``log_accuracy`` <= 1) is multiplied by 100.  ``None`` entries
    (epochs without an evaluation) are allowed and left as gaps.
    """
    acc = [np.nan if a is None else a for a in epoch_accuracies]
    y = _to_percent(acc)
    x = np.arange(1, y.size + 1)
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot(1, 1, 1)
    vals = [v for v in y if np.isfinite(v)]
    if y.size:
        ax.plot(x, y, "o-", color="tab:red", label="this run")
        if np.isfinite(y[-1]):
            ax.annotate(f"{y[-1]:.2f}%", (x[-1], y[-1]), textcoords="offset points",
                        xytext=(-4, 6), ha="right", fontsize=8)
    if log_accuracy is not None:
        la = float(log_accuracy)
        la = la * 100.0 if abs(la) <= 1.0 else la
        ax.axhline(la, linestyle="--", color="0.4", label=f"log: {la:.2f}%")
        vals.append(la)
    if vals:
        lo, hi = min(vals), max(vals)
        pad = max(2.0, 0.1 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(100.0, hi + pad) if hi <= 100 else hi + pad)
    else:
        ax.set_ylim(0, 100)
    n = max(int(y.size), 1)
    ax.set_xlim(0.5, n + 0.5)
    step = max(1, math.ceil(n / 10))
    ax.set_xticks(np.arange(1, n + 1, step))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if y.size or log_accuracy is not None:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title if title is not None else "test accuracy per epoch", fontsize=10)
    # fixed margins (in inches) instead of tight_layout: cheaper, used per live update
    w, h = figsize
    fig.subplots_adjust(left=0.65 / w, right=1 - 0.15 / w, bottom=0.5 / h, top=1 - 0.35 / h)
    return fig


# ----------------------------------------------------------------------------- confusion
def confusion_matrix(y_true, y_pred, n_classes: int = 10) -> np.ndarray:
    """Counts ``cm[t, p]`` = number of samples with label ``t`` predicted as ``p``."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    n_classes = int(n_classes)
    if n_classes <= 0:
        raise ValueError(f"n_classes must be positive, got {n_classes}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            if not np.all(np.equal(np.mod(a, 1), 0)):
                raise ValueError(f"{name} must hold integer class labels")
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} has labels outside [0, {n_classes})")
    idx = t.astype(np.int64) * n_classes + p.astype(np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def plot_confusion(cm, title: str | None = None) -> Figure:
    """Confusion matrix (rows: true label, columns: predicted) with counts annotated."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square 2-D array, got shape {cm.shape}")
    n = cm.shape[0]
    fig = Figure(figsize=(0.55 * n + 2.0, 0.55 * n + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    vmax = float(cm.max()) if cm.size and cm.max() > 0 else 1.0
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=vmax)
    fs = 8 if n <= 12 else 6
    for i in range(n):
        for j in range(n):
            v = cm[i, j]
            txt = f"{int(v)}" if float(v).is_integer() else f"{v:.2g}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=fs,
                    color="white" if v > 0.5 * vmax else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    total = cm.sum()
    if title is None:
        title = "confusion matrix"
        if total > 0:
            title += f" (accuracy {100.0 * np.trace(cm) / total:.2f}%)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- layer 2
def code_fields(config, w1) -> np.ndarray:
    """What each entry of the layer-1 code sees, in image space, shape (784, N1): w1 itself for
    layer1="clusters"; for the shared bank, detector d's weights placed at every position of
    the entry's pooled cell (averaged over the cell's positions)."""
    from .geometry import patch_indices, pool_cells

    w1 = np.asarray(w1)
    if config.layer1 == "clusters":
        return w1
    idx = patch_indices(config.layout, config.stride)
    cells = pool_cells(config.layout, config.stride, config.pool) if config.pool > 1 else np.arange(len(idx))
    out = np.zeros((_L, config.N1))
    for p, cell in enumerate(cells):
        out[idx[p], cell * config.C_s:(cell + 1) * config.C_s] += w1 / np.sum(cells == cell)
    return out


def layer2_images(w1, w2, C_s: int | None = None) -> np.ndarray:
    """What each layer-2 unit prefers, drawn back in image space: shape ``(N2, 784)``.

    ``img[j] = sum_u w2[u, j] * w1[:, u]``, i.e. ``(w1 @ w2).T``: each layer-1 unit's
    receptive field weighted by how strongly it drives layer-2 unit ``j``.

    With ``C_s`` given, ``w2`` is first normalised per cluster: inside each cluster the
    weights ``w2[u, j]`` are divided by ``sum |w2[u', j]|`` over that cluster's units, so
    each cluster contributes a weighted *average* of its units' patches.  Since only one
    unit per cluster fires (winner-take-all), this shows the patch each cluster offers
    unit ``j``, with every cluster on an equal footing regardless of how large its raw
    ``w2`` weights grew.
    """
    w1 = _as_w1(w1)
    w2 = np.asarray(w2)
    if w2.ndim != 2 or w2.shape[0] != w1.shape[1]:
        raise ValueError(
            f"w2 must have shape (N1, N2) with N1 = w1.shape[1] = {w1.shape[1]}, "
            f"got {w2.shape}"
        )
    if C_s is not None:
        C_s = _check_C_s(C_s, w1.shape[1])
        K = w1.shape[1] // C_s
        g = w2.reshape(K, C_s, w2.shape[1]).astype(float)
        denom = np.abs(g).sum(axis=1, keepdims=True)
        g = g / np.where(denom > 0, denom, 1.0)
        w2 = g.reshape(w2.shape)
    return (w1 @ w2).T


def _select_layer2_units(classes: np.ndarray, strength: np.ndarray, n: int) -> np.ndarray:
    """Up to n units, round-robin over classes (strongest first), sorted by class."""
    order = np.lexsort((-strength, classes))  # by class, then by strength descending
    if n >= order.size:
        return order
    per_class = {c: list(order[classes[order] == c]) for c in np.unique(classes)}
    chosen: list[int] = []
    while len(chosen) < n:
        for c in sorted(per_class):
            if per_class[c] and len(chosen) < n:
                chosen.append(per_class[c].pop(0))
    chosen_arr = np.array(chosen)
    return chosen_arr[np.lexsort((-strength[chosen_arr], classes[chosen_arr]))]


def plot_layer2(w1, w2, w3, n: int | None = None, C_s: int | None = None,
                title: str | None = None) -> Figure:
    """Grid of :func:`layer2_images`, each tile labelled with its unit's class.

    A unit's class is ``argmax(w3[:, j])``.  Units are sorted by class (then by
    ``w3[class, j]``, strongest first); with ``n`` < N2 units are taken round-robin over
    classes so every class present is shown.  ``n=None`` shows all N2 units
    (pass e.g. ``n=100`` for large layers).  Each tile is
    scaled to its own maximum (cmap "Reds", negatives drawn as 0).  ``C_s`` is passed to
    :func:`layer2_images` (per-cluster normalisation).
    """
    w3 = np.asarray(w3)
    imgs = layer2_images(w1, w2, C_s=C_s)
    N2 = imgs.shape[0]
    if w3.ndim != 2 or w3.shape[1] != N2:
        raise ValueError(f"w3 must have shape (n_classes, N2={N2}), got {w3.shape}")
    classes = np.argmax(w3, axis=0)
    strength = w3[classes, np.arange(N2)]
    n = N2 if n is None else int(n)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    units = _select_layer2_units(classes, strength, min(n, N2))
    m = units.size

    ncols = min(m, max(1, math.ceil(math.sqrt(m))))
    nrows = math.ceil(m / ncols)
    s, gap, label = IMAGE_SIDE, 2, 9  # pixels: tile, gap, label band above each tile
    cell_w, cell_h = s + gap, s + gap + label
    mosaic = np.full((nrows * cell_h + gap, ncols * cell_w + gap), np.nan)
    for i, j in enumerate(units):
        r, c = divmod(i, ncols)
        tile = np.clip(imgs[j].reshape(s, s), 0, None)
        mx = tile.max()
        tile = tile / mx if mx > 0 else tile
        y0, x0 = r * cell_h + gap + label, c * cell_w + gap
        mosaic[y0:y0 + s, x0:x0 + s] = tile

    scale = 0.03  # inches per mosaic pixel (~0.85 in per 28-pixel tile)
    fig = Figure(figsize=(mosaic.shape[1] * scale + 0.4, mosaic.shape[0] * scale + 0.6))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.96 - 0.5 / (mosaic.shape[0] * scale + 0.6)))
    import matplotlib

    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1,
              interpolation="nearest")
    for i, j in enumerate(units):
        r, c = divmod(i, ncols)
        ax.text(c * cell_w + gap, r * cell_h + gap + label - 1.5,
                f"{classes[j]} (#{j})", fontsize=6.5, va="bottom", ha="left")
    ax.set_axis_off()
    ax.set_title(title if title is not None else
                 f"layer 2: {m} of {N2} units in image space, labelled class (#unit)",
                 fontsize=10)
    return fig


# ----------------------------------------------------------------------------- output
def figure_to_png(fig: Figure, dpi: float = 100, max_bytes: int | None = 500_000,
                  max_pixels: int = 4_000_000, bbox_inches: str | None = "tight") -> bytes:
    """Render ``fig`` to PNG bytes with the Agg renderer.

    The dpi is lowered so the image has at most ``max_pixels`` pixels and, when
    ``max_bytes`` is set, until the PNG is below ``max_bytes`` (dpi floor 20).
    """
    w, h = fig.get_size_inches()
    if w * h * dpi * dpi > max_pixels:
        dpi = math.sqrt(max_pixels / (w * h))
    data = b""
    for _ in range(6):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=bbox_inches)
        data = buf.getvalue()
        if max_bytes is None or len(data) <= max_bytes or dpi <= 20:
            break
        dpi = max(20.0, dpi * math.sqrt(max_bytes / len(data)) * 0.9)
    return data


def save_figure(fig: Figure, name: str, folder: str | os.PathLike = "figures",
                dpi: float = 100, max_bytes: int = 500_000) -> Path:
    """Save ``fig`` as ``folder/name`` PNG (".png" added if missing); returns the path.

    Written atomically (temporary file in the same folder, then ``os.replace``), so a
    reader never sees a half-written file.  ``bbox_inches="tight"``; the dpi is lowered
    for very large figures so the file stays under about ``max_bytes``.
    """
    path = Path(folder) / name
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    return atomic_write(path, figure_to_png(fig, dpi=dpi, max_bytes=max_bytes))


def show_png(path: str | os.PathLike) -> None:
    """Display a saved PNG as a static image (kept in headless/papermill output)."""
    from IPython.display import Image, display

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    display(Image(filename=str(path)))
