import numpy as np
import pytest

from dreamflow_utils import baselines
from dreamflow_utils.baselines import kmeans_prototypes, knn, linear_pixels, nearest_prototype_labels
from dreamflow_utils.probes import logistic_probe, probe_accuracy, ridge_probe


def _separable(n=300, d=20, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.normal(0, 0.1, (n, d))
    x[np.arange(n), y] += 3
    return x, y


def test_ridge_and_logistic_probes_separate_separable_data():
    x, y = _separable()
    tx, ty = _separable(seed=1)
    assert ridge_probe(x, y, tx, ty) == 1.0
    assert logistic_probe(x, y, tx, ty, max_iter=50) == 1.0
    acc, sec = probe_accuracy(lambda a: a, ((x, y), (tx, ty)))
    assert acc == 1.0 and sec >= 0
    # constant features do not break the standardisation
    assert ridge_probe(np.hstack([x, np.ones((300, 1))]), y, np.hstack([tx, np.ones((300, 1))]), ty) == 1.0


def test_baselines_run_and_beat_chance_on_separable_images():
    x, y = _separable(n=400, d=784)
    tx, ty = _separable(n=100, d=784, seed=1)
    x, tx = np.abs(x) / 4, np.abs(tx) / 4
    data = ((x, y), (tx, ty))
    assert linear_pixels(data)[0] > 0.9
    assert knn(data, k=3, chunk=37)[0] == 1.0
    acc, sec = kmeans_prototypes(data, 20, seed=0)
    assert acc > 0.5 and sec > 0
    assert baselines.run({"method": "kmeans", "n": 20}, data, seed=0)[0] == acc
    with pytest.raises(ValueError, match="svm"):
        baselines.run({"method": "svm"}, data)


def test_nearest_prototype_labels():
    centers = np.array([[0.0, 0.0], [10.0, 10.0]])
    x = np.array([[0.1, 0.0], [9.0, 9.5], [10.0, 9.0]])
    assert list(nearest_prototype_labels(centers, x, np.array([3, 7, 7]))) == [3, 7]
