import csv

from dreamflow_utils import reproduce
from dreamflow_utils.experiments import LOG_EXPERIMENTS


def test_parse_seeds():
    assert reproduce.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert reproduce.parse_seeds("3,7") == [3, 7]


def test_rows_round_trip_and_summary(tmp_path):
    path = tmp_path / "r.csv"
    rows = [{"experiment": "block_Cs10_N2100", "seed": s, "test_accuracy": a, "epoch_accuracies": ";".join(["0.6"] * 10),
             "seconds": 10 + s, "config": "{}", "versions": "{}", "started": ""}
            for s, a in ((1, 0.70), (0, 0.68))]
    reproduce.write_rows(path, rows)
    back = reproduce.read_rows(path)
    assert [int(r["seed"]) for r in back] == [0, 1]
    assert list(csv.reader(open(path)))[0] == reproduce.FIELDS
    table = reproduce.summary_table(back)
    assert "| block_Cs10_N2100 | 68.18% | 69.00% ± 1.41 (2) | +0.82 | 68.00, 70.00 | 10.5 ± 0.7 s | 450 s | 43× |" in table
    assert not list(tmp_path.glob("*.tmp"))


def test_log_experiments_are_the_logs():
    got = {n: (c.layout, c.C_s, c.N2, c.T_s, c.Nep, c.B, c.xi, a) for n, (c, a, _) in LOG_EXPERIMENTS.items()}
    assert got == {
        "overlap_Cs10_N2100": ("overlap", 10, 100, 60000, 10, 100, 0.01, 0.6907),
        "block_Cs10_N2100": ("block", 10, 100, 60000, 10, 100, 0.01, 0.6818),
        "block_Cs20_N2200": ("block", 20, 200, 60000, 10, 100, 0.01, 0.7334),
        "block_Cs100_N2100": ("block", 100, 100, 60000, 10, 100, 0.01, 0.682),
    }


def test_paired_difference_table():
    base = [{"experiment": "block_Cs10_N2100", "seed": s, "test_accuracy": a} for s, a in ((0, 0.68), (1, 0.70))]
    other = [{"experiment": "block_Cs10_N2100", "seed": s, "test_accuracy": a} for s, a in ((0, 0.69), (1, 0.70))]
    table = reproduce.paired_difference_table(base, other, "x")
    assert "| block_Cs10_N2100 | +0.50 ± 0.71 (2) | +1.00, +0.00 |" in table
