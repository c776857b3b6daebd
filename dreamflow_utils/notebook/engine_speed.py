"""Helpers of ``notebooks/09_tensorflow_engine.ipynb``: the engines side by side.

* `compare_engines`: train several engine variants from the same seeded weights on the
  same batches; max |ΔW| and differing test predictions against the first (numpy).
* `live_timing`: ms per batch measured now, as `bench` measures it (interleaved rounds).
* `read_benchmark`: the ms per batch in ``results/benchmark/benchmark.csv`` (`python -m
  dreamflow_utils.bench`), {} when it is missing.
* `speed_markdown` / `plot_speeds`: a table and a log-scale bar figure of such timings,
  beside the log's own ms per batch (`LOG_MS_PER_BATCH`, from its tqdm lines).

TensorFlow is imported only by the TF engine variants (`bench.build`), never here.
"""
from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .. import bench
from ..core.experiments import LOG_EXPERIMENTS

# the log's seconds per epoch of 60000 samples / 600 batches of B=100, in ms per batch
LOG_MS_PER_BATCH = {name: 1000 * sec * c.B / c.T_s for name, (c, _, sec) in LOG_EXPERIMENTS.items()}
LOG_LABEL = "log (2020 machine)"
COLUMNS = ["reference", *bench.VARIANTS]  # the benchmark's engine columns, in its order
COLORS = {LOG_LABEL: "0.75", "reference": "tab:red", "numpy": "tab:blue", "numpy 1 thread": "tab:cyan", "TF graph f64": "tab:orange",
          "TF XLA f64": "saddlebrown", "TF graph f32": "tab:green", "TF XLA f32": "darkgreen",
          "TF eager f64": "tab:purple"}


def compare_engines(config, data, variants: dict) -> list[dict]:
    """Train each variant (name -> (config changes, compiled), as `bench.VARIANTS`) from
    `init_weights(config)` on the first `config.T_s` samples for `config.Nep` epochs.

    Returns one dict per variant: variant, seconds (training, first call's tracing
    included), weights, predictions (test set), accuracy, and against the first
    variant: max_dw (max |ΔW| over w1, w2, w3), rel_dw (max_dw / max |W|), n_differ
    (test predictions that differ).
    """
    (x, y), (tx, ty) = data
    x, y = x[:config.T_s], y[:config.T_s]
    rows = []
    for name, (changes, compiled) in variants.items():
        engine = bench.build(config, changes, compiled)
        t = time.perf_counter()
        for _ in range(config.Nep):
            engine.train_batches(x, y)
        weights = engine.weights()
        seconds = time.perf_counter() - t
        predictions = engine.predict(tx)
        rows.append(dict(variant=name, seconds=seconds, weights=weights, predictions=predictions,
                         accuracy=float(np.mean(predictions == ty))))
    base = rows[0]
    scale = max(float(np.max(np.abs(w))) for w in base["weights"])
    for r in rows:
        r["max_dw"] = max(float(np.max(np.abs(a - b))) for a, b in zip(r["weights"], base["weights"]))
        r["rel_dw"] = r["max_dw"] / scale
        r["n_differ"] = int(np.sum(r["predictions"] != base["predictions"]))
    return rows


def equality_markdown(rows: list[dict], n_batches: int) -> str:
    """Markdown table of `compare_engines`' rows."""
    base = rows[0]["variant"]
    lines = [f"| engine | max \\|ΔW\\| vs {base} | relative | test predictions differing | test accuracy | "
             f"training s ({n_batches} batches) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['max_dw']:.1e} | {r['rel_dw']:.1e} | {r['n_differ']} of "
                     f"{len(r['predictions'])} | {100 * r['accuracy']:.2f}% | {r['seconds']:.1f} |")
    return "\n".join(lines)


def live_timing(data, configs: dict, variants: dict, n_batches: int, rounds: int,
                reference: bool = True) -> dict:
    """{experiment: {engine: ms per batch}} measured now: per config, the reference (best
    of 2 calls of min(2, n_batches) batches) and `variants` (name -> (changes, compiled))
    in `bench.interleaved` rounds (uncompiled variants: 2 batches a round, 2 rounds)."""
    (x, y), _ = data
    table = {}
    for name, config in configs.items():
        row = {}
        if reference:
            ref = bench.build(config, {"engine": "reference"})
            row["reference"] = min(bench.timed(ref, x, y, min(2, n_batches)) for _ in range(2))
        engines = [bench.build(config, *v) for v in variants.values()]
        slow = {i for i, v in enumerate(variants.values()) if not v[1]}
        row.update(zip(variants, bench.interleaved(engines, x, y, n_batches, rounds, slow=slow)))
        table[name] = row
    return table


def read_benchmark(path) -> dict:
    """{experiment: {engine: ms per batch}} from `bench`'s CSV; {} if the file is missing.
    Columns it lacks (e.g. written with --no-tf) or empty cells are left out."""
    path = Path(path)
    if not path.is_file():
        return {}
    table = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {}
            for col in COLUMNS:
                try:
                    row[col] = float(r[f"{col} ms"])
                except (KeyError, TypeError, ValueError):
                    pass
            if r.get("experiment"):
                table[r["experiment"]] = row
    return table


def _columns(tables) -> list[str]:
    present = {c for t in tables for row in t.values() for c in row}
    return [c for c in COLUMNS if c in present]


def speed_markdown(table: dict) -> str:
    """Markdown: ms per batch per engine (× numpy's time in brackets) and the log's."""
    cols = _columns([table])
    lines = ["| experiment | " + " | ".join(f"{c} ms" for c in [LOG_LABEL, *cols]) + " |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for name, row in table.items():
        numpy_ms = row.get("numpy")
        cells = [_ms(LOG_MS_PER_BATCH.get(name), numpy_ms)] + [_ms(row.get(c), numpy_ms) for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(value, numpy_ms) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return text + (f" ({value / numpy_ms:.1f}×)" if numpy_ms else "")


def _label(name: str) -> str:
    if name not in LOG_EXPERIMENTS:
        return name
    c = LOG_EXPERIMENTS[name][0]
    return f"{c.layout} C_s={c.C_s} N2={c.N2}"


def plot_speeds(panels: list[tuple[str, dict]]) -> Figure:
    """One axis per (title, table) in `panels`: log-scale bars of ms per batch, grouped by
    experiment (the log's order), the log's own ms per batch first, values on the bars."""
    fig = Figure(figsize=(11, 4.2 * len(panels)))
    for i, (title, table) in enumerate(panels, 1):
        ax = fig.add_subplot(len(panels), 1, i)
        names = [n for n in LOG_EXPERIMENTS if n in table] + [n for n in table if n not in LOG_EXPERIMENTS]
        bars = [LOG_LABEL, *_columns([table])]
        width = 0.84 / len(bars)
        values = []
        for j, bar in enumerate(bars):
            v = np.array([LOG_MS_PER_BATCH.get(n, np.nan) if bar == LOG_LABEL else table[n].get(bar, np.nan)
                          for n in names], dtype=float)
            xs = np.arange(len(names)) + (j - (len(bars) - 1) / 2) * width
            ax.bar(xs, v, width, color=COLORS.get(bar, "0.4"), label=bar,
                   hatch="//" if bar == LOG_LABEL else None, edgecolor="white" if bar != LOG_LABEL else "0.4")
            for xv, yv in zip(xs, v):
                if math.isfinite(yv):
                    ax.annotate(f"{yv:.0f}" if yv >= 10 else f"{yv:.1f}", (xv, yv), ha="center", va="bottom",
                                fontsize=6.5, rotation=90, xytext=(0, 2), textcoords="offset points")
            values += [y for y in v if math.isfinite(y)]
        ax.set_yscale("log")
        if values:
            ax.set_ylim(min(values) / 2, max(values) * 6)
        ax.set_xticks(np.arange(len(names)), [_label(n) for n in names], fontsize=9)
        ax.set_ylabel("ms per training batch (B=100)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7.5, ncol=4, loc="upper left")
    fig.tight_layout()
    return fig
