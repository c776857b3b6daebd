"""Speed and memory of the engines side by side: `python -m dreamflow_utils.bench`.

For each of the log's four configurations it times training batches (B=100, real MNIST,
warm-up excluded, best of several repeats) of the reference and the numpy engine in the
same process, measures each engine's peak memory per batch (tracemalloc) and, with
`--full`, times complete 10-epoch runs. Writes results/benchmark.md.
"""
from __future__ import annotations

import argparse
import platform
import time
import tracemalloc
from pathlib import Path

from threadpoolctl import threadpool_info

from .data import load_mnist
from .engines import make_engine
from .experiments import LOG_EXPERIMENTS
from .model import init_weights
from .train import train


def ms_per_batch(config, x, y, n_batches, repeats=3):
    """Best-of-`repeats` milliseconds per training batch after one warm-up batch."""
    engine = make_engine(config, init_weights(config))
    B = config.B
    engine.train_batches(x[:B], y[:B])
    best = float("inf")
    for r in range(repeats):
        lo = (1 + r * n_batches) * B
        t = time.perf_counter()
        engine.train_batches(x[lo:lo + n_batches * B], y[lo:lo + n_batches * B])
        best = min(best, (time.perf_counter() - t) / n_batches * 1e3)
    return best


def peak_mib(config, x, y):
    """Peak memory (MiB) allocated while the engine trains one batch, weights excluded."""
    engine = make_engine(config, init_weights(config))
    engine.train_batches(x[:config.B], y[:config.B])
    tracemalloc.start()
    engine.train_batches(x[config.B:2 * config.B], y[config.B:2 * config.B])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def blas() -> str:
    libs = [f"{i['internal_api']} {i.get('version', '')} ({i['num_threads']} threads, {i.get('architecture', '?')})"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return ", ".join(libs) or "unknown"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="MNIST location (default: DREAMFLOW_MNIST / Keras)")
    p.add_argument("--batches", type=int, default=100, help="numpy batches per timing repeat")
    p.add_argument("--ref-batches", type=int, default=3, help="reference batches per timing repeat")
    p.add_argument("--full", action="store_true", help="also time full 10-epoch runs of all four experiments")
    p.add_argument("--out", default="results/benchmark.md")
    args = p.parse_args(argv)
    (x, y), test = load_mnist(args.data)
    lines = ["# Benchmark", "",
             f"Machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
             f"BLAS: {blas()}. ms per training batch (B=100, real MNIST, best of 3 repeats after warm-up); "
             "peak = memory allocated during one batch (tracemalloc).", "",
             "| experiment | reference ms/batch | numpy ms/batch | speed-up | reference peak MiB | numpy peak MiB | memory ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, (config, _, _) in LOG_EXPERIMENTS.items():
        ref_cfg = config.replace(engine="reference")
        ref = ms_per_batch(ref_cfg, x, y, args.ref_batches, repeats=2)
        fast = ms_per_batch(config, x, y, args.batches)
        ref_mem, fast_mem = peak_mib(ref_cfg, x, y), peak_mib(config, x, y)
        lines.append(f"| {name} | {ref:.1f} | {fast:.2f} | {ref / fast:.0f}x | {ref_mem:.1f} | {fast_mem:.2f} | {ref_mem / fast_mem:.0f}x |")
        print(lines[-1], flush=True)
    if args.full:
        lines += ["", "Full runs (numpy engine, 60,000 samples x 10 epochs, test evaluation after every epoch):", "",
                  "| experiment | seconds | test accuracy (seed 0) | log's seconds (10 epochs) |", "|---|---:|---:|---:|"]
        total = 0.0
        for name, (config, _, log_epoch_s) in LOG_EXPERIMENTS.items():
            r = train(config, ((x, y), test))
            total += r.seconds
            lines.append(f"| {name} | {r.seconds:.1f} | {100 * r.test_accuracy:.2f}% | {10 * log_epoch_s} |")
            print(lines[-1], flush=True)
        lines.append(f"| **all four** | **{total:.1f}** | | {10 * sum(e[2] for e in LOG_EXPERIMENTS.values())} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
