"""Every model is one `Config`, validated on construction."""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass

import numpy as np

from .geometry import LAYOUTS, PATCH, SIDE, n_cells, patch_origins

LAYER1 = ("clusters", "shared", "krotov")
ENGINES = ("numpy", "reference", "tensorflow")
# which engine computes which layer 1 (engines/ registers exactly these)
SUPPORTED = {("numpy", "clusters"), ("reference", "clusters"), ("tensorflow", "clusters"),
             ("numpy", "shared"), ("reference", "shared"), ("numpy", "krotov")}
WTA_MODES = ("full_row", "own_units")
DTYPES = ("float64", "float32")
POOL_MODES = ("max", "sum")
CODES = ("value", "onehot")
DATASETS = ("mnist", "fashion")
N_CLASSES = 10
PIXEL_CHANNEL = (SIDE // 2) ** 2  # values of the pixel side channel (`pixels`): the image pooled over 2x2 blocks

# research options: name -> (the layers they apply to, the value that means "off": the log's model)
OPTIONS = {"pool": (("shared",), 1), "pool_mode": (("shared",), "max"), "code": (("shared",), "value"),
           "norm": (("shared", "krotov"), False), "label_gain": (("shared", "krotov"), 1.0),
           "unit_norm": (("shared", "krotov"), False), "patch_norm": (("shared",), False),
           "pixels": (("shared",), 0.0), "l2_winners": (("shared", "krotov"), 1), "kh_epochs": (("krotov",), None),
           "kh_p": (("krotov",), 3.0), "kh_k": (("krotov",), 7), "kh_delta": (("krotov",), 0.4),
           "kh_eps0": (("krotov",), 0.04), "kh_n": (("krotov",), 4.5), "kh_top": (("krotov",), 0),
           "kh_center": (("krotov",), False)}


@dataclass(frozen=True)
class Config:
    """One DreamFlow Local model and its training. The log's symbols (C_s, N2, T_s, Nep, B, xi,
    prec) and defaults are its own; every option beyond the log is named for what it does.
    A model's name (`model_name`) is made of these symbols.

    layout  "block" (3x3 grid of 9x9 patches, 9 positions), "overlap" (those 9 plus
            4 patches offset by 4 pixels, 13 positions; the log's first experiment, the default)
            or "stride" (origins 0, stride, 2*stride, ... <= 19 in both axes; needs `stride`);
            None for layer1="krotov", whose units see the whole image.
    C_s     layer-1 units per position (clusters) or detectors in the bank (shared).
    N2      neurons in layer 2.
    T_s     training samples used per epoch (a multiple of B).  Nep  epochs.  B  batch size.
    xi      max |dW| per update.              prec smallest prediction that divides.
    seed    seeds the initial weights (and, with `shift`, the shifted copies: seed + 1).
    engine  "numpy" (fast, default), "reference" (the literal dense math, the test oracle)
            or "tensorflow" (layer1="clusters", layouts block/overlap).
    wta     the winner-take-all of layer 1. "full_row" (the default of layer1="clusters")
            reproduces the log's, quirk included: a cluster whose units all output <= 0 (a blank
            patch) switches on unit 0 of cluster 0 (unit C_s for cluster 0 itself when its
            outputs are all negative), because the log takes argmax over the masked
            full-width row. "own_units" takes the argmax among the cluster's own units; the
            shared layer always competes that way ("own_units", its only choice).
    dtype, jit_compile   float type and XLA of the tensorflow engine; dtype also of the krotov
            engine (every other engine computes in float64).
    layer1  "clusters" (the log's word: every position has its own C_s units) or "shared" (one
            bank of C_s detectors applied at every position, its updates summed over positions).
    stride  the grid step of layout="stride" (None otherwise).
    shift   each epoch trains on a fresh copy of the images moved by up to `shift` pixels.
    xi_decay  xi is multiplied by this after every epoch (1: the log's constant xi).
    vote    read-out: the `vote` most active layer-2 units vote with their class
            distributions w3[:, j] / sum(w3[:, j]) (1: the log's single winner).
    dataset "mnist" or "fashion" (Fashion-MNIST): what `train(config)` loads.
    shuffle each epoch visits the T_s samples in a fresh random order (drawn from seed + 2)
            instead of the log's fixed order.
    eval_every  the test accuracy is measured after every `eval_every`-th epoch and the last.
    Shared layer only: `pool` (codes max- or sum-pooled, `pool_mode`, over pool x pool
    neighbouring positions), `code` ("value": a winner passes its output, "onehot": 1),
    `patch_norm` (every patch divided by its Euclidean length, a blank one stays 0, before the
    detectors see it; also the bank's reconstruction target), `pixels` (> 0: layer 2 also reads
    a pixel side channel, pixels * the image average-pooled over 2x2 blocks divided by its
    length: N1 grows by 196; w2 reconstructs it like the code).
    Shared and krotov layers: `norm` (each code vector divided by its length before layer 2),
    `label_gain` (the training label enters layer 2 as label_gain * one-hot), `unit_norm`
    (each updated layer-2 unit rescales its w2 column to unit length), `l2_winners` (< N2: the
    l2_winners most active layer-2 units of a training sample keep their inputs and learn, ties
    to the lower unit; 1: the log's single winner).
    layer1="krotov" (Krotov & Hopfield 2019, a peer: C_s units that see the whole image, learnt
    without labels by their rule): the first `kh_epochs` epochs train layer 1 only (Lebesgue
    power `kh_p`, anti-Hebbian rank `kh_k` and strength `kh_delta`, learning rate kh_eps0
    decaying linearly to 0), the remaining Nep - kh_epochs epochs train layer 2 on its codes
    relu(h) ** `kh_n`; with `kh_top` > 0 only each sample's kh_top largest code values stay
    (the others 0, ties to the lower unit; before norm): a sparse code; with `kh_center` the
    units see each image minus its own mean pixel value (in the rule and the code).
    """

    layout: str | None = "overlap"
    C_s: int = 10
    N2: int = 100
    T_s: int = 60000
    Nep: int = 10
    B: int = 100
    xi: float = 0.01
    prec: float = 1e-20
    seed: int = 0
    engine: str = "numpy"
    wta: str | None = None  # None: the layer's own ("full_row" for clusters, "own_units" otherwise)
    dtype: str = "float64"
    jit_compile: bool = False
    layer1: str = "clusters"
    stride: int | None = None
    shift: int = 0
    xi_decay: float = 1.0
    vote: int = 1
    pool: int = 1
    pool_mode: str = "max"
    code: str = "value"
    norm: bool = False
    label_gain: float = 1.0
    unit_norm: bool = False
    patch_norm: bool = False
    pixels: float = 0.0
    l2_winners: int = 1
    dataset: str = "mnist"
    shuffle: bool = False
    eval_every: int = 1
    kh_epochs: int | None = None
    kh_p: float = 3.0
    kh_k: int = 7
    kh_delta: float = 0.4
    kh_eps0: float = 0.04
    kh_n: float = 4.5
    kh_top: int = 0
    kh_center: bool = False

    def __post_init__(self):
        for f in dataclasses.fields(self):  # numpy scalars -> Python scalars: records stay JSON
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, f.name, value.item())
        if self.wta is None:
            object.__setattr__(self, "wta", own_wta(self.layer1))
        check_choice("layer1", self.layer1, LAYER1)
        if self.layer1 == "krotov":
            if self.layout is not None:
                raise ValueError(f"layout applies to layer1 'clusters' and 'shared'; layer1='krotov' units see the "
                                 f"whole image (layout=None), got layout={self.layout!r}")
        else:
            check_choice("layout", self.layout, LAYOUTS)
        check_choice("engine", self.engine, ENGINES)
        check_choice("wta", self.wta, WTA_MODES)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("pool_mode", self.pool_mode, POOL_MODES)
        check_choice("code", self.code, CODES)
        check_choice("dataset", self.dataset, DATASETS)
        for name in ("C_s", "N2", "T_s", "Nep", "B", "vote", "pool", "eval_every", "l2_winners"):
            check_positive_int(name, getattr(self, name))
        for name in ("seed", "shift"):
            check_non_negative_int(name, getattr(self, name))
        for name in ("xi", "prec", "label_gain"):
            check_positive_float(name, getattr(self, name))
        check_non_negative_float("pixels", self.pixels)
        check_positive_float("xi_decay", self.xi_decay)
        if self.xi_decay > 1:
            raise ValueError(f"xi_decay must be in (0, 1], got {self.xi_decay!r}")
        for name in ("jit_compile", "norm", "unit_norm", "patch_norm", "shuffle", "kh_center"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.B > self.T_s:
            raise ValueError(f"B (batch size {self.B}) must not exceed T_s (training samples {self.T_s})")
        if self.T_s % self.B:
            raise ValueError(f"T_s={self.T_s} is not a multiple of B={self.B}: the last {self.T_s % self.B} "
                             f"samples of every epoch would be dropped; use T_s={self.T_s - self.T_s % self.B}")
        self._check_applicability()
        check_memory(self)

    def _check_applicability(self):
        if self.layout == "stride":
            patch_origins("stride", self.stride)  # validates stride
        elif self.stride is not None:
            raise ValueError(f"stride applies to layout='stride' only; layout={self.layout!r} has stride=None")
        if (self.engine, self.layer1) not in SUPPORTED:
            raise ValueError(f"engine={self.engine!r} does not compute layer1={self.layer1!r}; engines that do: "
                             + ", ".join(sorted(e for e, l in SUPPORTED if l == self.layer1)))
        for name, (layers, off) in OPTIONS.items():
            if self.layer1 not in layers and getattr(self, name) != off:
                raise ValueError(f"{name} applies to layer1 {' and '.join(map(repr, layers))} only; "
                                 f"layer1={self.layer1!r} needs {name}={off!r}, got {getattr(self, name)!r}")
        if self.l2_winners > 1 and self.l2_winners >= self.N2:  # (N2=1 with the log's single winner)
            raise ValueError(f"l2_winners={self.l2_winners} must be smaller than N2={self.N2} (the layer-2 units "
                             "that keep their inputs in training)")
        if self.layer1 != "clusters" and self.wta != "own_units":
            raise ValueError(f"wta='full_row' (the log's quirk) applies to layer1='clusters' only; layer1={self.layer1!r} "
                             "competes among each position's own units (wta='own_units')")
        if self.layer1 == "krotov":
            check_positive_int("kh_epochs", self.kh_epochs)
            if self.kh_epochs >= self.Nep:
                raise ValueError(f"kh_epochs={self.kh_epochs} must be smaller than Nep={self.Nep}: the epochs "
                                 "after the first kh_epochs train the read-out")
            check_positive_int("kh_k", self.kh_k)
            if not 2 <= self.kh_k <= self.C_s:
                raise ValueError(f"kh_k must be in 2..C_s={self.C_s} (the rank of the anti-Hebbian unit), got {self.kh_k!r}")
            for name in ("kh_p", "kh_eps0", "kh_n"):
                check_positive_float(name, getattr(self, name))
            check_non_negative_float("kh_delta", self.kh_delta)
            check_non_negative_int("kh_top", self.kh_top)
            if self.kh_top > self.C_s:
                raise ValueError(f"kh_top={self.kh_top} must be at most C_s={self.C_s} (the code values kept per sample)")
        if self.pool > 1 and self.layout == "overlap":
            raise ValueError("pool > 1 needs a square grid of positions (layout 'block' or 'stride'), not 'overlap'")
        if self.engine == "tensorflow":
            if self.layout == "stride":
                raise ValueError("engine='tensorflow' computes the log's layouts 'block' and 'overlap' only")
            if self.vote != 1:
                raise ValueError(f"vote={self.vote!r} is not implemented by engine='tensorflow' (use engine='numpy')")
        elif self.jit_compile:
            raise ValueError(f"jit_compile applies to engine='tensorflow' only; engine={self.engine!r}")
        elif self.dtype != "float64" and self.layer1 != "krotov":
            raise ValueError(f"dtype applies to engine='tensorflow' and layer1='krotov' only; engine={self.engine!r} "
                             f"with layer1={self.layer1!r} is float64")

    def replace(self, **changes) -> "Config":
        """A copy with `changes`; wta returns to the layer's default when layer1 changes and wta is not given."""
        if "layer1" in changes and "wta" not in changes and changes["layer1"] != self.layer1:
            changes["wta"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def n_positions(self) -> int:
        """Patch positions of the layout (clusters of the log's model); 1 for krotov (the whole image)."""
        return 1 if self.layout is None else len(patch_origins(self.layout, self.stride))

    @property
    def N1(self) -> int:
        """Layer 2's input length: C_s per position (clusters), per pooled cell (shared, plus the
        pixel side channel's 196 values with pixels > 0), C_s (krotov)."""
        if self.layer1 == "shared":
            side = PIXEL_CHANNEL if self.pixels > 0 else 0
            return self.C_s * n_cells(self.layout, self.stride, self.pool) + side
        return self.C_s * self.n_positions

    @property
    def w1_shape(self) -> tuple[int, int]:
        """(784, N1) for clusters (every unit sees its own patch) and krotov; (81, C_s) for the shared bank."""
        return (PATCH * PATCH, self.C_s) if self.layer1 == "shared" else (SIDE * SIDE, self.N1)


# Validators: each raises a ValueError that names the parameter.
def check_choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_non_negative_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def check_non_negative_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def physical_memory() -> int:
    """Bytes of RAM of this machine."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def memory_estimate(config: Config) -> dict[str, int]:
    """Bytes the largest arrays of a run need, by what sizes them (float64; the weights, their
    copies and updates in the engine: about 4 copies of w1 and w2; the reference engine's dense
    B x 784 x N1 and B x N1 x N2 temporaries)."""
    N1, N2, B = config.N1, config.N2, config.B
    w1 = int(np.prod(config.w1_shape))
    out = {"w1 (C_s)": 4 * 8 * w1, "w2 (N1 x N2: C_s, N2)": 4 * 8 * N1 * N2,
           "layer-2 input (B x N2, test chunks of 2000 x N2)": 8 * max(B, 2000) * N2}
    if config.engine == "reference":
        out["reference temporaries (B x 784 x N1, B x N1 x N2)"] = 3 * 8 * B * (SIDE * SIDE * N1 + N1 * N2)
    return out


def check_memory(config: Config, available: int | None = None):
    """Refuse a config whose arrays would not fit in this machine's memory, naming what sizes them."""
    need = memory_estimate(config)
    total, available = sum(need.values()), physical_memory() if available is None else available
    if total > available:
        worst = max(need, key=need.get)
        raise ValueError(f"the arrays of this config need about {total / 2**30:.2f} GiB (largest: {worst}, "
                         f"{need[worst] / 2**30:.2f} GiB with C_s={config.C_s}, N2={config.N2}, B={config.B}, "
                         f"N1={config.N1}) but this machine has {available / 2**30:.2f} GiB")


def own_wta(layer1: str) -> str:
    """The winner-take-all a layer 1 has unless told: the log's ("full_row") for its clusters."""
    return "full_row" if layer1 == "clusters" else "own_units"


def non_default(config: dict) -> dict:
    """The entries of a config dict that differ from Config's defaults (unknown keys kept): a
    config recorded before a field existed and one with that field at its default (the same
    model) give the same dict."""
    defaults = dataclasses.asdict(Config())
    return {k: v for k, v in config.items() if k not in defaults or defaults[k] != v}


# fields that do not change the trained model (seed and data set are named per run)
NOT_IN_NAME = ("seed", "dataset", "engine", "jit_compile", "eval_every")
LAYER_WORDS = {"clusters": "log", "shared": "shared", "krotov": "krotov"}


def model_name(config: Config) -> str:
    """The model's name everywhere (studies, records, tables, figures, notebooks): its layer 1
    ("log" for the log's clusters), then every setting that differs from the log's, in Config's
    symbols and in the order layer 1, layer 2, training: "log block C_s=20 N2=200",
    "shared stride=1 C_s=128 pool 7x7 sum N2=2000 norm xi=0.05 8 epochs". Two configs that
    train different models have different names."""
    c, d = config, config.to_dict()
    defaults = dataclasses.asdict(Config()) | {"wta": own_wta(c.layer1)}
    parts = [LAYER_WORDS[c.layer1]]
    if c.layout is not None:
        parts.append(f"stride={c.stride}" if c.layout == "stride" else c.layout)
    parts.append(f"C_s={c.C_s}")
    if c.pool > 1:
        parts.append(f"pool {c.pool}x{c.pool} {c.pool_mode}")
    layer2 = ["norm", "unit_norm", "label_gain", "l2_winners", "vote"]
    training = ["shift", "shuffle", "xi", "xi_decay", "T_s", "B", "prec", "dtype"]
    shown = {"layer1", "layout", "stride", "C_s", "pool", "N2", "Nep", *NOT_IN_NAME, *layer2, *training}
    layer1 = [k for k in d if k not in shown]  # pool_mode, code, patch_norm, pixels, wta, kh_*

    def words(keys):
        return [k if isinstance(d[k], bool) else str(d[k]) if k in ("code", "dtype", "pool_mode") else f"{k}={d[k]}"
                for k in keys if d[k] != defaults[k] and not (k == "pool_mode" and c.pool > 1)]

    parts += words(layer1) + [f"N2={c.N2}"] + words(layer2) + words(training)
    if c.Nep != defaults["Nep"]:
        parts.append(f"{c.Nep} epochs")
    return " ".join(parts)


def file_stem(name: str) -> str:
    """A model's name as a file name: blanks become "_" ("log_block_C_s=20_N2=200")."""
    return "_".join(name.split())
