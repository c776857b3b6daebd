"""Speed and memory of the engines side by side: `python -m dreamflow_utils.bench`.

For each of the log's four configurations, in one process on real MNIST (B=100):
milliseconds per training batch of the reference, the numpy engine (on all cores and on
one) and the TensorFlow engine (eager, graph = tf.function, XLA = jit_compile; float64
and float32), and the peak memory one batch allocates (tracemalloc: numpy's
allocations, which include the numpy engine's work arrays; its numba kernels' own
scratch, O(N1 + N2 + 784) numbers, and TF's C++ allocator are invisible to it). numpy
and TF are timed in interleaved rounds, so they share whatever load the machine has;
each number is the best round after a warm-up batch (tracing, compilation excluded).
Then full runs of the models side by side (training with per-epoch test evaluation, best of
`--models` interleaved rounds; e.g. the weight-shared model against the faithful one at the
same N2), and with `--full` complete 10-epoch runs of the log's four experiments.
Writes results/benchmark/benchmark.md, benchmark.csv and benchmark_models.csv.
"""
from __future__ import annotations

import csv
import io
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numba
from threadpoolctl import threadpool_info

from .cli import ArgumentParser, CliError, nonnegative_int, positive_int, run_cli
from .config import Config
from .data import MnistFormatError, MnistNotFound, load_mnist
from .engines import make_engine
from .experiments import LOG_EXPERIMENTS
from .files import atomic_write
from .model import init_weights
from .train import train

# column name -> (config changes, or "threads" for numpy, compiled); numpy first: the ratios are against it
VARIANTS = {
    "numpy": ({}, True),
    "numpy 1 thread": ({"threads": 1}, True),
    "TF graph f64": ({"engine": "tensorflow"}, True),
    "TF XLA f64": ({"engine": "tensorflow", "jit_compile": True}, True),
    "TF graph f32": ({"engine": "tensorflow", "dtype": "float32"}, True),
    "TF XLA f32": ({"engine": "tensorflow", "dtype": "float32", "jit_compile": True}, True),
    "TF eager f64": ({"engine": "tensorflow"}, False),
}


class Threads:
    """An engine whose `train_batches` runs numba's parallel loops on n threads."""

    def __init__(self, engine, n: int):
        self.engine, self.config, self.n = engine, engine.config, n

    def train_batches(self, x, y):
        threads = numba.get_num_threads()
        numba.set_num_threads(self.n)
        try:
            self.engine.train_batches(x, y)
        finally:
            numba.set_num_threads(threads)

    def weights(self):
        return self.engine.weights()

    def predict(self, x):
        return self.engine.predict(x)


def build(config, changes=None, compiled=True):
    """The engine of a variant: `changes` to the config (plus "threads": n for the numpy
    engine's thread count), `compiled=False` for TF eager."""
    changes = dict(changes or {})
    threads = changes.pop("threads", None)
    config = config.replace(**changes)
    if config.engine == "tensorflow" and not compiled:
        from .engines.tensorflow_engine import TensorFlowEngine
        return TensorFlowEngine(config, init_weights(config), compiled=False)
    engine = make_engine(config, init_weights(config))
    return Threads(engine, threads) if threads else engine


def timed(engine, x, y, n_batches) -> float:
    """Milliseconds per batch of one `train_batches` call over n_batches batches."""
    n = n_batches * engine.config.B
    t = time.perf_counter()
    engine.train_batches(x[:n], y[:n])
    engine.weights()  # TF: waits for queued work
    return 1000 * (time.perf_counter() - t) / n_batches


def interleaved(engines, x, y, n_batches, repeats, slow=()) -> list[float]:
    """Best ms per batch of each engine over `repeats` rounds that visit every engine
    (engines in `slow` run 2 batches per round, 2 rounds)."""
    for e in engines:
        timed(e, x, y, 1)  # warm-up: tracing, XLA compilation
    best = [float("inf")] * len(engines)
    for r in range(repeats):
        for i, e in enumerate(engines):
            if i not in slow or r < 2:
                best[i] = min(best[i], timed(e, x, y, 2 if i in slow else n_batches))
    return best


def peak_mib(engine, x, y) -> float:
    """Peak memory (MiB) allocated while the engine trains one batch, weights excluded."""
    B = engine.config.B
    engine.train_batches(x[:B], y[:B])
    tracemalloc.start()
    engine.train_batches(x[B:2 * B], y[B:2 * B])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def blas() -> str:
    libs = [f"{i['internal_api']} {i.get('version', '')} ({i.get('architecture', '?')})"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return ", ".join(libs) or "unknown"


MODELS = {  # full runs (training + test evaluation after every epoch), side by side
    "faithful block C20 N2000": Config(layout="block", C_s=20, N2=2000, Nep=5),
    "shared s4 C20 N2000 norm xi=0.05": Config(layer1="shared", layout="stride", stride=4, C_s=20, N2=2000,
                                               norm=True, xi=0.05, Nep=5),
}
RATIO = ("shared s4 C20 N2000 norm xi=0.05", "faithful block C20 N2000", 1.5)  # target: at most 1.5x


def model_runs(data, models: dict, repeats: int) -> list[dict]:
    """Best wall time (training + per-epoch evaluation) of a full run of each model over
    `repeats` interleaved rounds, its training throughput and final test accuracy."""
    best = {name: None for name in models}
    for _ in range(repeats):
        for name, config in models.items():
            r = train(config, data)
            if best[name] is None or r.seconds < best[name].seconds:
                best[name] = r
    return [{"model": name, "epochs": r.config.Nep, "seconds": round(r.seconds, 2),
             "train samples/s": round(r.config.T_s * r.config.Nep / sum(r.epoch_seconds)),
             "test accuracy": round(r.test_accuracy, 4)} for name, r in best.items()]


def models_markdown(rows, repeats: int) -> list[str]:
    lines = ["", f"Full runs of the models (60,000 samples per epoch, test evaluation after every epoch, seed 0; "
                 f"best of {repeats} interleaved rounds):", "",
             "| model | epochs | seconds | training samples/s | test accuracy |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['epochs']} | {r['seconds']:.1f} | {r['train samples/s']:,} | "
              f"{100 * r['test accuracy']:.2f}% |" for r in rows]
    by = {r["model"]: r for r in rows}
    a, b, target = RATIO
    if a in by and b in by:
        ratio = by[a]["seconds"] / by[b]["seconds"]
        lines += ["", f"Target: {a} in at most {target}x the time of {b}: {ratio:.2f}x "
                      f"({'met' if ratio <= target else 'MISSED'})."]
    return lines


@run_cli
def main(argv=None):
    p = ArgumentParser(prog="python -m dreamflow_utils.bench", description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="MNIST location (default: DREAMFLOW_MNIST / Keras)")
    p.add_argument("--batches", default="50", help="batches per timing round (default 50)")
    p.add_argument("--repeats", default="5", help="timing rounds (default 5)")
    p.add_argument("--no-tf", action="store_true", help="skip the TensorFlow engine")
    p.add_argument("--full", action="store_true", help="also time full 10-epoch runs of all four experiments")
    p.add_argument("--models", default="3", help="rounds of the full model runs (0: skip; default 3)")
    p.add_argument("--out", default="results/benchmark/benchmark.md")
    args = p.parse_args(argv)
    n_batches, repeats = positive_int(args.batches, "--batches"), positive_int(args.repeats, "--repeats")
    model_rounds = nonnegative_int(args.models, "--models")
    try:
        (x, y), test = load_mnist(args.data)
    except (MnistNotFound, MnistFormatError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    if n_batches * 100 > len(x):
        raise CliError(f"--batches: {n_batches} batches of 100 exceed the {len(x)} training images")
    variants = {k: v for k, v in VARIANTS.items() if not (args.no_tf and v[0].get("engine"))}
    cols = ["reference", *variants]
    rows = []
    for name, (config, _, _) in LOG_EXPERIMENTS.items():
        ref = build(config, {"engine": "reference"})
        engines = [build(config, *v) for v in variants.values()]
        ms = [min(timed(ref, x, y, 2) for _ in range(2))]
        ms += interleaved(engines, x, y, n_batches, repeats,
                          slow={i for i, v in enumerate(variants.values()) if not v[1]})
        rows.append({"experiment": name, **{f"{c} ms": round(m, 3) for c, m in zip(cols, ms)},
                     "reference peak MiB": round(peak_mib(ref, x, y), 1),
                     "numpy peak MiB": round(peak_mib(engines[0], x, y), 2)})
        print(rows[-1], flush=True)
    lines = ["# Benchmark", "",
             f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}, "
             f"numba {numba.__version__}, BLAS {blas()}: the reference runs BLAS on its default threads, "
             f"the numpy engine numba loops on {numba.get_num_threads()} threads ({numba.threading_layer()} "
             "layer; see engines/kernels.py). "
             f"ms per training batch (B=100, real MNIST), best of "
             f"{repeats} interleaved rounds of {n_batches} batches after a warm-up "
             "(reference and TF eager: 2 batches). Ratios in brackets: time relative to numpy.", "",
             "| experiment | " + " | ".join(f"{c} ms/batch" for c in cols)
             + " | numpy speed-up over reference | reference peak MiB | numpy peak MiB | memory ratio |",
             "|---|" + "---:|" * (len(cols) + 4)]
    for r in rows:
        t = [r[f"{c} ms"] for c in cols]
        cells = [f"{t[0]:.0f}", f"{t[1]:.2f}"] + [f"{v:.2f} ({v / t[1]:.1f}x)" for v in t[2:]]
        lines.append(f"| {r['experiment']} | " + " | ".join(cells) + f" | **{t[0] / t[1]:.0f}x** | "
                     f"{r['reference peak MiB']:.0f} | {r['numpy peak MiB']:.2f} | "
                     f"{r['reference peak MiB'] / r['numpy peak MiB']:.0f}x |")
    c100 = next((r for r in rows if r["experiment"] == "block_Cs100_N2100"), None)
    if c100:
        ratio = c100["reference ms"] / c100["numpy ms"]
        lines += ["", f"Target: numpy >= 300x faster than the reference on block_Cs100_N2100: {ratio:.0f}x "
                      f"({'met' if ratio >= 300 else 'MISSED'})."]
    if args.full:
        engines = {"numpy": {}} if args.no_tf else {"numpy": {}, "TF XLA f64": VARIANTS["TF XLA f64"][0]}
        lines += ["", "Full runs (60,000 samples x 10 epochs, test evaluation after every epoch, seed 0):", "",
                  "| experiment | " + " | ".join(f"{e} seconds" for e in engines)
                  + " | test accuracy | log's seconds (10 epochs) |", "|---|" + "---:|" * (len(engines) + 2)]
        totals, full_c100 = dict.fromkeys(engines, 0.0), None
        for name, (config, _, log_epoch_s) in LOG_EXPERIMENTS.items():
            runs = {e: train(config.replace(**changes), ((x, y), test)) for e, changes in engines.items()}
            full_c100 = runs["numpy"] if name == "block_Cs100_N2100" else full_c100
            for e, r in runs.items():
                totals[e] += r.seconds
            acc = {f"{100 * r.test_accuracy:.2f}%" for r in runs.values()}  # one value: engines agree
            lines.append(f"| {name} | " + " | ".join(f"{r.seconds:.1f}" for r in runs.values())
                         + f" | {' / '.join(sorted(acc))} | {10 * log_epoch_s} |")
            print(lines[-1], flush=True)
        lines.append("| **all four** | " + " | ".join(f"**{t:.1f}**" for t in totals.values())
                     + f" | | {10 * sum(e[2] for e in LOG_EXPERIMENTS.values())} |")
        c100_s, all_s = full_c100.seconds, totals["numpy"]
        lines += ["", f"Targets: numpy full block_Cs100_N2100 run < 30 s: {c100_s:.1f} s "
                      f"({'met' if c100_s < 30 else 'MISSED'}); whole log < 60 s: {all_s:.1f} s "
                      f"({'met' if all_s < 60 else 'MISSED'})."]
    model_rows = model_runs(((x, y), test), MODELS, model_rounds) if model_rounds else []
    lines += models_markdown(model_rows, model_rounds) if model_rows else []
    out = Path(args.out)
    atomic_write(out, "\n".join(lines) + "\n")
    for path, table in ((out.with_suffix(".csv"), rows), (out.with_name(out.stem + "_models.csv"), model_rows)):
        if table:
            buf = io.StringIO()
            w = csv.DictWriter(buf, list(table[0]))
            w.writeheader()
            w.writerows(table)
            atomic_write(path, buf.getvalue())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
