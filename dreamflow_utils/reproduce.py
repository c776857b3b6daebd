"""Reproduce the log: its four experiments x several seeds on MNIST.

`python -m dreamflow_utils.reproduce --seeds 0-4 --jobs 2` writes results/reproduction.csv
(one row per run: config, seed, per-epoch accuracy, seconds, versions; rows already there
are kept and not rerun) and results/reproduction.md (the log's number beside mean ± sd).
`--wta cluster` measures the corrected winner-take-all (results/reproduction_wta_cluster.csv).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from .data import load_mnist
from .engines.kernels import share_cores
from .experiments import LOG_EXPERIMENTS
from .files import atomic_write, read_csv_rows
from .summary import summarize, summary_markdown
from .train import train

FIELDS = ["experiment", "seed", "test_accuracy", "epoch_accuracies", "seconds", "config", "versions", "started"]


def run_one(name, seed, data_path=None, wta="log") -> dict:
    config = LOG_EXPERIMENTS[name][0].replace(seed=seed, wta=wta)
    r = train(config, load_mnist(data_path)).record()
    return {"experiment": name, "seed": seed, "test_accuracy": r["test_accuracy"],
            "epoch_accuracies": ";".join(f"{a:.4f}" for a in r["epoch_accuracies"]),
            "seconds": round(r["seconds"], 2), "config": json.dumps(r["config"]),
            "versions": json.dumps(r["versions"]), "started": r["started"]}


read_rows = read_csv_rows


def write_rows(path, rows):
    """Rewrite the CSV atomically, rows sorted by experiment and seed."""
    rows = sorted(rows, key=lambda r: (list(LOG_EXPERIMENTS).index(r["experiment"]), int(r["seed"])))
    buf = io.StringIO()
    w = csv.DictWriter(buf, FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def summary_table(rows) -> str:
    """Markdown: the log's accuracy beside this repo's mean ± sd over seeds, and times."""
    return summary_markdown(summarize(rows))


def paired_difference_table(base, other, label) -> str:
    """Markdown: per experiment, mean ± sd over seeds of (other - base) accuracy, same seeds."""
    acc = {(r["experiment"], int(r["seed"])): 100 * float(r["test_accuracy"]) for r in base}
    out = [f"| experiment | {label} minus the log's rule: mean ± sd (n seeds) | per seed |", "|---|---:|---|"]
    for name in LOG_EXPERIMENTS:
        d = [100 * float(r["test_accuracy"]) - acc[(name, int(r["seed"]))] for r in other
             if r["experiment"] == name and (name, int(r["seed"])) in acc]
        if len(d) > 1:
            out.append(f"| {name} | {statistics.mean(d):+.2f} ± {statistics.stdev(d):.2f} ({len(d)}) | "
                       + ", ".join(f"{x:+.2f}" for x in d) + " |")
    return "\n".join(out)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = map(int, text.split("-"))
        return list(range(lo, hi + 1))
    return [int(s) for s in text.split(",")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7")
    p.add_argument("--experiments", default=",".join(LOG_EXPERIMENTS), help="comma-separated names")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--data", default=None, help="MNIST location (default: DREAMFLOW_MNIST / Keras)")
    p.add_argument("--wta", default="log", choices=["log", "cluster"],
                   help="'cluster' measures the corrected winner-take-all instead of the log's quirk")
    p.add_argument("--csv", default=None, help="default results/reproduction.csv (wta=cluster: ..._wta_cluster.csv)")
    args = p.parse_args(argv)
    args.csv = args.csv or ("results/reproduction.csv" if args.wta == "log" else "results/reproduction_wta_cluster.csv")
    names = args.experiments.split(",")
    unknown = set(names) - set(LOG_EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiment(s) {sorted(unknown)}; known: {', '.join(LOG_EXPERIMENTS)}")
    load_mnist(args.data)  # fail early, with the loader's how-to message, if MNIST is missing
    rows = read_rows(args.csv)
    done = {(r["experiment"], int(r["seed"])) for r in rows}
    todo = [(n, s) for n in names for s in parse_seeds(args.seeds) if (n, s) not in done]
    print(f"{len(todo)} runs to do, {len(done)} already in {args.csv}")
    with ProcessPoolExecutor(args.jobs, initializer=share_cores, initargs=(args.jobs,)) as pool:
        futures = [pool.submit(run_one, n, s, args.data, args.wta) for n, s in todo]
        for fut in as_completed(futures):
            row = fut.result()
            rows.append(row)
            write_rows(args.csv, rows)
            print(f"{row['experiment']} seed {row['seed']}: {100 * row['test_accuracy']:.2f}% in {row['seconds']} s", flush=True)
    table = summary_table(read_rows(args.csv))
    if args.wta == "cluster" and Path("results/reproduction.csv").exists():
        table += "\n\n" + paired_difference_table(read_rows("results/reproduction.csv"), read_rows(args.csv),
                                                   'wta="cluster"')
    Path(args.csv).with_suffix(".md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
