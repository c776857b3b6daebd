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
* Prose states no measured number (accuracies, seconds, sd multiples, seed counts, ratios): a
  sentence that quotes one is printed by a code cell from the committed records or the run
  (`reproduction_summary`, `main_job_summary`, `Quotes`, `bench_span`; seconds with the load they
  were measured under), so it cannot drift from them (``tests/test_notebook_numbers.py``).

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
from ..core.config import Config, model_name
from ..core.data import MnistFormatError, MnistNotFound, load_dataset, load_digits_demo, load_mnist
from ..core.experiments import LOG_EXPERIMENTS
from ..core.files import read_csv_rows, repo_root
from ..core.model import init_weights
from ..core.quick import QUICK_ENV, QUICK_NEP, QUICK_T_S, quick_config, quick_data, quick_mode
from ..studies.reproduction import log_table, plot_log_summary, summarize

__all__ = [
    "QUICK_ENV", "QUICK_T_S", "QUICK_NEP", "quick_mode", "quick_config", "find_log",
    "load_data", "figures_folder", "show", "setup", "Run", "study_run", "show_markdown",
    "print_log", "summary", "percent", "span", "seconds_text", "reproduction_summary", "reproduction_overview",
    "main_job_summary", "Quotes", "bench_span",
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
        return f"{model_name(self.config)}, seed {self.config.seed}" + (" (QUICK)" if self.quick else "")

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
            raise ConfigMismatch("the run trained another configuration than the notebook declared: "
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


# ----------------------------------------------------------------------------- numbers for prose
# A notebook's prose states no measured number: the sentences that quote one are printed by a cell
# from the committed records (or from the notebook's own run), with these helpers. A cell that reads
# only records depends on nothing else (not on quick mode, not on the data), so it may be marked
# ``# NBVAL_CHECK_OUTPUT``: nbval then fails when the records change and the notebook was not rendered again.

def percent(ms, digits: int = 1, n: int | None = None) -> str:
    """'71.4% ± 0.8 (n=5)' from (mean, sd) of accuracies in [0, 1]: sd None gives no '±', n None no '(n=...)'."""
    m, s = ms
    text = f"{100 * m:.{digits}f}%" + ("" if s is None else f" ± {100 * s:.{digits}f}")
    return text + ("" if n is None else f" (n={n})")


def span(values, digits: int = 1, unit: str = "") -> str:
    """'a-b' (smallest to largest of `values`, `digits` decimals, then `unit`); one value: 'a'."""
    lo, hi = min(values), max(values)
    a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
    return (a if a == b else f"{a}-{b}") + unit


def seconds_text(records, key: str = "seconds", digits: int = 1, study_records=None) -> str:
    """'16.3 ± 2.2 s (load not recorded)': `tables.timed` of the records' seconds (the runs measured
    alone, else all of them with the load they ran under), '' without timed records. When the load
    was not recorded, `study_records` (every run of the study) add how many of them ran at a time, by
    their start and finish times."""
    from ..studies import tables
    t = tables.timed(records, key)
    if t is None:
        return ""
    note = t[1]
    at_once = _overlap(study_records) if study_records is not None and "load not recorded" in note else 0
    if at_once > 1:
        note = f" (load not recorded; up to {at_once} of the study's runs at a time, by their start and finish times)"
    return tables.fmt(t[0], 1, digits) + " s" + note


def _sd_position(value: float, mean: float, sd: float | None, values) -> str:
    """Where `value` lies among seeds of mean ± sd: 'x.x sd above the mean, inside the range of the seeds'."""
    where = ("above every seed" if value > max(values) else "below every seed" if value < min(values)
             else "inside the range of the seeds")
    if not sd:
        return where
    k = (value - mean) / sd
    return f"{abs(k):.1f} sd {'above' if k >= 0 else 'below'} the mean, {where}"


def _reproduction(results_dir=None, everything: bool = False):
    """(folder, {experiment: its ok, full, test-set MNIST records by seed}) of the reproduction study;
    with `everything`, also the list of all its records (every variant)."""
    from ..studies import get_study, load_records
    study = get_study("reproduction")
    folder = Path(results_dir) if results_dir is not None else study.folder
    records = load_records(study, folder)
    out = {name: [] for name in LOG_EXPERIMENTS}
    for r in sorted(records, key=lambda r: r["seed"]):
        if r["variant"] in out and r.get("dataset", "mnist") == "mnist" and r.get("split", "test") == "test":
            out[r["variant"]].append(r)
    return (folder, out, records) if everything else (folder, out)


def _accuracies(records) -> list[float]:
    return [float(r["test_accuracy"]) for r in records]


def _experiment_line(name: str, records) -> str:
    """'the log's 69.07% against 68.39% ± 1.83 over 10 seeds (range 65.21-70.92%): 0.4 sd above ...'."""
    log = LOG_EXPERIMENTS[name][1]
    acc = _accuracies(records)
    if not acc:
        return f"the log's {100 * log:.2f}% (no committed records)"
    from ..studies import tables
    m, s = tables.stats(acc)
    return (f"the log's {100 * log:.2f}% against {percent((m, s), 2)} over {len(acc)} seeds "
            f"(range {span([100 * a for a in acc], 2, '%')}): {_sd_position(log, m, s, acc)}")


def reproduction_summary(run: Run, compare=(), results_dir=None) -> None:
    """Conclusion of a log experiment notebook (01-04), printed from the reproduction study's
    committed records (`results/reproduction/`): the record of the notebook's seed beside the log
    (its accuracy after the first and the last epochs), mean ± sd and range over every committed seed
    and where the log's number lies among them, the difference of means to the experiments named in
    `compare`, and the seconds per run with the load they were measured under. Depends only on the
    parameters (`run.requested`) and the records."""
    c = run.requested
    if run.log is None or c.dataset != "mnist":
        print("no committed records of the reproduction study for this configuration: nothing to conclude from")
        return
    folder, exps, every = _reproduction(results_dir, everything=True)
    name, log, epoch_s = run.log
    records = exps[name]
    if not records:
        print(f"no committed records of {name} under {_shown(folder)}")
        return
    mine = [r for r in records if r["seed"] == c.seed]
    if mine:
        r, e = mine[0], mine[0]["epoch_accuracies"]
        rest = f", then {span([100 * a for a in e[1:]], 2, '%')} over epochs 2-{len(e)}" if len(e) > 1 else ""
        print(f"seed {c.seed} ({_shown(r['record_path'])}): {100 * r['test_accuracy']:.2f}% after {len(e)} epochs "
              f"({100 * e[0]:.2f}% after epoch 1{rest}); the log: {100 * log:.2f}% "
              f"({100 * (r['test_accuracy'] - log):+.2f} points)")
    else:
        print(f"seed {c.seed}: no committed record")
    print(f"{name}, {len(records)} committed seeds ({_shown(folder)}/): " + _experiment_line(name, records))
    from ..studies import tables
    mean = tables.stats(_accuracies(records))[0]
    for other in compare:
        acc = _accuracies(exps[other])
        if acc:
            print(f"  {name} - {other}: {100 * (mean - tables.stats(acc)[0]):+.2f} points between the means "
                  f"({other}: {percent(tables.stats(acc), 2)} over {len(acc)} seeds)")
    print(f"seconds per {c.Nep}-epoch run (training and a test evaluation after every epoch), "
          f"{len(records)} seeds: {seconds_text(records, study_records=every)}; the log: {c.Nep * epoch_s} s "
          f"({epoch_s} s per epoch on its 2020 machine)")


def reproduction_overview(results_dir=None) -> None:
    """One line per log experiment from the reproduction study's committed records: the log's number
    beside mean ± sd and range over the committed seeds, and where it lies among them."""
    folder, exps = _reproduction(results_dir)
    print(f"the reproduction study ({_shown(folder)}/), MNIST test accuracy after 10 epochs:")
    for name, records in exps.items():
        print(f"  {name}: " + _experiment_line(name, records))


def _overlap(rows) -> int:
    """The most rows whose [started, finished] intervals overlap at one time (0 without timestamps)."""
    from datetime import datetime
    events = []
    for r in rows:
        try:
            a, b = datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["finished"])
        except (KeyError, TypeError, ValueError):
            continue
        events += [(a, 1), (b, -1)]
    most = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


def main_job_summary(csv_path, results_dir=None) -> None:
    """Conclusion of notebook 05, printed from the main job's table (`csv_path`) and the reproduction
    study's records: do the main job's runs repeat the study's records of the same seeds (per-epoch
    accuracies), the log beside the study (`reproduction_overview`), and the main job's seconds per run
    with how many runs shared the machine (from their start and finish times; no other load recorded)."""
    from datetime import datetime

    from ..studies.reproduction import epochs_of, experiment_of
    rows = [r for r in read_csv_rows(csv_path) if experiment_of(r) and r.get("status", "ok") == "ok"
            and str(r.get("quick", "")).lower() not in ("true", "1")]
    exps = _reproduction(results_dir)[1]
    study = {(name, r["seed"]): r["epoch_accuracies"] for name, rs in exps.items() for r in rs}
    same = sum(study.get((experiment_of(r), int(r["seed"]))) == epochs_of(r) for r in rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    seeds_text = span(seeds, 0) if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))
    print(f"the main job ({_shown(csv_path)}): {len(rows)} complete runs, seeds {seeds_text} of each experiment; "
          f"{same} of {len(rows)} have the per-epoch accuracies of the reproduction study's record of the same seed")
    reproduction_overview(results_dir)
    if not rows:
        return
    s = summarize(rows)["experiments"]
    secs = [e["seconds_mean"] for e in s if e["n"]]
    ratios = [e["log_seconds"] / e["seconds_mean"] for e in s if e["n"]]
    times = [datetime.fromisoformat(r[k]) for r in rows for k in ("started", "finished") if r.get(k)]
    took = f"; the {len(rows)} runs took {(max(times) - min(times)).total_seconds() / 60:.1f} minutes from the first " \
           "start to the last finish" if times else ""
    print(f"the main job's seconds per 10-epoch run (mean per experiment, training and a test evaluation after "
          f"every epoch): {span(secs, 1, ' s')}, up to {_overlap(rows)} runs at a time by their start and finish "
          f"times (no other load recorded); the log: {span([e['log_seconds'] for e in s], 0, ' s')}, "
          f"{span(ratios, 0)} times as long{took}")


class Quotes:
    """Numbers for a notebook's findings, from study records: each call returns a short string for a
    Markdown sentence (an f-string shown with `show_markdown`), so the findings quote only numbers
    computed from the records. Variants are a study's variant names; fields are record fields
    (accuracies in [0, 1] are shown in %)::

        q = Quotes(records)
        q("log block C_s=20 N2=200")                                        # '71.4% ± 0.8 (n=5)': test accuracy, mean ± sd over seeds
        q("log block C_s=20 N2=200", "probe_value", 2)                      # '88.78% ± 0.10 (n=5)'
        q.mean("log block C_s=20 N2=200")                                   # '71.4%'
        q.diff("shared stride=4 C_s=20 N2=200", "log block C_s=20 N2=200")  # '+12.0 points' (difference of the means)
        q.value("log block C_s=20 N2=200", "code_sim_1px")                  # '0.46 ± 0.00' (not a percentage)
        q.seconds("shared stride=4 C_s=20 N2=200")                          # '14 ± 1 s (load not recorded; ...)': `seconds_text`
        q.ladder(1, 3, "sum", "onehot", "logistic", 2)                      # '97.80% ± 0.11 (n=5)' (probe ladder)
    """

    def __init__(self, records, dataset: str = "mnist", split: str = "test"):
        self.records = [r for r in records if r.get("dataset", "mnist") == dataset and r.get("split", "test") == split]

    def of(self, variant: str) -> list[dict]:
        rs = [r for r in self.records if r.get("variant") == variant]
        if not rs:
            raise KeyError(f"no records of variant {variant!r}")
        return rs

    def stats(self, variant: str, key: str = "test_accuracy") -> tuple[tuple[float, float | None], int]:
        from ..studies import tables
        values = [r.get(key) for r in self.of(variant) if r.get(key) is not None]
        if not values:
            raise KeyError(f"no {key!r} in the records of {variant!r}")
        return tables.stats(values), len(values)

    def __call__(self, variant: str, key: str = "test_accuracy", digits: int = 1) -> str:
        ms, n = self.stats(variant, key)
        return percent(ms, digits, n)

    def mean(self, variant: str, key: str = "test_accuracy", digits: int = 1) -> str:
        return f"{100 * self.stats(variant, key)[0][0]:.{digits}f}%"

    def diff(self, a: str, b: str, key_a: str = "test_accuracy", key_b: str | None = None, digits: int = 1) -> str:
        d = self.stats(a, key_a)[0][0] - self.stats(b, key_b or key_a)[0][0]
        return f"{100 * d:+.{digits}f} points"

    def diff_span(self, variants, key_a: str, key_b: str, digits: int = 0) -> str:
        """'16-24 points': the range over `variants` of mean(key_a) - mean(key_b)."""
        return span([100 * (self.stats(v, key_a)[0][0] - self.stats(v, key_b)[0][0]) for v in variants], digits,
                    " points")

    def value(self, variant: str, key: str, digits: int = 2) -> str:
        from ..studies import tables
        return tables.fmt(self.stats(variant, key)[0], 1, digits)

    def seconds(self, variant: str, digits: int = 0) -> str:
        return seconds_text(self.of(variant), digits=digits, study_records=self.records)

    def ladder_stats(self, stride, pool, pool_mode, code, method, key: str = "probe_accuracy"):
        """((mean, sd), n) of `key` of the probe-ladder entries with these settings, over the records."""
        from ..studies import tables
        values = [lad[key] for r in self.records for lad in r.get("ladder", [])
                  if (lad["stride"], lad["pool"], lad["pool_mode"], lad["code"], lad["method"])
                  == (stride, pool, pool_mode, code, method) and lad.get(key) is not None]
        if not values:
            raise KeyError(f"no {key!r} in probe-ladder records of {(stride, pool, pool_mode, code, method)}")
        return tables.stats(values), len(values)

    def ladder(self, stride, pool, pool_mode, code, method, digits: int = 1) -> str:
        """'97.80% ± 0.11 (n=5)': the probe accuracy of the probe-ladder entries with these settings."""
        ms, n = self.ladder_stats(stride, pool, pool_mode, code, method)
        return percent(ms, digits, n)

    def ladder_value(self, stride, pool, pool_mode, code, method, key: str, digits: int = 2) -> str:
        """'0.88 ± 0.00': another field of those entries (e.g. code_sim_1px), not a percentage."""
        from ..studies import tables
        return tables.fmt(self.ladder_stats(stride, pool, pool_mode, code, method, key)[0], 1, digits)

    @staticmethod
    def against(value: float, goal: float, digits: int = 1) -> str:
        """'0.7 points short of' / '0.3 points above' `goal` (both in [0, 1])."""
        d = 100 * (value - goal)
        return f"{abs(d):.{digits}f} points {'above' if d >= 0 else 'short of'}"


def bench_span(table: dict, engine, over=None, digits: int = 2) -> str:
    """Over the experiments of a benchmark table ({experiment: {engine: ms per batch}}, as
    `engine_speed.read_benchmark` returns it; the engine `engine_speed.LOG_LABEL` is the log's own
    ms per batch): 'a-b', the range of `engine`'s ms per batch, or with `over` of its time / `over`'s
    time. `engine` and `over` may be lists of engines: the range over every pair."""
    from .engine_speed import LOG_LABEL, LOG_MS_PER_BATCH

    def ms(name, row, col):
        return LOG_MS_PER_BATCH[name] if col == LOG_LABEL else row[col]
    engines = [engine] if isinstance(engine, str) else list(engine)
    overs = [None] if over is None else [over] if isinstance(over, str) else list(over)
    values = [ms(n, row, e) / (1 if o is None else ms(n, row, o))
              for n, row in table.items() for e in engines for o in overs]
    return span(values, digits)


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
