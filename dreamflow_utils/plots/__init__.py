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
from typing import NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..core.files import atomic_write

__all__ = [
    "IMAGE_SIDE",
    "Tapestry",
    "layer1_layout",
    "tapestry",
    "plot_tapestry",
    "bank_tapestry",
    "plot_bank",
    "plot_layer1",
    "plot_accuracy",
    "plot_dots",
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
class Tapestry(NamedTuple):
    """Layer-1 tiles laid out for display, in pixels of the weights (NaN between tiles).

    image   2-D array: each position's block of tiles under a band for its label
    tiles   (N1, 2): row and column of the top-left pixel of unit u's tile
    side    tile side: 9 (each unit cropped to its patch) or 28 (whole-image fields)
    labels  one (row, col, text, offset) per labelled block, (row, col) its first tile's top-left
            pixel; offset marks the overlap layout's 4 positions shifted by 4 pixels
    layout  (layout, stride) of :func:`layer1_layout`, None for whole-image fields
    scale   inches per pixel at which the labels (7 pt) fit above their blocks
    """

    image: np.ndarray
    tiles: np.ndarray
    side: int
    labels: list[tuple[int, int, str, bool]]
    layout: tuple[str, int | None] | None
    scale: float


_GAP = 1  # pixels between tiles
_BAND = 0.2  # inches above each block, for its label
_MAX_COLS = {_P: 25, IMAGE_SIDE: 10}  # tiles per row before a block wraps
_SCALE = {_P: 0.04, IMAGE_SIDE: 0.03}  # inches per weight pixel (a 9x9 tile: 0.36 in)
_FONT = 7.0  # label size in points
_CHAR = 0.62  # a character's width in ems, at most (DejaVu Sans)
_MAX_HEIGHT = 12.0  # inches of tiles before the scale shrinks (9x9 tiles: by a quarter at most)


def layer1_layout(w1, C_s: int, layout: str | None = None,
                  stride: int | None = None) -> tuple[str, int | None] | None:
    """(layout, stride) whose patches hold every unit's weights (unit u at position u // C_s).

    A given ``layout`` is checked (ValueError if its positions or patches do not fit w1);
    otherwise the first that fits of "block", "overlap", "stride" 1..19, or None when none
    does (units that see the whole image, as Krotov's).
    """
    from ..core.geometry import LAST, patch_indices

    w1 = _as_w1(w1)
    C_s = _check_C_s(C_s, w1.shape[1])
    K = w1.shape[1] // C_s
    candidates = ([(layout, stride)] if layout is not None else
                  [("block", None), ("overlap", None)] + [("stride", s) for s in range(1, LAST + 1)])
    for lay, s in candidates:
        idx = patch_indices(lay, s)
        if len(idx) != K:
            if layout is not None:
                raise ValueError(f"layout {lay!r} has {len(idx)} positions; w1 has {K} of C_s={C_s} units")
            continue
        outside = np.ones((K, _L), dtype=bool)
        np.put_along_axis(outside, idx, False, axis=1)
        if not np.any(w1.reshape(_L, K, C_s)[outside.T]):
            return lay, s
        if layout is not None:
            raise ValueError(f"w1 has weights outside its units' patches in layout {lay!r}")
    return None


def tapestry(w1, C_s: int, layout: str | None = None, stride: int | None = None) -> Tapestry:
    """Unit u's weights over its own 9x9 patch (over the whole 28x28 image where no layout fits,
    see :func:`layer1_layout`), one block of C_s tiles per position in unit order (rows of at
    most 25 tiles, 10 for whole-image fields), blocks in position order, side by side where they
    are narrow, each under its label "position k (rows a-b, cols c-d)". About 0.4 in per 9x9
    tile and 0.84 in per whole-image tile, less (9x9 tiles: a quarter at most, whole-image
    tiles: three quarters) where the tiles would stand taller than 12 in."""
    from ..core.geometry import patch_origins

    w1 = _as_w1(w1)
    C_s = _check_C_s(C_s, w1.shape[1])
    K = w1.shape[1] // C_s
    found = layer1_layout(w1, C_s, layout, stride)
    fields = w1.T.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    if found is None:
        side, offset = IMAGE_SIDE, [False] * K
        texts = [f"cluster {k} (whole image)" for k in range(K)] if K > 1 else []
    else:
        side, origins = _P, patch_origins(*found)
        offset = [found[0] == "overlap" and k >= 9 for k in range(K)]
        texts = [f"position {k} (rows {r}-{r + _P - 1}, cols {c}-{c + _P - 1})" + (", offset" if off else "")
                 for k, ((r, c), off) in enumerate(zip(origins, offset))]
        r0, c0 = np.repeat(np.array(origins), C_s, axis=0).T
        span = np.arange(_P)
        fields = fields[np.arange(K * C_s)[:, None, None], (r0[:, None] + span)[:, :, None],
                        (c0[:, None] + span)[:, None, :]]
    pitch = side + _GAP
    rows_b = math.ceil(C_s / _MAX_COLS[side])
    cols_b = math.ceil(C_s / rows_b)
    band_in = _BAND if texts else 0.0
    scale = _SCALE[side]
    while True:  # blocks (labels included, a tile apart) per line at this scale; shrink if too tall
        slot = max([cols_b * pitch] + [math.ceil(len(t) * _CHAR * _FONT / 72 / scale) for t in texts]) + pitch
        per_line = max(1, min(K, (_MAX_COLS[side] + 1) * pitch // slot))
        lines = math.ceil(K / per_line)
        fit = min(_SCALE[side], (_MAX_HEIGHT - lines * band_in) / (lines * rows_b * pitch))
        fit = max(fit, (0.75 if side == _P else 0.25) * _SCALE[side])
        if fit >= scale:
            break
        scale = fit
    band = math.ceil(band_in / scale)
    line_h = band + rows_b * pitch
    image = np.full((lines * line_h - _GAP, per_line * slot - pitch), np.nan)
    tiles = np.empty((K * C_s, 2), dtype=int)
    labels = []
    for k in range(K):
        y0, x0 = (k // per_line) * line_h + band, (k % per_line) * slot
        if texts:
            labels.append((y0, x0, texts[k], offset[k]))
        for c in range(C_s):
            y, x = y0 + (c // cols_b) * pitch, x0 + (c % cols_b) * pitch
            image[y:y + side, x:x + side] = fields[k * C_s + c]
            tiles[k * C_s + c] = y, x
    return Tapestry(image, tiles, side, labels, found, scale)


def _tiles_figure(img, scale: float, vmax: float, title: str, subtitle: str, cbar_label: str,
                  labels=()) -> Figure:
    """One image of tiles (NaN: white) at `scale` inches per pixel, cmap "Reds" from 0 to `vmax`
    with a colorbar, the title and a grey subtitle above, `labels` (row, col, text, offset) drawn
    above the tiles at (row, col) (offset ones in blue); sized in inches, no layout pass."""
    import matplotlib

    h, w = img.shape
    img_w, img_h = w * scale, h * scale
    right, top, bottom = 0.85, 0.6, 0.12  # colorbar and its ticks; title and subtitle; margin
    fig_w = max(img_w + right + 0.15, len(title) * _CHAR * 10 / 72 + 0.3, len(subtitle) * _CHAR * 7.5 / 72 + 0.3)
    fig_h = img_h + top + bottom
    left = (fig_w - img_w - right + 0.15) / 2
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, img_w / fig_w, img_h / fig_h))
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest",
                   aspect="auto")
    ax.set_axis_off()
    for row, col, text, offset in labels:
        ax.text(col - 0.5, row - 0.8, text, fontsize=_FONT, ha="left", va="bottom",
                color="tab:blue" if offset else "0.15")
    cb_h = min(2.5, img_h)
    cax = fig.add_axes(((left + img_w + 0.15) / fig_w, (bottom + img_h - cb_h) / fig_h, 0.12 / fig_w, cb_h / fig_h))
    cb = fig.colorbar(im, cax=cax, ticks=[0.0, vmax])
    cb.ax.set_yticklabels(["0", _fmt(vmax)])
    cb.ax.tick_params(labelsize=7)
    cb.set_label(cbar_label, fontsize=7)
    fig.text(0.5, 1 - 0.08 / fig_h, title, ha="center", va="top", fontsize=10)
    fig.text(0.5, 1 - 0.34 / fig_h, subtitle, ha="center", va="top", fontsize=7.5, color="0.3")
    return fig


def plot_tapestry(w1, C_s: int, title: str | None = None, layout: str | None = None,
                  stride: int | None = None) -> Figure:
    """Figure of :func:`tapestry` (``layout`` inferred unless given): one colour scale for all
    tiles as in the log's ``draw_weights`` (cmap "Reds", 0 to the largest weight, negative
    weights drawn as 0) with a colorbar, each position's block labelled (the overlap layout's 4
    offset positions in blue), a subtitle saying what the tiles show. About 0.4 in per 9x9
    tile (C_s=100, 9 positions: 25 tiles a row, about 8.5 x 13 in)."""
    t = tapestry(w1, C_s, layout, stride)
    K = len(t.tiles) // C_s
    finite = t.image[np.isfinite(t.image)]
    vmax = float(finite.max()) if finite.size else 1.0
    if not vmax > 0:
        vmax = 1.0  # all-zero / non-positive weights: keep a valid colour scale
    if t.layout is None:
        what = (f"{K} clusters x {C_s} units" if K > 1 else f"{C_s} units") + \
            ": each tile is a unit's weights over the whole 28x28 image"
    else:
        lay, s = t.layout
        what = (f"{'stride ' + str(s) if lay == 'stride' else lay} layout, {K} positions x {C_s} units: "
                "each tile is a unit's weights over its 9x9 patch")
    subtitle = what + "; one colour scale" + ("; blue: the 4 positions offset by 4 pixels"
                                              if t.layout and t.layout[0] == "overlap" else "")
    return _tiles_figure(t.image, t.scale, vmax, title if title is not None else "layer-1 weights",
                         subtitle, "weight", t.labels)


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
    """Figure of :func:`bank_tapestry`, each detector scaled to its own maximum (cmap "Reds",
    colorbar 0 to 1), about 1 in per detector, the tiles at most 10 in wide and tall."""
    bank = np.asarray(bank)
    img = bank_tapestry(bank / np.maximum(bank.max(axis=0, keepdims=True), 1e-300), cols)
    scale = min(0.1, 10.0 / img.shape[1], 10.0 / img.shape[0])
    return _tiles_figure(img, scale, 1.0, title if title is not None else "shared bank",
                         f"{bank.shape[1]} detectors, each a 9x9 tile applied at every position, "
                         "each scaled to its own maximum", "fraction of the detector's maximum")


def plot_layer1(w1, C_s: int, title: str | None = None) -> Figure:
    """The layer-1 weights as the model holds them: :func:`plot_tapestry` (w1 (784, N1)), the
    shared bank's tiles (w1 (81, C_s), rows of up to max(10, sqrt(C_s)) detectors) or, for one
    group of more than 100 whole-image units (Krotov's layer), the first 100."""
    w1 = np.asarray(w1)
    if w1.shape[0] == _P * _P:
        return plot_bank(w1, title, cols=min(C_s, max(10, math.ceil(math.sqrt(C_s)))))
    if w1.shape[1] == C_s > 100:
        return plot_tapestry(w1[:, :100], 100, f"{title or 'layer-1 weights'} (first 100 of {C_s} units)")
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


# ----------------------------------------------------------------------------- dot plot
_DOT_MARKERS = ("o", "s", "D", "^", "v", "P", "X")
_GOAL_STYLES = ("--", ":", "-.")


def plot_dots(groups, goals=None, title: str | None = None, colors=None, markers=None,
              hollow=(), xlabel: str = "test accuracy (%)") -> Figure:
    """Models compared by a dot (mean) and a bar (± sd) each, one row per model, best at the top;
    one panel per group, the panels stacked.

    groups  {panel title: [(label, mean, sd, n, kind, colour key), ...]}: fractions (when every
            mean and goal is <= 1, shown in %) or percentages; sd None or NaN draws no bar.
    goals   {panel title: {name: value}}: a vertical reference line each (one line style per
            name), the values in the panel's title.
    colors  {colour key: colour}, markers {kind: marker}; keys not given take tab10 colours and
            the markers "o s D ^ v P X" in order of appearance; kinds in `hollow` are unfilled.
    A row's label stands on the left, "mean ± sd (n)" on the right (tick labels, one row pitch
    apart); the legend (kinds, colour keys, goals) under the panels; the figure's height grows
    with the rows and its width with the longest label, so no two texts overlap.
    """
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    groups = {str(p): list(rows) for p, rows in groups.items()}
    goals = {p: dict(g) for p, g in (goals or {}).items() if p in groups}
    values = [r[1] for rows in groups.values() for r in rows] + [v for g in goals.values() for v in g.values()]
    pct = 100.0 if values and max(abs(float(v)) for v in values) <= 1.0 else 1.0
    colors, markers = dict(colors or {}), dict(markers or {})
    kinds = dict.fromkeys(r[4] for rows in groups.values() for r in rows)
    keys = dict.fromkeys(r[5] for rows in groups.values() for r in rows)
    tab10 = matplotlib.colormaps["tab10"].colors
    # the legend lists the kinds and keys used, those given first, in the order given
    colors = {k: colors.get(k, tab10[i % 10]) for i, k in enumerate([k for k in colors if k in keys] + list(keys))}
    markers = {k: markers.get(k, _DOT_MARKERS[i % len(_DOT_MARKERS)])
               for i, k in enumerate([k for k in markers if k in kinds] + list(kinds))}
    styles = {name: _GOAL_STYLES[i % len(_GOAL_STYLES)]
              for i, name in enumerate(dict.fromkeys(n for g in goals.values() for n in g))}

    pitch, fs = 0.22, 7.5  # inches per row, points
    longest = max((len(str(r[0])) for rows in groups.values() for r in rows), default=10)
    heights = [max(len(rows), 1) * pitch + 0.35 for rows in groups.values()]
    fig = Figure(figsize=(longest * _CHAR * fs / 72 + 6.8, sum(heights) + 0.7 * len(groups) + 1.2),
                 layout="constrained")
    for (panel, rows), spec in zip(groups.items(), fig.add_gridspec(len(groups), 1, height_ratios=heights)):
        ax = fig.add_subplot(spec)
        rows = sorted(rows, key=lambda r: -float(r[1]))
        y = np.arange(len(rows))[::-1]
        for yi, (label, mean, sd, n, kind, key) in zip(y, rows):
            if yi % 2 == 0:
                ax.axhspan(yi - 0.5, yi + 0.5, color="0.95", lw=0, zorder=0)
            bar = None if sd is None or not np.isfinite(sd) else sd * pct
            ax.errorbar(mean * pct, yi, xerr=bar, fmt=markers[kind], color=colors[key], ms=5, capsize=2,
                        lw=1, mfc="none" if kind in hollow else colors[key], zorder=3)
        panel_goals = goals.get(panel, {})
        for name, v in panel_goals.items():
            ax.axvline(v * pct, color="k", ls=styles[name], lw=0.8, zorder=2)
        ends = [v * pct for v in panel_goals.values()]
        for _, mean, sd, *_ in rows:
            bar = 0.0 if sd is None or not np.isfinite(sd) else sd
            ends += [(mean - bar) * pct, (mean + bar) * pct]
        lo, hi = (min(ends), max(ends)) if ends else (0.0, 100.0)
        pad = max(0.5, 0.04 * (hi - lo))
        ax.set_xlim(max(lo - pad, 0.0) if pct == 100 else lo - pad, min(hi + pad, 100.0) if pct == 100 else hi + pad)
        ax.set_ylim(-0.5, len(rows) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]))
        ax.grid(True, axis="x", alpha=0.35)
        ax.set_yticks(y, [str(r[0]) for r in rows], fontsize=fs)
        right = ax.twinx()
        right.set_ylim(ax.get_ylim())
        right.set_yticks(y, [f"{r[1] * pct:.2f}" + ("" if r[2] is None or not np.isfinite(r[2]) else
                                                    f" ± {r[2] * pct:.2f}") + f" (n={r[3]})" for r in rows],
                         fontsize=fs)
        for a in (ax, right):
            a.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=fs)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(panel + "".join(f"   {name}: {v * pct:.1f}" for name, v in panel_goals.items()), fontsize=9)
    handles = [Line2D([], [], ls="none", marker=m, color="k", mfc="none" if k in hollow else "k", label=k)
               for k, m in markers.items()]
    handles += [Line2D([], [], ls="none", marker="o", color=c, label=k) for k, c in colors.items()]
    handles += [Line2D([], [], color="k", ls=st, lw=0.8, label=name) for name, st in styles.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=fs, frameon=False)
    if title is not None:
        fig.suptitle(title, fontsize=10)
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
    from ..core.geometry import patch_indices, pool_cells

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
                  max_pixels: int = 4_000_000, bbox_inches: str | None = "tight",
                  compress_level: int = 6) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg renderer.

    The dpi is lowered so the image has at most ``max_pixels`` pixels and, when
    ``max_bytes`` is set, until the PNG is below ``max_bytes`` (dpi floor 20).
    ``compress_level`` (zlib, 0-9): 1 encodes about twice as fast as 6, a little larger.
    """
    w, h = fig.get_size_inches()
    if w * h * dpi * dpi > max_pixels:
        dpi = math.sqrt(max_pixels / (w * h))
    data = b""
    for _ in range(6):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=bbox_inches,
                    pil_kwargs={"compress_level": compress_level})
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
