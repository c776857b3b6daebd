"""Tests for dreamflow_utils.notebook.engine_speed (notebook 09's helpers), numpy and reference only (no TF)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from dreamflow_utils import Config
from dreamflow_utils.notebook import engine_speed as S
from helpers import synthetic_data

SMALL = Config(layout="block", C_s=3, N2=7, B=20, T_s=200, Nep=2)
CPU_VARIANTS = {"numpy": ({}, True), "reference": ({"engine": "reference"}, True)}


def test_log_ms_per_batch_from_the_logs_tqdm_lines():
    assert S.LOG_MS_PER_BATCH == pytest.approx({"log overlap C_s=10 N2=100": 110, "log block C_s=10 N2=100": 75,
                                                "log block C_s=20 N2=200": 101000 / 600, "log block C_s=100 N2=100": 750})


def test_compare_engines_numpy_vs_reference():
    data = synthetic_data(300, 50)
    rows = S.compare_engines(SMALL, data, CPU_VARIANTS | {"numpy xi=0.02": ({"xi": 0.02}, True)})
    assert [r["variant"] for r in rows] == ["numpy", "reference", "numpy xi=0.02"]
    numpy_row, ref, other = rows
    assert ref["max_dw"] <= 1e-9 and ref["n_differ"] == 0 and len(ref["predictions"]) == 50
    assert np.array_equal(ref["predictions"], numpy_row["predictions"]) and ref["accuracy"] == numpy_row["accuracy"]
    # the comparison measures real differences, against the first row
    expected = max(float(np.max(np.abs(a - b))) for a, b in zip(other["weights"], numpy_row["weights"]))
    assert other["max_dw"] == expected > 1e-4
    assert other["n_differ"] == int(np.sum(other["predictions"] != numpy_row["predictions"]))
    md = S.equality_markdown(rows, 20)
    assert md.count("\n") == 4 and "| reference |" in md and "0 of 50" in md


def test_live_timing_table():
    data = synthetic_data(100, 10)
    table = S.live_timing(data, {"log block C_s=10 N2=100": SMALL}, {"numpy": ({}, True)}, n_batches=2, rounds=1)
    assert list(table) == ["log block C_s=10 N2=100"] and set(table["log block C_s=10 N2=100"]) == {"reference", "numpy"}
    assert all(0 < v < 1e4 for v in table["log block C_s=10 N2=100"].values())


def test_read_benchmark(tmp_path):
    assert S.read_benchmark(tmp_path / "missing.csv") == {}
    path = tmp_path / "benchmark.csv"
    path.write_text("experiment,reference ms,numpy ms,TF graph f64 ms,reference peak MiB,numpy peak MiB\n"
                    "log block C_s=10 N2=100,300.5,8.2,,120.0,0.5\n"
                    "log block C_s=100 N2=100,2900,40,35.5,900,3\n")
    assert S.read_benchmark(path) == {"log block C_s=10 N2=100": {"reference": 300.5, "numpy": 8.2},
                                      "log block C_s=100 N2=100": {"reference": 2900, "numpy": 40, "TF graph f64": 35.5}}


def test_speed_markdown_and_figure():
    table = {"log block C_s=10 N2=100": {"reference": 300.0, "numpy": 10.0, "TF graph f64": 5.0},
             "log block C_s=100 N2=100": {"reference": 3000.0, "numpy": 40.0}}
    md = S.speed_markdown(table)
    assert md.splitlines()[0] == ("| experiment | log (2020 machine) ms | reference ms | numpy ms | "
                                  "TF graph f64 ms |")
    assert "| log block C_s=10 N2=100 | 75.0 (7.5×) | 300 (30.0×) | 10.0 (1.0×) | 5.00 (0.5×) |" in md
    assert md.rstrip().endswith("| 40.0 (1.0×) | – |")
    fig = S.plot_speeds([("committed", table), ("live", {"log block C_s=10 N2=100": table["log block C_s=10 N2=100"]})])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["log (2020 machine)", "reference", "numpy", "TF graph f64"]
