"""Live view of a training run in JupyterLab (ipywidgets 8).

Usage::

    view = LiveView(C_s=config.C_s, n_epochs=config.Nep, log_accuracy=0.6907)
    view.display()                       # or just put ``view`` last in the cell
    weights = train(config, data, callback=view)

``train`` calls ``view(epoch, weights, accuracy)`` after each epoch; the widget (an
HTML header, the layer-1 tapestry and a small accuracy curve) is updated in place, so
no new outputs pile up under the cell.  The images are PNG bytes rendered off-screen
with matplotlib Agg, so the view also works headless (tests, papermill): there it
simply updates widget state nobody looks at.  When the last epoch is drawn, a static
copy of the images is *not* emitted automatically; use ``plots.save_figure`` +
``plots.show_png`` for figures that must survive in a saved notebook.

Where no one watches (a batch run: $DREAMFLOW_HEADLESS=1, set by the batch for its notebook
kernels) the view keeps its header and accuracies but draws nothing.
"""
from __future__ import annotations

import html
import math
import os
import time
import warnings
from typing import Any

import numpy as np

from .. import plots

__all__ = ["LiveView", "HEADLESS_ENV", "headless"]

HEADLESS_ENV = "DREAMFLOW_HEADLESS"


def headless() -> bool:
    """True where no one watches the notebook ($DREAMFLOW_HEADLESS=1: the batch's kernels)."""
    return os.environ.get(HEADLESS_ENV, "") == "1"


def _get_w1(weights: Any) -> np.ndarray:
    if hasattr(weights, "w1"):
        return np.asarray(weights.w1)
    if isinstance(weights, dict):
        return np.asarray(weights["w1"])
    if isinstance(weights, (tuple, list)):
        return np.asarray(weights[0])
    return np.asarray(weights)  # a bare w1 array


def _pct(a: float | None) -> str:
    if a is None or not np.isfinite(a):
        return "&ndash;"
    return f"{100.0 * a:.2f}%" if abs(a) <= 1.0 else f"{a:.2f}%"


class LiveView:
    """ipywidgets live view of layer-1 weights and test accuracy, one update per epoch.

    Parameters
    ----------
    C_s : neurons per layer-1 cluster (tiles per tapestry row).
    n_epochs : total number of epochs (shown as "epoch i/n").
    log_accuracy : the log's reported accuracy for this experiment (fraction or %),
        drawn as a dashed line and shown in the header; optional.
    title : shown in the header and on the tapestry.
    max_width_px : the tapestry PNG is rendered at a dpi that keeps it at most this
        wide, which keeps an update cheap (well under 0.5 s for C_s=100, K=9).
    draw : render the images after every epoch (default: unless `headless()`).

    Attributes
    ----------
    widget : the ``ipywidgets.VBox`` (``header``, ``tapestry_image``, ``curve_image``).
    epoch : last epoch drawn (0 before the first call).
    accuracies : list of per-epoch accuracies received so far (as given, in [0, 1]).
    weights : the last weights object received (None before the first call).
    render_seconds : time the last update took.
    """

    def __init__(self, C_s: int, n_epochs: int, log_accuracy: float | None = None,
                 title: str = "", max_width_px: int = 1400, draw: bool | None = None):
        import ipywidgets as W

        if isinstance(C_s, bool) or not isinstance(C_s, (int, np.integer)) or C_s <= 0:
            raise ValueError(f"C_s must be a positive int, got {C_s!r}")
        if int(n_epochs) <= 0:
            raise ValueError(f"n_epochs must be positive, got {n_epochs!r}")
        self.C_s = int(C_s)
        self.n_epochs = int(n_epochs)
        self.log_accuracy = None if log_accuracy is None else float(log_accuracy)
        self.title = str(title)
        self.max_width_px = int(max_width_px)
        self.draw = not headless() if draw is None else bool(draw)
        self.epoch = 0
        self.accuracies: list[float] = []
        self.weights: Any = None
        self.render_seconds = 0.0
        self.last_error: str | None = None

        self.header = W.HTML(value="")
        # hidden until the first epoch is drawn (an empty Image shows a broken-image icon)
        self.tapestry_image = W.Image(value=b"", format="png",
                                      layout=W.Layout(max_width="100%", height="auto", display="none"))
        self.curve_image = W.Image(value=b"", format="png",
                                   layout=W.Layout(max_width="480px", height="auto", display="none"))
        self.widget = W.VBox([self.header, self.tapestry_image, self.curve_image])
        self._update_header()

    # ------------------------------------------------------------------ display
    def display(self) -> None:
        """Show the widget in the current notebook output (once; updates are in place)."""
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------ updates
    def __call__(self, epoch: int, weights: Any, accuracy: float | None) -> None:
        """Training callback: record ``epoch``, ``weights`` and ``accuracy``; redraw.

        A rendering failure never interrupts training: it is shown in the header and
        issued as a warning.
        """
        t0 = time.perf_counter()
        self.epoch = int(epoch)
        self.weights = weights
        acc = float("nan") if accuracy is None else float(accuracy)
        self.accuracies.append(acc)
        if not self.draw:
            self._update_header()
            return
        try:
            self.tapestry_image.value = self.render_tapestry(_get_w1(weights))
            self.curve_image.value = self.render_curve()
            self.tapestry_image.layout.display = self.curve_image.layout.display = ""
            self.last_error = None
        except Exception as exc:  # keep the training loop alive
            self.last_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"LiveView could not draw epoch {epoch}: {self.last_error}",
                          RuntimeWarning, stacklevel=2)
        self.render_seconds = time.perf_counter() - t0
        self._update_header()

    def render_tapestry(self, w1) -> bytes:
        """The layer-1 weights as PNG bytes (:func:`plots.plot_layer1`: each unit cropped to its
        patch, blocks labelled by position; the subtitle says what the tiles show), rendered with
        Agg, then freed."""
        title = f"{self.title + ': ' if self.title else ''}layer 1 after epoch {self.epoch}/{self.n_epochs}"
        fig = plots.plot_layer1(np.asarray(w1), self.C_s, title=title)
        try:
            width_in = fig.get_size_inches()[0]
            dpi = min(100.0, self.max_width_px / width_in)
            return plots.figure_to_png(fig, dpi=dpi, max_bytes=None, bbox_inches=None, compress_level=1)
        finally:
            fig.clear()

    def render_curve(self) -> bytes:
        """The accuracy-per-epoch curve as PNG bytes."""
        fig = plots.plot_accuracy(self.accuracies, log_accuracy=self.log_accuracy,
                                  title="test accuracy", figsize=(4.5, 2.6))
        try:
            return plots.figure_to_png(fig, dpi=80, max_bytes=None, bbox_inches=None, compress_level=1)
        finally:
            fig.clear()

    def _update_header(self) -> None:
        parts = []
        if self.title:
            parts.append(f"<b>{html.escape(self.title)}</b> &middot; ")
        parts.append(f"epoch <b>{self.epoch}/{self.n_epochs}</b>")
        if self.accuracies:
            parts.append(f" &middot; accuracy <b>{_pct(self.accuracies[-1])}</b>")
        if self.log_accuracy is not None:
            parts.append(f" &middot; log: {_pct(self.log_accuracy)}")
        line2 = ""
        if self.accuracies:
            per = ", ".join(f"{i}: {_pct(a)}" for i, a in enumerate(self.accuracies, 1))
            line2 = f"<br><small>per epoch: {per}</small>"
        err = ""
        if self.last_error:
            err = (f"<br><span style='color:#b00'>drawing failed: "
                   f"{html.escape(self.last_error)}</span>")
        self.header.value = "<div>" + "".join(parts) + line2 + err + "</div>"

    def __repr__(self) -> str:
        last = self.accuracies[-1] if self.accuracies else math.nan
        return (f"LiveView(C_s={self.C_s}, epoch={self.epoch}/{self.n_epochs}, "
                f"last_accuracy={last:.4f})")
