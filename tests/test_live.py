"""Tests for dreamflow_utils.plots.live.LiveView (headless: no frontend attached)."""
from __future__ import annotations

from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from dreamflow_utils.plots.live import LiveView

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class W(NamedTuple):
    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray


def make_weights(K, C_s, N2=8, seed=0) -> W:
    rng = np.random.default_rng(seed)
    w1 = np.zeros((784, K * C_s))
    for u in range(K * C_s):
        tile = np.zeros((28, 28))
        y, x = rng.integers(0, 20, size=2)
        tile[y:y + 9, x:x + 9] = rng.uniform(0, 1, (9, 9))
        w1[:, u] = tile.ravel()
    return W(w1, rng.uniform(0, 1, (K * C_s, N2)), rng.uniform(0, 1, (10, N2)))


def test_liveview_updates_in_place():
    import ipywidgets

    view = LiveView(C_s=3, n_epochs=3, log_accuracy=0.6907, title="overlap")
    assert isinstance(view.widget, ipywidgets.VBox)
    assert "0/3" in view.header.value
    values = []
    for epoch, acc in zip((1, 2, 3), (0.61, 0.655, 0.7012)):
        w = make_weights(13, 3, seed=epoch)
        view(epoch, w, acc)
        img = bytes(view.tapestry_image.value)  # ipywidgets 8 hands back a memoryview
        assert img.startswith(PNG_MAGIC)
        assert bytes(view.curve_image.value).startswith(PNG_MAGIC)
        values.append(img)
        assert view.weights is w
    assert len(set(values)) == 3  # the image changed each epoch
    assert view.accuracies == [0.61, 0.655, 0.7012]
    assert view.epoch == 3
    head = view.header.value
    assert "3/3" in head
    for s in ("61.00%", "65.50%", "70.12%", "69.07%"):
        assert s in head
    # same widget objects, updated in place
    assert view.widget.children == (view.header, view.tapestry_image, view.curve_image)
    assert view.last_error is None


def test_liveview_display_headless():
    view = LiveView(C_s=2, n_epochs=1)
    view.display()  # no frontend: must not raise
    bundle = view._repr_mimebundle_()
    assert "text/plain" in (bundle[0] if isinstance(bundle, tuple) else bundle)
    view(1, make_weights(9, 2), 0.5)
    assert view.accuracies == [0.5]


def test_liveview_render_failure_does_not_stop_training():
    view = LiveView(C_s=4, n_epochs=2)
    bad = W(np.zeros((784, 10)), np.zeros((10, 2)), np.zeros((10, 2)))  # 10 % 4 != 0
    with pytest.warns(RuntimeWarning):
        view(1, bad, 0.4)
    assert view.accuracies == [0.4]
    assert "drawing failed" in view.header.value
    view(2, make_weights(9, 4), None)  # no accuracy this epoch
    assert view.last_error is None and "2/2" in view.header.value


def test_liveview_rejects_bad_arguments():
    with pytest.raises(ValueError):
        LiveView(C_s=0, n_epochs=3)
    with pytest.raises(ValueError):
        LiveView(C_s=3, n_epochs=0)


def test_liveview_large_layer_stays_small_and_shows_images():
    """C_s=100 x 9 clusters: the PNG stays small (update time is reported by
    `view.render_seconds`, ~0.3 s here; speed is not asserted in tests)."""
    view = LiveView(C_s=100, n_epochs=2, log_accuracy=0.7334)
    assert view.tapestry_image.layout.display == "none"  # nothing drawn yet
    view(1, make_weights(9, 100), 0.70)
    assert view.tapestry_image.layout.display == "" and view.render_seconds > 0
    assert len(view.tapestry_image.value) < 500_000
