"""DreamFlow Local: a faithful, fast implementation of the 2020 research log, and where it leads."""
from .core import __version__  # noqa: F401 (the one version number; pyproject.toml reads it in core)
from .core.config import Config, model_name
from .core.data import load_dataset, load_fashion_mnist, load_mnist
from .core.model import Weights, init_weights, load_weights, save_weights
from .core.train import TrainingDiverged, TrainResult, evaluate, train
from .engines import make_engine

__all__ = ["Config", "load_mnist", "load_fashion_mnist", "load_dataset", "train", "evaluate", "TrainResult",
           "TrainingDiverged", "Weights", "init_weights", "save_weights", "load_weights", "make_engine",
           "model_name"]
