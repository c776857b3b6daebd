"""
The runs of a batch: one papermill execution of a notebook (`NotebookRun`) or one call of a
function (`CallRun`). A worker executes a run in a private temporary folder and returns its
record and files (`Outcome`) to the client, which stores them (`store`).

A notebook's group is its stem; if its parameters cell declares `record_path = None`, the
run sets it and the notebook writes its results (a JSON object) there; they are merged into
the record.

A run's identity is everything that changes the result (notebook path and the sha256 of its
code cells, parameters, quick mode, data set; for a function: its name and keyword
arguments). Quick-mode runs also carry `__quick` in their run id (so both kinds live side by
side).
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

__all__ = ["NotebookRun", "CallRun", "Outcome", "code_sha256"]

_SAFE = re.compile(r"[^A-Za-z0-9._=+-]")


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
    """$DREAMFLOW_QUICK as `quick.quick_mode` parses it (ValueError for anything else)."""
    from ..core.quick import quick_mode
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


def kernel_manager(extra_env: dict):
    """An AsyncKernelManager class whose kernels get `extra_env` on top of this process's env."""
    from jupyter_client import AsyncKernelManager

    class EnvKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**os.environ, **(kw.get("env") or {}), **extra_env}
            # the kernel's own log (e.g. that it talks over TCP on localhost) is nothing to act on
            kw["extra_arguments"] = [*kw.get("extra_arguments", []), "--IPKernelApp.log_level=ERROR"]
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
                from ..plots.live import HEADLESS_ENV
                env = {"DREAMFLOW_QUICK": "1" if self.quick else "0", HEADLESS_ENV: "1"}  # no one watches
                # kernel cwd via nbclient's resources: papermill's own `cwd` does a process-wide chdir
                pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=self.kernel_name,
                                    resources={"metadata": {"path": str(cwd)}}, progress_bar=False,
                                    log_output=False, request_save_on_cell_execute=False,
                                    # the outputs are in: kill the kernel rather than wait ~1.5 s
                                    # for it to wind down (a notebook's files are closed in its cells)
                                    shutdown_kernel="immediate", kernel_manager_class=kernel_manager(env))
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
