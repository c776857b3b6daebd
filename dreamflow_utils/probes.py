"""Linear probes: how much class information do DreamFlow's layer-1 codes carry?

Codes (all local: each is computed from one cluster's units and its own patch):

``"value"``   the layer-1 output vector ``l1`` (N1 values) exactly as the engine computes
              it: each cluster's winner keeps its output, every other unit is 0 (for the
              faithful ``wta="log"`` the log's quirk is included).
``"onehot"``  the same winners as 1, everything else 0 (which detector fired where).
``"dense"``   every unit's output before the winner-take-all (N1 values of ``patch @ w``).

Read-out: :func:`ridge_probe` is ridge regression on one-hot class targets, solved in
closed form on standardised features (``(X'X + alpha I) W = X'Y``), predicting the
argmax.  It takes a second or two for N1 <= 1000 on 60000 samples and never fails to
converge, so it is the probe used throughout.  :func:`logistic_probe` (scikit-learn
lbfgs, multinomial) is slower and slightly stronger; it is used for the pixel baseline.
"""
from __future__ import annotations

import time

import numpy as np

from .config import Config
from .model import Weights

CODES = ("value", "onehot", "dense")

__all__ = ["CODES", "layer1_codes", "ridge_probe", "logistic_probe", "probe_accuracy"]


def layer1_codes(config: Config, weights: Weights, x, kind: str = "value", chunk: int = 5000) -> np.ndarray:
    """Layer-1 codes of the faithful (unshared) model for inputs ``x`` (n, 784): shape (n, N1).

    ``kind`` is one of :data:`CODES` (see the module docstring)."""
    from .engines.numpy_engine import NumpyEngine

    if kind not in CODES:
        raise ValueError(f"kind must be one of {CODES}, got {kind!r}")
    engine = NumpyEngine(config.replace(engine="numpy"), weights)
    K, C = config.n_clusters, config.C_s
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros((len(x), config.N1))
    for s in range(0, len(x), chunk):
        v = x[s:s + chunk]
        n = len(v)
        if kind == "dense":
            patches = v[:, engine.idx].transpose(1, 0, 2)
            a = np.matmul(patches, engine.W1.reshape(K, C, -1).transpose(0, 2, 1))  # (K, n, C)
            out[s:s + n] = a.transpose(1, 0, 2).reshape(n, K * C)
            continue
        unit, val = engine._layer1(v)
        rows = np.broadcast_to(np.arange(n), unit.shape)
        if kind == "value":
            np.add.at(out[s:s + n], (rows.ravel(), unit.ravel()), val.ravel())
        else:
            out[s + rows.ravel(), unit.ravel()] = 1.0
    return out


def _standardize(train, test):
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd[sd < 1e-12] = 1.0
    return (train - mu) / sd, (test - mu) / sd


def ridge_probe(train_x, train_y, test_x, test_y, alpha: float = 1e-3, n_classes: int = 10) -> float:
    """Test accuracy of ridge regression on one-hot targets (closed form, standardised features).

    The penalty is ``alpha * n_train`` (features have unit variance, so ``alpha`` is relative)."""
    xtr, xte = _standardize(np.asarray(train_x, np.float64), np.asarray(test_x, np.float64))
    xtr = np.hstack([xtr, np.ones((len(xtr), 1))])
    xte = np.hstack([xte, np.ones((len(xte), 1))])
    Y = np.eye(n_classes)[np.asarray(train_y)]
    G = xtr.T @ xtr
    G[np.diag_indices_from(G)] += alpha * len(xtr)
    W = np.linalg.solve(G, xtr.T @ Y)
    return float(np.mean((xte @ W).argmax(axis=1) == np.asarray(test_y)))


def logistic_probe(train_x, train_y, test_x, test_y, C: float = 1.0, max_iter: int = 200) -> float:
    """Test accuracy of multinomial logistic regression (scikit-learn, lbfgs) on standardised features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    xtr, xte = _standardize(np.asarray(train_x, np.float64), np.asarray(test_x, np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=C, max_iter=max_iter).fit(xtr, train_y)
    return float(np.mean(clf.predict(xte) == np.asarray(test_y)))


def probe_accuracy(codes_fn, data, method: str = "ridge", **kw) -> tuple[float, float]:
    """Probe accuracy of features ``codes_fn(x)`` on ``data``; returns (accuracy, seconds)."""
    (x, y), (tx, ty) = data
    t = time.perf_counter()
    ftr, fte = codes_fn(x), codes_fn(tx)
    fn = ridge_probe if method == "ridge" else logistic_probe
    acc = fn(ftr, y, fte, ty, **kw)
    return acc, time.perf_counter() - t
