"""DreamFlow Local: a faithful, fast implementation of the 2020 research log, and where it leads."""
__version__ = "0.2.0"

from .config import Config
from .data import load_dataset, load_fashion_mnist, load_mnist
from .engines import make_engine
from .model import Weights, init_weights, load_weights, save_weights
from .train import TrainingDiverged, TrainResult, evaluate, train

__all__ = ["Config", "load_mnist", "load_fashion_mnist", "load_dataset", "train", "evaluate", "TrainResult",
           "TrainingDiverged", "Weights", "init_weights", "save_weights", "load_weights", "make_engine"]
