"""Training: epochs over the first T_s samples in the log's order, a callback per epoch,
and a result that records everything needed to repeat the run."""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .data import validate_data
from .engines import make_engine
from .files import atomic_write
from .model import Weights, init_weights, save_weights

Callback = Callable[[int, Weights, float], None]


@dataclass
class TrainResult:
    config: Config
    weights: Weights
    test_accuracy: float  # after the last epoch, in [0, 1]
    epoch_accuracies: list[float]  # test accuracy after each epoch
    epoch_seconds: list[float]  # training time of each epoch (evaluation excluded)
    seconds: float  # wall time of the whole run, evaluations included
    predictions: np.ndarray = field(repr=False)  # final test predictions
    started: str = ""

    def record(self) -> dict:
        """Everything about the run except the weights, JSON-ready."""
        return {"config": self.config.to_dict(), "seed": self.config.seed,
                "test_accuracy": self.test_accuracy, "epoch_accuracies": self.epoch_accuracies,
                "epoch_seconds": self.epoch_seconds, "seconds": self.seconds,
                "started": self.started, "versions": versions(self.config.engine)}

    def save_record(self, path) -> Path:
        return write_json_atomic(path, self.record())

    def save_weights(self, path) -> Path:
        return save_weights(path, self.weights, self.config)


def train(config: Config, data, callback: Callback | None = None, progress: bool = False,
          weights: Weights | None = None) -> TrainResult:
    """Train on `data` = ((train_x, train_y), (test_x, test_y)) as `load_mnist` returns it.

    `callback(epoch, weights, test_accuracy)` runs after each epoch (epoch = 1..Nep);
    `progress` shows a tqdm bar over batches; `weights` replaces the seeded initial ones.
    """
    (train_x, train_y), (test_x, test_y) = validate_data(data)
    if config.T_s > len(train_x):
        raise ValueError(f"T_s={config.T_s} exceeds the {len(train_x)} training samples available")
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    engine = make_engine(config, weights if weights is not None else init_weights(config))
    x, y = train_x[:config.T_s], train_y[:config.T_s]
    n_batches = config.T_s // config.B
    chunk = max(1, n_batches // 20) if progress else n_batches
    accuracies, epoch_seconds = [], []
    for epoch in range(1, config.Nep + 1):
        bar = _progress_bar(n_batches, f"epoch {epoch}/{config.Nep}") if progress else None
        t = time.perf_counter()
        for start in range(0, n_batches, chunk):
            stop = min(start + chunk, n_batches)
            engine.train_batches(x[start * config.B:stop * config.B], y[start * config.B:stop * config.B])
            if bar is not None:
                bar.update(stop - start)
        epoch_seconds.append(time.perf_counter() - t)
        predictions = engine.predict(test_x)
        accuracies.append(float(np.mean(predictions == test_y)))
        if bar is not None:
            bar.set_postfix(test_accuracy=f"{100 * accuracies[-1]:.2f}%")
            bar.close()
        if callback is not None:
            callback(epoch, engine.weights(), accuracies[-1])
    return TrainResult(config, engine.weights(), accuracies[-1], accuracies, epoch_seconds,
                       time.perf_counter() - t0, predictions, started)


def evaluate(config: Config, weights: Weights, x, y) -> float:
    """Test accuracy of `weights` on (x, y), predicting as the log's `dream_classifier`."""
    return float(np.mean(make_engine(config, weights).predict(x) == y))


def _progress_bar(total, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True)


def versions(engine: str = "numpy") -> dict:
    from . import __version__
    out = {"dreamflow_utils": __version__, "python": platform.python_version(),
           "numpy": np.__version__, "platform": platform.platform()}
    if engine == "tensorflow":
        import tensorflow as tf
        out["tensorflow"] = tf.__version__
    return out


def write_json_atomic(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=1))
