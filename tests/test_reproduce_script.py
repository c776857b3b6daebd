"""scripts/reproduce.sh reads DREAMFLOW_QUICK exactly as Python's quick_mode does (no work is done here:
an unknown value stops it first, DRY_RUN=1 stops it after saying what the batch would do)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
SCRIPT = REPO / "scripts" / "reproduce.sh"


def run(quick, dry_run=True):
    env = {**os.environ, "PY": sys.executable, "DRY_RUN": "1" if dry_run else "0"}
    env.pop("DREAMFLOW_QUICK", None)
    if quick is not None:
        env["DREAMFLOW_QUICK"] = quick
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value", ["maybe", "2", "quick"])
def test_unknown_quick_value_refused_before_any_work(value, tmp_path):
    before = sorted(p.name for p in (REPO / "runs").glob("*")) if (REPO / "runs").exists() else None
    proc = run(value, dry_run=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: DREAMFLOW_QUICK={value!r}: use 1 (quick) or 0 (full); nothing was run"
    assert "==" not in proc.stdout  # no step started
    after = sorted(p.name for p in (REPO / "runs").glob("*")) if (REPO / "runs").exists() else None
    assert after == before


def test_quick_values_python_accepts_are_quick():
    proc = run(" True ")
    assert proc.returncode == 0, proc.stderr
    assert "smoke test, results under runs/quick/" in proc.stdout
    assert "records in runs/quick/, table in runs/quick/runs.csv" in proc.stdout
    assert "20 runs (quick mode)" in proc.stdout and "results/reproduction/notebook_runs.csv" not in proc.stdout


def test_unset_is_full_mode_on_the_committed_table():
    proc = run(None)
    assert proc.returncode == 0, proc.stderr
    assert "full run (DREAMFLOW_QUICK=<not set>)" in proc.stdout
    assert "table in results/reproduction/notebook_runs.csv" in proc.stdout and "20 runs (full mode)" in proc.stdout
