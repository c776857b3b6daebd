"""
Parameter sweeps on Dask distributed: notebooks x seeds x grid (papermill), or any function, resumable.

    python -m dreamflow_utils.sweeps.batch notebooks/02_log_block_C_s=10_N2=100.ipynb --seeds 0-4 \
        --param T_s=1000 --grid C_s=10,20 --jobs 2 --runs-dir runs
    python -m dreamflow_utils.sweeps.batch ... --scheduler tcp://host:8786     # an existing Dask cluster

Runs (`runs`: notebooks, functions) execute on Dask workers: with no --scheduler, an embedded
`LocalCluster` of --jobs worker processes (one thread each, the numba/BLAS threads shared
between them); with --scheduler ADDRESS (or a scheduler JSON file), an existing cluster
(`dask scheduler` and `dask worker`, or dask_jobqueue on SLURM/PBS). A worker executes a run
in a private temporary folder and returns its record and files to the client; ONLY THE
CLIENT writes into the runs dir (`store`: one record per run, <runs_dir>/runs.csv the default
--csv). A run whose record says "ok" with the same identity is skipped; a changed one is
redone and its old record superseded, never deleted; a second batch on the same runs dir
leaves the runs the first is executing alone; the CSV is never silently shrunk (--force).
A worker that dies mid-run: its run is retried (--retries times, default 1) on another or
restarted worker, else recorded as failed with the reason (KilledWorker); finished records
are never touched.

Exit status: 0 all ok, 1 some run failed (recorded with its error; rerun to retry them),
2 bad arguments or an unwritable runs dir / CSV / full disk (one line `error: ...`),
130 interrupted (finished runs are saved; rerun the same command to resume).
"""
from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import time
import uuid
from collections import Counter, deque
from pathlib import Path

from .cli import (ArgumentParser, CliError, nonnegative_int, parse_pairs, parse_seeds, parse_value, parse_values,
                  positive_int, run_cli)
from .runs import NotebookRun, _execute, _import_papermill, _now, _quick_mode
from .store import (RunLock, _check_shrink, _check_writable, _default_csv, _is_done, _store, collect, load_record,
                    same_identity)

__all__ = ["notebook_runs", "check", "run_batch", "add_cluster_options", "main"]

RESERVED = {"seed", "record_path"}  # set by the batch, not by --param/--grid


# -----------------------------------------------------------------------------
# planning

def check(runs):
    """Refuse missing notebooks and undeclared parameters; return {notebook: declared names}."""
    known, problems = {}, []
    for run in runs:
        if not isinstance(run, NotebookRun):
            continue
        nb = run.notebook
        if nb not in known:
            if not nb.is_file():
                raise FileNotFoundError(f"notebook not found: {nb}")
            pm = _import_papermill()  # (seconds to import: only when there are notebooks)

            known[nb] = set(pm.inspect_notebook(str(nb)))
        for name in sorted(set(run.params) - known[nb]):
            problem = (f"unknown parameter {name!r} for notebook {nb}; its parameters cell declares: "
                       f"{', '.join(sorted(known[nb])) or '(nothing: tag a cell `parameters`)'}")
            if problem not in problems:
                problems.append(problem)
    if problems:
        raise ValueError("\n".join(problems))
    return known


def notebook_runs(notebooks, seeds, params=None, grid=None, quick=None):
    """NotebookRuns for notebooks x grid (cartesian product of value lists) x seeds, with fixed params.

    quick: quick mode of every run (default: $DREAMFLOW_QUICK)."""
    params, grid = dict(params or {}), {k: list(v) for k, v in (grid or {}).items()}
    clash = (set(params) & set(grid)) | (RESERVED & (set(params) | set(grid)))
    if clash:
        raise ValueError(f"parameters given twice or reserved (use seeds=...): {sorted(clash)}")
    empty = sorted(k for k, v in grid.items() if not v)
    if empty:
        raise ValueError(f"grid with no values for {empty}")
    quick = _quick_mode() if quick is None else quick
    runs, seen = [], set()
    for nb in notebooks:
        for combo in itertools.product(*grid.values()):
            for seed in seeds:
                run = NotebookRun(Path(nb), {"seed": seed, **params, **dict(zip(grid, combo))}, quick=quick)
                if (run.group, run.run_id) not in seen:
                    seen.add((run.group, run.run_id))
                    runs.append(run)
    check(runs)
    return runs


# -----------------------------------------------------------------------------
# running

# the embedded cluster: one run per worker at a time (none queued behind it, so a dying worker
# takes only its own run down; nothing to steal), and less of Dask's own bookkeeping: runs take
# seconds to minutes, and on a small machine the workers' profiler and monitors cost a few % of
# the cores the runs need (measured idle: ~5% of a core per process with the defaults, <1% with these)
LOCAL_CONFIG = {
    # no OMP/MKL/OPENBLAS_NUM_THREADS=1 or MALLOC_TRIM_THRESHOLD_ from Dask: workers and their
    # kernels see the environment runs had before (plus share_cores' thread counts)
    "distributed.nanny.pre-spawn-environ": {},
    "distributed.scheduler.worker-saturation": 1.0,
    "distributed.scheduler.work-stealing": False,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "100ms",
}


def _start_client(jobs, scheduler, retries):
    """(client, cluster): an embedded LocalCluster (cluster not None) or a connection."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        kw = {"scheduler_file": str(scheduler)} if Path(str(scheduler)).is_file() else {"address": str(scheduler)}
        try:
            return Client(**kw, timeout="15s"), None
        except (OSError, TimeoutError, ValueError) as e:
            raise CliError(f"--scheduler {scheduler}: cannot connect ({type(e).__name__}: {e})") from None
    import numba

    from ..engines import share_cores

    # the workers (and the kernels they start) get what share_cores sets for the processes it
    # starts (NUMBA_NUM_THREADS); this process keeps its own environment and threads
    before, threads = dict(os.environ), numba.get_num_threads()
    share_cores(jobs)
    env = {k: v for k, v in os.environ.items() if before.get(k) != v}
    for k in env:
        if k in before:
            os.environ[k] = before[k]
        else:
            del os.environ[k]
    numba.set_num_threads(threads)
    with dask.config.set({**LOCAL_CONFIG, "distributed.scheduler.allowed-failures": retries}):
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=":0",
                               host="127.0.0.1", env=env, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _has_bokeh() -> bool:
    import importlib.util
    return importlib.util.find_spec("bokeh") is not None


def _nthreads(client) -> int:
    try:
        return sum(client.nthreads().values())
    except Exception:
        return 1


def _precheck(runs, runs_dir: Path, csv, force):
    """Refuse early what would fail late: unwritable runs dir or CSV, a CSV that would shrink."""
    _check_writable(runs_dir, f"runs dir {runs_dir}")
    for group in sorted({r.group for r in runs}):
        _check_writable(runs_dir / group, f"runs dir {runs_dir / group}")
    if csv:
        csv = Path(csv)
        _check_writable(csv.parent, f"folder of the table {csv}")
        existing = {(p.parent.name, p.stem) for p in runs_dir.glob("*/*.json")
                    if not p.name.startswith(".") and not p.name.endswith(".result.json")}
        new = {(r.group, r.run_id) for r in runs} - existing
        _check_shrink(csv, len(existing) + len(new), runs_dir, force)


def run_batch(runs, runs_dir="runs", csv=None, jobs=1, scheduler=None, retries=1, progress=True, force=False):
    """Execute runs on Dask (skipping those done with the same identity); return their records
    in run order and (csv given) rewrite the table of all records under runs_dir.

    scheduler=None: an embedded LocalCluster of `jobs` single-threaded worker processes, each
    with its share of the cores (`engines.share_cores`); else the address ("tcp://host:8786")
    or scheduler file of an existing cluster. retries: how often a run is retried when its
    worker dies (embedded cluster; an external scheduler uses its own
    distributed.scheduler.allowed-failures) or the task raises; after that the run is
    recorded as failed with the reason. Raises StoreError if the runs dir or the CSV cannot
    be written (or the CSV would shrink and not force), ValueError for bad runs.
    """
    runs, runs_dir = list(runs), Path(runs_dir)
    dup = sorted(f"{g}/{i}" for (g, i), n in Counter((r.group, r.run_id) for r in runs).items() if n > 1)
    if dup:
        raise ValueError(f"runs with the same id: {', '.join(dup[:5])}")
    jobs, retries = int(jobs), int(retries)
    if jobs < 1 or retries < 0:
        raise ValueError(f"jobs must be >= 1 and retries >= 0, got jobs={jobs}, retries={retries}")
    check(runs)
    identities = [r.identity for r in runs]  # reads the notebooks now: what runs is what is hashed
    _precheck(runs, runs_dir, csv, force)
    records = [None] * len(runs)
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    t_start = _now()

    # runs already done need no cluster
    todo = deque()
    for i, run in enumerate(runs):
        rec = load_record(run, runs_dir)
        if _is_done(rec, identities[i]):
            records[i] = rec
            counts["skipped"] += 1
        else:
            todo.append(i)
    if not todo:
        if progress:
            print(f"{len(runs)} runs: all done already ({runs_dir}/)", flush=True)
        if csv:
            collect(runs_dir, csv, force=force)
        return records

    from distributed import wait as dask_wait
    from tqdm.auto import tqdm

    client, cluster = _start_client(jobs, scheduler, retries)
    inflight, locks, waiting_on = {}, {}, {}
    bar, interrupted = None, False
    try:
        if progress and (cluster is None or _has_bokeh()):  # an embedded cluster has no dashboard without bokeh
            print(f"dask dashboard: {client.dashboard_link}", flush=True)
        bar = tqdm(total=len(runs), initial=counts["skipped"], desc="runs", unit="run", disable=not progress)
        bar.set_postfix(counts)

        def finish(i, rec):
            records[i] = rec
            counts[rec["status"] if rec.get("status") in ("ok", "failed") else "failed"] += 1
            bar.set_postfix(counts, refresh=False)
            bar.update()

        window = max(2, 2 * _nthreads(client))
        while todo or inflight:
            deferred = deque()
            while todo and len(inflight) < window:
                i = todo.popleft()
                run = runs[i]
                lock = RunLock(runs_dir / run.group / f".{run.run_id}.lock")
                if not lock.acquire():  # another batch is executing it
                    if i not in waiting_on:
                        waiting_on[i] = lock.holder()
                        if progress:
                            bar.write(f"{run.group}/{run.run_id}: being executed by {waiting_on[i]} (another "
                                      "batch); waiting for its record")
                    deferred.append(i)
                    continue
                rec = load_record(run, runs_dir)  # under the lock: what the other batch left
                other = i in waiting_on and isinstance(rec, dict) and same_identity(rec.get("identity"), identities[i]) \
                    and str(rec.get("finished") or "") >= t_start
                if _is_done(rec, identities[i]) or other:
                    lock.release()
                    counts["skipped"] += 1
                    records[i] = rec
                    bar.set_postfix(counts, refresh=False)
                    bar.update()
                    continue
                key = f"{run.group}/{run.run_id}-{uuid.uuid4().hex[:8]}"
                future = client.submit(_execute, run, key=key, pure=False, retries=retries)
                inflight[future], locks[i] = i, lock
            todo.extendleft(reversed(deferred))
            if not inflight:
                time.sleep(0.25)  # only runs another batch holds: wait for them
                continue
            try:
                finished = dask_wait(list(inflight), timeout=0.5 if todo else None, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                continue
            for future in finished:
                i = inflight.pop(future)
                run = runs[i]
                if future.status == "finished":
                    try:
                        outcome = future.result()
                    except Exception as e:  # e.g. the result could not be transferred
                        outcome = run.failed(f"{type(e).__name__}: {e}")
                else:
                    exc = future.exception() if future.status == "error" else None
                    reason = f"{type(exc).__name__}: {exc}" if exc is not None else f"task {future.status}"
                    outcome = run.failed(f"{reason} (after {retries} retr{'y' if retries == 1 else 'ies'})")
                future.release()
                try:
                    rec = _store(run, outcome, runs_dir, identities[i])
                finally:
                    locks.pop(i).release()
                finish(i, rec)
            window = max(2, 2 * _nthreads(client))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for lock in locks.values():
            lock.release()
        if inflight:
            try:
                client.cancel(list(inflight), force=True)
            except Exception:
                pass
        if bar is not None:
            bar.close()
        for thing in (client, cluster):  # (interrupted: quickly; the workers' kernels die with them)
            if thing is not None:
                try:
                    thing.close(timeout=2 if interrupted else 10 if thing is client else 20)
                except Exception:
                    pass
    if csv:
        collect(runs_dir, csv, force=force)
    return records


# -----------------------------------------------------------------------------
# command line

def add_cluster_options(p):
    """--jobs, --scheduler, --retries: where a sweep runs (this command's and the studies')."""
    p.add_argument("--jobs", default="1", help="worker processes of the embedded cluster (default: 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="use an existing Dask cluster: tcp://host:port or a scheduler JSON file")
    p.add_argument("--retries", default="1", help="retries of a run whose worker died (default: 1)")


@run_cli
def main(argv=None):
    p = ArgumentParser(prog="python -m dreamflow_utils.sweeps.batch", description=__doc__.strip().split("\n")[0],
                       epilog="With no notebooks, only (re)writes the CSV from the records in --runs-dir.")
    p.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK")
    p.add_argument("--seeds", default="0", help="e.g. 0-4, 0,1,7 or 0-2,7 (default: 0)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="fixed parameter (Python literal, else string); repeatable")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2", help="sweep these values; repeatable")
    add_cluster_options(p)
    p.add_argument("--runs-dir", default="runs", help="records and executed notebooks (default: runs)")
    p.add_argument("--csv", default=None, help="table of all records (default: <runs-dir>/runs.csv)")
    p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's own)")
    p.add_argument("--cwd", default=None, help="kernels' working directory (default: each notebook's folder)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are done, run nothing")
    p.add_argument("--force", action="store_true", help="rewrite the CSV even if it would lose rows")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    jobs = positive_int(args.jobs, "--jobs")
    retries = nonnegative_int(args.retries, "--retries")
    runs_dir = Path(args.runs_dir)
    csv = Path(args.csv) if args.csv else _default_csv(runs_dir)

    if not args.notebooks:
        if args.param or args.grid:
            raise CliError("--param/--grid given but no notebooks")
        n = len(collect(runs_dir, csv, force=args.force))
        print(f"{n} records -> {csv}")
        return 0
    seeds = parse_seeds(args.seeds)
    params = {k: parse_value(v, f"--param {k}") for k, v in parse_pairs(args.param, "--param").items()}
    grid = {k: parse_values(v, f"--grid {k}") for k, v in parse_pairs(args.grid, "--grid").items()}
    try:
        quick = _quick_mode()
        runs = notebook_runs(args.notebooks, seeds, params, grid, quick=quick)
    except (ValueError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    for run in runs:
        run.kernel_name, run.cwd = args.kernel, args.cwd
    if args.dry_run:
        n_done = 0
        for run in runs:
            rec = load_record(run, runs_dir)
            if _is_done(rec, run.identity):
                state, n_done = "skip (ok)", n_done + 1
            elif rec is None:
                state = "run"
            elif rec.get("status") == "ok":
                state = "rerun (changed: old record will be superseded)"
            else:
                state = "rerun (failed)"
            print(f"{state:10s} {run.describe()}")
        print(f"{len(runs)} runs ({'quick' if quick else 'full'} mode): {len(runs) - n_done} to run, "
              f"{n_done} already ok")
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill -TERM behaves like Ctrl-C
    try:
        records = run_batch(runs, runs_dir, csv, jobs=jobs, scheduler=args.scheduler, retries=retries,
                            progress=not args.no_progress, force=args.force)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are saved; rerun the same command to resume", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # don't wait for the workers and kernels still running: they exit with us
    except ValueError as e:
        raise CliError(str(e)) from None
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        print(f"FAILED {r['run_id']}: {(r.get('error') or '?').splitlines()[0]}", file=sys.stderr)
    print(f"{len(records) - len(failed)}/{len(records)} ok; records in {runs_dir}/, table in {csv}")
    return 1 if failed else 0


if __name__ == "__main__":
    from . import runs as _runs

    _runs._OWN_PROCESS = True
    sys.exit(main())
