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
from dreamflow_utils.core.geometry import patch_indices, patch_origins

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


def model_w1(layout: str, C_s: int, stride: int | None = None, seed: int = 0) -> np.ndarray:
    """Layer-1 weights as the log's model holds them: unit u's weights on the patch of position u // C_s."""
    rng = np.random.default_rng(seed)
    idx = patch_indices(layout, stride)
    w1 = np.zeros((784, len(idx) * C_s))
    for u in range(w1.shape[1]):
        w1[idx[u // C_s], u] = rng.uniform(0, 1, 81)
    return w1


def drawn_texts(fig):
    """(text, window extent) of every text the Agg renderer draws (tick labels only inside their axis' view)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks, shown = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    ticks.add(id(label))
                    if (ax.get_visible() and axis.get_visible() and label.get_visible() and label.get_text()
                            and lo - 1e-9 <= tick.get_loc() <= hi + 1e-9):
                        shown.append(label)
    shown += [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in shown]


def assert_texts_apart(fig):
    """No two drawn texts overlap, and every text lies inside the figure."""
    texts = drawn_texts(fig)
    w, h = fig.canvas.get_width_height()
    for i, (a, box) in enumerate(texts):
        assert box.x0 >= -0.5 and box.y0 >= -0.5 and box.x1 <= w + 0.5 and box.y1 <= h + 0.5, a
        for b, other in texts[i + 1:]:
            assert not box.overlaps(other), (a, b)
    return texts


LAYOUTS = [("block", None, 20), ("block", None, 100), ("overlap", None, 10), ("overlap", None, 1),
           ("stride", 4, 3), ("stride", 9, 2), ("stride", 7, 30)]


@pytest.mark.parametrize("layout,stride,C_s", LAYOUTS)
def test_tapestry_crops_each_unit_to_its_patch(layout, stride, C_s):
    w1 = model_w1(layout, C_s, stride, seed=C_s)
    t = plots.tapestry(w1, C_s)
    assert t.layout == (layout, stride) and t.side == 9
    origins = patch_origins(layout, stride)
    for u in range(w1.shape[1]):
        r, c = origins[u // C_s]
        y, x = t.tiles[u]
        np.testing.assert_array_equal(t.image[y:y + 9, x:x + 9], w1[:, u].reshape(28, 28)[r:r + 9, c:c + 9])
    assert np.isfinite(t.image).sum() == 81 * w1.shape[1]  # the tiles are apart, NaN between them
    # each position's block: its C_s units in order, rows of at most 25 tiles, under its label
    for k, (row, col, text, offset) in enumerate(t.labels):
        r, c = origins[k]
        offset_k = layout == "overlap" and k >= 9
        assert text == f"position {k} (rows {r}-{r + 8}, cols {c}-{c + 8})" + (", offset" if offset_k else "")
        assert offset == offset_k
        block = t.tiles[k * C_s:(k + 1) * C_s]
        assert tuple(block[0]) == (row, col)
        rows = -(-C_s // 25)
        assert len(np.unique(block[:, 0])) == rows and len(np.unique(block[:, 1])) == -(-C_s // rows)
        assert np.all(np.diff(block[:, 0]) >= 0)  # row by row, left to right
    assert len(t.labels) == len(origins)
    assert len(np.unique(t.tiles[:, 1])) <= 25  # no line wider than 25 tiles


def test_tapestry_wraps_large_clusters():
    t = plots.tapestry(model_w1("block", 100), 100)
    block = t.tiles[:100]
    assert len(np.unique(block[:, 0])) == 4 and len(np.unique(block[:, 1])) == 25  # 4 rows of 25 per position
    assert len(np.unique(t.tiles[:, 1])) == 25  # positions one under the other


def test_tapestry_of_whole_image_units():
    """Weights on no layout's patches (as Krotov's whole-image units): each tile is the unit's whole field."""
    K, C_s = 13, 3
    w1 = make_w1(K, C_s, seed=5)
    t = plots.tapestry(w1, C_s)
    assert t.layout is None and t.side == 28
    for u in range(K * C_s):
        y, x = t.tiles[u]
        np.testing.assert_array_equal(t.image[y:y + 28, x:x + 28], w1[:, u].reshape(28, 28))
    assert np.isfinite(t.image).sum() == 784 * K * C_s
    assert [text for _, _, text, _ in t.labels] == [f"cluster {k} (whole image)" for k in range(K)]
    one = plots.tapestry(w1[:, :30], 30)  # one group: no label, rows of 10
    assert one.labels == [] and len(np.unique(one.tiles[:, 0])) == 3


def test_layer1_layout():
    assert plots.layer1_layout(model_w1("block", 4), 4) == ("block", None)
    assert plots.layer1_layout(model_w1("stride", 4, 9), 4) == ("stride", 9)  # the block grid in row order
    assert plots.layer1_layout(model_w1("overlap", 2), 2) == ("overlap", None)
    assert plots.layer1_layout(model_w1("stride", 2, 6), 2) == ("stride", 6)
    assert plots.layer1_layout(make_w1(9, 4), 4) is None
    assert plots.layer1_layout(model_w1("block", 4), 4, "block") == ("block", None)
    with pytest.raises(ValueError, match="positions"):
        plots.layer1_layout(model_w1("block", 4), 4, "overlap")
    with pytest.raises(ValueError, match="outside"):
        plots.layer1_layout(model_w1("stride", 4, 9), 4, "block")
    with pytest.raises(ValueError, match="outside"):
        plots.tapestry(make_w1(9, 4), 4, layout="block")


def image_of(fig) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(fig.axes[0].images[0].get_array(), dtype=float), np.nan)


@pytest.mark.parametrize("layout,stride,C_s", LAYOUTS)
def test_plot_tapestry_draws_the_tiles_labelled_on_one_scale(layout, stride, C_s):
    w1 = model_w1(layout, C_s, stride, seed=1)
    w1[np.flatnonzero(w1[:, 0])[0], 0] = -0.01  # negative weights are drawn as 0
    t = plots.tapestry(w1, C_s)
    fig = plots.plot_tapestry(w1, C_s, title="layer 1 after 3 epochs")
    np.testing.assert_array_equal(image_of(fig), t.image)
    im = fig.axes[0].images[0]
    assert im.get_clim() == (0.0, w1.max())  # the log's draw_weights: one scale, 0 to the largest weight
    cbar = fig.axes[1]
    assert [x.get_text() for x in cbar.get_yticklabels()] == ["0", f"{w1.max():.3g}"]
    labels = [(x.get_text(), x.get_position()) for x in fig.axes[0].texts]
    assert [text for text, _ in labels] == [text for _, _, text, _ in t.labels]
    for (_, (x, y)), (row, col, _, _) in zip(labels, t.labels):  # just above its block's first tile
        assert col - 1 < x < col and row - 1 < y < row
    offset = [x for x in fig.axes[0].texts if x.get_text().endswith("offset")]
    assert len(offset) == (4 if layout == "overlap" else 0)
    assert all(x.get_color() == "tab:blue" for x in offset)
    header = [x.get_text() for x in fig.texts]
    assert header[0] == "layer 1 after 3 epochs"
    assert f"{len(patch_origins(layout, stride))} positions x {C_s} units" in header[1] and "9x9 patch" in header[1]
    # each weight at least 3 pixels wide at dpi 100, the labels, titles and colorbar apart
    assert t.scale * 100 >= 3
    assert_texts_apart(fig)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_tapestry_size_is_bounded():
    """C_s=100 x 9 positions (the log's largest layer) at dpi 100: 25 tiles a row, under 1000 x 1450 px
    (the whole-field tapestry it replaces was 2332 x 240 px, a 9x9 patch 2 px wide)."""
    w, h = png_size(plots.figure_to_png(plots.plot_tapestry(model_w1("block", 100), 100), dpi=100, max_bytes=None))
    assert 700 <= w <= 1000 and h <= 1450
    w, h = png_size(plots.figure_to_png(plots.plot_tapestry(model_w1("block", 20), 20), dpi=100, max_bytes=None))
    assert w <= 1000 and h <= 700
    w, h = png_size(plots.figure_to_png(plots.plot_bank(np.random.default_rng(0).uniform(size=(81, 256))),
                                        dpi=100, max_bytes=None))
    assert w <= 1150 and h <= 1150


def test_plot_layer1_picks_the_models_layer():
    rng = np.random.default_rng(0)
    bank = rng.uniform(0, 1, (81, 20))
    fig = plots.plot_layer1(bank, 20, title="bank")
    np.testing.assert_allclose(image_of(fig), plots.bank_tapestry(bank / bank.max(axis=0), cols=10))
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)  # each detector scaled to its own maximum
    assert_texts_apart(fig)
    krotov = rng.normal(0, 1, (784, 2000))
    fig = plots.plot_layer1(krotov, 2000, title="k")
    assert fig.texts[0].get_text() == "k (first 100 of 2000 units)"
    np.testing.assert_array_equal(image_of(fig), plots.tapestry(krotov[:, :100], 100).image)
    w1 = model_w1("overlap", 10)
    np.testing.assert_array_equal(image_of(plots.plot_layer1(w1, 10)), plots.tapestry(w1, 10).image)


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


def dot_rows(n: int, seed: int = 0) -> list[tuple]:
    """n models: long labels, fractions, some single runs (sd None)."""
    rng = np.random.default_rng(seed)
    kinds, keys = ("local", "probe-ridge", "baseline"), ("the log's model", "shared bank", "pixels")
    return [(f"model {i}: shared s2 pool2 C20 N2000 norm xi=0.05 ({i % 7 + 1} epochs) [{kinds[i % 3]}]",
             float(rng.uniform(0.6, 0.98)), None if i % 5 == 0 else float(rng.uniform(0.001, 0.02)),
             1 if i % 5 == 0 else 5, kinds[i % 3], keys[i % 3]) for i in range(n)]


def test_the_text_check_sees_overlaps():
    fig = Figure(figsize=(3, 2))
    fig.text(0.1, 0.5, "one label")
    fig.text(0.15, 0.5, "another")
    with pytest.raises(AssertionError):
        assert_texts_apart(fig)


@pytest.mark.parametrize("n", [1, 5, 30])
def test_plot_dots_one_row_per_model(n):
    groups = {"MNIST": dot_rows(n), "Fashion-MNIST": dot_rows(max(n - 2, 1), seed=1)}
    goals = {"MNIST": {"goal (local)": 0.975, "goal (probe)": 0.985}, "Fashion-MNIST": {"goal (local)": 0.88}}
    fig = plots.plot_dots(groups, goals=goals, title="test accuracy", colors={"shared bank": "tab:blue"},
                          markers={"local": "o"}, hollow=("probe-ridge",))
    panels = [ax for ax in fig.axes if ax.get_yticklabels() and ax.get_xlabel()]
    assert [ax.get_title().split()[0] for ax in panels] == ["MNIST", "Fashion-MNIST"]
    assert "goal (local): 97.5" in panels[0].get_title() and "goal (local): 88.0" in panels[1].get_title()
    for ax, rows in zip(panels, groups.values()):
        best_first = sorted(rows, key=lambda r: -r[1])
        ticks = dict(sorted(zip(ax.get_yticks(), (x.get_text() for x in ax.get_yticklabels())), reverse=True))
        assert len(ticks) == len(rows) and list(ticks.values()) == [r[0] for r in best_first]  # best at the top
        dots = {}
        for c in ax.containers:  # one errorbar per model, its dot on its label's row
            x, y = c.lines[0].get_data()
            dots[float(y[0])] = (float(x[0]), c.has_xerr)
        assert len(dots) == len(rows)
        for y, label in ticks.items():
            row = next(r for r in rows if r[0] == label)
            assert dots[y] == (pytest.approx(100 * row[1]), row[2] is not None)
        right = [a for a in fig.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds][0]
        values = [x.get_text() for _, x in sorted(zip(right.get_yticks(), right.get_yticklabels()),
                                                  key=lambda p: -p[0])]
        assert values == [f"{100 * m:.2f}" + ("" if s is None else f" ± {100 * s:.2f}") + f" (n={k})"
                                for _, m, s, k, _, _ in best_first]
        lo, hi = ax.get_xlim()
        assert 0 <= lo and hi <= 100
        goal_lines = [x for x in ax.lines if len(set(x.get_xdata())) == 1 and x.get_linestyle() in ("--", ":")]
        assert sorted(x.get_xdata()[0] for x in goal_lines) == sorted(100 * v for v in goals[ax.get_title().split()[0]].values())
    legend = [x.get_text() for x in fig.legends[0].get_texts()]
    used = [r for rows in groups.values() for r in rows]
    kinds, keys = dict.fromkeys(r[4] for r in used), dict.fromkeys(r[5] for r in used)
    given_first = lambda given, seen: [k for k in given if k in seen] + [k for k in seen if k not in given]
    assert legend == (given_first(["local"], kinds) + given_first(["shared bank"], keys)
                      + ["goal (local)", "goal (probe)"])  # only what the panels use, those given first
    if n == 30:
        assert legend == ["local", "probe-ridge", "baseline", "shared bank", "the log's model", "pixels",
                          "goal (local)", "goal (probe)"]
    texts = assert_texts_apart(fig)
    assert sum(t.startswith("model ") for t, _ in texts) == len(groups["MNIST"]) + len(groups["Fashion-MNIST"])


def test_plot_dots_percentages_and_defaults():
    rows = [("a", 97.1, 0.2, 5, "x", "k1"), ("b", 98.3, float("nan"), 1, "y", "k2")]
    fig = plots.plot_dots({"panel": rows})
    ax = fig.axes[0]
    labels = sorted(zip(ax.get_yticks(), ax.get_yticklabels()), key=lambda p: -p[0])
    assert [x.get_text() for _, x in labels] == ["b", "a"]  # best at the top
    assert {c.lines[0].get_xdata()[0] for c in ax.containers} == {97.1, 98.3}
    assert [x.get_text() for x in fig.legends[0].get_texts()] == ["x", "y", "k1", "k2"]
    assert_texts_apart(fig)
