"""The explorer of notebook 00: form -> Config, refusals shown, options where they apply,
training (here and in the background, with Stop) and a saved run equal to the batch's."""
import csv
import json

import numpy as np
import pytest

from dreamflow_utils import Config, train
from dreamflow_utils.sweeps.batch import run_batch
from dreamflow_utils.core.config import OPTIONS
from dreamflow_utils.notebook.explore import Explorer, call_run, run_name
from dreamflow_utils.core.quick import quick_config
from helpers import REAL_MNIST, learnable_data, needs_mnist

DATA = learnable_data(n_train=1000, n_test=300)
SMALL = dict(layout="block", C_s=4, N2=20, B=20, T_s=400, Nep=3, seed=1)


def explorer(tmp_path, quick=False, data=DATA, **params):
    return Explorer(data=data, quick=quick, runs_dir=tmp_path / "runs", **(SMALL | params))


def test_form_gives_the_config(tmp_path):
    e = explorer(tmp_path)
    assert e.config() == Config(**SMALL) and not e.train_button.disabled
    for name, value in dict(layer1="shared", layout="stride", stride=2, C_s=6, N2=30, xi=0.05, Nep=2, seed=3,
                            norm=True, pool=2, dataset="fashion").items():
        e.fields[name].value = value
    assert e.config() == Config(**SMALL | dict(layer1="shared", layout="stride", stride=2, C_s=6, N2=30, xi=0.05,
                                              Nep=2, seed=3, norm=True, pool=2, dataset="fashion"))
    assert "shared stride=2 C_s=6 pool 2x2 max N2=30 norm xi=0.05 T_s=400 B=20 2 epochs, seed 3, fashion" in e.message.value


def test_refusal_is_a_red_line_and_nothing_trains(tmp_path, capsys):
    e = explorer(tmp_path)
    e.fields["C_s"].value = 0
    assert "color:#b00" in e.message.value and "C_s must be a positive int, got 0" in e.message.value
    assert e.train_button.disabled and e.start() is False and e.result is None
    e.fields["C_s"].value = 4
    e.fields["layer1"].value, e.fields["layout"].value, e.fields["pool"].value = "shared", "overlap", 2
    assert "pool &gt; 1 needs a square grid" in e.message.value and e.train_button.disabled
    e.fields["layout"].value = "block"
    assert "#b00" not in e.message.value and not e.train_button.disabled
    assert "Traceback" not in capsys.readouterr().out


@pytest.mark.parametrize("layer1", ["clusters", "shared", "krotov"])
def test_options_are_shown_only_where_they_apply(tmp_path, layer1):
    e = explorer(tmp_path)
    e.fields["pool"].value, e.fields["kh_k"].value = 2, 3  # set while hidden: never reach another layer's model
    e.fields["layer1"].value = layer1
    shown = set(e.shown())
    assert shown & set(OPTIONS) == {n for n, (layers, _) in OPTIONS.items() if layer1 in layers}
    assert ("layout" in shown) == (layer1 != "krotov") and "stride" not in shown
    assert [w for row in e.rows for w in row.children] == [e.fields[n] for n in e.fields if n in shown]
    c = e.config()
    assert (c.pool, c.kh_k) == (2 if layer1 == "shared" else 1, 3 if layer1 == "krotov" else 7)
    if layer1 != "krotov":
        e.fields["layout"].value = "stride"
        assert "stride" in e.shown() and e.config().stride == 4


def test_train_now_is_train_and_shows_the_result(tmp_path):
    e = explorer(tmp_path)
    result = e.train_now()
    expected = train(Config(**SMALL), DATA)
    assert result.epoch_accuracies == expected.epoch_accuracies
    assert all(np.array_equal(a, b) for a, b in zip(result.weights, expected.weights))
    assert len(e.live.children) == 1 and f"{100 * result.test_accuracy:.2f}%" in e.results_text.value
    assert "committed records of this configuration after epoch 3: none" in e.results_text.value
    assert set(e.figures()) == {"confusion", "layer2"} and all(p.startswith(b"\x89PNG") for p in e.figures().values())
    assert not e.save_button.disabled and e.stop_button.disabled and not e.train_button.disabled


def test_train_button_runs_in_the_background_and_stop_ends_it(tmp_path):
    e = explorer(tmp_path, Nep=50)
    assert e.start() is True and e.start() is False  # one training at a time
    assert e.train_button.disabled and not e.stop_button.disabled and e.save_button.disabled
    e.stop()
    e.join(60)
    r = e.result
    assert r.config == Config(**SMALL | {"Nep": len(r.epoch_accuracies)}) and len(r.epoch_accuracies) < 50
    assert "stopped after epoch" in e.status.value and e.stop_latency is not None
    assert not e.train_button.disabled and e.stop_button.disabled and not e.save_button.disabled


def test_quick_mode_trains_the_quick_config(tmp_path):
    data = learnable_data(n_train=20000, n_test=300)
    e = explorer(tmp_path, quick=True, data=data, T_s=60000, Nep=2)  # 60000 samples in all: 3 epochs of 20000
    assert "quick mode trains Nep=3 of T_s=20000" in e.message.value
    assert e.train_now().config == quick_config(Config(**SMALL | dict(T_s=60000, Nep=2)), 20000) == e.run.config


def test_nothing_to_save_is_refused(tmp_path):
    e = explorer(tmp_path)
    with pytest.raises(RuntimeError, match="no finished run"):
        e.save_run()
    e._save_clicked()
    assert "not saved: no finished run" in e.status.value


def test_run_name_is_the_model_name_and_the_seed():
    assert run_name(Config(**SMALL)) == "log block C_s=4 N2=20 T_s=400 B=20 3 epochs seed 1"
    assert run_name(Config(layer1="shared", layout="block", shift=2)) == "shared block C_s=10 N2=100 shift=2 seed 0"


@needs_mnist
def test_saved_run_is_the_batch_record(tmp_path, monkeypatch):
    """The saved record and CSV row are what the batch writes when it runs the same function run."""
    monkeypatch.setenv("DREAMFLOW_MNIST", str(REAL_MNIST))
    small = dict(layout="block", C_s=4, N2=20, T_s=1000, Nep=2, seed=1)
    e = Explorer(quick=False, runs_dir=tmp_path / "explore", **small)
    e.train_now()
    path = e.save_run()
    assert path == tmp_path / "explore" / "mnist" / f"{call_run(Config(**small)).run_id}.json"
    batch = run_batch([call_run(Config(**small))], tmp_path / "batch", tmp_path / "batch" / "runs.csv", progress=False)
    saved = json.loads(path.read_text())
    assert saved.keys() == batch[0].keys()
    varying = {"started", "finished", "wall_seconds", "seconds", "epoch_seconds", "load", "threads", "versions"}
    same = {k for k in saved if k not in varying}
    assert {k: saved[k] for k in same} == {k: batch[0][k] for k in same}
    assert saved["versions"].keys() == batch[0]["versions"].keys()  # (the code commit may move meanwhile)
    rows = [list(csv.DictReader((tmp_path / d / "runs.csv").open())) for d in ("explore", "batch")]
    assert [len(r) for r in rows] == [1, 1] and rows[0][0].keys() == rows[1][0].keys()
    columns = set(rows[0][0]) - varying - {"jobs", "running_others", "numba_threads"}
    assert {k: rows[0][0][k] for k in columns} == {k: rows[1][0][k] for k in columns}
    assert rows[0][0]["test_accuracy"] == str(e.result.test_accuracy) and rows[0][0]["status"] == "ok"
