"""DreamFlow Local: a faithful, fast implementation of the 2020 research log."""
__version__ = "0.1.0"

from .config import Config
from .data import load_mnist
from .model import Weights, init_weights, load_weights, save_weights
from .train import TrainResult, evaluate, train

__all__ = ["Config", "load_mnist", "train", "evaluate", "TrainResult", "Weights",
           "init_weights", "save_weights", "load_weights"]
