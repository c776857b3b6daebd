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

``--check``: the speed guard CI runs: the numpy engine against the literal reference on the same
batches of block C_s=100, in one process (a ratio survives a noisy machine); exit status 1 when
numpy is less than ``--floor`` times faster. ``--threads``: how the engine's threads should wait
and how many it should use, measured alone and beside a busy process, each setting in its own
process, and the log's four experiments alone and in a ``--jobs 2`` batch: results/benchmark/threads.md.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_info

from .core.config import Config, model_name
from .core.data import MnistFormatError, MnistNotFound, load_mnist
from .core.experiments import LOG_EXPERIMENTS
from .core.files import atomic_write
from .core.model import init_weights
from .core.train import train
from .engines import make_engine
from .sweeps.cli import ArgumentParser, CliError, nonnegative_int, positive_int, run_cli

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
        return make_engine(config, init_weights(config), compiled=False)
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


MODELS = {model_name(c): c for c in (  # full runs (training + test evaluation after every epoch), side by side
    Config(layout="block", C_s=20, N2=2000, Nep=5),
    Config(layer1="shared", layout="stride", stride=4, C_s=20, N2=2000, norm=True, xi=0.05, Nep=5))}
RATIO = (*reversed(MODELS), 1.5)  # the shared model's seconds over the faithful one's; target: at most 1.5x


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


CHECK_EXPERIMENT = "log block C_s=100 N2=100"  # the reference's slowest, the engine's biggest lead
CHECK_FLOOR = 100.0


def speed_check(x, y, batches: int = 3, rounds: int = 3, repeat: int = 20) -> dict:
    """ms per batch of the reference and the numpy engine on the same `batches` batches of
    CHECK_EXPERIMENT (numpy: those batches `repeat` times per call), best of `rounds` interleaved rounds."""
    config = LOG_EXPERIMENTS[CHECK_EXPERIMENT][0]
    ref, fast = build(config, {"engine": "reference"}), build(config)
    n = batches * config.B
    xs, ys = x[:n], y[:n]
    xr, yr = np.tile(xs, (repeat, 1)), np.tile(ys, repeat)
    timed(fast, xr, yr, batches)  # compilation
    best_ref = best_fast = float("inf")
    for _ in range(rounds):
        best_ref = min(best_ref, timed(ref, xs, ys, batches))
        best_fast = min(best_fast, timed(fast, xr, yr, batches * repeat))
    return {"experiment": CHECK_EXPERIMENT, "batches": batches, "reference ms": best_ref, "numpy ms": best_fast,
            "ratio": best_ref / best_fast, "numba threads": numba.get_num_threads()}


# ---------------------------------------------------------------------------- threads
THREAD_SETTINGS = {  # name -> (environment, adapt the thread count to the free cores as train() does)
    "OMP_WAIT_POLICY=PASSIVE, 2 threads": ({"OMP_WAIT_POLICY": "PASSIVE"}, False),
    "libgomp's default wait (GOMP_SPINCOUNT=300000), 2 threads": ({"GOMP_SPINCOUNT": "300000"}, False),
    "OMP_WAIT_POLICY=ACTIVE (spins until work comes), 2 threads": ({"OMP_WAIT_POLICY": "ACTIVE"}, False),
    "GOMP_SPINCOUNT=10000, 2 threads": ({}, False),
    "GOMP_SPINCOUNT=10000, threads = free cores (the package's default)": ({}, True),
    "1 thread": ({"NUMBA_NUM_THREADS": "1"}, False),
}
_CHILD = """
import json, sys, time
from dreamflow_utils.bench import epoch_seconds
print(json.dumps(epoch_seconds(*json.loads(sys.argv[1]))))
"""


def epoch_seconds(data_dir, experiment: str, epochs: int, adapt: bool) -> list[float]:
    """Seconds of each of `epochs` training epochs of a log experiment (after a compiled warm-up batch)."""
    from .engines import run_threads
    (x, y), _ = load_mnist(data_dir)
    engine = make_engine(LOG_EXPERIMENTS[experiment][0])
    engine.train_batches(x[:100], y[:100])
    out = []
    with run_threads() as threads:
        for _ in range(epochs):
            if adapt:
                threads.adapt()
            else:
                numba.set_num_threads(threads.cap)
            t = time.perf_counter()
            engine.train_batches(x, y)
            out.append(round(time.perf_counter() - t, 3))
    return out


def _child_env(changes: dict) -> dict:
    """This process's environment without its wait policy, plus `changes`."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return env | changes


def thread_settings(data_dir, epochs: int = 3, experiment: str = CHECK_EXPERIMENT) -> list[dict]:
    """Each THREAD_SETTINGS entry in a fresh process: epoch seconds alone, then beside a busy process."""
    rows = []
    for name, (changes, adapt) in THREAD_SETTINGS.items():
        env = _child_env(changes)
        row = {"setting": name}
        for load in ("alone", "beside a busy process"):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "alone" else None
            try:
                time.sleep(0.5 if hog else 0)
                out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([data_dir, experiment, epochs, adapt])],
                                     env=env, capture_output=True, text=True, check=True, timeout=1200)
            finally:
                if hog:
                    hog.kill()
                    hog.wait()
            row[load] = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(row, flush=True)
    return rows


def batch_seconds(jobs: int, seeds=(0,)) -> list[dict]:
    """The log's four experiments (full runs) through the batch with `jobs` workers: per-run training seconds."""
    import tempfile

    from .sweeps.batch import run_batch
    from .sweeps.runs import CallRun
    runs = [CallRun("bench", f"{name} seed {seed} jobs {jobs}", "dreamflow_utils.bench:timed_run",
                    {"experiment": name, "seed": seed}) for name in LOG_EXPERIMENTS for seed in seeds]
    with tempfile.TemporaryDirectory() as folder:
        records = run_batch(runs, folder, jobs=jobs, progress=False)
    return [{"experiment": r["experiment"], "jobs": jobs, "seconds": r["train_seconds"], "threads": r["threads"],
             "load": r["load"]} for r in records]


def timed_run(experiment: str, seed: int = 0) -> dict:
    """One full run of a log experiment (a batch worker's function): its training seconds, threads and load."""
    r = train(LOG_EXPERIMENTS[experiment][0].replace(seed=seed))
    return {"experiment": experiment, "train_seconds": round(sum(r.epoch_seconds), 2),
            "test_accuracy": r.test_accuracy, "threads": r.threads, "load": r.load}


def threads_markdown(settings: list[dict], batches: dict[int, list[dict]], epochs: int) -> str:
    lines = ["# Threads: how the compiled engines wait and how many threads they use", "",
             f"{platform.machine()}, {os.cpu_count()} cores, numba {numba.__version__} "
             f"({numba.threading_layer()} layer). Seconds per training epoch of {CHECK_EXPERIMENT} (60,000 samples), "
             f"{epochs} epochs per setting, each setting in a fresh process; 'beside a busy process': while "
             "another process keeps one core busy (as the other worker of a batch does).", "",
             "| setting | alone: s per epoch | beside a busy process: s per epoch |", "|---|---|---|"]
    for r in settings:
        lines.append(f"| {r['setting']} | {', '.join(f'{v:.2f}' for v in r['alone'])} | "
                     f"{', '.join(f'{v:.2f}' for v in r['beside a busy process'])} |")
    alone = {r["experiment"]: r for r in batches.get(1, [])}
    lines += ["", "The log's four experiments, full runs (10 epochs, seed 0), training seconds per run: one at a "
              "time (`--jobs 1`) and two at a time (`--jobs 2`, each worker cores // 2 threads):", "",
              "| experiment | jobs 1: seconds | threads | jobs 2: seconds | threads | jobs 2 / jobs 1 |",
              "|---|---:|---|---:|---|---:|"]
    for r in batches.get(2, []):
        a = alone.get(r["experiment"])
        if a:
            lines.append(f"| {r['experiment']} | {a['seconds']:.2f} | {a['threads']['numba']} | {r['seconds']:.2f} | "
                         f"{r['threads']['numba']} | {r['seconds'] / a['seconds']:.2f}x |")
    return "\n".join(lines) + "\n"


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
    p.add_argument("--check", action="store_true", help="only the speed guard: numpy vs reference, exit 1 below --floor")
    p.add_argument("--floor", default=str(CHECK_FLOOR), help=f"--check: least speed-up (default {CHECK_FLOOR:.0f})")
    p.add_argument("--threads", action="store_true",
                   help="only the thread measurements: results/benchmark/threads.md (a few minutes)")
    args = p.parse_args(argv)
    n_batches, repeats = positive_int(args.batches, "--batches"), positive_int(args.repeats, "--repeats")
    model_rounds = nonnegative_int(args.models, "--models")
    try:
        floor = float(args.floor)
    except ValueError:
        raise CliError(f"--floor must be a number, got {args.floor!r}") from None
    try:
        (x, y), test = load_mnist(args.data)
    except (MnistNotFound, MnistFormatError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    if args.check:
        r = speed_check(x, y)
        ok = r["ratio"] >= floor
        print(f"speed check ({r['experiment']}, the same {r['batches']} MNIST batches, one process, numba on "
              f"{r['numba threads']} threads): reference {r['reference ms']:.1f} ms/batch, numpy engine "
              f"{r['numpy ms']:.2f} ms/batch: {r['ratio']:.0f}x, floor {floor:.0f}x: {'ok' if ok else 'FAILED'}")
        return 0 if ok else 1
    if args.threads:
        data_dir = str(args.data) if args.data else None
        settings = thread_settings(data_dir)
        batches = {jobs: batch_seconds(jobs) for jobs in (1, 2)}
        out = Path(args.out).with_name("threads.md")
        atomic_write(out, threads_markdown(settings, batches, 3))
        print(out.read_text())
        return 0
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
    c100 = next((r for r in rows if r["experiment"] == CHECK_EXPERIMENT), None)
    if c100:
        ratio = c100["reference ms"] / c100["numpy ms"]
        lines += ["", f"Target: numpy >= 300x faster than the reference on {CHECK_EXPERIMENT}: {ratio:.0f}x "
                      f"({'met' if ratio >= 300 else 'MISSED'})."]
    if args.full:
        engines = {"numpy": {}} if args.no_tf else {"numpy": {}, "TF XLA f64": VARIANTS["TF XLA f64"][0]}
        lines += ["", "Full runs (60,000 samples x 10 epochs, test evaluation after every epoch, seed 0):", "",
                  "| experiment | " + " | ".join(f"{e} seconds" for e in engines)
                  + " | test accuracy | log's seconds (10 epochs) |", "|---|" + "---:|" * (len(engines) + 2)]
        totals, full_c100 = dict.fromkeys(engines, 0.0), None
        for name, (config, _, log_epoch_s) in LOG_EXPERIMENTS.items():
            runs = {e: train(config.replace(**changes), ((x, y), test)) for e, changes in engines.items()}
            full_c100 = runs["numpy"] if name == CHECK_EXPERIMENT else full_c100
            for e, r in runs.items():
                totals[e] += r.seconds
            acc = {f"{100 * r.test_accuracy:.2f}%" for r in runs.values()}  # one value: engines agree
            lines.append(f"| {name} | " + " | ".join(f"{r.seconds:.1f}" for r in runs.values())
                         + f" | {' / '.join(sorted(acc))} | {10 * log_epoch_s} |")
            print(lines[-1], flush=True)
        lines.append("| **all four** | " + " | ".join(f"**{t:.1f}**" for t in totals.values())
                     + f" | | {10 * sum(e[2] for e in LOG_EXPERIMENTS.values())} |")
        c100_s, all_s = full_c100.seconds, totals["numpy"]
        lines += ["", f"Targets: numpy full {CHECK_EXPERIMENT} run < 30 s: {c100_s:.1f} s "
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
