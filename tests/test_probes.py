import numpy as np
import pytest

from dreamflow_utils.studies import baselines
from dreamflow_utils.studies.baselines import kmeans_prototypes, knn, linear_pixels, nearest_prototype_labels
from dreamflow_utils.studies.probes import logistic_probe, probe_accuracy, ridge_probe


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


class CodesAreInputs:
    """An engine stand-in whose codes (of every kind) are its inputs."""

    def codes(self, x, kind="value"):
        return np.asarray(x, np.float64)


def _shuffled_and_flipped():
    """Separable train and test sets; the training labels shuffled, and a test set whose labels are a
    fixed relabelling of the classes: a probe fitted on the training codes can score neither, a probe
    fitted on the test codes scores both."""
    x, y = _separable()
    tx, ty = _separable(seed=1)
    shuffled = np.random.default_rng(2).permutation(y)
    return (x, y, shuffled), (tx, ty, (ty + 1) % 10)


def test_probes_are_fitted_on_the_training_codes_only():
    (x, y, shuffled), (tx, ty, relabelled) = _shuffled_and_flipped()
    assert ridge_probe(x, y, tx, ty) == 1.0  # fitted on train, right on a test set it never saw
    assert ridge_probe(x, shuffled, tx, ty) < 0.25  # shuffled training labels: chance (10%)
    assert ridge_probe(x, y, tx, relabelled) == 0.0  # the training set's classes, not the test set's
    assert probe_accuracy(lambda a: a, ((x, shuffled), (tx, ty)))[0] < 0.25
    assert probe_accuracy(lambda a: a, ((x, y), (tx, relabelled)))[0] == 0.0
    assert logistic_probe(x, shuffled, tx, ty, max_iter=50) < 0.25
    assert logistic_probe(x, y, tx, relabelled, max_iter=50) == 0.0


def test_the_studies_probes_learn_from_the_training_split(monkeypatch):
    """measures.probes / logistic and studies.measure fit on data's training half and score its test half."""
    import dreamflow_utils.engines as engines
    from dreamflow_utils import Config
    from dreamflow_utils.studies import measure, measures, model

    (x, y, shuffled), (tx, ty, relabelled) = _shuffled_and_flipped()
    engine = CodesAreInputs()
    for train, test, right in (((x, y), (tx, ty), True), ((x, shuffled), (tx, ty), False),
                               ((x, y), (tx, relabelled), False)):
        out = measures.probes(engine, train, test)
        assert out["probe_value"] == out["probe_onehot"]
        assert (out["probe_value"] == 1.0) if right else (out["probe_value"] < 0.25), out
        acc = measures.logistic(engine, train, test)["probe_logistic"]
        assert (acc == 1.0) if right else (acc < 0.25), acc
    monkeypatch.setattr(engines, "make_engine", lambda config, weights: engine)
    variant = model(Config(layer1="shared", layout="block"), measures=("probes", "logistic"))
    out = measure(variant, variant.config, None, ((x, shuffled), (tx, ty)))
    assert out["probe_value"] < 0.25 and out["probe_logistic"] < 0.25
    out = measure(variant, variant.config, None, ((x, y), (tx, ty)))
    assert out["probe_value"] == out["probe_logistic"] == 1.0
