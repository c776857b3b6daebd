"""Tests for dreamflow_utils.batch, on the tiny fixture notebooks in tests/fixtures/ (each run starts a kernel)."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from dreamflow_utils import batch as B

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parents[1]


@pytest.fixture
def nbs(tmp_path):
    """Copies of the fixture notebooks in tmp_path (their kernels run there, so executions.log lands there)."""
    for nb in FIXTURES.glob("*.ipynb"):
        shutil.copy(nb, tmp_path)
    return tmp_path


def executions(folder):
    """Lines 'seed scale' appended by toy.ipynb each time it really runs."""
    log = folder / "executions.log"
    return sorted(log.read_text().splitlines()) if log.exists() else []


def record_files(folder):
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".result.json"))


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "dreamflow_utils.batch", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

# -----------------------------------------------------------------------------
# planning: no kernels


def test_parsing():
    assert B.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert B.parse_seeds("0,1,7") == [0, 1, 7]
    assert B.parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert B.parse_value("1000") == 1000 and B.parse_value("1e-3") == 0.001
    assert B.parse_value("True") is True and B.parse_value("adam") == "adam"
    assert B.parse_values("10,20") == [10, 20]
    assert B.parse_values("adam,sgd") == ["adam", "sgd"]
    assert B.parse_values("0.5") == [0.5]
    assert B.parse_values("[1,2],[3]") == [[1, 2], [3]]


def test_plan_grid_and_ids(nbs):
    runs = B.plan([nbs / "toy.ipynb"], seeds=[0, 1, 2], params={"fail": False}, grid={"scale": [0.5, 1.0]})
    assert len(runs) == 6
    assert [r.params for r in runs[:3]] == [{"seed": s, "fail": False, "scale": 0.5} for s in range(3)]
    assert runs[0].run_id == "toy__fail=False__scale=0.5__seed=0"  # keys sorted case-insensitively
    assert len({r.run_id for r in runs}) == 6
    assert B.Run(Path("02_block_Cs10.ipynb"), {"T_s": 1000, "seed": 3}).run_id == "02_block_Cs10__seed=3__T_s=1000"
    # ids are stable, filename-safe, and hashed when unsafe or long
    odd = B.Run(Path("toy.ipynb"), {"seed": 0, "scale": "a/b c"})
    assert odd.run_id == B.Run(Path("toy.ipynb"), {"scale": "a/b c", "seed": 0}).run_id
    assert odd.run_id.startswith("toy__scale=a-b-c__seed=0__") and "/" not in odd.run_id
    long = B.Run(Path("toy.ipynb"), {"seed": 0, "scale": "x" * 300})
    assert len(long.run_id) <= 120 and long.run_id != B.Run(Path("toy.ipynb"), {"seed": 0, "scale": "x" * 301}).run_id
    # duplicates collapse, seed only via seeds
    assert len(B.plan([nbs / "toy.ipynb"] * 2, seeds=[0, 0])) == 1
    with pytest.raises(ValueError, match="seed"):
        B.plan([nbs / "toy.ipynb"], seeds=[0], params={"seed": 1})


def test_unknown_parameter_and_missing_notebook_refused(nbs, capsys):
    with pytest.raises(ValueError) as e:
        B.plan([nbs / "toy.ipynb", nbs / "plain.ipynb"], seeds=[0], params={"scale": 2.0})
    msg = str(e.value)
    assert "'scale'" in msg and "plain.ipynb" in msg and "declares: seed" in msg and "toy.ipynb" not in msg
    with pytest.raises(ValueError, match=r"'lr'.*toy\.ipynb.*fail, record_path, scale, seed, sleep"):
        B.run_batch([B.Run(nbs / "toy.ipynb", {"seed": 0}), B.Run(nbs / "toy.ipynb", {"seed": 1, "lr": 0.1})],
                    runs_dir=nbs / "runs", csv=nbs / "runs.csv")
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        B.plan([nbs / "nope.ipynb"], seeds=[0])
    assert B.main([str(nbs / "toy.ipynb"), "--grid", "lr=0.1,0.2", "--runs-dir", str(nbs / "runs")]) == 2
    assert "unknown parameter 'lr'" in capsys.readouterr().err
    assert B.main([str(nbs / "nope.ipynb"), "--runs-dir", str(nbs / "runs")]) == 2
    assert not (nbs / "runs").exists() and not (nbs / "runs.csv").exists() and executions(nbs) == []

# -----------------------------------------------------------------------------
# running


def test_batch_records_csv_failures_parallel(nbs, capsys):
    runs = (B.plan([nbs / "toy.ipynb"], seeds=[0, 1], params={"scale": 0.5}, grid={"fail": [False, True]})
            + B.plan([nbs / "no_record.ipynb", nbs / "plain.ipynb"], seeds=[0]))
    out, table = nbs / "runs", nbs / "results" / "runs.csv"
    records = B.run_batch(runs, runs_dir=out, jobs=2, csv=table)

    assert [r["run_id"] for r in records] == [r.run_id for r in runs]
    assert [r["status"] for r in records] == ["ok", "ok", "failed", "failed", "failed", "ok"]
    ok, fail, silent, plain = records[0], records[2], records[4], records[5]
    assert set(ok) >= {"notebook", "run_id", "params", "seed", "status", "error", "wall_seconds", "started",
                       "finished", "output_notebook", "test_accuracy", "epoch_accuracies", "seconds", "config"}
    assert ok["params"] == {"seed": 0, "scale": 0.5, "fail": False} and ok["seed"] == 0 and ok["error"] is None
    assert ok["test_accuracy"] == 0.15 and ok["epoch_accuracies"] == [0.05, 0.1, 0.15] and ok["seconds"] == 0.25
    assert ok["config"] == {"seed": 0, "scale": 0.5}
    assert fail["error"].startswith("ValueError: asked to fail (seed=0)") and "test_accuracy" not in fail
    assert "without writing its results to record_path" in silent["error"]
    assert plain["status"] == "ok" and "test_accuracy" not in plain
    for r in records:  # record and executed notebook on disk, under final names only
        assert json.loads((out / Path(r["notebook"]).stem / f"{r['run_id']}.json").read_text()) == r
        assert Path(r["output_notebook"]).is_file()
    assert "asked to fail" in Path(fail["output_notebook"]).read_text()
    cells = nbformat.read(ok["output_notebook"], 4).cells
    injected = [c.source for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert f"record_path = \"{(out / 'toy' / ok['run_id']).resolve()}.result.json\"" in injected[0]
    expected = [f"{r['run_id']}.{ext}" for r in records[:4] for ext in ("ipynb", "json")]
    assert sorted(p.name for p in (out / "toy").iterdir()) == sorted(expected)

    # jobs=2 really ran notebooks concurrently
    spans = [(datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["finished"])) for r in records]
    assert any(a0 < b1 and b0 < a1 for i, (a0, a1) in enumerate(spans) for b0, b1 in spans[i + 1:])

    rows = read_csv(table)
    assert list(rows[0])[:7] == ["notebook", "run_id", "seed", "test_accuracy", "seconds", "status", "error"]
    assert list(rows[0])[7:10] == ["fail", "scale", "epoch_accuracies"]
    row = {r["run_id"]: r for r in rows}[ok["run_id"]]
    assert [row[k] for k in ("seed", "test_accuracy", "seconds", "status", "error")] == ["0", "0.15", "0.25", "ok", ""]
    assert (row["fail"], row["scale"], row["epoch_accuracies"]) == ("False", "0.5", "0.05;0.1;0.15")
    assert {r["run_id"]: r["status"] for r in rows} == {r["run_id"]: r["status"] for r in records}

    # the CLI exits nonzero when a run failed (only failed runs are redone) and the CSV covers all batches
    capsys.readouterr()
    args = ["--seeds", "0", "--param", "scale=0.5", "--runs-dir", str(out), "--csv", str(table)]
    assert B.main([str(nbs / "toy.ipynb"), "--grid", "fail=True,False", *args]) == 1
    assert "FAILED toy__fail=True__scale=0.5__seed=0: ValueError: asked to fail" in capsys.readouterr().err
    assert executions(nbs) == ["0 0.5"] * 3 + ["1 0.5"] * 2
    assert len(read_csv(table)) == 6 and len(B.collect(out, nbs / "again.csv")) == 6


def test_resume_after_damage(nbs):
    toy, out, table = nbs / "toy.ipynb", nbs / "runs", nbs / "runs.csv"
    runs = B.plan([toy], seeds=[0, 1, 2, 3])
    B.run_batch(runs, runs_dir=out, jobs=2, csv=table)
    assert executions(nbs) == ["0 1.0", "1 1.0", "2 1.0", "3 1.0"]
    folder = out / "toy"
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if "seed=0" in p.name}

    # simulate interruptions and damage: a lost record, a torn one, a failed one, stray temp files
    (folder / "toy__seed=1.json").unlink()
    (folder / "toy__seed=2.json").write_text('{"run_id": "toy__se')
    rec3 = json.loads((folder / "toy__seed=3.json").read_text())
    (folder / "toy__seed=3.json").write_text(json.dumps({**rec3, "status": "failed"}))
    (folder / ".toy__seed=0.json.999.1.tmp").write_text('{"half": ')
    (folder / ".toy__seed=1.partial.ipynb").write_text('{"cells": [')
    (folder / "toy__seed=1.result.json").write_text('{"test_accuracy": 0.99}')  # stale, must not be used
    with pytest.warns(UserWarning, match="toy__seed=2.json"):
        assert len(B.collect(out, table)) == 2  # the torn record is skipped, the temp files ignored

    records = B.run_batch(runs, runs_dir=out, jobs=2, csv=table)
    assert [r["status"] for r in records] == ["ok"] * 4
    assert executions(nbs) == ["0 1.0", "1 1.0", "1 1.0", "2 1.0", "2 1.0", "3 1.0", "3 1.0"]
    assert all((p.read_bytes(), p.stat().st_mtime_ns) == v for p, v in kept.items())  # finished run untouched
    assert records[1]["test_accuracy"] == 0.31
    assert not (folder / ".toy__seed=1.partial.ipynb").exists()  # reused, then moved to its final name
    assert {r["run_id"]: r["status"] for r in read_csv(table)} == {f"toy__seed={s}": "ok" for s in range(4)}

    # nothing left to do: nothing runs
    assert B.run_batch(runs, runs_dir=out, jobs=2, csv=None) == records
    assert len(executions(nbs)) == 7


def test_interrupted_cli_resumes(nbs, monkeypatch, capsys):
    args = ["toy.ipynb", "--seeds", "0-2", "--param", "sleep=0.5", "--runs-dir", "runs", "--csv", "runs.csv"]
    folder = nbs / "runs" / "toy"

    def start_and_stop_after(n_records, sig):
        proc = cli(*args, cwd=nbs)
        deadline = time.time() + 30
        while len(record_files(folder)) < n_records and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        return proc

    # SIGTERM behaves like Ctrl-C: stops at once with a hint; SIGKILL gives no chance to clean up
    proc = start_and_stop_after(1, signal.SIGTERM)
    assert proc.returncode == 130 and "rerun the same command to resume" in proc.stderr.read()
    first = {p: p.read_bytes() for p in record_files(folder)}
    start_and_stop_after(len(first) + 1, signal.SIGKILL)
    for p in folder.iterdir():  # whatever has a final name is complete
        if not p.name.startswith("."):
            assert json.loads(p.read_text())
    assert all(p.read_bytes() == b for p, b in first.items())
    assert not (nbs / "runs.csv").exists()

    monkeypatch.chdir(nbs)  # resume in-process (a CLI start costs seconds of imports)
    assert B.main(args) == 0
    assert "3/3 ok" in capsys.readouterr().out
    assert all(p.read_bytes() == b for p, b in first.items())
    assert [p.name for p in record_files(folder)] == [f"toy__seed={s}__sleep=0.5.json" for s in range(3)]
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # stray temp files were reused
    assert [r["status"] for r in read_csv(nbs / "runs.csv")] == ["ok"] * 3
    ran = executions(nbs)
    assert {f"{s} 1.0" for s in range(3)} <= set(ran)  # "seed scale"
    for b in first.values():  # runs finished before the interruption were not redone
        assert ran.count(f"{json.loads(b)['seed']} 1.0") == 1
