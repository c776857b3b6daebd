"""Engines: one interface, `Engine(config, weights)` with `train_batches(x, y)`
(consecutive batches of B samples, in order), `predict(x)` and `weights()`."""
from __future__ import annotations

from ..config import Config
from ..model import Weights


def make_engine(config: Config, weights: Weights):
    if config.engine == "reference":
        from .reference import ReferenceEngine as Engine
    elif config.engine == "numpy":
        from .numpy_engine import NumpyEngine as Engine
    else:
        from .tensorflow_engine import TensorFlowEngine as Engine
    return Engine(config, weights)
