"""Linear probes: how much class information do a model's codes carry?

Codes come from an engine (`engines.base`: ``engine.codes(x, kind)``): "value" (layer 2's
input), "onehot" (the winners as 1) and, for layer1="clusters", "dense" (every unit's output
before the winner-take-all). Probes are read-outs fitted in closed form or by gradient, so
they are reported as probes, never as the model's own accuracy.

:func:`ridge_probe` is ridge regression on one-hot class targets, solved in closed form on
standardised features (``(X'X + alpha I) W = X'Y``), predicting the argmax; it takes a
second or two for N1 <= 1000 on 60000 samples and never fails to converge.
:func:`logistic_probe` (scikit-learn lbfgs, multinomial) is slower and stronger.
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["PROBES", "ridge_probe", "logistic_probe", "probe_accuracy"]


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
    acc = PROBES[method](ftr, y, fte, ty, **kw)
    return acc, time.perf_counter() - t


PROBES = {"ridge": ridge_probe, "logistic": logistic_probe}
