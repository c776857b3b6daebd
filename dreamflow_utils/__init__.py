"""DreamFlow Local: a faithful, fast implementation of the 2020 research log, and where it leads."""
import os

__version__ = "0.2.0"

# The compiled engines' parallel loops run on GNU OpenMP, whose default spin-waiting made one
# epoch 18x slower (218 s vs 12 s, 2 numba threads) while other processes kept the cores busy (a
# batch's other worker, a test run). Waiting passively unless the user chose otherwise; set
# before numba loads its OpenMP pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import Config
from .data import load_dataset, load_fashion_mnist, load_mnist
from .model import Weights, init_weights, load_weights, save_weights
from .train import TrainingDiverged, TrainResult, evaluate, train

__all__ = ["Config", "load_mnist", "load_fashion_mnist", "load_dataset", "train", "evaluate", "TrainResult",
           "TrainingDiverged", "Weights", "init_weights", "save_weights", "load_weights"]
