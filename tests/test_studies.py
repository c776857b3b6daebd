"""Studies: variants as Configs, the worker function a batch run calls, and the tables."""
import io
import json
import sys

import numpy as np
import pytest

from dreamflow_utils import Config, model_name, train
from dreamflow_utils.core.experiments import LOG_EXPERIMENTS
from dreamflow_utils.studies import (Study, Variant, load_records, model, registry, run_variant, study_data,
                                     study_runs, variants)
from dreamflow_utils.studies import reproduction as R
from dreamflow_utils.studies import symmetry as S
from dreamflow_utils.studies import tables
from helpers import synthetic_data

DATA = synthetic_data(n_train=1000, n_test=300)
STUDIES = sys.modules["dreamflow_utils.studies"]
SMALL = dict(T_s=200, B=20, Nep=2)
FAITHFUL = Config(layout="block", C_s=3, N2=6, **SMALL)
SHARED = Config(layer1="shared", layout="stride", stride=4, C_s=3, N2=6, norm=True, **SMALL)
F, SH = model_name(FAITHFUL), model_name(SHARED)  # "log block C_s=3 N2=6 T_s=200 B=20 2 epochs", ...


@pytest.fixture
def tiny(monkeypatch):
    """A study of small variants of every family, on synthetic data."""
    study = Study("tiny", "test", variants(
        model(FAITHFUL, measures=S.MODEL_MEASURES),
        model(SHARED, measures=S.MODEL_MEASURES + ("ladder",), ladder=((2, 2, "sum", "onehot", "ridge"),)),
        Variant("b", "baseline", baseline={"method": "ridge"}, seeds=(0,)),
    ), summary=S.summary_markdown)
    monkeypatch.setattr(STUDIES, "_load", lambda dataset: DATA)
    monkeypatch.setattr(STUDIES, "registry", lambda: {"tiny": study})
    return study


def test_every_study_variant_is_a_valid_model():
    for study in registry().values():
        for v in study.variants.values():
            assert v.family == "baseline" or isinstance(v.config, Config)
    assert R.STUDY.variants["log block C_s=20 N2=200"].config == LOG_EXPERIMENTS["log block C_s=20 N2=200"][0]
    assert R.STUDY.variants["log block C_s=20 wta=own_units N2=200"].config.wta == "own_units"
    best = S.STUDY.variants[S.LADDER_SOURCE].config
    assert best == Config(layer1="shared", layout="stride", stride=4, C_s=20, N2=2000, norm=True, xi=0.05, Nep=5)


def test_variant_checks():
    with pytest.raises(ValueError, match="family"):
        Variant("x", "magic", Config())
    with pytest.raises(ValueError, match="baseline"):
        Variant("x", "baseline", Config())
    with pytest.raises(ValueError, match="measures"):
        Variant("log overlap C_s=10 N2=100", "faithful", Config(), measures=("psychic",))
    with pytest.raises(ValueError, match="named by its config"):
        Variant("x", "faithful", Config())
    with pytest.raises(ValueError, match="two variants named"):
        variants(model(Config()), model(Config(engine="reference")))  # the engine does not change the model


def test_run_variant_trains_measures_and_records(tiny):
    rec = run_variant("tiny", F, seed=1, config=tiny.variants[F].config.to_dict())
    same = train(tiny.variants[F].config.replace(seed=1), DATA)
    assert rec["epoch_accuracies"] == same.epoch_accuracies and rec["seed"] == 1 and rec["config"]["seed"] == 1
    for k in ("vote5", "vote20", "test_shift1", "test_shift2", "probe_value", "probe_onehot", "probe_dense",
              "match", "initial_match", "code_sim_1px", "initial_code_sim_2px"):
        assert 0 <= rec[k] <= 1, k
    json.dumps(rec)
    s, files = run_variant("tiny", SH, seed=0)
    assert np.load(io.BytesIO(files["bank.npy"])).shape == (3, 81) and s["match"] == 1.0 and "probe_dense" not in s
    assert s["ladder"][0]["N1"] == 3 * 25 and 0 <= s["ladder"][0]["probe_accuracy"] <= 1
    b = run_variant("tiny", "b", seed=0)
    assert 0 <= b["test_accuracy"] <= 1 and b["family"] == "baseline"
    with pytest.raises(ValueError, match="changed"):
        run_variant("tiny", F, seed=0, config=Config().to_dict())


def test_quick_runs_are_small_and_marked(tiny):
    rec = run_variant("tiny", F, seed=0, quick=True)
    assert rec["quick"] is True and rec["config"]["Nep"] == 1
    (x, _), (tx, _) = study_data("mnist", quick=True)
    assert len(x) == min(len(DATA[0][0]), 2000) and len(tx) == 300
    (vx, _), (ex, _) = study_data("mnist", split="validation")
    assert len(ex) == 1000 // 6 and len(vx) + len(ex) == 1000


def test_plan_and_load_records(tiny, tmp_path):
    runs = study_runs(tiny, [0, 1], dataset="fashion")
    assert [r.kwargs["variant"] for r in runs] == [F, F, SH, SH, "b"]
    assert all(r.kwargs["dataset"] == "fashion" and r.kwargs["quick"] is False for r in runs)
    assert runs[0].kwargs["config"] == tiny.variants[F].config.to_dict()
    with pytest.raises(ValueError, match="unknown variants"):
        study_runs(tiny, [0], ["nope"])
    folder = tmp_path / "mnist"
    folder.mkdir()
    for i, (variant, quick) in enumerate(((F, False), (F, True), ("zz", False))):
        (folder / f"{i}.json").write_text(json.dumps({"variant": variant, "quick": quick, "status": "ok"}))
    assert [r["variant"] for r in load_records(tiny, tmp_path)] == [F]


def test_symmetry_tables_and_figures(tiny, tmp_path):
    records = []
    for v, seed in ((F, 0), (F, 1), (SH, 0), (SH, 1), ("b", 0)):
        out = run_variant("tiny", v, seed=seed)
        record, files = out if isinstance(out, tuple) else (out, {})
        record |= {"run_id": f"{v}{seed}", "record_path": str(tmp_path / f"{v}{seed}.json")}
        for name, data in files.items():  # stored beside the record, as the batch does
            (tmp_path / f"{v}{seed}.{name}").write_bytes(data)
        records.append(record)
    for r in records:  # the tables are keyed by the real study's names
        r["variant"] = {F: "log block C_s=20 N2=200", SH: S.LADDER_SOURCE, "b": "ridge on pixels"}[r["variant"]]
    md = S.summary_markdown(records)
    assert "| log block C_s=20 N2=200 (log: 73.34%) | 2 | 2 |" in md and "| ridge on pixels (deterministic: one run) | 1 |" in md
    assert "Probe ladder" in md and "| 2 | 2 | sum | onehot | 75 | ridge | 2 |" in md
    assert "| log block C_s=20 N2=200 | initial | 2 |" in md
    for fig in (S.plot_summary(records), S.plot_readout(records), S.plot_translation(records)):
        assert fig.axes
    assert len(S.plot_banks(records, seeds=(0, 1)).axes) == 2


def test_reproduction_tables():
    recs = [{"variant": "log block C_s=10 N2=100", "seed": s, "test_accuracy": a, "seconds": 10 + s,
             "epoch_accuracies": [0.6] * 10, "status": "ok"} for s, a in ((1, 0.70), (0, 0.68))]
    recs += [{"variant": "log block C_s=10 wta=own_units N2=100", "seed": s, "test_accuracy": a, "seconds": 10,
              "epoch_accuracies": [0.6] * 10} for s, a in ((0, 0.69), (1, 0.70))]
    recs.append({"variant": "log block C_s=10 N2=100", "seed": 3, "test_accuracy": 0.1, "seconds": 1, "quick": True,
                 "epoch_accuracies": [0.1]})
    s = R.summarize(recs)
    assert s["excluded"] == {"not a log experiment": 2, "quick mode": 1}
    md = R.summary_markdown(recs)
    assert "| log block C_s=10 N2=100 | 68.18% | 69.00% ± 1.41 (2) | +0.82 | 68.00, 70.00 | 10.5 ± 0.7 s (load not recorded) " \
           "| 450 s | 43× (load not recorded) |" in md
    assert "| log block C_s=10 N2=100 | +0.50 ± 0.71 (2) | +1.00, +0.00 |" in md
    # seconds measured alone are the model's; runs measured under load are never mixed in, and say so
    recs[0]["load"], recs[1]["load"] = {"jobs": 1, "running_others": 0}, {"jobs": 2, "running_others": 1}
    assert "| 11.0 s (alone: 1 of 2 runs) | 450 s | 41× (alone: 1 of 2 runs) |" in R.summary_markdown(recs)
    recs[0]["load"] = {"jobs": 2, "running_others": 0}
    assert "10.5 ± 0.7 s (under load: 2 runs at a time) |" in R.summary_markdown(recs)


def test_log_experiments_are_the_logs():
    got = {n: (c.layout, c.C_s, c.N2, c.T_s, c.Nep, c.B, c.xi, a) for n, (c, a, _) in LOG_EXPERIMENTS.items()}
    assert got == {
        "log overlap C_s=10 N2=100": ("overlap", 10, 100, 60000, 10, 100, 0.01, 0.6907),
        "log block C_s=10 N2=100": ("block", 10, 100, 60000, 10, 100, 0.01, 0.6818),
        "log block C_s=20 N2=200": ("block", 20, 200, 60000, 10, 100, 0.01, 0.7334),
        "log block C_s=100 N2=100": ("block", 100, 100, 60000, 10, 100, 0.01, 0.682),
    }


def test_tables():
    assert tables.stats([0.5, None, "", 0.7]) == (0.6, pytest.approx(np.std([0.5, 0.7], ddof=1)))
    assert tables.fmt((0.5, None)) == "50.00" and tables.fmt(None) == ""
    md = tables.group_table([{"a": 1, "x": 0.5}, {"a": 1, "x": 0.7}, {"a": 2, "x": 0.1}], ("a",), {"x": "X"})
    assert md.splitlines()[2] == "| 1 | 2 | 60.00 ± 14.14 |"


def test_frontier_rows_goals_and_figure():
    from dreamflow_utils.studies import frontier as FR
    recs = []
    for seed in range(5):
        recs.append({"dataset": "mnist", "variant": "m", "family": "shared", "seed": seed, "test_accuracy": 0.976,
                     "test_shift1": 0.97, "test_shift2": 0.95 + 0.01 * seed, "seconds": 10.0, "probe_value": 0.98,
                     "probe_seconds": 2.0, "probe_logistic": 0.99, "logistic_seconds": 5.0,
                     "load": {"jobs": 1, "running_others": 0}})
        recs.append({"dataset": "fashion", "variant": "krotov x", "family": "krotov", "seed": seed,
                     "test_accuracy": 0.85, "seconds": 100.0, "load": {"jobs": 2, "running_others": 1}})
    recs.append({"dataset": "mnist", "variant": "kNN", "family": "baseline", "seed": 0, "test_accuracy": 0.97,
                 "seconds": 80.0})
    rows = FR.frontier_rows(recs)
    assert {(r["readout"], r["dataset"]) for r in rows} == {("local", "mnist"), ("probe-ridge", "mnist"),
                                                            ("probe-logistic", "mnist"), ("local", "fashion"),
                                                            ("baseline", "mnist")}
    assert [r["seconds"] for r in rows[:4]] == [10.0, 12.0, 15.0, 100.0]
    goals = FR.goals_table(rows)
    assert "| mnist | local | 97.5% | m (local) | 97.60 ± 0.00 (n=5) | met (+0.10) |" in goals
    assert "| fashion | local | 88.0% | krotov x (local) | 85.00 ± 0.00 (n=5) | missed (-3.00) |" in goals
    assert "| mnist | probe | 98.5% | m (probe-logistic) | 99.00 ± 0.00 (n=5) | met (+0.50) |" in goals
    table = FR.summary_table(rows)
    # the shifted accuracy beside the clean one; loaded seconds marked, never shown as the model's speed
    assert "| mnist | local | m | 5 | 97.60 ± 0.00 | 97.00 ± 1.58 | 10.0 ± 0.0 |" in table
    assert "| fashion | local | krotov x | 5 | 85.00 ± 0.00 |  | 100.0 ± 0.0 (under load: 2 runs at a time) |" in table
    csv_text = FR.frontier_csv(recs)["frontier.csv"]
    assert csv_text.splitlines()[0] == ",".join(FR.CSV_COLUMNS)
    assert "mnist,m,local,4,0.9760,0.9700,0.9900,10.0,true,shared" in csv_text
    findings = FR.findings_markdown(recs)
    assert "best m: 97.60% ± 0.00 (n=5), goal 97.5% met (+0.10 points)" in findings
    assert "the smallest loss 0.6 points (m)" in findings
    fig = FR.plot_frontier(rows)
    assert [ax.get_title().split()[0] for ax in fig.axes if ax.get_xlabel()] == ["MNIST", "Fashion-MNIST"]
    assert all(v.config.dataset == "mnist" for v in FR.STUDY.variants.values() if v.config)


def test_every_final_model_but_the_logs_has_validation_records_of_its_configuration():
    """The final study's non-log models were chosen on the validation split: the search holds
    records of exactly their configuration on each data set they run on."""
    from dreamflow_utils.studies import frontier as F
    search = load_records(F.SEARCH)
    for v in F.STUDY.variants.values():
        if v.config is None or v.name.startswith("log "):
            continue
        for dataset in v.datasets or ("mnist", "fashion"):
            assert any(r["dataset"] == dataset and F.same_model(r, v.config) for r in search), (v.name, dataset)


def test_a_study_runs_through_the_batch(tmp_path):
    """study_runs -> batch (embedded Dask cluster) -> records -> load_records, on real MNIST in quick mode."""
    from dreamflow_utils.sweeps.batch import run_batch
    from dreamflow_utils.core.data import MnistNotFound, load_mnist
    try:
        load_mnist()
    except MnistNotFound:
        pytest.skip("MNIST not available")
    runs = study_runs(R.STUDY, [0], ["log block C_s=10 N2=100"], quick=True)
    records = run_batch(runs, tmp_path, csv=tmp_path / "runs.csv", jobs=1, progress=False)
    assert [r["status"] for r in records] == ["ok"]
    loaded = load_records(R.STUDY, tmp_path, include_quick=True)
    assert len(loaded) == 1 and loaded[0]["quick"] is True and loaded[0]["config"]["Nep"] == 1
    assert load_records(R.STUDY, tmp_path) == []  # quick records never count as results


def test_frontier_csv_columns():
    from dreamflow_utils.studies import frontier as F
    rec = {"dataset": "fashion", "variant": "v", "family": "shared", "seed": 2, "test_accuracy": 0.81234,
           "seconds": 12.34}
    text = F.frontier_csv([rec])["frontier.csv"]
    assert text.splitlines() == ["dataset,variant,readout,seed,test_accuracy,test_shift1,test_shift2,seconds,alone,family",
                                 "fashion,v,local,2,0.8123,,,12.3,,shared"]  # shifts and load not recorded: empty


def test_command_line(capsys, monkeypatch):
    from dreamflow_utils.studies.__main__ import main
    monkeypatch.setenv("DREAMFLOW_QUICK", "0")
    assert main(["reproduction", "--dry-run", "--seeds", "0-1", "--variants", "log block C_s=10 N2=100"]) == 0
    assert "log_block_C_s=10_N2=100_seed_1" in capsys.readouterr().out
    assert main(["reproduction", "--list"]) == 0 and "log block C_s=20 wta=own_units N2=200" in capsys.readouterr().out
    for argv, message in ((["nope"], "unknown study"), (["reproduction", "--seeds", "4-0"], "--seeds"),
                          (["reproduction", "--variants", "x"], "unknown variants"),
                          (["reproduction", "--dataset", "cifar"], "--dataset"),
                          (["reproduction", "--jobs", "0", "--dry-run"], "--jobs")):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_a_record_planned_before_an_option_existed_is_the_same_run():
    """A config without a field added later (its default: the same model) has the same identity;
    a field set off its default does not."""
    from dreamflow_utils import Config
    from dreamflow_utils.sweeps.store import same_identity
    config = Config(layer1="shared", layout="stride", stride=4).to_dict()
    new = {"kind": "call", "name": "x seed 0", "kwargs": {"seed": 0, "config": config}}
    old = {"kind": "call", "name": "x seed 0", "kwargs": {"seed": 0, "config": {k: v for k, v in config.items()
                                                                              if k != "pixels"}}}
    assert same_identity(old, new)
    changed = new | {"kwargs": {"seed": 0, "config": config | {"pixels": 1.0}}}
    assert not same_identity(old, changed) and not same_identity(new, changed)
    assert not same_identity(new, new | {"name": "x seed 1"})


def test_seconds_are_a_models_speed_only_when_measured_alone():
    """A run is alone when it ran one at a time, nothing else was runnable at its start and the load
    average was below cores + 1; tables then show only such runs' seconds, else say under what load."""
    from dreamflow_utils.studies import tables
    alone = {"seconds": 10.0, "load": {"cores": 2, "jobs": 1, "running_others": 0, "loadavg": 2.1}}
    quiet_instant = {"seconds": 800.0, "load": {"cores": 2, "jobs": 1, "running_others": 0, "loadavg": 5.2}}
    pair = {"seconds": 20.0, "load": {"cores": 2, "jobs": 2, "running_others": 1, "loadavg": 2.0}}
    assert [tables.measured_alone(r) for r in (alone, quiet_instant, pair, {"seconds": 1.0})] == [True, False, False,
                                                                                                 None]
    assert tables.seconds_cell([alone, quiet_instant, pair]) == "10.0 (alone: 1 of 3 runs)"
    assert tables.seconds_cell([quiet_instant, pair]) == "410.0 ± 551.5 (under load: 1/2 runs at a time)"
    assert tables.seconds_cell([{"seconds": 3.0}]) == "3.0 (load not recorded)"


def test_every_committed_record_is_the_run_its_study_plans_today():
    """One naming scheme: each committed record's variant is a registry name (its config's `model_name`),
    its file is the run id the study plans for it, and the batch would skip it as done."""
    from dreamflow_utils.sweeps import store
    for study in registry().values():
        records = load_records(study)
        for dataset in sorted({r["dataset"] for r in records}):
            mine = [r for r in records if r["dataset"] == dataset]
            planned = {r.run_id: r for r in study_runs(study, sorted({r["seed"] for r in mine}), dataset=dataset)}
            for r in mine:
                v = study.variants[r["variant"]]
                assert v.config is None or v.name == model_name(v.config)
                assert r["run_id"] in planned, (study.name, r["run_id"])
                assert store.done(planned[r["run_id"]], study.folder) is not None, (study.name, r["run_id"])


def test_the_log_notebooks_are_named_by_their_experiments():
    from dreamflow_utils.core.experiments import LOG_NOTEBOOKS
    from dreamflow_utils.core.files import repo_root
    for name, stem in LOG_NOTEBOOKS.items():
        assert (repo_root() / "notebooks" / f"{stem}.ipynb").is_file(), stem
        assert R.experiment_of({"notebook": f"notebooks/{stem}.ipynb"}) == name
