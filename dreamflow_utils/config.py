"""The log's parameters, validated on construction."""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

LAYOUTS = ("block", "overlap")
ENGINES = ("numpy", "reference", "tensorflow")
WTA_MODES = ("log", "cluster")
DTYPES = ("float64", "float32")


class Params:
    """replace() and to_dict() for the frozen parameter dataclasses (`Config`, `shared.SharedConfig`)."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Config(Params):
    """One DreamFlow Local run; names and defaults are the log's.

    layout  "block" (3x3 grid of 9x9 patches, 9 clusters) or "overlap" (those 9 plus
            4 patches offset by 4 pixels, 13 clusters; the log's first experiment).
    C_s     neurons per layer-1 cluster.      N2   neurons in layer 2.
    T_s     training samples used per epoch.  Nep  epochs.   B  batch size.
    xi      max |dW| per update.              prec smallest prediction that divides.
    seed    seeds the generator that draws the initial weights.
    engine  "numpy" (fast, default), "reference" (the log's dense math, the test oracle)
            or "tensorflow".
    wta     "log" (default) reproduces the log's cluster winner-take-all, quirk included:
            a cluster whose units all output <= 0 (a blank patch) switches on unit 0 of
            cluster 0 (unit C_s for cluster 0 itself when its outputs are all negative),
            because the log takes argmax over the masked full-width row.
            "cluster" takes the argmax inside the cluster's own units instead.
    dtype   float type of the tensorflow engine ("float64" or "float32"); the numpy
            and reference engines compute in float64 only.
    jit_compile  compile the tensorflow engine with XLA.
    """

    layout: str = "overlap"
    C_s: int = 10
    N2: int = 100
    T_s: int = 60000
    Nep: int = 10
    B: int = 100
    xi: float = 0.01
    prec: float = 1e-20
    seed: int = 0
    engine: str = "numpy"
    wta: str = "log"
    dtype: str = "float64"
    jit_compile: bool = False

    def __post_init__(self):
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("engine", self.engine, ENGINES)
        check_choice("wta", self.wta, WTA_MODES)
        check_choice("dtype", self.dtype, DTYPES)
        for name in ("C_s", "N2", "T_s", "Nep", "B"):
            check_positive_int(name, getattr(self, name))
        check_non_negative_int("seed", self.seed)
        if self.B > self.T_s:
            raise ValueError(f"B (batch size {self.B}) must not exceed T_s (training samples {self.T_s})")
        check_positive_float("xi", self.xi)
        check_positive_float("prec", self.prec)
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"jit_compile must be True or False, got {self.jit_compile!r}")
        if self.engine != "tensorflow" and (self.dtype != "float64" or self.jit_compile):
            raise ValueError(f"dtype/jit_compile apply to engine='tensorflow' only; engine={self.engine!r} is float64")

    @property
    def n_clusters(self) -> int:
        return 9 if self.layout == "block" else 13

    @property
    def N1(self) -> int:
        return self.C_s * self.n_clusters


# Validators: each raises a ValueError that names the parameter.
def check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_non_negative_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
