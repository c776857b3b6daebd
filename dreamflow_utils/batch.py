"""
Parameterised notebook sweeps with papermill: notebooks x seeds x grid, parallel and resumable.

    python -m dreamflow_utils.batch notebooks/02_block_Cs10.ipynb --seeds 0-4 \
        --param T_s=1000 --grid C_s=10,20 --jobs 2 --runs-dir runs --csv results/runs.csv

Every run writes <runs_dir>/<stem>/<run_id>.ipynb (executed notebook) and <run_id>.json (record).
If a notebook's parameters cell declares `record_path = None`, the batch sets it to a JSON path
and the notebook must write its results there (test_accuracy, epoch_accuracies, seconds, ...);
those keys are merged into the record. Runs whose record says "ok" are never redone.
"""

import argparse
import ast
import hashlib
import itertools
import json
import os
import re
import signal
import sys
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from csv import DictWriter
from dataclasses import dataclass
from datetime import datetime
from io import StringIO
from pathlib import Path

import papermill as pm
from tqdm.auto import tqdm

from .engines.kernels import share_cores
from .files import atomic_write

RESERVED = {"seed", "record_path"}  # set by the batch, not by --param/--grid
CSV_HEAD = ["notebook", "run_id", "seed", "test_accuracy", "seconds", "status", "error"]
CSV_TAIL = ["epoch_accuracies", "wall_seconds", "started", "finished", "output_notebook"]

# -----------------------------------------------------------------------------
# planning

@dataclass
class Run:
    notebook: Path
    params: dict  # includes seed

    @property
    def seed(self):
        return self.params["seed"]

    @property
    def run_id(self):
        """Readable, stable id: <stem>__k=v__... (keys sorted); hashed suffix if long or unsafe."""
        keys = sorted(self.params, key=lambda k: (k.lower(), k))
        raw = "__".join([self.notebook.stem] + [f"{k}={self.params[k]}" for k in keys])
        safe = re.sub(r"[^A-Za-z0-9._=+-]", "-", raw)
        if safe == raw and len(safe) <= 120:
            return safe
        return f"{safe[:100]}__{hashlib.sha1(raw.encode()).hexdigest()[:8]}"

def parse_value(s):
    """A Python literal if it parses as one, else the string itself."""
    try:
        return ast.literal_eval(s)
    except (ValueError, SyntaxError):
        return s

def parse_values(s):
    """'10,20' -> [10, 20]; 'adam,sgd' -> ['adam', 'sgd']; '[1,2],[3]' -> [[1, 2], [3]]."""
    v = parse_value(s)
    if isinstance(v, tuple):
        return list(v)
    return [parse_value(x) for x in s.split(",")] if isinstance(v, str) else [v]

def parse_seeds(s):
    """'0-4' -> [0, 1, 2, 3, 4]; '0,1,7' -> [0, 1, 7]; '0-2,7' also works."""
    seeds = []
    for part in s.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return seeds

def check(runs):
    """Refuse missing notebooks and undeclared parameters; return {notebook: declared names}."""
    known, problems = {}, []
    for run in runs:
        nb = run.notebook
        if nb not in known:
            if not nb.is_file():
                raise FileNotFoundError(f"notebook not found: {nb}")
            known[nb] = set(pm.inspect_notebook(str(nb)))
        for name in sorted(set(run.params) - known[nb]):
            problem = (f"unknown parameter {name!r} for notebook {nb}; its parameters cell declares: "
                       f"{', '.join(sorted(known[nb])) or '(nothing: tag a cell `parameters`)'}")
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise ValueError("\n".join(problems))
    return known

def plan(notebooks, seeds, params=None, grid=None):
    """Runs for notebooks x grid (cartesian product of value lists) x seeds, with fixed params."""
    params, grid = dict(params or {}), {k: list(v) for k, v in (grid or {}).items()}
    clash = (set(params) & set(grid)) | (RESERVED & (set(params) | set(grid)))
    if clash:
        raise ValueError(f"parameters given twice or reserved (use seeds=...): {sorted(clash)}")
    runs, seen = [], set()
    for nb in notebooks:
        for combo in itertools.product(*grid.values()):
            for seed in seeds:
                run = Run(Path(nb), {"seed": seed, **params, **dict(zip(grid, combo))})
                if run.run_id not in seen:
                    seen.add(run.run_id)
                    runs.append(run)
    check(runs)
    return runs

# -----------------------------------------------------------------------------
# running

def _now():
    return datetime.now().astimezone().isoformat(timespec="milliseconds")

def _fsync_replace(tmp, path):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)

def _load(path):
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

def _describe(e):
    """Error message plus the last lines of the traceback (for papermill: the notebook's)."""
    notebook_error = isinstance(e, pm.PapermillExecutionError)
    summary = f"{e.ename}: {e.evalue}" if notebook_error else f"{type(e).__name__}: {e}"
    tail = "".join(traceback.format_exception(e)).strip().splitlines()[-12:]
    return "\n".join([summary, "..."] + tail)

def execute(run, runs_dir="runs", kernel_name=None, cwd=None, declared=None):
    """Execute one run with papermill and write its record; failures are recorded, not raised."""
    folder = Path(runs_dir) / run.notebook.stem
    folder.mkdir(parents=True, exist_ok=True)
    rid = run.run_id
    out, result_path = folder / f"{rid}.ipynb", (folder / f"{rid}.result.json").resolve()
    tmp_out = folder / f".{rid}.partial.ipynb"
    for stale in (tmp_out, result_path):  # left by an interrupted attempt
        stale.unlink(missing_ok=True)
    declared = pm.inspect_notebook(str(run.notebook)) if declared is None else declared
    params = {**run.params, **({"record_path": str(result_path)} if "record_path" in declared else {})}
    record = dict(notebook=str(run.notebook), run_id=rid, params=run.params, seed=run.seed,
                  status="ok", error=None, wall_seconds=None, started=_now(), finished=None, output_notebook=None)
    result, t0 = {}, time.time()
    try:
        # kernel cwd goes via nbclient's resources: papermill's own `cwd` does a process-wide
        # os.chdir for the whole execution, which races between threads
        pm.execute_notebook(str(run.notebook), str(tmp_out), parameters=params, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(Path(cwd or run.notebook.parent).resolve())}},
                            progress_bar=False, log_output=False)
        if "record_path" in params:
            if not result_path.exists():
                raise RuntimeError(f"notebook finished without writing its results to record_path={result_path}")
            result = json.loads(result_path.read_text())
            if not isinstance(result, dict):
                raise TypeError(f"results in {result_path} must be a JSON object, got {type(result).__name__}")
    except Exception as e:
        record.update(status="failed", error=_describe(e))
    if tmp_out.exists():
        _fsync_replace(tmp_out, out)
    record.update(wall_seconds=round(time.time() - t0, 3), finished=_now(),
                  output_notebook=str(out) if out.exists() else None)
    record |= {k: v for k, v in result.items() if k not in record}
    atomic_write(folder / f"{rid}.json", json.dumps(record, indent=2, default=str))
    result_path.unlink(missing_ok=True)  # its content now lives in the record
    return record

def done(run, runs_dir="runs"):
    """The run's record if it finished ok (such runs are skipped), else None."""
    record = _load(Path(runs_dir) / run.notebook.stem / f"{run.run_id}.json")
    return record if isinstance(record, dict) and record.get("status") == "ok" else None

def run_batch(runs, runs_dir="runs", jobs=1, csv="results/runs.csv", kernel_name=None, cwd=None):
    """
    Execute runs (skipping those already ok) on `jobs` threads, each driving its own kernel
    (which gets its share of the cores for the numpy engine: `kernels.share_cores`).
    Returns the records in run order and writes the CSV of all records under runs_dir (csv=None: skip).
    On KeyboardInterrupt, queued runs are cancelled; runs already executing finish in the background.
    """
    declared = check(runs)
    records = {r.run_id: done(r, runs_dir) for r in runs}
    todo = [r for r in runs if records[r.run_id] is None]
    counts = {"ok": 0, "failed": 0, "skipped": len(runs) - len(todo)}
    share_cores(jobs)  # the kernels started below inherit it
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        with tqdm(total=len(runs), initial=counts["skipped"], desc="runs", unit="run") as bar:
            bar.set_postfix(counts)
            futures = [pool.submit(execute, r, runs_dir, kernel_name, cwd, declared[r.notebook]) for r in todo]
            for future in as_completed(futures):
                record = future.result()
                records[record["run_id"]] = record
                counts[record["status"]] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if csv:
        collect(runs_dir, csv)
    return [records[r.run_id] for r in runs]

def collect(runs_dir="runs", csv="results/runs.csv"):
    """Write one CSV row per record under runs_dir (from all batches); return the records."""
    records = []
    for path in sorted(Path(runs_dir).glob("*/*.json")):
        if path.name.endswith(".result.json"):  # a notebook's own output, left by an interrupted run
            continue
        record = _load(path)
        if isinstance(record, dict) and "run_id" in record:
            records.append(record)
        else:
            warnings.warn(f"skipping unreadable record {path}")
    names = sorted({k for r in records for k in r.get("params", {})} - {"seed"})
    buf = StringIO()
    writer = DictWriter(buf, CSV_HEAD + names + CSV_TAIL, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        epochs = ";".join(map(str, r.get("epoch_accuracies") or []))
        writer.writerow({**r.get("params", {}), **r, "epoch_accuracies": epochs})
    atomic_write(Path(csv), buf.getvalue())
    return records

# -----------------------------------------------------------------------------
# command line

def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.batch", description=__doc__.split("\n")[1],
                                epilog="With no notebooks, only (re)writes the CSV from the records in --runs-dir.")
    p.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK")
    p.add_argument("--seeds", default="0", help="e.g. 0-4 or 0,1,7 (default: 0)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="fixed parameter (Python literal, else string); repeatable")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2", help="sweep these values; repeatable")
    p.add_argument("--jobs", type=int, default=1, help="notebooks executed in parallel")
    p.add_argument("--runs-dir", default="runs", help="records and executed notebooks (default: runs)")
    p.add_argument("--csv", default="results/runs.csv", help="table of all records (default: results/runs.csv)")
    p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's own)")
    p.add_argument("--cwd", default=None, help="kernels' working directory (default: each notebook's folder)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are done, run nothing")
    args = p.parse_args(argv)

    def pairs(items):
        for item in items:
            name, eq, value = item.partition("=")
            if not eq or not name.isidentifier():
                p.error(f"expected NAME=VALUE, got {item!r}")
            yield name, value

    if not args.notebooks:
        print(f"{len(collect(args.runs_dir, args.csv))} records -> {args.csv}")
        return 0
    try:
        params = {k: parse_value(v) for k, v in pairs(args.param)}
        runs = plan(args.notebooks, parse_seeds(args.seeds), params, {k: parse_values(v) for k, v in pairs(args.grid)})
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        finished = [done(r, args.runs_dir) is not None for r in runs]
        for run, skip in zip(runs, finished):
            print(f"{'skip (ok)' if skip else 'run':10s} {run.notebook}  {run.run_id}")
        print(f"{len(runs)} runs: {len(runs) - sum(finished)} to run, {sum(finished)} already ok")
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill -TERM behaves like Ctrl-C
    try:
        records = run_batch(runs, args.runs_dir, args.jobs, args.csv, args.kernel, args.cwd)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are saved; rerun the same command to resume", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # don't wait for the kernels still running
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"FAILED {r['run_id']}: {r['error'].splitlines()[0]}", file=sys.stderr)
    print(f"{len(records) - len(failed)}/{len(records)} ok; records in {args.runs_dir}/, table in {args.csv}")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
