"""Files: atomic writes (a reader, or an interrupted run, never sees a half-written file), CSV rows, the
repository's root."""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path


def atomic_write(path, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder, fsync, then
    `os.replace`: `path` holds either its old content or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def read_csv_rows(path) -> list[dict]:
    """A CSV file's rows as dicts; [] if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def repo_root(start=None) -> Path:
    """The nearest folder at or above `start` (default: cwd) holding pyproject.toml, else `start`."""
    start = Path(start or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return start
