"""The log reproduced: its four experiments x seeds, with the log's rule and with the corrected
winner-take-all (`wta="own_units"`), and the table of the log's numbers beside this repo's.

The table reads either this study's records (variant = the experiment's name, e.g. "log block
C_s=20 N2=200") or the papermill main job's table (`scripts/reproduce.sh`: one row per executed
notebook 01-04, with notebook, status, epoch_accuracies ";"-joined).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..core.config import model_name
from ..core.experiments import LOG_EXPERIMENTS, LOG_NOTEBOOKS
from . import Study, model, tables, variants

# each experiment with the corrected winner-take-all: "log block C_s=20 wta=own_units N2=200"
OWN_UNITS = {name: model_name(config.replace(wta="own_units")) for name, (config, _, _) in LOG_EXPERIMENTS.items()}


def experiment_of(row) -> str | None:
    """The log experiment a record or main-job row is a run of (None if none, e.g. wta=own_units):
    its variant, or its notebook 'notebooks/02_log_block_C_s=10_N2=100.ipynb' -> 'log block C_s=10 N2=100'."""
    if row.get("variant"):
        return row["variant"] if row["variant"] in LOG_EXPERIMENTS else None
    stem = Path(str(row.get("notebook", ""))).stem
    return next((name for name, nb in LOG_NOTEBOOKS.items() if nb == stem), None)


def epochs_of(row) -> list[float]:
    e = row.get("epoch_accuracies") or []
    return [float(a) for a in (e.split(";") if isinstance(e, str) else e) if a != ""]


def _stats(values):
    values = list(values)
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarize(rows) -> dict:
    """Per log experiment (in the log's order): this repo's accuracies and times beside the log's.

    Only finished runs of the log's configuration count: status "ok", not quick, and as many
    per-epoch accuracies as the log's Nep. Returns ``{"experiments": [...], "excluded":
    {reason: count}}``; each experiment is a dict with name, log_accuracy, log_seconds (per
    run), n, accuracies, mean, sd, seconds, seconds_mean, seconds_sd, seeds (in % / s).
    """
    by_name = {name: [] for name in LOG_EXPERIMENTS}
    excluded: dict[str, int] = {}

    def skip(reason):
        excluded[reason] = excluded.get(reason, 0) + 1

    for r in rows:
        name = experiment_of(r)
        if name is None:
            skip("not a log experiment")
        elif r.get("status", "ok") != "ok":
            skip("failed")
        elif str(r.get("quick", "")).lower() in ("true", "1"):
            skip("quick mode")
        elif len(epochs_of(r)) != LOG_EXPERIMENTS[name][0].Nep:
            skip(f"not {LOG_EXPERIMENTS[name][0].Nep} epochs")
        else:
            by_name[name].append(r)
    out = []
    for name, runs in by_name.items():
        config, log_acc, log_epoch_s = LOG_EXPERIMENTS[name]
        runs = sorted(runs, key=lambda r: int(r["seed"]))
        acc = [100 * float(r["test_accuracy"]) for r in runs]
        secs = [float(r["seconds"]) for r in runs]
        mean, sd = _stats(acc)
        timed = tables.timed([_timed(r) for r in runs])
        (s_mean, s_sd), load = timed if timed else ((math.nan, math.nan), "")
        out.append(dict(name=name, log_accuracy=100 * log_acc, log_seconds=config.Nep * log_epoch_s,
                        n=len(acc), accuracies=acc, mean=mean, sd=sd, seconds=secs,
                        seconds_mean=s_mean, seconds_sd=s_sd, seconds_load=load, seeds=[int(r["seed"]) for r in runs]))
    return {"experiments": out, "excluded": excluded}


def _timed(row) -> dict:
    """A record or CSV row as `tables.seconds_cell` reads it: seconds and the load they were measured under."""
    load = row.get("load")
    if not isinstance(load, dict) and str(row.get("jobs", "")).strip():
        load = {"jobs": int(row["jobs"]), "running_others": int(row.get("running_others") or 0)}
    return {"seconds": float(row["seconds"]), "load": load}


def _num(x, fmt):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def log_table(summary: dict) -> str:
    """Markdown table: log vs mean ± sd (n), difference, seconds per run vs the log's."""
    lines = ["| experiment | log | this repo: mean ± sd (n) | difference | seeds | "
             "seconds per run: this repo | log (10 epochs) | speed-up |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    for e in summary["experiments"]:
        diff = e["mean"] - e["log_accuracy"] if e["n"] else math.nan
        speed = e["log_seconds"] / e["seconds_mean"] if e["n"] else math.nan
        lines.append(
            f"| {e['name']} | {e['log_accuracy']:.2f}% | {_num(e['mean'], '.2f')}% ± {_num(e['sd'], '.2f')} ({e['n']}) | "
            f"{_num(diff, '+.2f')} | {', '.join(f'{a:.2f}' for a in e['accuracies']) or '–'} | "
            f"{tables.fmt((e['seconds_mean'], e['seconds_sd']), 1, 1) if e['n'] else '–'} s{e['seconds_load']} | "
            f"{e['log_seconds']} s | {_num(speed, '.0f')}×{e['seconds_load']} |")
    return "\n".join(lines)


def wta_differences(records) -> dict[str, list[float]]:
    """Per experiment with records of both rules: the accuracy of wta="own_units" minus the log's
    rule's, in points, paired by seed (in seed order)."""
    acc = {(r["variant"], r["seed"]): 100 * r["test_accuracy"] for r in records}
    out = {}
    for name in LOG_EXPERIMENTS:
        d = [a - acc[(name, seed)] for (v, seed), a in sorted(acc.items(), key=lambda kv: kv[0][1])
             if v == OWN_UNITS[name] and (name, seed) in acc]
        if d:
            out[name] = d
    return out


def wta_difference_table(records) -> str:
    """Per experiment: mean ± sd over seeds of (wta="own_units" - the log's rule) accuracy, paired by seed."""
    rows = []
    for name, d in wta_differences(records).items():
        if len(d) > 1:
            rows.append([name, f"{statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} ({len(d)})",
                         ", ".join(f"{x:+.2f}" for x in d)])
    return tables.markdown(["experiment", 'wta="own_units" minus the log\'s rule: mean ± sd (n seeds)', "per seed"], rows)


def summary_markdown(records) -> str:
    """The study's summary: the log beside this repo (the log's rule), then the wta="own_units" effect."""
    return (log_table(summarize(records)) + "\n\n**The log's quirk, measured** (paired by seed):\n\n"
            + wta_difference_table(records) + "\n")


def plot_log_summary(summary: dict):
    """Accuracy (log vs mean ± sd, seeds as dots) and seconds per run (log scale), side by side."""
    import numpy as np
    from matplotlib.figure import Figure

    exps = summary["experiments"]
    x = np.arange(len(exps))
    fig = Figure(figsize=(11, 4.2))
    ax, at = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    w = 0.38
    labels = [e["name"].replace(" C_s", "\nC_s", 1) for e in exps]
    ax.bar(x - w / 2, [e["log_accuracy"] for e in exps], w, color="0.65", label="log (2020, one run)")
    means = [e["mean"] if e["n"] else 0 for e in exps]
    sds = [e["sd"] if e["n"] > 1 else 0 for e in exps]
    ax.bar(x + w / 2, means, w, yerr=sds, capsize=4, color="tab:red", alpha=0.8,
           label="this repo: mean ± sd over seeds")
    for i, e in enumerate(exps):
        if e["accuracies"]:
            jitter = np.linspace(-0.08, 0.08, len(e["accuracies"]))
            ax.plot(x[i] + w / 2 + jitter, e["accuracies"], "k.", ms=4, zorder=3)
        ax.annotate(f"{e['log_accuracy']:.2f}", (x[i] - w / 2, e["log_accuracy"]), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        if e["n"]:
            ax.annotate(f"{e['mean']:.2f}\n(n={e['n']})", (x[i] + w / 2, e["mean"] + (sds[i] or 0)),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    vals = [e["log_accuracy"] for e in exps] + [a for e in exps for a in e["accuracies"]]
    ax.set_ylim(max(0, min(vals) - 8), min(100, max(vals) + 7))
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MNIST test accuracy after 10 epochs", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(True, axis="y", alpha=0.3)

    at.bar(x - w / 2, [e["log_seconds"] for e in exps], w, color="0.65", label="log (10 x s/epoch)")
    s_means = [e["seconds_mean"] if e["n"] else np.nan for e in exps]
    s_sds = [e["seconds_sd"] if e["n"] > 1 else 0 for e in exps]
    at.bar(x + w / 2, s_means, w, yerr=s_sds, capsize=4, color="tab:blue", alpha=0.8,
           label="this repo: mean ± sd")
    at.set_yscale("log")
    at.set_xticks(x, labels, fontsize=8)
    at.set_ylabel("seconds per 10-epoch run")
    at.set_title("time per run (this repo includes per-epoch evaluation)", fontsize=10)
    at.legend(fontsize=8, loc="upper left")
    at.grid(True, axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    return fig


STUDY = Study(
    "reproduction", "the log's four experiments, the log's rule and the corrected winner-take-all",
    variants(*[model(config, f"log: {100 * acc:.2f}%") for config, acc, _ in LOG_EXPERIMENTS.values()],
             *[model(config.replace(wta="own_units")) for config, _, _ in LOG_EXPERIMENTS.values()]),
    summary=summary_markdown)
