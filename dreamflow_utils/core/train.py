"""The one training loop: every model trains here. Epochs over the first T_s samples in
order, epoch hooks (shifted inputs, an xi schedule), a finite-weights check and a callback
per epoch, and a result that records everything needed to repeat the run."""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .data import load_dataset, validate_data, validate_split
from ..engines import make_engine, run_threads, machine_load
from .files import atomic_write
from .geometry import shift_images
from .model import Weights, check_weights, init_weights, save_weights

Callback = Callable[[int, Weights, float], None]


class StopTraining(Exception):
    """Raised by a `train` callback to end the run after the epoch it was called for: `train`
    returns the result of the epochs done, as if `Nep` had been that epoch."""


class TrainingDiverged(RuntimeError):
    """The weights stopped being finite. `weights` holds the last finite ones (after epoch
    `epoch - 1`; the initial weights for epoch 1)."""

    def __init__(self, message: str, epoch: int, weights: Weights):
        super().__init__(message)
        self.epoch, self.weights = epoch, weights


@dataclass
class TrainResult:
    config: Config
    weights: Weights
    test_accuracy: float  # after the last epoch, in [0, 1]
    epoch_accuracies: list[float | None]  # test accuracy after each epoch (None: not measured, see eval_every)
    epoch_seconds: list[float]  # training time of each epoch (evaluation excluded)
    seconds: float  # wall time of the whole run, evaluations included
    predictions: np.ndarray = field(repr=False)  # final test predictions
    started: str = ""
    load: dict = field(default_factory=dict)  # what the machine was doing at the start (`engines.machine_load`)
    threads: dict = field(default_factory=dict)  # numba threads per epoch (as used), BLAS threads

    def record(self) -> dict:
        """Everything about the run except the weights, JSON-ready."""
        return {"config": self.config.to_dict(), "seed": self.config.seed, "dataset": self.config.dataset,
                "test_accuracy": self.test_accuracy, "epoch_accuracies": self.epoch_accuracies,
                "epoch_seconds": self.epoch_seconds, "seconds": self.seconds, "started": self.started,
                "load": self.load, "threads": self.threads, "versions": versions(self.config.engine)}

    def save_record(self, path) -> Path:
        return write_json_atomic(path, self.record())

    def save_weights(self, path) -> Path:
        return save_weights(path, self.weights, self.config)


def train(config: Config, data=None, callback: Callback | None = None, progress: bool = False,
          weights: Weights | None = None) -> TrainResult:
    """Train `config` on `data` = ((train_x, train_y), (test_x, test_y)) (default: the data set
    `config.dataset` from its default location, see `data.load_dataset`).

    Each epoch trains on the first T_s samples in order (`config.shuffle`: in a fresh random
    order drawn from seed + 2; `config.shift`: on a copy moved by a fresh random shift of up to
    `shift` pixels per image, drawn from seed + 1), then xi is multiplied by
    `config.xi_decay`, the weights are checked to be finite (else `TrainingDiverged`) and the
    test accuracy is measured (every `eval_every`-th epoch and after the last). `callback(epoch, weights,
    test_accuracy)` runs after each epoch (epoch = 1..Nep); if it raises `StopTraining`, the run
    ends there and the result is that of the epochs done (config with Nep = that epoch, the test
    accuracy measured if it was not); `progress` shows a tqdm bar over batches; `weights` replaces
    the seeded initial ones.
    """
    (train_x, train_y), (test_x, test_y) = validate_data(load_dataset(config.dataset) if data is None else data)
    if config.T_s > len(train_x):
        raise ValueError(f"T_s={config.T_s} exceeds the {len(train_x)} training samples available")
    initial = init_weights(config) if weights is None else check_weights(config, weights, "initial weights")
    with run_threads() as threads:
        return _train(config, train_x, train_y, test_x, test_y, callback, progress, weights is not None, initial,
                      threads)


def _train(config, train_x, train_y, test_x, test_y, callback, progress, given, initial, threads) -> TrainResult:
    load = machine_load()
    started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    engine = make_engine(config, initial)
    x, y = train_x[:config.T_s], train_y[:config.T_s]
    shifts, orders = np.random.default_rng(config.seed + 1), np.random.default_rng(config.seed + 2)
    n_batches = config.T_s // config.B
    chunk = max(1, n_batches // 20) if progress else n_batches
    accuracies, epoch_seconds, xi, last_finite = [], [], config.xi, initial
    for epoch in range(1, config.Nep + 1):
        threads.adapt()
        bar = _progress_bar(n_batches, f"epoch {epoch}/{config.Nep}") if progress else None
        t = time.perf_counter()
        xe, ye = x, y
        if config.shuffle:
            order = orders.permutation(config.T_s)
            xe, ye = x[order], y[order]
        if config.shift:
            xe = shift_images(xe, config.shift, shifts)
        for start in range(0, n_batches, chunk):
            stop = min(start + chunk, n_batches)
            engine.train_batches(xe[start * config.B:stop * config.B], ye[start * config.B:stop * config.B])
            if bar is not None:
                bar.update(stop - start)
        if config.xi_decay != 1:
            xi *= config.xi_decay
            engine.set_xi(xi)
        epoch_seconds.append(time.perf_counter() - t)
        current = engine.weights()
        _check_finite(current, epoch, last_finite, config, given)
        last_finite = current
        if epoch % config.eval_every == 0 or epoch == config.Nep:
            predictions = engine.predict(test_x)
            accuracies.append(float(np.mean(predictions == test_y)))
        else:
            accuracies.append(None)
        if bar is not None:
            if accuracies[-1] is not None:
                bar.set_postfix(test_accuracy=f"{100 * accuracies[-1]:.2f}%")
            bar.close()
        if callback is not None:
            try:
                callback(epoch, current, accuracies[-1])
            except StopTraining as stop:
                if epoch < config.Nep:
                    try:
                        config = config.replace(Nep=epoch)
                    except ValueError as e:  # no model of this length (krotov: within its layer-1 epochs)
                        raise StopTraining(f"stopped after epoch {epoch}, which leaves no result: {e}") from stop
                    if accuracies[-1] is None:
                        predictions = engine.predict(test_x)
                        accuracies[-1] = float(np.mean(predictions == test_y))
                break
    return TrainResult(config, last_finite, accuracies[-1], accuracies, epoch_seconds,
                       time.perf_counter() - t0, predictions, started, load, threads.record())


def _check_finite(weights: Weights, epoch: int, last_finite: Weights, config: Config, given: bool):
    bad = [name for name, w in zip(("w1", "w2", "w3"), weights) if not np.isfinite(w).all()]
    if bad:
        source = "the given initial weights" if given else "the seeded initial weights"
        raise TrainingDiverged(
            f"the weights became non-finite (NaN or inf in {', '.join(bad)}) during epoch {epoch}: the step "
            f"size xi={config.xi!r} is too large for float arithmetic (or {source} are extreme); the error's "
            f".weights hold the last finite weights (after epoch {epoch - 1})", epoch, last_finite)


def evaluate(config: Config, weights: Weights, x, y) -> float:
    """Test accuracy of `weights` on (x, y) (checked as `train` checks its data), with the model's read-out."""
    x, y = validate_split(x, y, "test")
    with run_threads():
        return float(np.mean(make_engine(config, weights).predict(x) == y))


def _progress_bar(total, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="batch", leave=True)


def versions(engine: str = "numpy") -> dict:
    """The versions a record's numbers depend on: this package and its code commit, Python, numpy,
    numba, the BLAS library (its build and the CPU kernel it chose), the platform (and TensorFlow)."""
    import numba

    from . import __version__
    out = {"dreamflow_utils": __version__, "commit": code_commit(), "python": platform.python_version(),
           "numpy": np.__version__, "numba": numba.__version__, "blas": _blas(), "platform": platform.platform()}
    if engine == "tensorflow":
        import tensorflow as tf
        out["tensorflow"] = tf.__version__
    return out


@lru_cache(maxsize=1)
def _blas() -> str:
    from threadpoolctl import threadpool_info
    return ", ".join(sorted({f"{i['internal_api']} {i.get('version', '')} ({i.get('architecture', '?')})"
                             for i in threadpool_info() if i["user_api"] == "blas"})) or "unknown"


@lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of this package's code ("<sha>+changes" when its files differ from it), or None
    outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parents[1]  # the package folder
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() + ("+changes" if dirty else "")


def write_json_atomic(path, obj) -> Path:
    return atomic_write(path, json.dumps(obj, indent=1))
