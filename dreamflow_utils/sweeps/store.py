"""
The results store: one record per run (`runs`) under the runs dir, and the CSV table of all
records. Only the client writes into the runs dir (workers return their records and files),
atomically (unique temporary file, fsync, rename):

    <runs_dir>/<group>/<run_id>.json          the record (written last: it marks the run done)
    <runs_dir>/<group>/<run_id>.ipynb         the executed notebook (notebook runs)
    <runs_dir>/<group>/<run_id>.figures/      the figures the notebook saved (notebook runs)
    <runs_dir>/<group>/<run_id>.<name>        files a function run returned
    <runs_dir>/runs.csv                       one row per record (default CSV); a cell holding a
                                              dict or list (the config) is JSON (`parse_cell` also
                                              reads the Python reprs of older tables; `json_cells`
                                              converts such a table in place)

The store never lies or loses:
* a run is skipped only if its record says "ok" AND has the same identity: everything that
  changes the result (notebook path and the sha256 of its code cells, parameters, quick
  mode, data set; for a function: its name and keyword arguments). Quick and full records
  of one run live side by side (`__quick` run ids) and the CSV has a `quick` column.
* when an "ok" record's identity changed (e.g. the notebook's code), the run is redone and
  the old record and its files are moved to <group>/superseded/<time>/, never deleted.
* while a run executes, the client holds a lock on <group>/.<run_id>.lock (flock: released by
  the kernel when the process dies, so a crashed batch leaves no stale lock); a second batch
  on the same runs dir leaves locked runs alone, and takes their records once they are done.
* the CSV is never silently shrunk: if the records would give fewer rows than the file
  has, the batch refuses (before running anything) unless forced (--force).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
import time
import warnings
from csv import DictWriter
from datetime import datetime
from io import StringIO
from pathlib import Path

from .cli import CliError, describe_oserror
from ..core.files import atomic_write, read_csv_rows
from .runs import Outcome, _check_relative, _jsonable, _now

__all__ = ["StoreError", "RunLock", "collect", "done", "load_record", "record_path", "parse_cell", "json_cells"]

CSV_HEAD = ["notebook", "run_id", "seed", "quick", "test_accuracy", "seconds", "status", "error"]
CSV_TAIL = ["epoch_accuracies", "wall_seconds", "jobs", "running_others", "numba_threads", "started", "finished",
            "output_notebook"]  # jobs, running_others: the load the seconds were measured under
CALL_HEAD = ["group", "name", "func"]  # first columns when the runs dir holds function runs
SUPERSEDED = "superseded"


class StoreError(CliError):
    """The runs dir or the CSV cannot be written (read-only, full, ...) or would be shrunk."""


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


def _canonical(identity):
    """The identity with a function run's `config` reduced to its fields that differ from
    Config's defaults: a record planned before an option existed (its config lacks the field)
    and one planned after (the field at its default, the same model) are the same run."""
    if not isinstance(identity, dict) or not isinstance(identity.get("kwargs"), dict) \
            or not isinstance(identity["kwargs"].get("config"), dict):
        return identity
    from ..core.config import non_default
    return identity | {"kwargs": identity["kwargs"] | {"config": non_default(identity["kwargs"]["config"])}}


def same_identity(a, b) -> bool:
    return a == b or _canonical(a) == _canonical(b)


def _is_done(record, identity) -> bool:
    return isinstance(record, dict) and record.get("status") == "ok" and same_identity(record.get("identity"), identity)


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
        load, threads = r.get("load") or {}, r.get("threads") or {}
        row = {**(r.get("params") or {}), **r, "epoch_accuracies": epochs,
               "quick": "" if quick is None else int(bool(quick)), "jobs": load.get("jobs", ""),
               "running_others": load.get("running_others", ""),
               "numba_threads": ";".join(map(str, threads.get("numba", [])))}
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def _cell(value):
    """A table cell: a dict or list as JSON (keys in their order: a config in `Config`'s field order), the rest as is."""
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else value


def parse_cell(text: str):
    """A runs table's cell that holds a dict or list (the config), as Python: JSON, as `collect` writes it,
    or the Python repr older tables hold (single quotes, None/True); None for an empty cell."""
    if text in (None, ""):
        return None
    try:
        return json.loads(text)
    except ValueError:
        import ast
        return ast.literal_eval(text)


def json_cells(csv_path, columns=("config",)) -> int:
    """Convert a runs table written before its dict cells were JSON: each cell of `columns` that holds a
    Python repr becomes JSON (the same dict, keys in their order), in place, under the folder's table lock
    (as `collect` writes). Every other cell, the row order and the line ends stay as they are; cells
    already JSON are left alone. Returns the number of cells converted (0: the file is not rewritten).

    ``python -m dreamflow_utils.sweeps.store json-cells results/frontier/runs.csv results/frontier-search/runs.csv``
    """
    import csv as _csv

    path = Path(csv_path)
    with _FolderLock(path.parent / ".csv.lock"):
        with open(path, newline="") as f:
            rows = list(_csv.reader(f))
        if not rows:
            return 0
        where = [rows[0].index(c) for c in columns if c in rows[0]]
        converted = 0
        for row in rows[1:]:
            for i in where:
                if i < len(row) and row[i]:
                    try:
                        json.loads(row[i])
                    except ValueError:
                        row[i] = json.dumps(parse_cell(row[i]))
                        converted += 1
        if converted:
            buf = StringIO()
            _csv.writer(buf).writerows(rows)  # the dialect DictWriter wrote them with (\r\n line ends)
            _write(path, buf.getvalue(), f"table {path}")
    return converted


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


def main(argv=None) -> int:
    """python -m dreamflow_utils.sweeps.store json-cells CSV...: convert runs tables' config cells to JSON (`json_cells`)."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.sweeps.store", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("json-cells", help="rewrite the config column of runs tables from Python reprs to JSON")
    j.add_argument("csv", nargs="+")
    j.add_argument("--column", action="append", default=None, help="column to convert (default: config)")
    a = p.parse_args(argv)
    for path in a.csv:
        try:
            n = json_cells(path, tuple(a.column or ("config",)))
        except (OSError, ValueError, SyntaxError, StoreError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
        print(f"{path}: {n} cells converted to JSON")
    return 0


if __name__ == "__main__":
    sys.exit(main())
