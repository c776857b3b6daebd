"""The explorer of ``notebooks/00_explore.ipynb``: a form over `Config`, training in a background
thread with the live view and a Stop button, the results beside the committed records, and the
run's record saved as the batch saves a function run.

    explorer = Explorer(layout="block", C_s=10, N2=100)   # the form's first values (any Config field)
    explorer.display()              # form, Train / Stop / Save run, live view, results
    result = explorer.train_now()   # what the Train button runs in its thread

The form edits the model (`FIELDS`) and the research options that apply to it (`config.OPTIONS`);
every other field keeps the value given to `Explorer`. `Config` validates the form after every
change; its refusal is the red line under the form. In quick mode ($DREAMFLOW_QUICK) a model
trains as `quick.quick_config` shrinks it, on the data `notebook.load_data` gives.

A saved run is the batch's function run `call_run(config)` (group: the data set; function:
`train_record`, which repeats the training), stored by the batch's store under ``runs_dir``
(`store`: the record, then the folder's table ``runs.csv`` via `store.collect`).
"""
from __future__ import annotations

import dataclasses
import html
import json
import os
import statistics
import threading
import time
from pathlib import Path

from .. import notebook, plots
from ..core.config import CODES, DATASETS, LAYER1, OPTIONS, POOL_MODES, Config, model_name
from ..core.files import repo_root
from ..core.geometry import LAYOUTS
from ..core.quick import QUICK_ENV, quick_config, quick_mode
from ..core.train import StopTraining, TrainResult, train
from ..plots.live import LiveView, headless
from ..studies.bands import committed_accuracies
from ..sweeps import store
from ..sweeps.runs import CallRun, Outcome, _now

__all__ = ["Explorer", "FIELDS", "call_run", "run_name", "train_record", "committed_line"]

NAME = "00_explore"
FIELDS = ("layer1", "layout", "stride", "dataset", "C_s", "N2", "xi", "Nep", "seed")  # the form's first rows
ROWS = (FIELDS[:4], FIELDS[4:], tuple(OPTIONS))
LABELS = {"layer1": "model", "dataset": "data set", "Nep": "epochs"}
CHOICES = {"layer1": LAYER1, "layout": LAYOUTS, "dataset": DATASETS, "pool_mode": POOL_MODES, "code": CODES}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}
RED = "#b00"


# ----------------------------------------------------------------------------- the batch's view of a run
def run_name(config: Config) -> str:
    """The run's name, as the studies name theirs: the model's name and its seed."""
    return f"{model_name(config)} seed {config.seed}"


def call_run(config: Config, quick: bool = False) -> CallRun:
    """The batch's function run that trains `config` (the run's identity; quick marks a quick run)."""
    kwargs = {"config": config.to_dict(), "seed": config.seed, "dataset": config.dataset, "quick": quick}
    return CallRun(config.dataset, run_name(config), f"{__name__}:train_record", kwargs)


def train_record(config: dict, seed: int, dataset: str, quick: bool = False) -> dict:
    """The batch's function of `call_run`: train `config` (a Config's fields) on `dataset`; the
    run's record (`quick` only marks it: the config is already the one that trained)."""
    return train(Config(**config | {"seed": seed, "dataset": dataset})).record()


def committed_line(config: Config, accuracy: float, demo: bool = False) -> str:
    """`accuracy` beside the committed records of `config` after epoch config.Nep
    (`bands.committed_accuracies`): mean ± sd over their seeds, and this seed's if committed."""
    if demo:
        return "committed records: none on the demo digits (MNIST's are not comparable)"
    acc = committed_accuracies(config)
    where = f"committed records of this configuration after epoch {config.Nep}"
    this = f"this run {100 * accuracy:.2f}%"
    if not acc:
        return f"{where}: none ({this})"
    values = list(acc.values())
    mean = statistics.mean(values)
    spread = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    seed = f"seed {config.seed}: {100 * acc[config.seed]:.2f}%" if config.seed in acc else f"none of seed {config.seed}"
    return (f"{where}: {100 * mean:.2f}%{spread} over {len(values)} seed(s), {seed}; {this} "
            f"({100 * (accuracy - mean):+.2f} points from their mean)")


def title(config: Config) -> str:
    """The model's name, seed and data set, e.g. "log block C_s=10 N2=100, seed 0"."""
    data = "" if config.dataset == "mnist" else f", {config.dataset}"
    return f"{model_name(config)}, seed {config.seed}{data}"


def _shown(path) -> str:
    """`path` relative to the working directory (a notebook's folder), for messages."""
    return os.path.relpath(path)


# ----------------------------------------------------------------------------- the explorer
class Explorer:
    """The form, its buttons, the live view and the results of the last run (see the module).

    `params` are the Config fields of the form's first model (the fields the form does not show keep
    these values); `data` ((train, test) of that model's data set) skips loading it; `runs_dir`
    (default ``<repo>/runs/explore``) receives saved runs; `quick` defaults to $DREAMFLOW_QUICK.
    """

    def __init__(self, *, data=None, data_dir=None, runs_dir=None, quick: bool | None = None, **params):
        import ipywidgets as W

        self.base = Config(**params)
        self.quick = quick_mode() if quick is None else quick
        self.data_dir = data_dir
        self.runs_dir = Path(runs_dir) if runs_dir is not None else repo_root() / "runs" / "explore"
        self.draw = not headless()
        self._data = {} if data is None else {self.base.dataset: (data, "the given data")}
        self.result: TrainResult | None = None
        self.stop_latency: float | None = None  # seconds from the last Stop to the end of the epoch that honoured it
        self._stop, self._lock, self._thread = threading.Event(), threading.Lock(), None
        self._busy = self._valid = False
        self._stop_time = self._timing = self._pngs = None
        self.run = self._run(self.base)

        start = self.base.to_dict() | {"layout": self.base.layout or DEFAULTS["layout"],
                                       "stride": self.base.stride or 4,  # the first grid step offered
                                       "kh_epochs": self.base.kh_epochs or max(1, self.base.Nep // 2)}
        self.fields = {name: _field(name, start[name]) for name in (*FIELDS, *OPTIONS)}
        for w in self.fields.values():
            w.observe(self.validate, names="value")
        self.message, self.status = W.HTML(), W.HTML()
        self.train_button = W.Button(description="Train", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.save_button = W.Button(description="Save run", icon="save", disabled=True)
        self.train_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.save_button.on_click(lambda _: self._save_clicked())
        self.live, self.results_text = W.VBox(), W.HTML()
        self.images = {what: W.Image(format="png", layout=W.Layout(display="none", max_width="48%"))
                       for what in ("confusion", "layer2")}
        self.rows = [W.HBox(layout=W.Layout(flex_flow="row wrap")) for _ in ROWS]
        self.widget = W.VBox(
            self.rows + [self.message, W.HBox([self.train_button, self.stop_button, self.save_button, self.status]),
               self.live, self.results_text, W.HBox(list(self.images.values()))])
        self.validate()
        mode = (f"QUICK MODE ({QUICK_ENV}=1): every model trains as quick_config shrinks it (60000 samples in all)"
                if self.quick else "full mode: every model trains as the form says")
        print(f"{mode}\ndata: {self.run.data_source}\nsaved runs: {_shown(self.runs_dir)}/<data set>/")

    # ------------------------------------------------------------------ form
    def display(self) -> None:
        """Show the explorer in the current output."""
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def shown(self) -> list[str]:
        """The form's fields that apply to its model (the others are hidden)."""
        layer1, layout = self.fields["layer1"].value, self.fields["layout"].value

        def applies(name):
            if name == "layout":
                return layer1 != "krotov"
            if name == "stride":
                return layer1 != "krotov" and layout == "stride"
            return name not in OPTIONS or layer1 in OPTIONS[name][0]

        return [name for name in self.fields if applies(name)]

    def values(self) -> dict:
        """The form's Config fields: those hidden at their "off" value (no layout for krotov,
        stride only with layout "stride", the OPTIONS of other layers)."""
        shown = set(self.shown())
        v = {name: w.value if name in shown else None for name, w in self.fields.items()}  # layout, stride
        return v | {name: off for name, (_, off) in OPTIONS.items() if name not in shown}

    def config(self) -> Config:
        """The form's model: the given Config with the form's values (ValueError if Config refuses it)."""
        return self.base.replace(**self.values())

    def trained(self, config: Config) -> Config:
        """What trains for `config`: itself, or in quick mode `quick_config` of it."""
        if not self.quick:
            return config
        loaded = self._data.get(config.dataset)  # (data, source)
        return quick_config(config, None if loaded is None else len(loaded[0][0][0]))

    def validate(self, *_) -> Config | None:
        """Show the fields that apply (the others leave the form) and Config's verdict on the form
        (a red line if it refuses it); returns the Config, or None."""
        shown = set(self.shown())
        for box, names in zip(self.rows, ROWS):
            children = tuple(self.fields[n] for n in names if n in shown)
            if box.children != children:
                box.children = children
        try:
            config = self.config()
        except ValueError as e:
            self.message.value = f"<span style='color:{RED}'>{html.escape(str(e))}</span>"
            self._valid, self.train_button.disabled = False, True
            return None
        trained = self.trained(config)
        text = f"{title(config)}: N1={config.N1}, {config.Nep} epoch(s) of {config.T_s} samples"
        if trained != config:
            text += f" (quick mode trains Nep={trained.Nep} of T_s={trained.T_s})"
        self.message.value = html.escape(text)
        self._valid, self.train_button.disabled = True, self._busy
        return config

    # ------------------------------------------------------------------ training
    def start(self) -> bool:
        """Train button: train the form's model with `train_now` in a background thread, so the
        notebook stays responsive (Stop). False if the form is refused or a training runs."""
        if self._busy or self.validate() is None:
            return False
        self._set_busy(True)
        self._thread = threading.Thread(target=self._background, name="explore-train", daemon=True)
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for the background training (if any) to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """Stop button: end the training after the epoch in progress (its result is kept)."""
        if self._busy and not self._stop.is_set():
            self._stop_time = time.perf_counter()
            self._stop.set()
            self._status("stopping after the epoch in progress ...")

    def train_now(self) -> TrainResult | None:
        """Train the form's model in this thread with the live view, then show the results; what
        the Train button runs in its thread. Returns the result (None: stopped before a result)."""
        config = self.config()
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a model is training: Stop it first")
        self._set_busy(True)
        self.result, self._pngs, self.stop_latency = None, None, None
        self.results_text.value = ""
        for image in self.images.values():
            image.layout.display = "none"
        try:
            self._load(config.dataset)
            trained = self.trained(config)
            self.run = self._run(config)
            view = LiveView(C_s=trained.C_s, n_epochs=trained.Nep, log_accuracy=self.run.log_accuracy,
                            title=title(trained) + (" (QUICK)" if self.quick else ""))
            self.live.children = [view.widget]
            self._status(f"training {trained.Nep} epoch(s) of {trained.T_s} samples ...")
            started, t0 = _now(), time.time()
            try:
                result = train(trained, self.run.data, callback=lambda *a: self._epoch(view, trained, *a))
            except StopTraining as e:
                self._status(f"{e} (stopped {self.stop_latency:.1f} s after Stop)", error=True)
                return None
            self._timing = (started, _now(), round(time.time() - t0, 3))
            self.result = result
            self._show_result(trained)
            return result
        finally:
            self._stop.clear()
            self._set_busy(False)
            self._lock.release()

    def _epoch(self, view: LiveView, trained: Config, epoch: int, weights, accuracy) -> None:
        view(epoch, weights, accuracy)
        if self._stop.is_set():
            self.stop_latency = time.perf_counter() - self._stop_time
            raise StopTraining
        self._status(f"training: epoch {epoch}/{trained.Nep} done ...")

    def _background(self) -> None:
        try:
            self.train_now()
        except Exception as e:  # shown, not raised: no one would see a thread's traceback
            self._status(f"{type(e).__name__}: {e}", error=True)
            self._set_busy(False)

    def _load(self, dataset: str):
        if dataset not in self._data:
            self._data[dataset] = notebook.load_data(self.data_dir, self.quick, dataset)
        return self._data[dataset]

    def _run(self, config: Config) -> notebook.Run:
        """The notebooks' `Run` of `config` (its describe, report and band check)."""
        data, source = self._load(config.dataset)
        return notebook.Run(NAME, config, self.trained(config), data, source, self.quick,
                            notebook.figures_folder(quick=self.quick), log=notebook.find_log(config))

    # ------------------------------------------------------------------ results
    @property
    def demo(self) -> bool:
        return self.run.data_source.startswith("DEMO")

    def _show_result(self, trained: Config) -> None:
        r = self.result
        done = (f"stopped after epoch {r.config.Nep} of {trained.Nep}, {self.stop_latency:.1f} s after Stop"
                if r.config.Nep < trained.Nep else f"done: {r.config.Nep} epoch(s)")
        self._status(f"{done}; test accuracy {100 * r.test_accuracy:.2f}% ({r.seconds:.1f} s)")
        self.results_text.value = (f"<b>final test accuracy {100 * r.test_accuracy:.2f}%</b> after {r.config.Nep} "
                                   f"epoch(s), {r.seconds:.1f} s<br>"
                                   + html.escape(committed_line(r.config, r.test_accuracy, self.demo)))
        if self.draw:
            for what, png in self.figures().items():
                self.images[what].value = png
                self.images[what].layout.display = ""

    def figures(self) -> dict[str, bytes]:
        """PNGs of the last result: its confusion matrix on the test images and its layer-2 units
        drawn back in image space (as notebooks 02 and 10 draw them)."""
        if self._pngs is None:
            r, c = self.result, self.result.config
            w1 = plots.code_fields(c, r.weights.w1) if c.layer1 == "shared" else r.weights.w1
            figs = {"confusion": plots.plot_confusion(plots.confusion_matrix(self.run.test_y, r.predictions),
                                                      title=f"confusion ({title(c)})"),
                    "layer2": plots.plot_layer2(w1, r.weights.w2, r.weights.w3, n=100, C_s=c.C_s,
                                                title=f"layer-2 units and their classes ({title(c)})")}
            self._pngs = {what: plots.figure_to_png(fig, dpi=80) for what, fig in figs.items()}
            for fig in figs.values():
                fig.clear()
        return self._pngs

    def show_results(self) -> None:
        """Print the last result beside the committed records and show its figures as static
        PNGs (which stay in a saved notebook, unlike the widgets)."""
        from IPython.display import Image, display

        print(committed_line(self.result.config, self.result.test_accuracy, self.demo))
        for png in self.figures().values():
            display(Image(data=png))

    # ------------------------------------------------------------------ saving
    def save_run(self) -> Path:
        """Save run button: store the last result under `runs_dir` as the batch stores the
        function run `call_run` (its record, then the folder's CSV table); the record's path."""
        if self._busy or self.result is None:
            raise RuntimeError("no finished run to save")
        if self.demo:
            raise RuntimeError(f"trained on the demo digits, not on {self.result.config.dataset}: not saved")
        run = call_run(self.result.config, self.quick)
        started, finished, wall_seconds = self._timing
        record = run._record() | {"started": started, "finished": finished, "wall_seconds": wall_seconds}
        record |= {k: v for k, v in json.loads(json.dumps(self.result.record())).items() if k not in record}
        folder = self.runs_dir / run.group
        store._check_writable(folder, f"runs dir {folder}")
        lock = store.RunLock(folder / f".{run.run_id}.lock")
        if not lock.acquire():
            raise store.StoreError(f"{run.group}/{run.run_id} is being written by {lock.holder()}")
        try:
            store._store(run, Outcome(record), self.runs_dir, run.identity)
        finally:
            lock.release()
        store.collect(self.runs_dir)
        return store.record_path(run, self.runs_dir)

    def _save_clicked(self) -> None:
        try:
            path = self.save_run()
        except (RuntimeError, OSError, ValueError) as e:
            self._status(f"not saved: {e}", error=True)
            return
        self._status(f"saved {_shown(path)}; table {_shown(self.runs_dir / 'runs.csv')}")

    # ------------------------------------------------------------------ state
    def _status(self, text: str, error: bool = False) -> None:
        text = html.escape(text)
        self.status.value = f"<span style='color:{RED}'>{text}</span>" if error else text

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.train_button.disabled = busy or not self._valid
        self.stop_button.disabled = not busy
        self.save_button.disabled = busy or self.result is None


def _field(name: str, value):
    """The form's widget of Config field `name`, holding `value`."""
    import ipywidgets as W

    kw = dict(description=LABELS.get(name, name), style={"description_width": "initial"},
              layout=W.Layout(width="auto", margin="2px 12px 2px 0"))
    if name in CHOICES:
        return W.Dropdown(options=CHOICES[name], value=value, **kw)
    if isinstance(value, bool):
        return W.Checkbox(value=value, indent=False, **kw)
    if isinstance(value, int):
        return W.IntText(value=value, **kw)
    return W.FloatText(value=value, **kw)
