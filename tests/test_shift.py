import csv

import numpy as np

from dreamflow_utils import Config, train
from dreamflow_utils import symmetry as S
from dreamflow_utils.shared import translate
from dreamflow_utils.shift import code_shift_similarity, shifted_accuracy, translation_match, unit_patches
from helpers import synthetic_data

DATA = synthetic_data()


def test_unit_patches_round_trip():
    config = Config(layout="overlap", C_s=3, N2=5, B=20, T_s=200, Nep=1)
    w = train(config, DATA).weights
    p = unit_patches(w.w1, "overlap", 3)
    assert p.shape == (39, 9, 9)
    assert np.allclose(p[0], w.w1[:, 0].reshape(28, 28)[:9, :9])


def test_translation_match_identical_and_shifted_copies():
    rng = np.random.default_rng(0)
    bank = rng.uniform(0, 1, (4, 9, 9))
    copies = np.concatenate([bank] * 3)  # 3 clusters, the same 4 detectors
    r = translation_match(copies, 4, max_shift=1)
    assert np.isclose(r["score"], 1) and np.isclose(r["score_no_shift"], 1)
    big = rng.uniform(0, 1, (4, 13, 13))
    shifted = np.concatenate([big[:, :9, :9], big[:, 2:11, 1:10]])  # cluster 1 = cluster 0 moved by (2, 1)
    r = translation_match(shifted, 4, max_shift=2)
    assert np.isclose(r["score"], 1) and r["score_no_shift"] < 0.5 and r["best_shift_fraction"] == 1
    noise = translation_match(rng.uniform(0, 1, (40, 9, 9)), 4, max_shift=2)
    assert noise["score"] < 0.6 and noise["per_unit"].shape == (40,)


def test_code_shift_similarity_and_shifted_accuracy():
    x = DATA[1][0][:20]
    assert np.isclose(code_shift_similarity(lambda a: np.ones((len(a), 3)), x, 1), 1)
    pooled = lambda a: a.reshape(len(a), 28, 28).sum(axis=(1, 2))[:, None]
    assert code_shift_similarity(pooled, x, 2) == 1.0
    assert 0 < code_shift_similarity(lambda a: a, x, 1) < 0.5
    y = np.zeros(20)
    assert shifted_accuracy(lambda a: np.zeros(len(a)), x, y, 1, -1) == 1.0
    assert np.array_equal(translate(translate(x, 0, 0), 0, 0), x)


def test_runner_appends_rows_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "r.csv"
    small = dict(S.V)
    monkeypatch.setattr(S, "V", {
        "f": ("faithful", dict(layout="block", C_s=3, N2=6, Nep=2, shift=0, xi=0.01, wta="log"), ""),
        "f shift": ("faithful", dict(layout="overlap", C_s=3, N2=6, Nep=1, shift=1, xi=0.01, wta="log"), ""),
        "s": ("shared", dict(grid="stride", stride=4, C_s=3, N2=6, Nep=1, pool=2, norm=True, label_gain=2.0), ""),
        "b": ("baseline", dict(method="ridge"), ""),
    })
    S.run(["f", "f shift", "s", "b"], [0, 1], DATA, out, save_root=tmp_path / "w", T_s=200, log=lambda *a, **k: None)
    rows = list(csv.DictReader(open(out)))
    assert [(r["variant"], r["seed"]) for r in rows] == [("f", "0"), ("f", "1"), ("f shift", "0"), ("f shift", "1"),
                                                         ("s", "0"), ("s", "1"), ("b", "0")]
    for r in rows:
        assert 0 <= float(r["test_accuracy"]) <= 1 and float(r["seconds"]) >= 0
    assert all(0 <= float(r["probe_accuracy"]) <= 1 for r in rows if r["family"] != "baseline")
    # the faithful variant without shift is exactly train()'s run
    ref = train(Config(layout="block", C_s=3, N2=6, Nep=2, T_s=200, B=100, seed=1), DATA)
    assert np.isclose(float(rows[1]["test_accuracy"]), ref.test_accuracy)
    S.run(["f", "b"], [0, 1], DATA, out, T_s=200, log=lambda *a, **k: None)  # nothing new
    assert len(list(csv.DictReader(open(out)))) == 7
    assert (tmp_path / "w" / "f" / "seed0.npz").exists()
    assert small  # the module's own table was untouched outside this test


def test_analysis_summary_and_ladder(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "V", {
        "f": ("faithful", dict(layout="block", C_s=3, N2=6, Nep=1, shift=1, xi=0.01, wta="log"), ""),
        "s": ("shared", dict(grid="stride", stride=4, C_s=3, N2=6, Nep=1), ""),
        "b": ("baseline", dict(method="ridge"), ""),
    })
    out, w = tmp_path / "r.csv", tmp_path / "w"
    S.run(["f", "s", "b"], [0, 1], DATA, out, save_root=w, T_s=100, log=lambda *a, **k: None)
    trows = S.analyze_translation(w, tmp_path / "symmetry_translation.csv", x_test=DATA[1][0], n_test=50,
                                  log=lambda *a, **k: None)
    assert {(r["variant"], r["weights"]) for r in trows} == {("f", "trained"), ("f", "initial"), ("s", "trained")}
    assert all(-1 <= r["score"] <= 1 and 0 <= r["code_sim_1px"] <= 1 for r in trows)
    S.export_banks(w, tmp_path / "symmetry_banks.npz")
    monkeypatch.setattr(S, "LADDER_SOURCE", "s")
    rows = S.run_ladder(w, DATA, tmp_path / "symmetry_probes.csv", seeds=[0], settings=[("4", "1", "max", "value"),
                                                                                          ("2", "2", "sum", "onehot")],
                        source="s", log=lambda *a, **k: None)
    assert [r["N1"] for r in rows] == [75, 75] and all(0 <= r["probe_accuracy"] <= 1 for r in rows)
    table = S.summarize(out, md=tmp_path / "s.md", fig_dir=tmp_path / "figs")
    assert [e["variant"] for e in table] == ["f", "s", "b"] and table[0]["n"] == 2 and table[2]["n"] == 1
    md = (tmp_path / "s.md").read_text()
    assert "| f | 2 |" in md and "Probe ladder" in md and "Translation" in md
    assert {p.name for p in (tmp_path / "figs").iterdir()} >= {"symmetry_summary.png", "symmetry_readout.png",
                                                               "symmetry_translation.png"}
    fig = S.plot_banks(tmp_path / "symmetry_banks.npz", variant="s", seeds=(0, 1))
    assert len(fig.axes) == 2
