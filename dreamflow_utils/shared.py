"""Weight sharing: one bank of C_s patch detectors applied at every position of a grid.

The "uses symmetry" answer to the log's conclusion.  Layer 1 is a single bank ``W``
(C_s, 81) of 9x9 detectors, applied at every position of a grid of patch origins:

- ``grid="block"``   the log's 3x3 grid of disjoint 9x9 patches (origins 0, 9, 18);
- ``grid="overlap"`` the log's 13 patches (block + the 2x2 grid offset by 4 pixels);
- ``grid="stride"``  origins ``0, s, 2s, ... <= 19`` in both axes (``stride=s``; s=9 is "block").

At each position the detectors compete (winner-take-all, the winner keeps its output,
a blank patch switches nothing on).  Layer 2 sees the concatenated per-position codes
(``N1 = positions * C_s``), optionally max- or sum-pooled over ``pool x pool``
neighbouring positions first (``N1 = pooled positions * C_s``).

Learning is the DreamFlow rule everywhere, exactly as in the faithful engines:
``dW = W * sum(post * (target - pred) / pred)`` scaled so that ``max |dW| = xi``.  For
the shared bank each position's winner reconstructs its own patch
(``pred = output * W[winner]``) and the per-position updates are summed over positions
and samples before the single scaling step.  (The log's overlap layout adds the
reconstructions of overlapping patches before taking the error; here every patch is
reconstructed by its own winner, which is what makes dense strides possible.  On the
block grid the two coincide.)  Layer 2 and the label layer use the log's rule unchanged;
only the columns of the winning layer-2 units are touched, which is the same update
because all other columns have ``dW = 0``.

Read-out options (all local, no backpropagation): ``vote=k`` lets the k most active
layer-2 units vote with their class distributions ``w3[:, j] / sum w3[:, j]`` (k=1 is the
log's read-out up to ties); ``code="onehot"`` feeds layer 2 the winners as 1 instead of
their outputs; ``norm=True`` divides each layer-1 code vector by its Euclidean norm;
``label_gain=g`` makes the training label input ``g * one-hot`` instead of the log's one-hot
(g=1), i.e. how strongly the label steers which layer-2 unit wins while learning;
``xi_decay=d`` multiplies xi by d after every epoch (d=1: the log's constant xi);
``unit_norm=True`` rescales each updated layer-2 unit's weight vector (its column of w2) to
unit length after its update (a local, per-neuron normalisation, as in Oja's rule), which
makes layer 2 an online spherical k-means.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from .config import Params, check_choice, check_non_negative_int, check_positive_float, check_positive_int
from .layouts import PATCH, SIDE
from .model import N_CLASSES

GRIDS = ("block", "overlap", "stride")

__all__ = ["SharedConfig", "SharedWeights", "SharedEngine", "grid_origins", "init_shared",
           "train_shared", "shift_images", "predict_vote", "shared_tapestry", "plot_shared_tapestry"]


@dataclass(frozen=True)
class SharedConfig(Params):
    C_s: int = 10
    N2: int = 100
    grid: str = "block"
    stride: int = 9
    pool: int = 1
    pool_mode: str = "max"
    code: str = "value"
    norm: bool = False
    vote: int = 1
    shift: int = 0
    label_gain: float = 1.0
    xi_decay: float = 1.0
    unit_norm: bool = False
    T_s: int = 60000
    Nep: int = 10
    B: int = 100
    xi: float = 0.01
    prec: float = 1e-20
    seed: int = 0

    def __post_init__(self):
        check_choice("grid", self.grid, GRIDS)
        check_choice("pool_mode", self.pool_mode, ("max", "sum"))
        check_choice("code", self.code, ("value", "onehot"))
        for name in ("C_s", "N2", "stride", "pool", "vote", "T_s", "Nep", "B"):
            check_positive_int(name, getattr(self, name))
        check_non_negative_int("shift", self.shift)
        check_non_negative_int("seed", self.seed)
        for name in ("label_gain", "xi", "prec"):
            check_positive_float(name, getattr(self, name))
        if not 0 < self.xi_decay <= 1:
            raise ValueError(f"xi_decay must be in (0, 1], got {self.xi_decay!r}")
        if self.pool > 1 and self.grid == "overlap":
            raise ValueError("pool > 1 needs a square position grid (grid 'block' or 'stride'), not 'overlap'")
        if self.B > self.T_s:
            raise ValueError(f"B (batch size {self.B}) must not exceed T_s (training samples {self.T_s})")

    @property
    def origins(self) -> list[tuple[int, int]]:
        return grid_origins(self.grid, self.stride)

    @property
    def side(self) -> int:
        """Positions per axis of the (square) grid; 0 for the overlap grid."""
        return 0 if self.grid == "overlap" else int(round(np.sqrt(len(self.origins))))

    @property
    def n_positions(self) -> int:
        return len(self.origins)

    @property
    def n_pooled(self) -> int:
        if self.pool == 1:
            return self.n_positions
        return (-(-self.side // self.pool)) ** 2

    @property
    def N1(self) -> int:
        return self.n_pooled * self.C_s


class SharedWeights(dataclasses.make_dataclass("_SW", ["W", "w2", "w3"])):
    """W (C_s, 81) the shared detectors; w2 (N1, N2); w3 (10, N2)."""

    def copy(self):
        return SharedWeights(self.W.copy(), self.w2.copy(), self.w3.copy())


def grid_origins(grid: str = "block", stride: int = 9) -> list[tuple[int, int]]:
    """(row, col) of every patch position, row-major."""
    if grid == "block":
        stride = 9
    if grid in ("block", "stride"):
        r = range(0, SIDE - PATCH + 1, stride)
        return [(a, b) for a in r for b in r]
    if grid == "overlap":
        return ([(a, b) for a in (0, 9, 18) for b in (0, 9, 18)]
                + [(a, b) for a in (4, 13) for b in (4, 13)])
    raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")


def _patch_index(origins) -> np.ndarray:
    r = np.arange(PATCH)
    return np.stack([((r0 + r)[:, None] * SIDE + (c0 + r)[None, :]).ravel() for r0, c0 in origins])


def init_shared(config: SharedConfig) -> SharedWeights:
    """Uniform(0, 1) initial weights from ``default_rng(seed)``: W, then w2, then w3 (the log's order)."""
    rng = np.random.default_rng(config.seed)
    W = rng.uniform(0, 1, (config.C_s, PATCH * PATCH))
    w2 = rng.uniform(0, 1, (config.N1, config.N2))
    w3 = rng.uniform(0, 1, (N_CLASSES, config.N2))
    return SharedWeights(W, w2, w3)


def _sum_by(keys, rows, n_keys):
    D = rows.shape[1]
    flat = (keys[:, None] * D + np.arange(D)).ravel()
    return np.bincount(flat, rows.ravel(), minlength=n_keys * D).reshape(n_keys, D)


class SharedEngine:
    """``train_batches(x, y)``, ``predict(x)``, ``codes(x)``, ``layer2_scores(x)``, ``weights()``."""

    def __init__(self, config: SharedConfig, weights: SharedWeights | None = None):
        self.config = config
        w = weights if weights is not None else init_shared(config)
        self.W = np.array(w.W, dtype=np.float64)
        self.w2 = np.array(w.w2, dtype=np.float64)
        self.w3 = np.array(w.w3, dtype=np.float64)
        if self.W.shape != (config.C_s, PATCH * PATCH) or self.w2.shape != (config.N1, config.N2):
            raise ValueError("weights do not match the config")
        self.idx = _patch_index(config.origins)  # (P, 81)
        self.xi = config.xi  # train_shared multiplies it by xi_decay after every epoch

    def weights(self) -> SharedWeights:
        return SharedWeights(self.W.copy(), self.w2.copy(), self.w3.copy())

    # ----------------------------------------------------------------- layer 1
    def _layer1(self, v):
        """Patches (n, P, 81), winners (n, P) and their outputs (n, P)."""
        patches = v[:, self.idx]
        a = patches @ self.W.T  # (n, P, C)
        win = a.argmax(axis=2)
        val = np.take_along_axis(a, win[..., None], 2)[..., 0]
        return patches, win, val

    def _code(self, win, val):
        c = self.config
        n, P = win.shape
        on = val != 0
        l1 = np.zeros((n, P, c.C_s))
        fill = (val if c.code == "value" else on.astype(np.float64)) * on
        np.put_along_axis(l1, win[..., None], fill[..., None], axis=2)
        if c.pool > 1:
            G, p = c.side, c.pool
            Gp = -(-G // p)
            grid = np.zeros((n, Gp * p, Gp * p, c.C_s))
            grid[:, :G, :G] = l1.reshape(n, G, G, c.C_s)
            grid = grid.reshape(n, Gp, p, Gp, p, c.C_s)
            l1 = grid.max(axis=(2, 4)) if c.pool_mode == "max" else grid.sum(axis=(2, 4))
        l1 = l1.reshape(n, -1)
        if c.norm:
            l1 = l1 / np.maximum(np.linalg.norm(l1, axis=1, keepdims=True), 1e-12)
        return l1

    def codes(self, x, chunk: int | None = None) -> np.ndarray:
        """Layer-2 input (the layer-1 code, pooled/normalised as configured), (n, N1)."""
        chunk = chunk or max(100, int(4e6 // (len(self.idx) * PATCH * PATCH)))
        return np.concatenate([self._code(*self._layer1(x[s:s + chunk])[1:])
                               for s in range(0, len(x), chunk)])

    # ----------------------------------------------------------------- learning
    def _err(self, target, pred):
        return (target - pred) / np.where(pred > self.config.prec, pred, 1)

    def _step(self, w, grad):
        dw = w * grad
        w += (self.xi / max(np.max(np.abs(dw)), self.config.prec)) * dw

    def _train_batch(self, v, labels):
        c = self.config
        B = len(v)
        rows = np.arange(B)
        patches, win, val = self._layer1(v)
        l1 = self._code(win, val)
        l2_in = l1 @ self.w2 + c.label_gain * self.w3[labels]
        j = l2_in.argmax(axis=1)
        s = l2_in[rows, j]
        uj, inv = np.unique(j, return_inverse=True)
        w2j, w3j = self.w2[:, uj], self.w3[:, uj]  # (N1, U), (10, U)
        l1_err = self._err(l1, s[:, None] * w2j.T[inv])
        cl = np.zeros((B, N_CLASSES))
        cl[rows, labels] = c.label_gain
        cl_err = self._err(cl, s[:, None] * w3j.T[inv])
        g2 = _sum_by(inv, s[:, None] * l1_err, len(uj))
        g3 = _sum_by(inv, s[:, None] * cl_err, len(uj))
        self._step(w2j, g2.T)
        self._step(w3j, g3.T)
        if c.unit_norm:  # each updated layer-2 unit rescales its own input weights to unit length
            w2j /= np.maximum(np.linalg.norm(w2j, axis=0, keepdims=True), 1e-300)
        self.w2[:, uj], self.w3[:, uj] = w2j, w3j
        # shared bank: every position's winner reconstructs its own patch; positions whose
        # winner outputs exactly 0 (blank patches) contribute 0 and are skipped
        on = val != 0
        win, val, patches = win[on], val[on], patches[on]  # (m,), (m,), (m, 81)
        pred = val[:, None] * self.W[win]
        g1 = _sum_by(win, val[:, None] * self._err(patches, pred), c.C_s)
        self._step(self.W, g1)

    def train_batches(self, x, y):
        B = self.config.B
        for i in range(len(x) // B):
            self._train_batch(x[i * B:(i + 1) * B], y[i * B:(i + 1) * B])

    # ----------------------------------------------------------------- read-out
    def layer2_scores(self, x, chunk: int = 2000) -> np.ndarray:
        return np.concatenate([self.codes(x[s:s + chunk]) @ self.w2 for s in range(0, len(x), chunk)])

    def predict(self, x, vote: int | None = None, chunk: int = 2000) -> np.ndarray:
        k = self.config.vote if vote is None else vote
        return np.concatenate([predict_vote(self.codes(x[s:s + chunk]) @ self.w2, self.w3, k)
                               for s in range(0, len(x), chunk)])


def predict_vote(l2_in, w3, k: int = 1) -> np.ndarray:
    """Class predictions from layer-2 inputs (n, N2).

    k=1: the log's read-out, ``argmax(s_j * w3[:, j])`` for the winner j.
    k>1: the k most active units each add their class distribution ``w3[:, j] / sum(w3[:, j])``."""
    n = len(l2_in)
    if k == 1:
        j = l2_in.argmax(axis=1)
        return (l2_in[np.arange(n), j][:, None] * w3.T[j]).argmax(axis=1)
    k = min(k, l2_in.shape[1])
    top = np.argpartition(-l2_in, k - 1, axis=1)[:, :k]
    p = (w3 / np.maximum(w3.sum(axis=0, keepdims=True), 1e-300)).T  # (N2, 10)
    return p[top].sum(axis=1).argmax(axis=1)


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


def translate(img, dy: int, dx: int) -> np.ndarray:
    """Images (n, 28, 28) (or flat (n, 784)) moved down by dy and right by dx, zero-filled."""
    flat = img.ndim == 2
    img = img.reshape(len(img), SIDE, SIDE)
    out = np.zeros_like(img)
    ys, yd = (slice(0, SIDE - dy), slice(dy, SIDE)) if dy >= 0 else (slice(-dy, SIDE), slice(0, SIDE + dy))
    xs, xd = (slice(0, SIDE - dx), slice(dx, SIDE)) if dx >= 0 else (slice(-dx, SIDE), slice(0, SIDE + dx))
    out[:, yd, xd] = img[:, ys, xs]
    return out.reshape(len(img), -1) if flat else out


@dataclass
class SharedResult:
    config: SharedConfig
    engine: SharedEngine = field(repr=False)
    test_accuracy: float
    epoch_accuracies: list
    seconds: float


def train_shared(config: SharedConfig, data, callback=None, eval_every_epoch: bool = False) -> SharedResult:
    """Train a shared-bank model on ``data`` (first T_s samples, in order, B per batch;
    with ``shift > 0`` each epoch sees a freshly shifted copy, drawn from ``seed + 1``)."""
    (x, y), (tx, ty) = data
    t0 = time.perf_counter()
    engine = SharedEngine(config)
    rng = np.random.default_rng(config.seed + 1)
    x, y = np.asarray(x[:config.T_s], np.float64), np.asarray(y[:config.T_s])
    accs = []
    for epoch in range(1, config.Nep + 1):
        xe = shift_images(x, config.shift, rng) if config.shift else x
        engine.train_batches(xe, y)
        engine.xi *= config.xi_decay
        if eval_every_epoch or epoch == config.Nep:
            accs.append(float(np.mean(engine.predict(tx) == ty)))
        if callback is not None:
            callback(epoch, engine, accs[-1] if accs else None)
    return SharedResult(config, engine, accs[-1], accs, time.perf_counter() - t0)


def shared_tapestry(W, cols: int | None = None, gap: int = 1) -> np.ndarray:
    """The shared detectors (C_s, 81) as one image, one 9x9 tile per detector."""
    C = len(W)
    cols = cols or int(np.ceil(np.sqrt(C)))
    rows = -(-C // cols)
    t = np.full((rows * (PATCH + gap) - gap, cols * (PATCH + gap) - gap), np.nan)
    for i in range(C):
        r, q = divmod(i, cols)
        t[r * (PATCH + gap):r * (PATCH + gap) + PATCH, q * (PATCH + gap):q * (PATCH + gap) + PATCH] = \
            W[i].reshape(PATCH, PATCH)
    return t


def plot_shared_tapestry(W, title: str | None = None, cols: int | None = None):
    """Figure of :func:`shared_tapestry` (each tile scaled to its own maximum, cmap "Reds")."""
    from matplotlib.figure import Figure

    W = np.asarray(W)
    Wn = W / np.maximum(W.max(axis=1, keepdims=True), 1e-300)
    img = shared_tapestry(Wn, cols)
    h, w = img.shape
    fig = Figure(figsize=(max(3.0, w / 8), max(3.0, h / 8) + 0.4))
    ax = fig.add_subplot()
    ax.imshow(np.ma.masked_invalid(img), cmap="Reds", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
