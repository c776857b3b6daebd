"""Engines: one interface (`base.Engine`), a registry, `make_engine`.

Registered: for layer1="clusters" the literal `reference`, the compiled `numpy` engine and
`tensorflow`; for layer1="shared" its literal `reference` and compiled `numpy` engine; for the
peer layer1="krotov" one numpy engine (Krotov & Hopfield's rule, written as their notebook).
Nothing outside this package reaches into an engine: use the interface (and `threads`' run_threads,
share_cores, machine_load for the threads a run computes on).
"""
from __future__ import annotations

from importlib import import_module

from ..core.config import SUPPORTED, Config
from ..core.model import Weights, init_weights
from .base import Engine, predict_vote
from .threads import load as machine_load
from .threads import prepare as _prepare_threads
from .threads import run_threads, share_cores

# (engine, layer1) -> "module:class"
REGISTRY = {
    ("reference", "clusters"): "reference:ReferenceEngine",
    ("numpy", "clusters"): "numpy_engine:NumpyEngine",
    ("tensorflow", "clusters"): "tensorflow_engine:TensorFlowEngine",
    ("reference", "shared"): "shared_reference:SharedReference",
    ("numpy", "shared"): "shared_engine:SharedEngine",
    ("numpy", "krotov"): "krotov_engine:KrotovEngine",
}
assert set(REGISTRY) == SUPPORTED  # Config validates against the same table

__all__ = ["Engine", "REGISTRY", "make_engine", "engine_class", "predict_vote", "run_threads", "share_cores",
           "machine_load"]


def engine_class(config: Config) -> type:
    module, name = REGISTRY[(config.engine, config.layer1)].split(":")
    return getattr(import_module(f"{__name__}.{module}"), name)


def make_engine(config: Config, weights: Weights | None = None, **options) -> Engine:
    """The engine `config` asks for, holding a copy of `weights` (default: the seeded initial
    weights), which every engine checks (`model.check_weights`); `options` go to its constructor."""
    weights = init_weights(config) if weights is None else weights
    _prepare_threads()  # before numba starts its threads
    return engine_class(config)(config, weights, **options)
