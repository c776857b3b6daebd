"""Tests for dreamflow_utils.plots (Agg, headless, fast)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from dreamflow_utils import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_w1(K: int, C_s: int, seed: int = 0) -> np.ndarray:
    """Random layer-1 weights with the model's structure: one 9x9 patch per unit."""
    rng = np.random.default_rng(seed)
    w1 = np.zeros((784, K * C_s))
    for u in range(K * C_s):
        tile = np.zeros((28, 28))
        y, x = rng.integers(0, 28 - 9 + 1, size=2)
        tile[y:y + 9, x:x + 9] = rng.uniform(0, 1, (9, 9))
        w1[:, u] = tile.ravel()
    w1[0, 0] = -0.01  # weights may contain small negative values
    return w1


@pytest.fixture
def weights():
    K, C_s, N2 = 9, 4, 12
    rng = np.random.default_rng(1)
    w1 = make_w1(K, C_s)
    w2 = rng.uniform(0, 1, (K * C_s, N2))
    w3 = rng.uniform(0, 1, (10, N2))
    return K, C_s, w1, w2, w3


@pytest.mark.parametrize("K,C_s", [(9, 3), (13, 2), (9, 1)])
def test_tapestry_tile_placement(K, C_s):
    w1 = make_w1(K, C_s, seed=K * C_s)
    t = plots.tapestry(w1, C_s)
    assert t.shape == (28 * K, 28 * C_s)
    for u in range(K * C_s):
        k, c = divmod(u, C_s)
        tile = t[28 * k:28 * (k + 1), 28 * c:28 * (c + 1)]
        np.testing.assert_array_equal(tile, w1[:, u].reshape(28, 28))


def test_tapestry_matches_log_draw_weights():
    # The log: draw_weights(w1.T, C_s, K, fig), Kx = C_s tiles per row, Ky = K rows.
    K, C_s = 13, 3
    w1 = make_w1(K, C_s, seed=5)
    w = w1.T
    ref = np.zeros((28 * K, 28 * C_s))
    w_i = 0
    for y in range(K):
        for x in range(C_s):
            ref[y * 28:(y + 1) * 28, x * 28:(x + 1) * 28] = w[w_i].reshape(28, 28)
            w_i += 1
    np.testing.assert_array_equal(plots.tapestry(w1, C_s), ref)


@pytest.mark.parametrize("w1,C_s", [
    (np.zeros((783, 9)), 1),          # not 784 rows
    (np.zeros((9, 784)), 1),          # transposed
    (np.zeros(784), 1),               # 1-D
    (np.zeros((784, 10)), 3),         # N1 not a multiple of C_s
    (np.zeros((784, 9)), 0),          # bad C_s
    (np.zeros((784, 9)), 1.5),        # bad C_s type
    (np.zeros((784, 0)), 1),          # no units
])
def test_tapestry_shape_errors(w1, C_s):
    with pytest.raises(ValueError):
        plots.tapestry(w1, C_s)
    with pytest.raises(ValueError):
        plots.plot_tapestry(w1, C_s)


def test_confusion_matrix_counts():
    y_true = np.array([0, 0, 1, 1, 1, 2, 9, 9])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 9, 0])
    cm = plots.confusion_matrix(y_true, y_pred)
    assert cm.shape == (10, 10)
    assert np.issubdtype(cm.dtype, np.integer)
    assert cm.sum() == len(y_true)
    assert cm[0, 0] == 1 and cm[0, 1] == 1
    assert cm[1, 1] == 2 and cm[1, 2] == 1
    assert cm[2, 2] == 1
    assert cm[9, 9] == 1 and cm[9, 0] == 1
    assert np.trace(cm) == np.sum(y_true == y_pred)
    # brute-force agreement on random data
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm4 = plots.confusion_matrix(t, p, n_classes=4)
    for i in range(4):
        for j in range(4):
            assert cm4[i, j] == np.sum((t == i) & (p == j))


def test_confusion_matrix_errors():
    with pytest.raises(ValueError):
        plots.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError):
        plots.confusion_matrix([0, 10], [0, 1])
    with pytest.raises(ValueError):
        plots.confusion_matrix([0, -1], [0, 1])


def test_layer2_images_formula(weights):
    K, C_s, w1, w2, w3 = weights
    imgs = plots.layer2_images(w1, w2)
    assert imgs.shape == (w2.shape[1], 784)
    for j in range(w2.shape[1]):
        expected = sum(w2[u, j] * w1[:, u] for u in range(w1.shape[1]))
        np.testing.assert_allclose(imgs[j], expected)


def test_layer2_images_per_cluster_normalisation(weights):
    K, C_s, w1, w2, w3 = weights
    imgs = plots.layer2_images(w1, w2, C_s=C_s)
    j = 3
    expected = np.zeros(784)
    for k in range(K):
        units = range(k * C_s, (k + 1) * C_s)
        total = sum(abs(w2[u, j]) for u in units)
        expected += sum(w2[u, j] / total * w1[:, u] for u in units)
    np.testing.assert_allclose(imgs[j], expected)


def test_layer2_images_shape_error(weights):
    K, C_s, w1, w2, w3 = weights
    with pytest.raises(ValueError):
        plots.layer2_images(w1, w2[:-1])


def test_plot_functions_return_figures(weights):
    K, C_s, w1, w2, w3 = weights
    y_true = np.arange(50) % 10
    y_pred = (y_true + (np.arange(50) % 3 == 0)) % 10
    figs = [
        plots.plot_tapestry(w1, C_s),
        plots.plot_tapestry(w1, C_s, title="custom"),
        plots.plot_tapestry(np.zeros((784, K * C_s)), C_s),  # degenerate scale
        plots.plot_accuracy([0.61, 0.65, 0.69]),
        plots.plot_accuracy([61.0, 65.0], log_accuracy=69.07, title="t"),
        plots.plot_accuracy([], log_accuracy=0.6907),
        plots.plot_confusion(plots.confusion_matrix(y_true, y_pred)),
        plots.plot_layer2(w1, w2, w3),
        plots.plot_layer2(w1, w2, w3, n=5),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
    assert len(figs[-1].axes[0].texts) == 5


def test_plot_layer2_sorted_by_class(weights):
    K, C_s, w1, w2, w3 = weights
    fig = plots.plot_layer2(w1, w2, w3)
    labels = [t.get_text() for t in fig.axes[0].texts]
    classes = [int(s.split()[0]) for s in labels]
    assert len(labels) == w2.shape[1]
    assert classes == sorted(classes)
    expected = sorted(np.argmax(w3, axis=0).tolist())
    assert classes == expected


def test_no_pyplot_state_leak(weights):
    import matplotlib.pyplot as plt

    K, C_s, w1, w2, w3 = weights
    before = plt.get_fignums()
    plots.plot_tapestry(w1, C_s)
    plots.plot_accuracy([0.5])
    plots.plot_layer2(w1, w2, w3, n=3)
    assert plt.get_fignums() == before


def test_save_figure_writes_png_atomically(tmp_path, weights, monkeypatch):
    K, C_s, w1, w2, w3 = weights
    fig = plots.plot_tapestry(w1, C_s)
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(plots.os, "replace", spy)
    folder = tmp_path / "figs" / "sub"
    path = plots.save_figure(fig, "tap", folder=folder)
    assert path == folder / "tap.png"
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) < 500_000
    assert len(replaced) == 1
    src, dst = replaced[0]
    assert dst == path and src.parent == path.parent and src != path
    assert not src.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["tap.png"]  # no temp left over

    # overwriting an existing file works, ".png" suffix is kept
    path2 = plots.save_figure(plots.plot_accuracy([0.5, 0.6]), "tap.png", folder=folder)
    assert path2 == path and path.read_bytes().startswith(PNG_MAGIC)


def test_save_figure_keeps_large_figures_small(tmp_path):
    w1 = make_w1(9, 100, seed=3)
    path = plots.save_figure(plots.plot_tapestry(w1, 100), "big", folder=tmp_path,
                             max_bytes=100_000)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert path.stat().st_size < 100_000


def test_show_png(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    path = plots.save_figure(plots.plot_accuracy([0.5]), "acc", folder=tmp_path)
    plots.show_png(path)
    assert len(shown) == 1
    assert isinstance(shown[0], IPython.display.Image)
    assert shown[0].data.startswith(PNG_MAGIC)
    with pytest.raises(FileNotFoundError):
        plots.show_png(tmp_path / "missing.png")
