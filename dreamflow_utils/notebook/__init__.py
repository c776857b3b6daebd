"""Notebook-side helpers: what the notebooks in ``notebooks/`` call, so they stay thin.

Conventions (follow them in new notebooks, ``notebooks/NN_<name>.ipynb``):

* One cell tagged ``parameters`` with the log's values::

      layout, C_s, N2, T_s, Nep, B, xi, prec   # the log's names and values
      seed = 0; engine = "numpy"
      data_dir = None      # MNIST: None -> $DREAMFLOW_MNIST, then Keras' cache
      figures_dir = None   # None -> see `figures_folder`
      record_path = None   # set by `python -m dreamflow_utils.sweeps.batch`; results JSON goes there

  Relative paths are relative to the notebook's folder (the kernel's working directory
  in JupyterLab, nbval, the batch and ``render``).
* ``run = notebook.setup("<notebook stem>", layout=layout, ..., record_path=record_path)``
  right after it: applies *quick mode* (below), loads the data and says what it did.
* A cell starting with ``# NBVAL_CHECK_OUTPUT`` that calls ``run.describe()``: the
  requested configuration, the log's numbers and a checksum of the seeded initial
  weights, identical in quick and full mode, so nbval checks it.
* Training: ``view = LiveView(...); view.display();
  result = train(run.config, run.data, callback=view, progress=True)``.
* Results: ``run.report(result)`` and one ``run.show(<Figure>, "<what>")`` per figure
  (saved as ``<figures>/<stem>_<what>.png`` and shown as a static PNG, which survives
  headless execution), then ``run.save(result)`` (writes ``record_path`` if set).

Quick mode: with ``DREAMFLOW_QUICK=1`` (the root ``conftest.py`` sets it for pytest/nbval)
``setup`` trains one epoch on all the training images (exactly the first epoch of the full
run with the same seed), ``run.report`` checks the accuracy against the band of the committed
records (`bands`), ``load_data`` falls back to the bundled scikit-learn digits (with a loud
banner) when MNIST is missing, and figures go under ``figures/quick/`` (gitignored) so the
committed full-run figures stay untouched.

Command line (``python -m dreamflow_utils.notebook``):
``check-data`` (exit 2 with a how-to if MNIST is missing), ``render NB...`` (execute in
place in full mode and ``clean``; skips notebooks already rendered from the same source),
``clean NB...`` (widget state -> text, drop execution metadata) and ``check NB...``
(no widget state, no absolute paths, under 2 MB).
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import plots
from ..studies.bands import RESULTS_DIR, ConfigMismatch, NotChecked, accuracy_band, quick_epochs
from ..core.config import Config
from ..core.data import MnistFormatError, MnistNotFound, load_dataset, load_digits_demo, load_mnist
from ..core.experiments import LOG_EXPERIMENTS
from ..core.files import read_csv_rows, repo_root
from ..core.model import init_weights
from ..core.quick import QUICK_ENV, QUICK_NEP, QUICK_T_S, quick_config, quick_data, quick_mode
from ..studies.reproduction import log_table, plot_log_summary, summarize

__all__ = [
    "QUICK_ENV", "QUICK_T_S", "QUICK_NEP", "quick_mode", "quick_config", "find_log",
    "load_data", "figures_folder", "show", "setup", "Run", "study_run", "show_markdown",
    "print_log", "summary",
    "clean_notebook", "check_notebook", "render", "main",
]

def find_log(config: Config):
    """(name, log accuracy, log seconds per epoch) of the log experiment `config` repeats, or None.

    Every parameter must be the log experiment's (data set, layer 1, layout, C_s, N2, T_s, Nep,
    B, xi, prec, and no research option) except seed, engine, dtype, jit_compile and wta.
    """
    free = {"seed", "engine", "dtype", "jit_compile", "wta"}
    for name, (log_config, accuracy, epoch_seconds) in LOG_EXPERIMENTS.items():
        if all(v == getattr(log_config, k) for k, v in config.to_dict().items() if k not in free):
            return name, accuracy, epoch_seconds
    return None


# ----------------------------------------------------------------------------- data
_BANNER = "#" * 78
_DEFAULT = Config()
_OPTIONS = ("wta", "shift", "xi_decay", "vote", "pool", "pool_mode", "code", "norm", "label_gain",
            "unit_norm", "dataset", "dtype", "jit_compile")


def load_data(data_dir=None, quick: bool | None = None, dataset: str = "mnist"):
    """``(data, source)``: the data set via `load_dataset(dataset, data_dir)`; source is a short description.

    When it cannot be found: in quick mode, scikit-learn's digits (`load_digits_demo`)
    with a loud banner on stdout (its numbers are not comparable to the log's); in full
    mode the loader's `MnistNotFound` (which says how to supply the data) is raised.
    """
    quick = quick_mode() if quick is None else quick
    label = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}.get(dataset, dataset)
    try:
        data = load_dataset(dataset, data_dir)
        return data, f"{label} ({len(data[0][0])} train / {len(data[1][0])} test images)"
    except (MnistNotFound, MnistFormatError) as e:
        if not quick:
            print(f"{_BANNER}\n{label} NOT AVAILABLE: a full run needs it.\n{_BANNER}", flush=True)
            raise
        reason = str(e).splitlines()[0]
    with warnings.catch_warnings():  # its warning would print this file's absolute path
        warnings.simplefilter("ignore", UserWarning)
        data = load_digits_demo()
    print(f"{_BANNER}\n# {label} NOT FOUND ({reason[:150]})\n"
          "# QUICK MODE FALLS BACK TO DEMO DATA: scikit-learn's 8x8 digits upsampled to 28x28\n"
          f"# ({len(data[0][0])} train / {len(data[1][0])} test). ITS NUMBERS ARE NOT COMPARABLE "
          "TO THE LOG'S.\n# Set DREAMFLOW_MNIST=/dir/with/the/idx/files for real data.\n"
          f"{_BANNER}", flush=True)
    return data, f"DEMO digits, NOT MNIST ({len(data[0][0])} train / {len(data[1][0])} test images)"


# ----------------------------------------------------------------------------- paths
def _shown(path) -> str:
    """`path` for printing: relative to the repo root (or cwd), never absolute if avoidable."""
    path = Path(path).resolve()
    for base in (repo_root(), Path.cwd().resolve()):
        try:
            return str(path.relative_to(base)) or "."
        except ValueError:
            pass
    return path.name


def _record_stem(record_path: Path) -> str:
    name = record_path.name
    return name[:-len(".result.json")] if name.endswith(".result.json") else record_path.stem


def figures_folder(figures_dir=None, record_path=None, quick: bool | None = None) -> Path:
    """Where a notebook saves its figures, first match wins:

    1. `figures_dir` if given;
    2. in a batch run (`record_path` set): ``<record folder>/<run id>.figures/`` (under runs/);
    3. in quick mode: ``<repo>/figures/quick/`` (gitignored; the committed figures stay);
    4. ``<repo>/figures/``.
    """
    if figures_dir is not None:
        return Path(figures_dir)
    if record_path is not None:
        record_path = Path(record_path)
        return record_path.parent / f"{_record_stem(record_path)}.figures"
    quick = quick_mode() if quick is None else quick
    return repo_root() / "figures" / ("quick" if quick else "")


def show(fig: Figure, filename: str, folder) -> Path:
    """Save `fig` as ``folder/filename`` (PNG) and display it as a static image."""
    path = plots.save_figure(fig, filename, folder)
    plots.show_png(path)
    fig.clear()
    return path


# ----------------------------------------------------------------------------- one run
def _checksum(weights) -> str:
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w, dtype="<f8").tobytes())
    return h.hexdigest()[:16]


@dataclass
class Run:
    """What `setup` prepared for one notebook run."""

    name: str  # the notebook's stem, prefix of its figure files
    requested: Config  # as the parameters cell asked
    config: Config  # what trains (quick mode shrinks T_s and Nep)
    data: tuple = field(repr=False)
    data_source: str
    quick: bool
    figures_dir: Path
    record_path: Path | None = None
    log: tuple | None = None  # (name, accuracy, seconds per epoch) from LOG_EXPERIMENTS
    exploratory: bool = False  # not an experiment with committed records: quick mode may leave it unchecked
    results_dir: Path = RESULTS_DIR  # the committed records the run is checked against

    @property
    def log_accuracy(self) -> float | None:
        return None if self.log is None else self.log[1]

    @property
    def title(self) -> str:
        c = self.config
        model = f"{c.layout} C_s={c.C_s}" if c.layer1 == "clusters" else \
            f"shared {c.layout}{'' if c.stride is None else f' s{c.stride}'} C_s={c.C_s}"
        return f"{model} N2={c.N2}, seed {c.seed}" + (" (QUICK)" if self.quick else "")

    @property
    def test_y(self) -> np.ndarray:
        return self.data[1][1]

    def describe(self) -> None:
        """Print the requested config, the log's numbers and the initial weights' checksum.

        Depends only on the parameters (not on quick mode or the data), so a cell calling it
        can be marked ``# NBVAL_CHECK_OUTPUT``.
        """
        c = self.requested
        if c.layer1 == "clusters":
            print(f"{self.name}: layout={c.layout} C_s={c.C_s} N2={c.N2} "
                  f"(N1={c.N1} units in {c.n_positions} clusters)")
        else:
            print(f"{self.name}: one shared bank of C_s={c.C_s} detectors at the {c.n_positions} positions of "
                  f"layout={c.layout}" + ("" if c.stride is None else f" stride={c.stride}")
                  + f", N2={c.N2} (layer-2 input N1={c.N1})")
        print(f"T_s={c.T_s} Nep={c.Nep} B={c.B} xi={c.xi} prec={c.prec} seed={c.seed} engine={c.engine}")
        options = {k: v for k, v in c.to_dict().items()
                   if k in _OPTIONS and v != getattr(_DEFAULT.replace(layer1=c.layer1), k)}
        if options:
            print("options: " + ", ".join(f"{k}={v!r}" for k, v in options.items()))
        if self.log is None:
            print("log: no experiment of the log has this configuration")
        else:
            name, acc, sec = self.log
            print(f"log ({name}): test accuracy {100 * acc:.2f}% after {c.Nep} epochs, "
                  f"{sec} s per epoch ({c.Nep * sec} s per run)")
        w = init_weights(c)
        print(f"initial weights (seed {c.seed}): sha256 {_checksum(w)}, "
              + ", ".join(f"{k} {tuple(a.shape)} sum {a.sum():.3f}" for k, a in zip("w1 w2 w3".split(), w)))

    def report(self, result) -> None:
        """Print the final accuracy beside the log's, the per-epoch accuracies and the times."""
        c = result.config
        line = f"final test accuracy: {100 * result.test_accuracy:.2f}%"
        if self.log is not None:
            diff = 100 * (result.test_accuracy - self.log[1])
            line += f"   log: {100 * self.log[1]:.2f}%   difference: {diff:+.2f} points"
        print(line)
        print("per epoch: " + "  ".join(f"{i}: {100 * a:.2f}%" for i, a in enumerate(result.epoch_accuracies, 1)))
        train_s = sum(result.epoch_seconds)
        timing = (f"time: {result.seconds:.1f} s for {c.Nep} epoch(s) of {c.T_s} samples "
                  f"({train_s / c.Nep:.1f} s per epoch training, the rest evaluation)")
        if self.log is not None:
            timing += f"; log: {self.log[2]} s per epoch of 60000"
        print(timing)
        if self.quick:
            print(f"QUICK MODE ({QUICK_ENV}=1): T_s={c.T_s}, Nep={c.Nep} on {self.data_source}; "
                  "NOT comparable to the log.")
        self.check(result)

    def check(self, result) -> None:
        """Check the run against the committed records of the configuration the notebook declared
        (`bands`): the same configuration trained (else `ConfigMismatch`), the accuracy equal to the
        record of its seed and inside the band of all seeds (else `AccuracyOutOfBand`). Without
        records: in quick mode a numbered experiment notebook fails (`NotChecked`) unless it
        declares itself exploratory; in full mode the run is reported as not checked."""
        if result.config != self.config:
            diff = {k: (v, getattr(result.config, k)) for k, v in self.config.to_dict().items()
                    if getattr(result.config, k) != v}
            raise ConfigMismatch(f"the run trained another configuration than the notebook declared: "
                                 + ", ".join(f"{k}: declared {d!r}, trained {t!r}" for k, (d, t) in diff.items()))
        band = accuracy_band(self.config, self.results_dir, demo=self.data_source.startswith("DEMO"))
        if band is not None:
            print("check: " + band.check(result.test_accuracy, self.config.seed))
            return
        what = f"no committed records of the declared configuration (after epoch {self.config.Nep})"
        if self.quick and not self.exploratory:
            raise NotChecked(f"{what}: a numbered experiment notebook is checked in quick mode; commit records of "
                             "this configuration (a study) or declare the notebook exploratory in its parameters")
        print(f"check: {what}: accuracy not checked")

    def show(self, fig: Figure, what: str) -> None:
        """Save `fig` as ``<figures_dir>/<name>_<what>.png`` and display it statically."""
        show(fig, f"{self.name}_{what}", self.figures_dir)

    def save(self, result) -> None:
        """Write the run's record (plus experiment, log accuracy, quick, data) to record_path, if set."""
        if self.record_path is None:
            return
        from ..core.train import write_json_atomic
        record = result.record() | {
            "experiment": self.log[0] if self.log else self.name, "notebook_name": self.name,
            "log_accuracy": self.log_accuracy, "quick": self.quick, "data": self.data_source}
        write_json_atomic(self.record_path, record)
        print(f"record written ({len(record)} fields)")


def setup(name: str, *, data_dir=None, figures_dir=None, record_path=None, quick: bool | None = None,
          exploratory: bool = False, **params) -> Run:
    """Prepare one notebook run from its parameters cell: `params` are `Config` fields (layout,
    C_s, N2, ..., dataset); prints the mode, data and figure folder.

    `quick` (default: $DREAMFLOW_QUICK) trains the first `bands.quick_epochs` epochs (see
    `quick_config`) and allows the demo-data fallback of `load_data`. `exploratory`: the notebook
    is not an experiment with committed records (its quick run may go unchecked).
    """
    quick = quick_mode() if quick is None else quick
    requested = Config(**params)
    data, source = load_data(data_dir, quick, requested.dataset)
    config = quick_config(requested, len(data[0][0]), quick_epochs(requested)) if quick else requested
    folder = figures_folder(figures_dir, record_path, quick)
    run = Run(name, requested, config, data, source, quick, folder,
              None if record_path is None else Path(record_path), find_log(requested), exploratory)
    if quick:
        print(f"QUICK MODE ({QUICK_ENV}=1): T_s {requested.T_s} -> {config.T_s}, "
              f"Nep {requested.Nep} -> {config.Nep} ({config.T_s * config.Nep} samples): a check that the "
              f"notebook runs and learns, not a reproduction. Unset {QUICK_ENV} for the full configuration.")
    else:
        print(f"full run: T_s={config.T_s}, Nep={config.Nep}, seed={config.seed}")
    print(f"data: {source}")
    print(f"figures: {_shown(folder)}/{name}_*.png")
    return run


def study_run(name: str, study, variant: str, *, seed: int = 0, dataset: str = "mnist", data_dir=None,
              figures_dir=None, quick: bool | None = None):
    """Notebook step: train one variant of a study live (`LiveView`, progress bar) and print what
    it measures (`studies.measure`; in quick mode on the first 2000 training / 1000 test images: `quick_data`).
    Returns (run, result, measurements)."""
    from ..plots.live import LiveView
    from ..studies import measure
    from ..core.train import train

    v = study.variants[variant]
    run = setup(name, **(v.config.to_dict() | {"seed": seed, "dataset": dataset}), data_dir=data_dir,
                figures_dir=figures_dir, quick=quick)
    view = LiveView(C_s=run.config.C_s, n_epochs=run.config.Nep, log_accuracy=run.log_accuracy,
                    title=f"{variant}, seed {seed}, {dataset}" + (" (QUICK)" if run.quick else ""))
    view.display()
    result = train(run.config, run.data, callback=view, progress=True)
    run.report(result)
    row = measure(v, run.config, result.weights, quick_data(run.data) if run.quick else run.data)
    for k, val in row.items():
        if isinstance(val, float):
            print(f"  {k:24s} {val:.4f}")
        elif k == "ladder":
            for lad in val:
                print(f"  ladder: stride {lad['stride']}, {lad['pool']}x{lad['pool']} {lad['pool_mode']}-pooled "
                      f"{lad['code']}, {lad['method']} probe: {lad['probe_accuracy']:.4f}")
    return run, result, row


def show_markdown(text: str) -> None:
    """Display `text` (e.g. a results table) as Markdown."""
    from IPython.display import Markdown, display
    display(Markdown(text))


# ----------------------------------------------------------------------------- summary
def print_log() -> None:
    """Print the log's four experiments and what it reported (deterministic: nbval checks it)."""
    for name, (c, acc, sec) in LOG_EXPERIMENTS.items():
        print(f"{name:20s} layout={c.layout:7s} C_s={c.C_s:<3d} N2={c.N2:<3d} T_s={c.T_s} Nep={c.Nep} "
              f"B={c.B} xi={c.xi}: log {100 * acc:.2f}%, {sec} s/epoch ({c.Nep * sec} s per run)")


def summary(csv_path, figures_dir=None, name: str = "05_summary") -> dict | None:
    """Notebook step: table (Markdown) and figure of the batch results in `csv_path`.

    Missing file or no complete run: prints a note (how to produce them) and returns None.
    """
    from IPython.display import Markdown, display

    rows = read_csv_rows(csv_path)
    s = summarize(rows)
    if not any(e["n"] for e in s["experiments"]):
        print(f"No complete runs of the log's experiments in {_shown(csv_path)} ({len(rows)} rows)."
              "\nRun scripts/reproduce.sh (or python -m dreamflow_utils.sweeps.batch notebooks/0[1-4]_*.ipynb "
              "--seeds 0-4 --csv results/reproduction/notebook_runs.csv) to produce them.")
        if s["excluded"]:
            print("rows left out: " + ", ".join(f"{n} {k}" for k, n in s["excluded"].items()))
        return None
    display(Markdown(log_table(s)))
    if s["excluded"]:
        print("rows left out: " + ", ".join(f"{n} {k}" for k, n in s["excluded"].items()))
    show(plot_log_summary(s), f"{name}_accuracy_time", figures_folder(figures_dir))
    return s


# ----------------------------------------------------------------------------- committed notebooks
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ABS_PATH = re.compile(r"(?<![\w.])(/work/|/home/|/tmp/|/root/|/Users/|/private/|/var/folders/|[A-Za-z]:\\\\)")  # abs-path: test input (the pattern itself)


def _html_text(value: str) -> str:
    value = re.sub(r"(?i)<br\s*/?>", "\n", value or "")
    return html.unescape(re.sub(r"<[^>]+>", "", value)).replace("\xa0", " ").replace("\u2007", " ").strip()


def _widget_text(model_id: str, state: dict, depth: int = 0) -> str:
    """Plain text of a widget and its children, from saved widget state ('' if unknown)."""
    model = state.get(model_id)
    if model is None or depth > 20:
        return ""
    name, s = model.get("model_name", ""), model.get("state", {})
    if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"):
        parts = [_widget_text(c.removeprefix("IPY_MODEL_"), state, depth + 1) for c in s.get("children", [])]
        return ("\n" if name == "VBoxModel" else " ").join(p for p in parts if p)
    if name in ("HTMLModel", "HTMLMathModel", "LabelModel"):
        return _html_text(s.get("value", "")) or _html_text(s.get("description", ""))
    if name in ("FloatProgressModel", "IntProgressModel"):
        lo, hi, v = s.get("min", 0), s.get("max", 100), s.get("value", 0)
        frac = 0 if hi == lo else max(0.0, min(1.0, (v - lo) / (hi - lo)))
        return "|" + "█" * round(20 * frac) + " " * (20 - round(20 * frac)) + "|"
    if name == "ImageModel":
        return ""
    return _html_text(s.get("description", ""))


def _source_hash(nb) -> str:
    text = json.dumps([[c.get("cell_type"), "".join(c.get("source", ""))] for c in nb["cells"]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clean_notebook(path, rendered: str | None = None) -> list[str]:
    """Make an executed notebook fit to commit; returns `check_notebook`'s problems.

    Widget outputs become plain text taken from the saved widget state (e.g. the final
    tqdm line, the live view's header), then ``metadata.widgets`` and the execution
    metadata (papermill's and timestamps) are dropped. With `rendered` set (e.g. "full"),
    records it and the cells' source hash in ``metadata.dreamflow`` (used by `render`).
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                text = _widget_text(data[WIDGET_VIEW].get("model_id", ""), state)
                out["data"] = {"text/plain": text or "[widget: shown live in JupyterLab, not saved]"}
    nb.metadata.pop("widgets", None)
    nb.metadata.pop("papermill", None)
    if rendered:
        nb.metadata["dreamflow"] = {"rendered": rendered, "source_sha256": _source_hash(nb)}
    nbformat.write(nb, path)
    return check_notebook(path)


def check_notebook(path, max_bytes: int = 2_000_000) -> list[str]:
    """Problems that keep a notebook from being committed: widget state, absolute paths, size."""
    path = Path(path)
    problems = []
    size = path.stat().st_size
    if size > max_bytes:
        problems.append(f"{path.name}: {size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB")
    nb = json.loads(path.read_text())
    if "widgets" in nb.get("metadata", {}):
        problems.append(f"{path.name}: metadata.widgets (widget state) present")
    for i, cell in enumerate(nb.get("cells", [])):
        for out in cell.get("outputs", []):
            data = {k: v for k, v in out.get("data", {}).items() if not k.startswith("image/")}
            if WIDGET_VIEW in data:
                problems.append(f"{path.name}: cell {i} has a widget output")
            m = ABS_PATH.search(json.dumps({**out, "data": data}))
            if m:
                problems.append(f"{path.name}: cell {i} output holds an absolute path ({m.group(0)}...)")
    return problems


def render(notebooks, force: bool = False, out_dir=None, jobs: int = 1, timeout: float | None = None,
           parameters: dict | None = None) -> int:
    """Execute notebooks (in place, or into `out_dir`) with papermill and `clean` them.

    In place and in full mode, a notebook whose ``metadata.dreamflow`` says it was
    rendered in full mode from its current sources is skipped unless `force`. Each
    notebook runs with its own folder as working directory, headless (no live drawing: the
    saved notebook keeps only the live view's text), with `parameters`. Returns the number of failures.
    """
    import nbformat
    import papermill as pm
    from concurrent.futures import ThreadPoolExecutor

    from ..plots.live import HEADLESS_ENV
    from ..sweeps.runs import kernel_manager

    quick = quick_mode()
    mode = "quick" if quick else "full"

    def one(nb_path: Path) -> bool:
        target = Path(out_dir) / nb_path.name if out_dir else nb_path
        if not force and not out_dir and not quick:
            nb = nbformat.read(nb_path, as_version=4)
            meta = nb.metadata.get("dreamflow", {})
            if meta.get("rendered") == "full" and meta.get("source_sha256") == _source_hash(nb):
                print(f"{nb_path}: up to date (rendered in full mode from these sources), skipped", flush=True)
                return True
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.stem}.rendering.ipynb"
        t0 = time.time()
        try:
            pm.execute_notebook(str(nb_path), str(tmp), parameters=parameters or {}, progress_bar=False,
                                log_output=False, execution_timeout=timeout,
                                resources={"metadata": {"path": str(nb_path.parent.resolve())}},
                                kernel_manager_class=kernel_manager({HEADLESS_ENV: "1"}))
        except Exception as e:
            failed = repo_root() / "runs" / "render-failed" / target.name  # not next to the notebooks
            failed.parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                os.replace(tmp, failed)
            summary_line = f"{e.ename}: {e.evalue}" if hasattr(e, "ename") else f"{type(e).__name__}: {e}"
            print(f"{nb_path}: FAILED after {time.time() - t0:.0f} s: {summary_line}"
                  + (f" (executed copy: {failed})" if failed.exists() else ""), file=sys.stderr, flush=True)
            return False
        problems = clean_notebook(tmp, rendered=None if out_dir else mode)
        os.replace(tmp, target)
        print(f"{nb_path}: rendered ({mode}) in {time.time() - t0:.0f} s -> {target}", flush=True)
        for p in problems:
            print(f"  warning: {p}", file=sys.stderr, flush=True)
        return True

    paths = [Path(p) for p in notebooks]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        ok = list(pool.map(one, paths))
    return ok.count(False)


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.notebook",
                                description="Notebook helpers: data check, render, clean, check.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("check-data", help="load MNIST ($DREAMFLOW_MNIST or --data); exit 2 with a how-to if missing")
    d.add_argument("--data", default=None)
    r = sub.add_parser("render", help="execute notebooks (in place: full mode) and clean them")
    r.add_argument("notebooks", nargs="+")
    r.add_argument("--force", action="store_true", help="also re-render notebooks that are up to date")
    r.add_argument("--out-dir", default=None, help="write executed copies here instead of in place")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set a parameter of the notebooks (a string)")
    c = sub.add_parser("clean", help="widget state -> text, drop execution metadata")
    c.add_argument("notebooks", nargs="+")
    k = sub.add_parser("check", help="report widget state, absolute paths, size > 2 MB")
    k.add_argument("notebooks", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "check-data":
        try:
            data = load_mnist(args.data)
        except (MnistNotFound, MnistFormatError) as e:
            print(f"MNIST is not available, so the log cannot be reproduced.\n{e}", file=sys.stderr)
            return 2
        print(f"MNIST found: {len(data[0][0])} train / {len(data[1][0])} test images")
        return 0
    if args.cmd == "render":
        from ..sweeps.cli import parse_pairs
        return 1 if render(args.notebooks, args.force, args.out_dir, args.jobs, parameters=parse_pairs(args.param)) else 0
    problems = []
    for nb in args.notebooks:
        problems += clean_notebook(nb) if args.cmd == "clean" else check_notebook(nb)
    for prob in problems:
        print(prob, file=sys.stderr)
    return 1 if problems else 0
