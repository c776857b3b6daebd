"""The log's four numbers beside this repo's runs: mean ± sd over seeds, times.

Rows come from either table of runs: the papermill batch's (`results/runs.csv`, one row
per executed notebook: notebook, status, ...) or `reproduce`'s (`results/reproduction.csv`,
one row per finished run: experiment, ...); both have seed, test_accuracy (0-1),
epoch_accuracies (";"-separated) and seconds.
"""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from .experiments import LOG_EXPERIMENTS


def experiment_of(notebook) -> str | None:
    """'notebooks/02_block_Cs10_N2100.ipynb' -> 'block_Cs10_N2100' (None if not a log experiment)."""
    stem = re.sub(r"^\d+_", "", Path(str(notebook)).stem)
    return stem if stem in LOG_EXPERIMENTS else None


def _stats(values):
    values = list(values)
    if not values:
        return math.nan, math.nan
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarize(rows) -> dict:
    """Per log experiment (in the log's order): this repo's accuracies and times beside the log's.

    Only finished runs of the log's configuration count: status "ok" and as many
    per-epoch accuracies as the log's Nep (quick-mode runs train 1 epoch and are excluded).
    Returns ``{"experiments": [...], "excluded": {reason: count}}``; each experiment is a
    dict with name, log_accuracy, log_seconds (per run), n, accuracies, mean, sd,
    seconds, seconds_mean, seconds_sd, seeds (all in % / s).
    """
    by_name = {name: [] for name in LOG_EXPERIMENTS}
    excluded: dict[str, int] = {}

    def skip(reason):
        excluded[reason] = excluded.get(reason, 0) + 1

    for r in rows:
        name = r.get("experiment") or experiment_of(r.get("notebook", ""))
        if name not in LOG_EXPERIMENTS:
            skip("not a log experiment")
            continue
        if r.get("status", "ok") != "ok":
            skip("failed")
            continue
        epochs = [e for e in (r.get("epoch_accuracies") or "").split(";") if e]
        if len(epochs) != LOG_EXPERIMENTS[name][0].Nep:
            skip(f"not {LOG_EXPERIMENTS[name][0].Nep} epochs (quick mode?)")
            continue
        by_name[name].append(r)
    out = []
    for name, runs in by_name.items():
        config, log_acc, log_epoch_s = LOG_EXPERIMENTS[name]
        runs = sorted(runs, key=lambda r: int(r["seed"]))
        acc = [100 * float(r["test_accuracy"]) for r in runs]
        secs = [float(r["seconds"]) for r in runs]
        mean, sd = _stats(acc)
        s_mean, s_sd = _stats(secs)
        out.append(dict(name=name, log_accuracy=100 * log_acc, log_seconds=config.Nep * log_epoch_s,
                        n=len(acc), accuracies=acc, mean=mean, sd=sd, seconds=secs,
                        seconds_mean=s_mean, seconds_sd=s_sd, seeds=[int(r["seed"]) for r in runs]))
    return {"experiments": out, "excluded": excluded}


def _num(x, fmt):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def summary_markdown(summary: dict) -> str:
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
            f"{_num(e['seconds_mean'], '.1f')} ± {_num(e['seconds_sd'], '.1f')} s | {e['log_seconds']} s | "
            f"{_num(speed, '.0f')}× |")
    return "\n".join(lines)
