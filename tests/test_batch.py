"""Tests for dreamflow_utils.sweeps.batch (sweeps on Dask distributed), .runs and .store (the results store).

The Dask mechanics use CallRuns of tests/fixtures/batch_funcs.py (no kernels) on one
LocalCluster shared by the module (passed as an existing scheduler); a few tests start their
own cluster (embedded, or `dask scheduler` / `dask worker` subprocesses); kernels are
started sparingly (tiny fixture notebooks).
"""
import csv
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from dreamflow_utils.sweeps import batch as B
from dreamflow_utils.core import files as F
from dreamflow_utils.sweeps import runs as R
from dreamflow_utils.sweeps import store as S
from helpers import REAL_MNIST, needs_mnist

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[1]
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))  # batch_funcs, for the workers this process spawns
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(FIXTURES), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def cluster():
    """Address of a LocalCluster (2 single-threaded worker processes, 1 retry after a worker died)."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                         host="127.0.0.1", silence_logs=40)
    yield c.scheduler_address
    c.close()


@pytest.fixture
def nbs(tmp_path):
    """Copies of the fixture notebooks in tmp_path (their kernels run there, so executions.log lands there)."""
    for nb in FIXTURES.glob("*.ipynb"):
        shutil.copy(nb, tmp_path)
    return tmp_path


def lines(path):
    """Lines of a log file (sorted), [] if missing."""
    path = Path(path)
    return sorted(path.read_text().splitlines()) if path.exists() else []


def executions(folder):
    """Lines 'seed scale' appended by toy.ipynb (or 'seed dataset' by probe.ipynb) each time it really runs."""
    return lines(Path(folder) / "executions.log")


def record_files(folder):
    return sorted(p for p in Path(folder).glob("*.json") if not p.name.startswith("."))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def square(x, log, group="sq", **kw):
    return R.CallRun(group, f"square {x}", "batch_funcs:square", {"x": x, "log": str(log), **kw})


def cli(*args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-m", "dreamflow_utils.sweeps.batch", *args], cwd=cwd, env=env or ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def one_error_line(err):
    """stderr of a refused command: exactly one line `error: ...`, no traceback."""
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err.strip()

# -----------------------------------------------------------------------------
# planning and identities: no cluster


def test_plan_grid_and_ids(nbs):
    runs = B.notebook_runs([nbs / "toy.ipynb"], seeds=[0, 1, 2], params={"fail": False}, grid={"scale": [0.5, 1.0]}, quick=False)
    assert len(runs) == 6
    assert [r.params for r in runs[:3]] == [{"seed": s, "fail": False, "scale": 0.5} for s in range(3)]
    assert runs[0].run_id == "toy__fail=False__scale=0.5__seed=0"  # keys sorted case-insensitively
    assert runs[0].group == "toy" and len({r.run_id for r in runs}) == 6
    quick = B.notebook_runs([nbs / "toy.ipynb"], seeds=[0], quick=True)[0]
    assert quick.run_id == "toy__seed=0__quick" and quick.quick is True
    assert R.NotebookRun(Path("02_block_Cs10.ipynb"), {"T_s": 1000, "seed": 3}, quick=False).run_id \
        == "02_block_Cs10__seed=3__T_s=1000"
    # ids are stable, filename-safe, and hashed when unsafe or long
    odd = R.NotebookRun(Path("toy.ipynb"), {"seed": 0, "scale": "a/b c"}, quick=False)
    assert odd.run_id == R.NotebookRun(Path("toy.ipynb"), {"scale": "a/b c", "seed": 0}, quick=False).run_id
    assert odd.run_id.startswith("toy__scale=a-b-c__seed=0__") and "/" not in odd.run_id
    long = R.NotebookRun(Path("toy.ipynb"), {"seed": 0, "scale": "x" * 300}, quick=False)
    assert len(long.run_id) <= 120
    assert long.run_id != R.NotebookRun(Path("toy.ipynb"), {"seed": 0, "scale": "x" * 301}, quick=False).run_id
    # duplicates collapse, seed only via seeds
    assert len(B.notebook_runs([nbs / "toy.ipynb"] * 2, seeds=[0, 0])) == 1
    with pytest.raises(ValueError, match="seed"):
        B.notebook_runs([nbs / "toy.ipynb"], seeds=[0], params={"seed": 1})
    with pytest.raises(ValueError, match="twice"):
        B.notebook_runs([nbs / "toy.ipynb"], seeds=[0], params={"scale": 1}, grid={"scale": [1, 2]})


def test_quick_mode_from_environment(nbs, monkeypatch):
    for value, quick in [("1", True), ("true", True), (" YES ", True), ("on", True), ("0", False), ("", False),
                         ("off", False), ("False", False)]:
        monkeypatch.setenv("DREAMFLOW_QUICK", value)
        assert B.notebook_runs([nbs / "toy.ipynb"], seeds=[0])[0].quick is quick
    monkeypatch.setenv("DREAMFLOW_QUICK", "maybe")
    with pytest.raises(ValueError, match="DREAMFLOW_QUICK='maybe'"):
        B.notebook_runs([nbs / "toy.ipynb"], seeds=[0])
    assert B.main([str(nbs / "toy.ipynb"), "--runs-dir", str(nbs / "runs")]) == 2
    assert not (nbs / "runs").exists()


def test_identities(nbs):
    toy = nbs / "toy.ipynb"
    run = R.NotebookRun(toy, {"seed": 0, "scale": (1, 2)}, quick=False)
    ident = run.identity
    assert ident["kind"] == "notebook" and ident["notebook"] == "toy.ipynb" and ident["quick"] is False
    assert ident["params"] == {"seed": 0, "scale": [1, 2]} and len(ident["code_sha256"]) == 64
    assert "dataset" not in ident
    assert R.NotebookRun(nbs / "probe.ipynb", {"seed": 0, "dataset": "mnist"}, quick=False).identity["dataset"] == "mnist"
    assert R.NotebookRun(toy, {"seed": 0, "scale": (1, 2)}, quick=True).identity != ident
    # the code cells count, markdown does not
    nb = nbformat.read(toy, 4)
    nb.cells[0].source += "\nmore words"
    nbformat.write(nb, nbs / "toy2.ipynb")
    same = R.NotebookRun(nbs / "toy2.ipynb", {"seed": 0}, quick=False).identity["code_sha256"]
    assert same == R.NotebookRun(toy, {"seed": 0}, quick=False).identity["code_sha256"]
    nb.cells[2].source += "\nx = 1"
    nbformat.write(nb, nbs / "toy2.ipynb")
    assert R.NotebookRun(nbs / "toy2.ipynb", {"seed": 0}, quick=False).identity["code_sha256"] != same
    # notebooks in the repo: path relative to it
    assert R.NotebookRun(REPO / "notebooks" / "02_log_block_C_s=10_N2=100.ipynb", {"seed": 0}, quick=False).identity[
        "notebook"] == "notebooks/02_log_block_C_s=10_N2=100.ipynb"

    call = R.CallRun("symmetry", "shared stride=4 C_s=20 N2=2000 seed 0", "batch_funcs:square",
                     {"x": 1, "seed": 0, "dataset": "mnist", "quick": False})
    assert call.run_id == "shared_stride=4_C_s=20_N2=2000_seed_0" and call.group == "symmetry"
    assert call.seed == 0 and call.quick is False
    assert call.identity == {"kind": "call", "group": "symmetry", "name": "shared stride=4 C_s=20 N2=2000 seed 0",
                             "func": "batch_funcs:square", "kwargs": {"x": 1, "seed": 0, "dataset": "mnist",
                                                                       "quick": False}}
    import pickle
    assert pickle.loads(pickle.dumps(call)).identity == call.identity
    assert pickle.loads(pickle.dumps(run)).identity == ident
    for bad in [dict(group="a/b"), dict(group=""), dict(group="..")]:
        with pytest.raises(ValueError, match="group"):
            R.CallRun(name="n", func="m:f", **bad)
    with pytest.raises(ValueError, match="func"):
        R.CallRun("g", "n", "no_colon")


def test_unknown_parameter_and_missing_notebook_refused(nbs, capsys):
    with pytest.raises(ValueError) as e:
        B.notebook_runs([nbs / "toy.ipynb", nbs / "plain.ipynb"], seeds=[0], params={"scale": 2.0})
    msg = str(e.value)
    assert "'scale'" in msg and "plain.ipynb" in msg and "declares: seed" in msg and "toy.ipynb" not in msg
    with pytest.raises(ValueError, match=r"'lr'.*toy\.ipynb.*fail, record_path, scale, seed, sleep"):
        B.run_batch([R.NotebookRun(nbs / "toy.ipynb", {"seed": 0}), R.NotebookRun(nbs / "toy.ipynb", {"seed": 1, "lr": 0.1})],
                    runs_dir=nbs / "runs", csv=nbs / "runs.csv")
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        B.notebook_runs([nbs / "nope.ipynb"], seeds=[0])
    assert B.main([str(nbs / "toy.ipynb"), "--grid", "lr=0.1,0.2", "--runs-dir", str(nbs / "runs")]) == 2
    assert "unknown parameter 'lr'" in one_error_line(capsys.readouterr().err)
    assert B.main([str(nbs / "nope.ipynb"), "--runs-dir", str(nbs / "runs")]) == 2
    assert "notebook not found" in one_error_line(capsys.readouterr().err)
    assert not (nbs / "runs").exists() and not (nbs / "runs.csv").exists() and executions(nbs) == []


@pytest.mark.parametrize("args, words", [
    (["--grid", "scale="], "--grid: empty value in 'scale='"),
    (["--grid", "scale=10,,20"], "empty item in '10,,20'"),
    (["--grid", "scale=[10,20"], "unbalanced brackets"),
    (["--grid", "scale=1,2", "--grid", "scale=3"], "'scale' given twice"),
    (["--param", "scale=1", "--param", "scale=2"], "'scale' given twice"),
    (["--param", "scale=1", "--grid", "scale=2,3"], "given twice or reserved"),
    (["--param", "seed=1"], "reserved"),
    (["--param", "scale"], "expected NAME=VALUE"),
    (["--seeds", "4-0"], "--seeds: range '4-0'"),
    (["--seeds", "0-"], "--seeds: '0-'"),
    (["--seeds", "0,0"], "given twice"),
    (["--jobs", "0"], "--jobs: must be at least 1"),
    (["--jobs", "two"], "--jobs: expected a whole number"),
    (["--retries", "-1"], "--retries: must be 0 or more"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_malformed_arguments(nbs, capsys, args, words):
    assert B.main([str(nbs / "toy.ipynb"), "--runs-dir", str(nbs / "runs"), *args]) == 2
    out, err = capsys.readouterr()
    assert words in one_error_line(err) and out == ""
    assert not (nbs / "runs").exists() and executions(nbs) == []


def test_run_lock(tmp_path):
    path = tmp_path / ".x.lock"
    a, b = S.RunLock(path), S.RunLock(path)
    assert a.acquire() and not b.acquire()
    assert f"pid {os.getpid()}" in b.holder()
    a.release()
    assert not path.exists() and b.acquire()
    b.release()
    # a lock file left by a dead process (SIGKILL: no release) is not a lock
    path.write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    assert a.acquire()
    a.release()
    # a process killed while holding it: the kernel releases the flock
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; from dreamflow_utils.sweeps.store import RunLock; "
                             f"assert RunLock({str(path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                            env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert not a.acquire()
    proc.kill()
    proc.wait()
    assert a.acquire()
    a.release()


def test_stale_private_folders_of_dead_workers_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(R.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid in (dead.pid, os.getpid(), 1):
        (tmp_path / f"dreamflow-run-{pid}-abc").mkdir()
    (tmp_path / "dreamflow-run-x-abc").mkdir()
    R._clean_stale_tmp()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"dreamflow-run-{os.getpid()}-abc", "dreamflow-run-1-abc", "dreamflow-run-x-abc"])


def test_collect_never_shrinks_a_table(tmp_path, capsys, monkeypatch):
    runs, table = tmp_path / "runs", tmp_path / "results" / "runs.csv"
    folder = runs / "sq"
    folder.mkdir(parents=True)
    for i in range(2):
        (folder / f"r{i}.json").write_text(json.dumps({"run_id": f"r{i}", "status": "ok", "params": {"x": i},
                                                       "quick": i == 1}))
    table.parent.mkdir()
    committed = "notebook,run_id,seed\n" + "".join(f"nb,r{i},0\n" for i in range(5))
    table.write_text(committed)
    with pytest.raises(S.StoreError, match=r"refusing to rewrite .*runs\.csv: it has 5 rows, the records in .* give 2"):
        S.collect(runs, table)
    assert table.read_text() == committed
    assert B.main(["--runs-dir", str(runs), "--csv", str(table)]) == 2
    assert "--force" in one_error_line(capsys.readouterr().err) and table.read_text() == committed
    # without --csv, the table goes beside the records: the committed one is left alone
    monkeypatch.chdir(tmp_path)
    assert B.main(["--runs-dir", "runs"]) == 0
    assert "2 records -> runs/runs.csv" in capsys.readouterr().out
    rows = read_csv(runs / "runs.csv")
    assert [(r["run_id"], r["quick"], r["x"]) for r in rows] == [("r0", "0", "0"), ("r1", "1", "1")]
    assert table.read_text() == committed
    assert B.main(["--runs-dir", "runs", "--csv", str(table), "--force"]) == 0
    assert len(read_csv(table)) == 2
    # a fresh clone: no records at all, the committed table stays
    assert B.main(["--runs-dir", "empty", "--csv", str(table)]) == 2
    assert len(read_csv(table)) == 2
    capsys.readouterr()


def test_unwritable_runs_dir_and_table(nbs, capsys, monkeypatch):
    """Read-only runs dir or table folder: one line naming the path, status 2, nothing run."""
    real = S.tempfile.mkstemp
    readonly = str(nbs / "ro")

    def mkstemp(*a, dir=None, **kw):
        if str(dir).startswith(readonly):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(S.tempfile, "mkstemp", mkstemp)
    args = [str(nbs / "toy.ipynb"), "--no-progress"]
    assert B.main([*args, "--runs-dir", readonly]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err == f"error: cannot write runs dir {readonly}: Read-only file system"
    assert B.main([*args, "--runs-dir", str(nbs / "runs"), "--csv", f"{readonly}/runs.csv"]) == 2
    assert one_error_line(capsys.readouterr().err) == \
        f"error: cannot write folder of the table {readonly}/runs.csv: Read-only file system"
    assert executions(nbs) == []
    monkeypatch.undo()
    # a runs dir that is a file
    (nbs / "file").write_text("")
    assert B.main([*args, "--runs-dir", str(nbs / "file")]) == 2
    assert "cannot write runs dir" in one_error_line(capsys.readouterr().err)

# -----------------------------------------------------------------------------
# running: function runs on the shared cluster


def test_call_runs_records_files_csv_resume(cluster, tmp_path):
    log, out, table = tmp_path / "log", tmp_path / "runs", tmp_path / "runs.csv"
    runs = [square(x, log, seed=0, quick=False) for x in (1, 2)] + [
        R.CallRun("other", "files 3", "batch_funcs:with_files", {"x": 3, "log": str(log)}),
        R.CallRun("other", "fail", "batch_funcs:fail", {"x": 1, "log": str(log)})]
    records = B.run_batch(runs, out, table, scheduler=cluster, progress=False)
    assert [r["status"] for r in records] == ["ok", "ok", "ok", "failed"]
    assert [r["run_id"] for r in records] == ["square_1", "square_2", "files_3", "fail"]
    sq = records[1]
    assert sq["test_accuracy"] == 0.04 and sq["epoch_accuracies"] == [0.1, 0.2] and sq["seed"] == 0
    assert sq["quick"] is False and sq["params"] == {"x": 2, "log": str(log), "seed": 0, "quick": False}
    assert sq["identity"] == runs[1].identity and sq["group"] == "sq" and sq["func"] == "batch_funcs:square"
    assert sq["pid"] != os.getpid()  # ran on a worker
    assert records[3]["error"].startswith("ValueError: asked to fail (x=1)")
    for r in records:  # on disk exactly as returned
        assert json.loads((out / r["group"] / f"{r['run_id']}.json").read_text()) == r
    assert records[2]["files"] == ["files_3.arrays/a.bin", "files_3.notes.txt"]
    assert (out / "other" / "files_3.notes.txt").read_text() == "x=3\n"
    assert (out / "other" / "files_3.arrays" / "a.bin").read_bytes() == bytes(range(3))
    assert sorted(p.name for p in (out / "other").iterdir()) == [
        "fail.json", "files_3.arrays", "files_3.json", "files_3.notes.txt"]  # no locks or temp files left
    rows = read_csv(table)
    assert list(rows[0])[:11] == ["group", "name", "func", "notebook", "run_id", "seed", "quick", "test_accuracy",
                                  "seconds", "status", "error"]
    assert {r["run_id"]: (r["status"], r["quick"]) for r in rows} == {
        "square_1": ("ok", "0"), "square_2": ("ok", "0"), "files_3": ("ok", ""), "fail": ("failed", "")}
    assert lines(log) == ["1 0 0", "2 0 0", "fail 1", "files 3"]

    # rerun: only the failed run is redone; finished records are untouched
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in record_files(out / "sq")}
    again = B.run_batch(runs, out, table, scheduler=cluster, progress=False)
    assert again[:3] == records[:3] and again[3]["status"] == "failed"
    assert lines(log) == ["1 0 0", "2 0 0", "fail 1", "fail 1", "files 3"]
    assert all((p.read_bytes(), p.stat().st_mtime_ns) == v for p, v in kept.items())
    assert len(read_csv(table)) == 4


def test_identity_change_supersedes_and_quick_is_not_full(cluster, tmp_path):
    log, out = tmp_path / "log", tmp_path / "runs"
    quick = R.CallRun("g", "files", "batch_funcs:with_files", {"x": 2, "log": str(log)})
    first = B.run_batch([quick], out, progress=False, scheduler=cluster)[0]
    # same name, different arguments: redone; the old record and its files are kept aside, not lost
    changed = R.CallRun("g", "files", "batch_funcs:with_files", {"x": 4, "log": str(log)})
    assert S.done(changed, out) is None and S.done(quick, out) == first
    second = B.run_batch([changed], out, csv=out / "runs.csv", progress=False, scheduler=cluster)[0]
    assert second["status"] == "ok" and second["test_accuracy"] == 0.4 and lines(log) == ["files 2", "files 4"]
    old = Path(second["superseded"])
    assert old.parent == out / "g" / "superseded"
    assert json.loads((old / "files.json").read_text()) == first
    assert (old / "files.notes.txt").read_text() == "x=2\n" and (old / "files.arrays" / "a.bin").exists()
    assert (out / "g" / "files.notes.txt").read_text() == "x=4\n"
    assert [r["test_accuracy"] for r in read_csv(out / "runs.csv")] == ["0.4"]  # superseded: not in the table

    # quick and full records of the same run never stand in for each other
    quick = B.run_batch([square(1, log, quick=True, seed=0)], out, progress=False, scheduler=cluster)[0]
    full = B.run_batch([square(1, log, quick=False, seed=0)], out, progress=False, scheduler=cluster)[0]
    assert (quick["run_id"], quick["quick"]) == ("square_1__quick", True)
    assert (full["run_id"], full["quick"], full["status"]) == ("square_1", False, "ok")
    assert lines(log).count("1 0 1") == 1 and lines(log).count("1 0 0") == 1
    # a quick record under the full run's name (e.g. written by hand): redone, kept aside
    record = json.loads((out / "sq" / "square_1.json").read_text())
    (out / "sq" / "square_1.json").write_text(json.dumps({**record, "identity": quick["identity"], "quick": True}))
    assert B.run_batch([square(1, log, quick=False, seed=0)], out, progress=False, scheduler=cluster)[0]["quick"] is False
    assert lines(log).count("1 0 0") == 2 and len(list((out / "sq" / "superseded").iterdir())) == 1


def test_two_concurrent_batches_share_the_work(cluster, tmp_path):
    """Two batches on one runs dir (processes): every run executed once, no false failure."""
    script = tmp_path / "sweep.py"
    script.write_text(
        "import sys\nfrom dreamflow_utils.sweeps import batch as B, runs as R\n"
        "if __name__ == '__main__':\n"
        f"    runs = [R.CallRun('sq', f'square {{x}}', 'batch_funcs:square', dict(x=x, log={str(tmp_path / 'log')!r}, sleep=0.3))"
        " for x in range(8)]\n"
        f"    recs = B.run_batch(runs, {str(tmp_path / 'runs')!r}, csv={str(tmp_path / 'runs.csv')!r}, scheduler=sys.argv[1], progress=False)\n"
        "    print(sum(r['status'] == 'ok' for r in recs))\n")
    procs = [subprocess.Popen([sys.executable, str(script), cluster], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == ["8", "8"], outs
    assert lines(tmp_path / "log") == sorted(f"{x} 0 0" for x in range(8))  # each run executed once
    assert len(read_csv(tmp_path / "runs.csv")) == 8
    assert sorted(p.name for p in (tmp_path / "runs" / "sq").iterdir()) == sorted(f"square_{x}.json" for x in range(8))


class NoSpace:
    """Stands in for `os` in dreamflow_utils.core.files: a write of more than `limit` bytes hits a full disk."""

    def __init__(self, limit):
        self.limit = limit

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, mode="r", *a, **kw):
        f = os.fdopen(fd, mode, *a, **kw)
        limit, write = self.limit, f.write

        def full_write(data):
            if len(data) > limit:
                write(data[:limit])
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(data)

        f.write = full_write
        return f


def test_full_disk(cluster, nbs, monkeypatch, capsys):
    """ENOSPC while storing a result: one line naming the file, status 2; no partial file under a final name."""
    log, out = nbs / "log", nbs / "runs"
    done_before = B.run_batch([square(1, log)], out, progress=False, scheduler=cluster)[0]
    monkeypatch.setattr(F, "os", NoSpace(limit=200))
    with pytest.raises(S.StoreError, match=r"cannot write .*/sq/files_5\.arrays/a\.bin: No space left on device"):
        B.run_batch([R.CallRun("sq", "files 5", "batch_funcs:with_files", {"x": 250})], out, progress=False,
                    scheduler=cluster)
    assert not list((out / "sq").glob("files_5*")) and not list((out / "sq").glob(".*"))
    # the CLI: a notebook whose record cannot be written
    args = [str(nbs / "toy.ipynb"), "--runs-dir", str(out), "--scheduler", cluster, "--no-progress"]
    monkeypatch.setattr(F, "os", NoSpace(limit=100))
    assert B.main(args) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"error: cannot write {out}/toy/toy__seed=0__quick.ipynb: ") and "No space left" in err
    assert sorted(p.name for p in (out / "toy").iterdir()) == []
    assert json.loads((out / "sq" / "square_1.json").read_text()) == done_before
    monkeypatch.undo()
    assert B.main(args) == 0  # space again: the run is done now
    assert [p.name for p in record_files(out / "toy")] == ["toy__seed=0__quick.json"]

def test_a_record_that_cannot_be_written_takes_back_the_runs_files(tmp_path, monkeypatch):
    """The record is written last: when it cannot be, the run's files written before it are removed
    (their folders too), no temporary file stays, and the group's other runs are left alone."""
    out = tmp_path / "runs"

    def tree():
        return {p.relative_to(out).as_posix(): p.read_bytes() if p.is_file() else None for p in out.rglob("*")}

    other = R.CallRun("g", "other", "batch_funcs:with_files", {"x": 1})
    S._store(other, R.Outcome({"status": "ok"}, {"other.notes.txt": b"x=1\n"}), out, other.identity)
    before = tree()
    assert set(before) == {"g", "g/other.json", "g/other.notes.txt"}
    run = R.CallRun("g", "files 2", "batch_funcs:with_files", {"x": 2})
    files = {"files_2.notes.txt": b"x=2\n", "files_2.arrays/a.bin": bytes(range(2)),
             "files_2.figures/deep/b.png": b"png"}
    monkeypatch.setattr(F, "os", NoSpace(limit=200))  # the files fit, the record (> 200 bytes) does not
    with pytest.raises(S.StoreError, match=r"cannot write .*/g/files_2\.json: No space left on device"):
        S._store(run, R.Outcome({"status": "ok"}, files), out, run.identity)
    assert tree() == before
    monkeypatch.undo()
    record = S._store(run, R.Outcome({"status": "ok"}, files), out, run.identity)  # space again: all stored
    assert record["files"] == sorted(files) and S.done(run, out) == record
    assert all((out / "g" / name).read_bytes() == data for name, data in files.items())


# -----------------------------------------------------------------------------
# notebooks (kernels)


def test_notebook_runs_quick_and_full(cluster, nbs):
    probe, out, table = nbs / "probe.ipynb", nbs / "runs", nbs / "runs.csv"
    runs = [R.NotebookRun(probe, {"seed": 1}, quick=True), R.NotebookRun(probe, {"seed": 1}, quick=False),
            R.NotebookRun(nbs / "toy.ipynb", {"seed": 0, "fail": True}, quick=True),
            R.NotebookRun(nbs / "no_record.ipynb", {"seed": 0}, quick=False)]
    records = B.run_batch(runs, out, table, scheduler=cluster, progress=False)
    q, f, fail, silent = records
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "failed"]
    assert (q["run_id"], f["run_id"]) == ("probe__seed=1__quick", "probe__seed=1")
    assert q["env"]["DREAMFLOW_QUICK"] == "1" and f["env"]["DREAMFLOW_QUICK"] == "0"  # forwarded to the kernel
    assert (q["quick"], f["quick"]) == (True, False) and q["cwd"] == str(nbs.resolve())
    assert q["identity"]["code_sha256"] == runs[0].identity["code_sha256"] and q["identity"]["dataset"] == "digits"
    assert q["test_accuracy"] == 0.51 and q["epoch_accuracies"] == [0.51]
    assert q["files"] == ["probe__seed=1__quick.figures/probe_figure.png", "probe__seed=1__quick.ipynb"]
    assert (out / "probe" / "probe__seed=1__quick.figures" / "probe_figure.png").read_bytes() == b"not really a png 1"
    assert q["output_notebook"] == str(out / "probe" / "probe__seed=1__quick.ipynb")
    executed = nbformat.read(q["output_notebook"], 4)
    injected = [c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "seed = 1" in injected[0] and "record_path = " in injected[0]
    assert fail["error"].startswith("ValueError: asked to fail (seed=0)") and "test_accuracy" not in fail
    assert "asked to fail" in Path(fail["output_notebook"]).read_text()
    assert "without writing its results to record_path" in silent["error"]
    assert executions(nbs) == ["0 1.0", "1 digits", "1 digits"]
    rows = read_csv(table)
    assert list(rows[0])[:8] == ["notebook", "run_id", "seed", "quick", "dataset", "test_accuracy", "seconds", "status"]
    assert [(r["run_id"], r["quick"], r["dataset"], r["status"]) for r in rows] == [
        ("no_record__seed=0", "0", "", "failed"), ("probe__seed=1", "0", "digits", "ok"),
        ("probe__seed=1__quick", "1", "digits", "ok"), ("toy__fail=True__seed=0__quick", "1", "", "failed")]
    # nothing but final names under the runs dir
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]

    # the notebook's code changes: its ok runs are redone, the old ones kept aside
    nb = nbformat.read(probe, 4)
    nb.cells[3].source = nb.cells[3].source.replace("0.5 + seed / 100", "0.25 + seed / 100")
    nbformat.write(nb, probe)
    again = B.run_batch([R.NotebookRun(probe, {"seed": 1}, quick=True)], out, table, scheduler=cluster,
                        progress=False)[0]
    assert again["test_accuracy"] == 0.26 and again["identity"] != q["identity"]
    old = Path(again["superseded"])
    assert json.loads((old / "probe__seed=1__quick.json").read_text())["test_accuracy"] == 0.51
    assert (old / "probe__seed=1__quick.figures" / "probe_figure.png").exists()
    assert len(read_csv(table)) == 4


def test_embedded_cluster_quick_sweep(nbs, capsys):
    """No scheduler: an embedded LocalCluster of --jobs workers with their share of the cores."""
    runs = B.notebook_runs([nbs / "probe.ipynb"], seeds=[0, 1], quick=True)
    numba_env = os.environ.get("NUMBA_NUM_THREADS")
    records = B.run_batch(runs, nbs / "runs", nbs / "runs.csv", jobs=2)
    assert [r["status"] for r in records] == ["ok", "ok"]
    import numba
    share = str(max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // 2)))
    assert all(r["env"] == {"DREAMFLOW_QUICK": "1", "NUMBA_NUM_THREADS": share,
                            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")} for r in records)
    assert os.environ.get("NUMBA_NUM_THREADS") == numba_env  # this process keeps its own
    spans = [(datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["finished"])) for r in records]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the two ran side by side
    assert executions(nbs) == ["0 digits", "1 digits"]
    assert "runs: 100%" in capsys.readouterr().err  # the progress bar


def test_killed_worker_is_retried_or_recorded_failed(nbs):
    """Embedded cluster: a worker killed mid-run. retries=0: recorded failed (KilledWorker), finished
    records intact; the rerun (retries=1) resumes: the run is retried after its worker dies again."""
    log, out = nbs / "log", nbs / "runs"
    runs = [square(1, log), R.CallRun("sq", "victim", "batch_funcs:wait_to_be_killed",
                                      {"folder": str(nbs), "tag": "victim", "log": str(log), "times": 2}),
            square(2, log, sleep=1.0)]

    def kill_when_waiting(attempt):
        pid_file = nbs / f"victim.pid.{attempt}"
        deadline = time.time() + 60
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_waiting, args=(1,))
    killer.start()
    records = B.run_batch(runs, out, jobs=2, retries=0, progress=False)
    killer.join()
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert "KilledWorker" in records[1]["error"] and "after 0 retries" in records[1]["error"]
    kept = {p: p.read_bytes() for p in record_files(out / "sq") if "square" in p.name}
    assert len(kept) == 2

    killer = threading.Thread(target=kill_when_waiting, args=(2,))
    killer.start()
    again = B.run_batch(runs, out, jobs=2, retries=1, progress=False)
    killer.join()
    assert [r["status"] for r in again] == ["ok", "ok", "ok"] and again[1]["attempt"] == 3
    assert {p: p.read_bytes() for p in kept} == kept
    assert lines(log) == ["1 0 0", "2 0 0", "victim attempt 1", "victim attempt 2", "victim attempt 3"]


def _start_dask(tmp_path, nworkers=1):
    """`dask scheduler` and `dask worker` subprocesses on 127.0.0.1, random port; (procs, scheduler file)."""
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                               "--scheduler-file", str(sched_file)], env=ENV, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.time() + 60
    while not sched_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                   str(sched_file), "--nworkers", str(nworkers), "--nthreads", "1", "--host",
                                   "127.0.0.1"], env=ENV, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    return procs, sched_file


def test_separate_scheduler_and_worker(nbs):
    """--scheduler with a separately started `dask scheduler` and `dask worker`: a 2-run quick sweep
    from the command line; a killed worker process is restarted by its nanny and the run retried."""
    procs, sched_file = _start_dask(nbs)
    try:
        from distributed import Client
        with Client(scheduler_file=str(sched_file), timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
            address = client.scheduler.address
        proc = cli(str(nbs / "toy.ipynb"), "--seeds", "0-1", "--scheduler", address, "--runs-dir", "runs", cwd=nbs)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "2/2 ok" in out and "dask dashboard: http://127.0.0.1:" in out
        assert executions(nbs) == ["0 1.0", "1 1.0"]
        assert [r["status"] for r in read_csv(nbs / "runs" / "runs.csv")] == ["ok", "ok"]

        log = nbs / "log"
        runs = [square(3, log), R.CallRun("sq", "victim", "batch_funcs:wait_to_be_killed",
                                          {"folder": str(nbs), "tag": "victim", "log": str(log)})]
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            records=B.run_batch(runs, nbs / "runs", scheduler=str(sched_file), progress=False)))
        thread.start()
        deadline = time.time() + 60
        while not (nbs / "victim.pid.1").exists() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(int((nbs / "victim.pid.1").read_text()), signal.SIGKILL)
        thread.join(timeout=120)
        assert [r["status"] for r in result["records"]] == ["ok", "ok"]
        assert result["records"][1]["attempt"] == 2  # retried on the restarted worker
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def test_interrupted_cli_resumes(nbs, monkeypatch, capsys, cluster):
    """Deterministic: the toy notebook holds a seed while hold_<seed> exists, so the batch is
    interrupted exactly after 1, then 2 finished runs, whatever the machine's load."""
    args = ["toy.ipynb", "--seeds", "0-2", "--runs-dir", "runs", "--csv", "runs.csv"]
    folder = nbs / "runs" / "toy"
    for seed in (1, 2):
        (nbs / f"hold_{seed}").touch()

    def start_and_stop_after(n_records, sig):
        proc = cli(*args, "--jobs", "1", cwd=nbs)
        deadline = time.time() + 120
        while len(record_files(folder)) < n_records and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert len(record_files(folder)) == n_records and proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        return proc

    # SIGTERM behaves like Ctrl-C: stops at once with a hint; SIGKILL gives no chance to clean up
    proc = start_and_stop_after(1, signal.SIGTERM)
    assert proc.returncode == 130 and "rerun the same command to resume" in proc.stderr.read()
    first = {p: p.read_bytes() for p in record_files(folder)}
    (nbs / "hold_1").unlink()
    start_and_stop_after(2, signal.SIGKILL)
    for p in folder.rglob("*"):  # whatever has a final name is complete
        if p.suffix == ".json" and not p.name.startswith("."):
            assert json.loads(p.read_text())
    assert all(p.read_bytes() == b for p, b in first.items())
    assert not (nbs / "runs.csv").exists()
    (nbs / "hold_2").unlink()

    monkeypatch.chdir(nbs)  # resume in-process, on the shared cluster (a CLI start costs seconds)
    assert B.main([*args, "--scheduler", cluster]) == 0
    assert "3/3 ok" in capsys.readouterr().out
    assert all(p.read_bytes() == b for p, b in first.items())
    assert [p.name for p in record_files(folder)] == [f"toy__seed={s}__quick.json" for s in range(3)]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no lock or temp file left
    assert [r["status"] for r in read_csv(nbs / "runs.csv")] == ["ok"] * 3
    ran = executions(nbs)
    assert {f"{s} 1.0" for s in range(3)} <= set(ran)  # "seed scale"
    for b in first.values():  # runs finished before the interruption were not redone
        assert ran.count(f"{json.loads(b)['seed']} 1.0") == 1


def test_dry_run(nbs, capsys, cluster):
    out = nbs / "runs"
    B.run_batch(B.notebook_runs([nbs / "toy.ipynb"], seeds=[0], quick=True), out, scheduler=cluster, progress=False)
    capsys.readouterr()
    assert B.main([str(nbs / "toy.ipynb"), "--seeds", "0-1", "--runs-dir", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "skip (ok)" in text and "2 runs (quick mode): 1 to run, 1 already ok" in text
    assert executions(nbs) == ["0 1.0"]


@needs_mnist
def test_a_real_notebook_through_the_batch_to_the_summary(cluster, tmp_path):
    """Notebook 02 in full mode (the log's 10 epochs, seed 0) through papermill on the cluster:
    its record, its runs.csv row and the summary's line hold the same accuracy, and it equals
    the committed reproduction run of seed 0 (a run is deterministic)."""
    from dreamflow_utils.studies.reproduction import summarize
    nb = REPO / "notebooks" / "02_log_block_C_s=10_N2=100.ipynb"
    table = tmp_path / "runs.csv"
    run = R.NotebookRun(nb, {"seed": 0, "data_dir": str(REAL_MNIST)}, quick=False)
    record = B.run_batch([run], tmp_path / "runs", table,
                         scheduler=cluster, progress=False)[0]
    assert record["status"] == "ok", record.get("error")
    committed = json.loads((REPO / "results" / "reproduction" / "mnist" / "log_block_C_s=10_N2=100_seed_0.json").read_text())
    assert record["test_accuracy"] == committed["test_accuracy"]
    assert record["epoch_accuracies"] == committed["epoch_accuracies"]
    row, = read_csv(table)
    assert float(row["test_accuracy"]) == record["test_accuracy"] and row["status"] == "ok"
    line = next(e for e in summarize(read_csv(table))["experiments"] if e["name"] == "log block C_s=10 N2=100")
    assert line["n"] == 1 and line["accuracies"] == [100 * record["test_accuracy"]]
