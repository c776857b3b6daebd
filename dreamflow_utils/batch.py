"""
Parameter sweeps on Dask distributed: notebooks x seeds x grid (papermill), or any function, resumable.

    python -m dreamflow_utils.batch notebooks/02_block_Cs10_N2100.ipynb --seeds 0-4 \
        --param T_s=1000 --grid C_s=10,20 --jobs 2 --runs-dir runs
    python -m dreamflow_utils.batch ... --scheduler tcp://host:8786     # an existing Dask cluster

Runs execute on Dask workers: with no --scheduler, an embedded `LocalCluster` of --jobs
worker processes (one thread each, the numba/BLAS threads shared between them); with
--scheduler ADDRESS (or a scheduler JSON file), an existing cluster (`dask scheduler` and
`dask worker`, or dask_jobqueue on SLURM/PBS). A worker executes a run in a private
temporary folder and returns its record and files to the client; ONLY THE CLIENT writes
into the runs dir, atomically (unique temporary file, fsync, rename):

    <runs_dir>/<group>/<run_id>.json          the record (written last: it marks the run done)
    <runs_dir>/<group>/<run_id>.ipynb         the executed notebook (notebook runs)
    <runs_dir>/<group>/<run_id>.figures/      the figures the notebook saved (notebook runs)
    <runs_dir>/<group>/<run_id>.<name>        files a function run returned
    <runs_dir>/runs.csv                       one row per record (default --csv)

A notebook's group is its stem; if its parameters cell declares `record_path = None`, the
run sets it and the notebook writes its results (a JSON object) there; they are merged into
the record.

The store never lies or loses:
* a run is skipped only if its record says "ok" AND has the same identity: everything that
  changes the result (notebook path and the sha256 of its code cells, parameters, quick
  mode, data set; for a function: its name and keyword arguments). Quick-mode runs also
  carry `__quick` in their run id (so both kinds live side by side) and the CSV has a
  `quick` column.
* when an "ok" record's identity changed (e.g. the notebook's code), the run is redone and
  the old record and its files are moved to <group>/superseded/<time>/, never deleted.
* while a run executes, the client holds a lock on <group>/.<run_id>.lock (flock: released by
  the kernel when the process dies, so a crashed batch leaves no stale lock); a second batch
  on the same runs dir leaves locked runs alone, and takes their records once they are done.
* the CSV is never silently shrunk: if the records would give fewer rows than the file
  has, the batch refuses (before running anything) unless --force.
* a worker that dies mid-run: its run is retried (--retries times, default 1) on another or
  restarted worker, else recorded as failed with the reason (KilledWorker); finished records
  are never touched.

Exit status: 0 all ok, 1 some run failed (recorded with its error; rerun to retry them),
2 bad arguments or an unwritable runs dir / CSV / full disk (one line `error: ...`),
130 interrupted (finished runs are saved; rerun the same command to resume).
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections import Counter, deque
from csv import DictWriter
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from io import StringIO
from pathlib import Path

from .cli import (ArgumentParser, CliError, describe_oserror, nonnegative_int, parse_pairs, parse_seeds,
                  parse_value, parse_values, positive_int, run_cli)
from .files import atomic_write, read_csv_rows

__all__ = ["NotebookRun", "CallRun", "Run", "Outcome", "StoreError", "plan", "check", "run_batch", "collect",
           "done", "load_record", "record_path", "parse_seeds", "parse_value", "parse_values", "main"]

RESERVED = {"seed", "record_path"}  # set by the batch, not by --param/--grid
CSV_HEAD = ["notebook", "run_id", "seed", "quick", "test_accuracy", "seconds", "status", "error"]
CSV_TAIL = ["epoch_accuracies", "wall_seconds", "started", "finished", "output_notebook"]
CALL_HEAD = ["group", "name", "func"]  # first columns when the runs dir holds function runs
SUPERSEDED = "superseded"
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]")


class StoreError(CliError):
    """The runs dir or the CSV cannot be written (read-only, full, ...) or would be shrunk."""


# -----------------------------------------------------------------------------
# runs

def _now():
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _jsonable(obj):
    """obj as it reads back from JSON (tuples -> lists, keys -> str, other objects -> str)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _safe_id(raw: str) -> str:
    """raw if it is a safe, short file name; else a sanitised prefix plus a hash of raw."""
    safe = _SAFE.sub("-", raw)
    if safe == raw and len(safe) <= 120 and not safe.startswith("."):
        return safe
    return f"{safe.lstrip('.')[:100]}__{hashlib.sha1(raw.encode()).hexdigest()[:8]}"


def _quick_mode() -> bool:
    """$DREAMFLOW_QUICK as `notebook.quick_mode` parses it (ValueError for anything else)."""
    try:
        from .quick import quick_mode  # light: what notebook.quick_mode is
    except ImportError:
        from .notebook import quick_mode
    return quick_mode()


def _describe(e: BaseException) -> str:
    """Error message plus the last lines of the traceback (for papermill: the notebook's)."""
    if hasattr(e, "ename") and hasattr(e, "evalue"):  # papermill.PapermillExecutionError
        summary = f"{e.ename}: {e.evalue}"
    else:
        summary = f"{type(e).__name__}: {e}"
    tail = "".join(traceback.format_exception(e)).strip().splitlines()[-12:]
    return "\n".join([summary, "..."] + tail)


@dataclass
class Outcome:
    """What a worker returns: the record (JSON-able dict) and the files to store beside it
    ({path relative to the group folder: bytes})."""

    record: dict
    files: dict = field(default_factory=dict)


def _repo_relative(path: Path) -> str:
    """path relative to the nearest folder above it holding pyproject.toml (else its name)."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / "pyproject.toml").is_file():
            return path.relative_to(folder).as_posix()
    return path.name


@lru_cache(maxsize=256)
def _read_cached(path: str, mtime_ns: int, size: int) -> bytes:
    return Path(path).read_bytes()


def _read_source(path: Path) -> bytes:
    st = path.stat()
    return _read_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


def code_sha256(source: bytes) -> str:
    """sha256 of a notebook's code cells' sources, in order (markdown and outputs do not count)."""
    nb = json.loads(source)
    code = ["".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    return hashlib.sha256(json.dumps(code).encode()).hexdigest()


def _declared_literal(source: bytes, name: str):
    """The literal value `name` gets in the notebook's parameters cell, or None."""
    import ast

    try:
        cells = json.loads(source).get("cells", [])
    except ValueError:
        return None
    for c in cells:
        if c.get("cell_type") == "code" and "parameters" in (c.get("metadata") or {}).get("tags", []):
            src = "".join(c.get("source", "")) if isinstance(c.get("source"), list) else c.get("source", "")
            try:
                tree = ast.parse(src)
            except SyntaxError:
                return None
            value = None
            for node in tree.body:
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                    try:
                        value = ast.literal_eval(node.value)
                    except ValueError:
                        value = None
            return value
    return None


def _import_papermill():
    """papermill, imported without jsonschema's optional IRI format checker (rfc3987_syntax): it
    builds a grammar at import, 3 of papermill's 4 s on a small machine, and nothing here checks
    IRIs. Only in the batch's own processes (command line, workers), never in a user's session."""
    if "rfc3987_syntax" not in sys.modules and "jsonschema" not in sys.modules and _OWN_PROCESS:
        sys.modules["rfc3987_syntax"] = None  # import fails fast: jsonschema skips that checker
    import papermill

    return papermill


_OWN_PROCESS = False  # set by the command line and on workers (_execute)


_TMP_PREFIX = "dreamflow-run-"


def _clean_stale_tmp():
    """Remove the private folders of runs whose worker process died (killed: no cleanup)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_TMP_PREFIX}*-*"):
        try:
            pid = int(folder.name[len(_TMP_PREFIX):].split("-")[0])
            if pid == os.getpid():
                continue
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _kernel_manager(extra_env: dict):
    """An AsyncKernelManager class whose kernels get `extra_env` on top of this process's env."""
    from jupyter_client import AsyncKernelManager

    class EnvKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**os.environ, **(kw.get("env") or {}), **extra_env}
            return await super().start_kernel(**kw)

    return EnvKernelManager


@dataclass
class NotebookRun:
    """One papermill execution of `notebook` with `params` (which include seed).

    quick: quick mode for the kernel (default: $DREAMFLOW_QUICK now, parsed as
    `notebook.quick_mode` does); the kernel always gets DREAMFLOW_QUICK=1 or 0 accordingly.
    The notebook's content is read on the client and shipped to the worker, so the code that
    runs is the code whose hash is in the identity. The kernel's working directory is `cwd`
    (default: the notebook's folder), which must exist on the worker (start `dask worker`
    in the repo root when the notebook path is relative)."""

    notebook: Path
    params: dict
    quick: bool | None = None
    kernel_name: str | None = None
    cwd: str | None = None
    _source: bytes | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.notebook = Path(self.notebook)
        self.params = dict(self.params)
        self.quick = _quick_mode() if self.quick is None else bool(self.quick)

    kind = "notebook"

    @property
    def seed(self):
        return self.params.get("seed")

    @property
    def group(self) -> str:
        return _safe_id(self.notebook.stem)

    @property
    def run_id(self) -> str:
        """Readable, stable id: <stem>__k=v__... (keys sorted)[__quick]; hashed suffix if long or unsafe."""
        keys = sorted(self.params, key=lambda k: (k.lower(), k))
        raw = "__".join([self.notebook.stem] + [f"{k}={self.params[k]}" for k in keys])
        return _safe_id(raw + ("__quick" if self.quick else ""))

    @property
    def source(self) -> bytes:
        if self._source is None:
            self._source = _read_source(self.notebook)
        return self._source

    @property
    def dataset(self):
        """params['dataset'], else the parameters cell's `dataset = <literal>`, else None."""
        if "dataset" in self.params:
            return self.params["dataset"]
        return _declared_literal(self.source, "dataset")

    @property
    def identity(self) -> dict:
        ident = {"kind": "notebook", "notebook": _repo_relative(self.notebook), "params": self.params,
                 "quick": self.quick, "code_sha256": code_sha256(self.source)}
        if self.dataset is not None:
            ident["dataset"] = self.dataset
        return _jsonable(ident)

    def describe(self) -> str:
        return f"{self.notebook}  {self.run_id}"

    def __getstate__(self):
        """Pickled on the client: with the notebook's content and the kernel's folder resolved here."""
        state = dict(self.__dict__)
        state["_source"] = self.source
        state["_client_cwd"] = str(Path(self.cwd or self.notebook.parent).resolve())
        return state

    def _kernel_cwd(self) -> Path:
        """The kernel's working directory on this machine: the folder the client resolved if it
        exists here, else the same relative path from this process's working directory."""
        given = Path(self.cwd or self.notebook.parent)
        resolved = Path(getattr(self, "_client_cwd", None) or given.resolve())
        for candidate in (resolved, None if given.is_absolute() else given.resolve()):
            if candidate is not None and candidate.is_dir():
                return candidate
        raise FileNotFoundError(f"kernel working directory {resolved} does not exist on {socket.gethostname()} "
                                "(start the worker in the repo root, or give the run a cwd)")

    def _record(self) -> dict:
        return dict(notebook=str(self.notebook), run_id=self.run_id, params=_jsonable(self.params),
                    seed=self.seed, quick=self.quick, status="ok", error=None, wall_seconds=None,
                    started=_now(), finished=None, host=socket.gethostname())

    def failed(self, reason: str) -> Outcome:
        """The outcome of a run that could not execute (e.g. its worker died)."""
        return Outcome({**self._record(), "status": "failed", "error": reason, "finished": _now()})

    def execute(self) -> Outcome:
        """Run the notebook with papermill in a private temporary folder (on the worker): the
        executed notebook, its figures and the record come back; nothing else is written."""
        pm = _import_papermill()
        rid, record, t0 = self.run_id, self._record(), time.time()
        files, result = {}, {}
        _clean_stale_tmp()
        with tempfile.TemporaryDirectory(prefix=f"{_TMP_PREFIX}{os.getpid()}-") as tmp:
            tmp = Path(tmp)
            src, out = tmp / f"input-{self.notebook.name}", tmp / f"{rid}.ipynb"
            result_path = tmp / f"{rid}.result.json"
            try:
                src.write_bytes(self.source)
                declared = pm.inspect_notebook(str(src))
                params = {**self.params, **({"record_path": str(result_path)} if "record_path" in declared else {})}
                cwd = self._kernel_cwd()
                env = {"DREAMFLOW_QUICK": "1" if self.quick else "0"}
                # kernel cwd via nbclient's resources: papermill's own `cwd` does a process-wide chdir
                pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=self.kernel_name,
                                    resources={"metadata": {"path": str(cwd)}}, progress_bar=False,
                                    log_output=False, request_save_on_cell_execute=False,
                                    # the outputs are in: kill the kernel rather than wait ~1.5 s
                                    # for it to wind down (a notebook's files are closed in its cells)
                                    shutdown_kernel="immediate", kernel_manager_class=_kernel_manager(env))
                if "record_path" in params:
                    if not result_path.exists():
                        raise RuntimeError("notebook finished without writing its results to record_path")
                    result = json.loads(result_path.read_text())
                    if not isinstance(result, dict):
                        raise TypeError(f"the notebook's results must be a JSON object, got {type(result).__name__}")
                    if "quick" in result and bool(result["quick"]) != self.quick:
                        raise RuntimeError(f"the notebook ran with quick={result['quick']}, the batch asked for "
                                           f"quick={self.quick}")
            except Exception as e:
                record.update(status="failed", error=_describe(e))
                result = {}
            if out.exists():
                files[out.name] = out.read_bytes()
            figures = tmp / f"{rid}.figures"  # notebook.figures_folder(record_path=...) puts them here
            for p in sorted(figures.rglob("*")) if figures.is_dir() else []:
                if p.is_file():
                    files[f"{figures.name}/{p.relative_to(figures).as_posix()}"] = p.read_bytes()
        record.update(wall_seconds=round(time.time() - t0, 3), finished=_now())
        record |= {k: v for k, v in _jsonable(result).items() if k not in record}
        return Outcome(record, files)


Run = NotebookRun  # the name before function runs existed


@dataclass
class CallRun:
    """One call of `func` ("package.module:function") with `kwargs`, in the worker's process.

    The function returns a JSON-able dict (merged into the record: test_accuracy, seconds, ...)
    or a tuple (dict, {filename: bytes}) of files stored beside the record as
    <run_id>.<filename>. Put everything that changes the result into kwargs (seed, quick,
    dataset, ...): kwargs, func, group and name make the run's identity. The record's
    `quick` is kwargs["quick"] (None if absent); quick runs' ids end in `__quick`, so quick and
    full records of one run live side by side."""

    group: str
    name: str
    func: str
    kwargs: dict = field(default_factory=dict)

    kind = "call"

    def __post_init__(self):
        self.kwargs = dict(self.kwargs)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._=+-]*", self.group or ""):
            raise ValueError(f"group {self.group!r}: use letters, digits and ._=+- (it names a folder)")
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", self.func or ""):
            raise ValueError(f"func {self.func!r}: expected 'package.module:function'")
        if not str(self.name).strip():
            raise ValueError("name: empty")

    @property
    def seed(self):
        return self.kwargs.get("seed")

    @property
    def dataset(self):
        return self.kwargs.get("dataset")

    @property
    def quick(self):
        q = self.kwargs.get("quick")
        return None if q is None else bool(q)

    @property
    def run_id(self) -> str:
        """The name, blanks as '_' ('__quick' appended when kwargs['quick']); hashed if unsafe or long."""
        return _safe_id(re.sub(r"\s+", "_", str(self.name).strip()) + ("__quick" if self.quick else ""))

    @property
    def identity(self) -> dict:
        return _jsonable({"kind": "call", "group": self.group, "name": self.name, "func": self.func,
                          "kwargs": self.kwargs})

    def describe(self) -> str:
        return f"{self.group}/{self.run_id}  {self.func}"

    def _record(self) -> dict:
        return dict(group=self.group, name=self.name, func=self.func, run_id=self.run_id,
                    params=_jsonable(self.kwargs), seed=self.seed, quick=self.quick, status="ok", error=None,
                    wall_seconds=None, started=_now(), finished=None, host=socket.gethostname())

    def failed(self, reason: str) -> Outcome:
        return Outcome({**self._record(), "status": "failed", "error": reason, "finished": _now()})

    def execute(self) -> Outcome:
        """Import and call the function (on the worker); its exceptions are recorded, not raised."""
        record, t0, files, result = self._record(), time.time(), {}, {}
        try:
            module, _, name = self.func.partition(":")
            value = getattr(importlib.import_module(module), name)(**self.kwargs)
            extra = {}
            if isinstance(value, tuple) and len(value) == 2:
                value, extra = value
            if not isinstance(value, dict) or not isinstance(extra, dict):
                raise TypeError(f"{self.func} must return a dict or (dict, {{filename: bytes}}), "
                                f"got {type(value).__name__}")
            result = json.loads(json.dumps(value))  # JSON-able, or TypeError now rather than later
            for fname, data in extra.items():
                _check_relative(fname)
                if not isinstance(data, (bytes, bytearray)):
                    raise TypeError(f"file {fname!r} from {self.func}: expected bytes, got {type(data).__name__}")
                files[f"{self.run_id}.{fname}"] = bytes(data)
        except Exception as e:
            record.update(status="failed", error=_describe(e))
            result, files = {}, {}
        record.update(wall_seconds=round(time.time() - t0, 3), finished=_now())
        record |= {k: v for k, v in result.items() if k not in record}
        return Outcome(record, files)


def _check_relative(name) -> str:
    """A relative path inside the folder (no '..', no absolute path, no hidden or empty part)."""
    parts = str(name).replace("\\", "/").split("/")
    if not name or str(name).startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise ValueError(f"file name {name!r}: expected a relative path without '..' or hidden parts")
    return "/".join(parts)


def _execute(run):
    """The task a worker runs."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    return run.execute()


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


def plan(notebooks, seeds, params=None, grid=None, quick=None):
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
# the store

def _load(path):
    """A JSON file's content, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def record_path(run, runs_dir="runs") -> Path:
    return Path(runs_dir) / run.group / f"{run.run_id}.json"


def load_record(run, runs_dir="runs"):
    """The run's stored record (any status, any identity), or None."""
    record = _load(record_path(run, runs_dir))
    return record if isinstance(record, dict) else None


def _is_done(record, identity) -> bool:
    return isinstance(record, dict) and record.get("status") == "ok" and record.get("identity") == identity


def done(run, runs_dir="runs"):
    """The run's record if it finished ok with the run's identity (such runs are skipped), else None."""
    record = load_record(run, runs_dir)
    return record if _is_done(record, run.identity) else None


def _store_error(e: OSError, what: str) -> StoreError:
    return StoreError(f"cannot write {what}: {e.strerror or describe_oserror(e)}")


def _check_writable(folder: Path, what: str):
    """Create folder and a temporary file in it; StoreError (one line) if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _store_error(e, what) from None


def _write(path: Path, data, what="") -> None:
    try:
        atomic_write(path, data)
    except OSError as e:
        raise _store_error(e, what or str(path)) from None


class RunLock:
    """An exclusive, non-blocking lock on a file (flock): held while a run executes.

    The kernel releases it when the holding process dies, so a crashed batch leaves no stale
    lock (at most an unlocked file, which the next batch takes over). The file holds the
    holder's pid, host and start time, for messages."""

    def __init__(self, path):
        self.path, self.fd = Path(path), None

    def acquire(self) -> bool:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise _store_error(e, f"lock file {self.path}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as e:
                os.close(fd)
                raise StoreError(f"cannot lock {self.path}: {e.strerror} (the runs dir needs a file system "
                                 "with working flock: a local disk or NFSv4)") from None
            try:  # still the file at path? (its last holder may have unlinked it meanwhile)
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()})
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, info.encode())
                except OSError:
                    pass  # informative only
                return True
            os.close(fd)

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def release(self):
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


class _FolderLock(RunLock):
    """Blocking variant, for short critical sections (writing the CSV)."""

    def __enter__(self):
        while not self.acquire():
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.release()


def _listed_files(record: dict, folder: Path, rid: str) -> list[str]:
    """The files a record says are its own (older records: <rid>.ipynb and <rid>.figures)."""
    if isinstance(record.get("files"), list):
        return [f for f in record["files"] if isinstance(f, str)]
    return [n for n in (f"{rid}.ipynb", f"{rid}.figures") if (folder / n).exists()]


def _supersede(folder: Path, rid: str, record: dict) -> Path:
    """Move an ok record whose identity changed, and its files, to <folder>/superseded/<time>/."""
    dest = folder / SUPERSEDED / datetime.now().strftime("%Y%m%dT%H%M%S.%f")
    try:
        dest.mkdir(parents=True, exist_ok=False)
        os.replace(folder / f"{rid}.json", dest / f"{rid}.json")
        for name in _listed_files(record, folder, rid):
            src = folder / name
            if src.exists() and ".." not in Path(name).parts:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest / name)
    except OSError as e:
        raise _store_error(e, f"superseded record of {rid}") from None
    return dest


def _take_back(folder: Path, names):
    """Remove files written for a run whose record could not be written, and their empty folders."""
    for name in filter(None, names):
        path = folder / name
        try:
            path.unlink(missing_ok=True)
            for parent in path.parents:
                if parent == folder:
                    break
                parent.rmdir()  # only if empty
        except OSError:
            pass


def _store(run, outcome: Outcome, runs_dir: Path, identity: dict) -> dict:
    """Write a run's files, then its record (the commit point), atomically; returns the record.
    Called with the run's lock held."""
    folder, rid = runs_dir / run.group, run.run_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _store_error(e, f"folder {folder}") from None
    old = load_record(run, runs_dir)
    superseded = None
    if old is not None and old.get("status") == "ok" and old.get("identity") != identity:
        superseded = _supersede(folder, rid, old)
    record = dict(outcome.record)
    files, problems = {}, []
    for name, data in outcome.files.items():
        try:
            name = _check_relative(name)
        except ValueError as e:
            problems.append(str(e))
            continue
        if name in (f"{rid}.json", f".{rid}.lock") or not name.startswith(f"{rid}."):
            problems.append(f"file name {name!r}: not this run's ({rid}.*)")
            continue
        files[name] = data
    if problems and record.get("status") == "ok":
        record.update(status="failed", error="; ".join(problems))
    written, current = [], None
    try:
        for name, data in files.items():
            current = name
            _write(folder / name, data)
            written.append(name)
    except StoreError:  # no record: take back this attempt's files (complete, but unrecorded)
        _take_back(folder, written + [current])
        raise
    if run.dataset is not None:
        record["dataset"] = _jsonable(run.dataset)
    record.update(run_id=rid, group=run.group, identity=identity, quick=run.quick,
                  output_notebook=str(folder / f"{rid}.ipynb") if f"{rid}.ipynb" in files else None,
                  files=sorted(files))
    if superseded is not None:
        record["superseded"] = str(superseded)
    text = json.dumps(record, indent=2, default=str)
    try:
        _write(folder / f"{rid}.json", text)
    except StoreError:
        _take_back(folder, written)
        raise
    if old is not None and superseded is None and isinstance(old.get("files"), list):
        for name in old["files"]:  # files of the replaced (failed) record that this one does not have
            if isinstance(name, str) and name not in files and name.startswith(f"{rid}.") \
                    and ".." not in Path(name).parts:
                (folder / name).unlink(missing_ok=True)
    return json.loads(text)


def _records_in(runs_dir: Path) -> list[dict]:
    records = []
    for path in sorted(Path(runs_dir).glob("*/*.json")):
        if path.name.startswith(".") or path.name.endswith(".result.json"):  # temp files, old leftovers
            continue
        record = _load(path)
        if isinstance(record, dict) and "run_id" in record:
            records.append(record)
        else:
            warnings.warn(f"skipping unreadable record {path}")
    return records


def _table(records) -> str:
    params = {k for r in records for k in (r.get("params") or {})}
    names = sorted(params - {"seed", "quick", "dataset"}, key=lambda k: (k.lower(), k))
    head = (CALL_HEAD if any(r.get("func") for r in records) else []) + CSV_HEAD
    with_dataset = "dataset" in params or any(r.get("dataset") is not None for r in records)
    head = head[:head.index("quick") + 1] + (["dataset"] if with_dataset else []) + head[head.index("quick") + 1:]
    tail = CSV_TAIL + (["data"] if any("data" in r for r in records) else [])
    buf = StringIO()
    writer = DictWriter(buf, head + names + tail, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        epochs = ";".join(map(str, r.get("epoch_accuracies") or []))
        quick = r.get("quick")
        if quick is None:
            quick = (r.get("identity") or {}).get("quick")
        row = {**(r.get("params") or {}), **r, "epoch_accuracies": epochs,
               "quick": "" if quick is None else int(bool(quick))}
        writer.writerow(row)
    return buf.getvalue()


def _default_csv(runs_dir) -> Path:
    return Path(runs_dir) / "runs.csv"


def _check_shrink(csv: Path, n_rows: int, runs_dir, force: bool):
    if force:
        return
    try:
        existing = len(read_csv_rows(csv))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    if n_rows < existing:
        raise StoreError(f"refusing to rewrite {csv}: it has {existing} rows, the records in {runs_dir} give "
                         f"{n_rows}; pass --force (force=True) to rewrite it anyway, or write the table elsewhere "
                         f"(--csv)")


def collect(runs_dir="runs", csv=None, force=False):
    """Write one CSV row per record under runs_dir (all batches, superseded records left out);
    return the records. csv defaults to <runs_dir>/runs.csv. Refuses (StoreError) to shrink an
    existing CSV unless force."""
    runs_dir = Path(runs_dir)
    csv = Path(csv) if csv else _default_csv(runs_dir)
    lock_dir = runs_dir if runs_dir.is_dir() else csv.parent
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _store_error(e, f"folder {lock_dir}") from None
    with _FolderLock(lock_dir / ".csv.lock"):  # batches on one runs dir write the table one at a time
        records = _records_in(runs_dir)
        _check_shrink(csv, len(records), runs_dir, force)
        _write(csv, _table(records), f"table {csv}")
    return records


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

    from .engines.kernels import share_cores

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
    with its share of the cores (`kernels.share_cores`); else the address ("tcp://host:8786")
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
                other = i in waiting_on and isinstance(rec, dict) and rec.get("identity") == identities[i] \
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

@run_cli
def main(argv=None):
    p = ArgumentParser(prog="python -m dreamflow_utils.batch", description=__doc__.strip().split("\n")[0],
                       epilog="With no notebooks, only (re)writes the CSV from the records in --runs-dir.")
    p.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK")
    p.add_argument("--seeds", default="0", help="e.g. 0-4, 0,1,7 or 0-2,7 (default: 0)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="fixed parameter (Python literal, else string); repeatable")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2", help="sweep these values; repeatable")
    p.add_argument("--jobs", default="1", help="worker processes of the embedded cluster (default: 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="use an existing Dask cluster: tcp://host:port or a scheduler JSON file")
    p.add_argument("--retries", default="1", help="retries of a run whose worker died (default: 1)")
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
        runs = plan(args.notebooks, seeds, params, grid, quick=quick)
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
    import dreamflow_utils.batch as _batch  # the importable module's classes, not __main__'s

    _batch._OWN_PROCESS = True
    sys.exit(_batch.main())
