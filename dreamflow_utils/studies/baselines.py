"""Simple baselines on the same data and split as DreamFlow (MNIST: 60000 train / 10000 test).

- :func:`linear_pixels`   ridge (closed form) or logistic regression on the raw pixels;
- :func:`knn`             k-nearest neighbours (Euclidean, brute force, majority vote);
- :func:`kmeans_prototypes` k-means with N2 prototypes on the pixels, each prototype
  labelled with the majority class of its training samples, a test image takes the label of
  its nearest prototype: the non-Hebbian analogue of DreamFlow's layer-2 winner-take-all.

Each returns ``(test_accuracy, seconds)``.
"""
from __future__ import annotations

import time

import numpy as np

from .probes import PROBES

__all__ = ["linear_pixels", "knn", "kmeans_prototypes", "nearest_prototype_labels"]


def linear_pixels(data, method: str = "ridge", **kw) -> tuple[float, float]:
    (x, y), (tx, ty) = data
    t = time.perf_counter()
    acc = PROBES[method](x, y, tx, ty, **kw)
    return acc, time.perf_counter() - t


def knn(data, k: int = 3, chunk: int = 500) -> tuple[float, float]:
    (x, y), (tx, ty) = data
    t = time.perf_counter()
    x32, tx32 = np.asarray(x, np.float32), np.asarray(tx, np.float32)
    sq = (x32 ** 2).sum(axis=1)
    y = np.asarray(y)
    pred = np.empty(len(tx32), dtype=np.int64)
    for s in range(0, len(tx32), chunk):
        d = sq[None, :] - 2 * tx32[s:s + chunk] @ x32.T  # |t|^2 dropped: same for every train row
        nn = np.argpartition(d, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(nn), 10))
        np.add.at(votes, (np.repeat(np.arange(len(nn)), k), y[nn].ravel()), 1)
        # ties: the nearest neighbour's class wins
        first = y[nn[np.arange(len(nn)), np.take_along_axis(d, nn, 1).argmin(axis=1)]]
        votes[np.arange(len(nn)), first] += 0.5
        pred[s:s + chunk] = votes.argmax(axis=1)
    return float(np.mean(pred == np.asarray(ty))), time.perf_counter() - t


def nearest_prototype_labels(centers, x, y, n_classes: int = 10) -> np.ndarray:
    """Majority training label of each prototype (prototypes that win nothing get class 0)."""
    assign = _nearest(centers, x)
    counts = np.zeros((len(centers), n_classes))
    np.add.at(counts, (assign, np.asarray(y)), 1)
    return counts.argmax(axis=1)


def _nearest(centers, x, chunk: int = 5000):
    c = np.asarray(centers, np.float32)
    csq = (c ** 2).sum(axis=1)
    out = []
    for s in range(0, len(x), chunk):
        out.append((csq[None, :] - 2 * np.asarray(x[s:s + chunk], np.float32) @ c.T).argmin(axis=1))
    return np.concatenate(out)


def kmeans_prototypes(data, n_prototypes: int = 100, seed: int = 0, features=None) -> tuple[float, float]:
    """k-means (scikit-learn MiniBatchKMeans, batch 4096, k-means++ init, at most 5 passes over the data) on pixels (or on
    ``features(x)`` if given), prototypes labelled by majority vote."""
    from sklearn.cluster import MiniBatchKMeans

    (x, y), (tx, ty) = data
    t = time.perf_counter()
    if features is not None:
        x, tx = features(x), features(tx)
    km = MiniBatchKMeans(n_clusters=n_prototypes, batch_size=4096, n_init=1, max_iter=5,
                         random_state=seed).fit(x)
    labels = nearest_prototype_labels(km.cluster_centers_, x, y)
    pred = labels[_nearest(km.cluster_centers_, tx)]
    return float(np.mean(pred == np.asarray(ty))), time.perf_counter() - t


def run(spec: dict, data, seed: int = 0) -> tuple[float, float]:
    """The baseline `spec` on `data`: {"method": "ridge" | "logistic"} (on pixels), {"method": "knn", "k": 3}
    or {"method": "kmeans", "n": N2}; returns (test_accuracy, seconds)."""
    method = spec["method"]
    if method in ("ridge", "logistic"):
        return linear_pixels(data, method)
    if method == "knn":
        return knn(data, k=spec.get("k", 3))
    if method == "kmeans":
        return kmeans_prototypes(data, spec["n"], seed=seed)
    raise ValueError(f"unknown baseline method {method!r}")
