"""Tests for dreamflow_utils.notebook (the notebooks' helpers) and for the committed notebooks."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import pytest
from matplotlib.figure import Figure

from dreamflow_utils import notebook as N
from dreamflow_utils.core.data import MnistNotFound
from dreamflow_utils.core.files import read_csv_rows, repo_root
from dreamflow_utils.studies import reproduction as R
from dreamflow_utils.core.experiments import LOG_EXPERIMENTS
from helpers import synthetic_data

REPO = Path(__file__).parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PARAMS = dict(layout="block", C_s=10, N2=100, T_s=60000, Nep=10, B=100, xi=0.01, prec=1e-20, seed=0,
              engine="numpy")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- quick mode
@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), (" on ", True),
                                             ("0", False), ("", False), ("false", False), ("off", False)])
def test_quick_mode_reads_env(value, expected):
    assert N.quick_mode({N.QUICK_ENV: value}) is expected


def test_quick_mode_unset_is_full_and_garbage_is_an_error():
    assert N.quick_mode({}) is False
    with pytest.raises(ValueError, match="DREAMFLOW_QUICK"):
        N.quick_mode({N.QUICK_ENV: "maybe"})


def test_pytest_runs_in_quick_mode():
    assert N.quick_mode()  # set by the root conftest.py, inherited by nbval's kernels


def test_quick_config_is_the_first_epochs_of_the_full_run():
    config = LOG_EXPERIMENTS["log block C_s=20 N2=200"][0]
    q = N.quick_config(config)
    assert (q.T_s, q.Nep) == (60000, N.QUICK_NEP)
    assert q.replace(Nep=config.Nep) == config
    assert N.quick_config(config, 60000, epochs=2).Nep == 2 and N.quick_config(config, epochs=99).Nep == 10
    demo = N.quick_config(config, n_train=1500)  # the demo data has 1500 training images: 40 epochs of them
    assert (demo.T_s, demo.Nep) == (1500, 40)
    assert N.quick_config(config, n_train=1550).T_s == 1500  # whole batches
    small = N.quick_config(config.replace(T_s=300, Nep=2), n_train=200)  # never more samples than the full run
    assert (small.T_s, small.Nep) == (200, 3)


def test_find_log_matches_the_four_experiments_only():
    for name, (config, acc, sec) in LOG_EXPERIMENTS.items():
        assert N.find_log(config.replace(seed=3, engine="reference")) == (name, acc, sec)
    assert N.find_log(LOG_EXPERIMENTS["log block C_s=10 N2=100"][0].replace(C_s=11)) is None
    assert N.find_log(LOG_EXPERIMENTS["log block C_s=10 N2=100"][0].replace(T_s=2000)) is None


# ----------------------------------------------------------------------------- data
def test_load_data_falls_back_to_demo_in_quick_mode_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DREAMFLOW_MNIST", str(tmp_path / "nowhere"))
    data, source = N.load_data(quick=True)
    out = capsys.readouterr().out
    assert "MNIST NOT FOUND" in out and "NOT COMPARABLE" in out and "DEMO" in source
    assert data[0][0].shape == (1500, 784) and data[1][0].shape == (297, 784)
    with pytest.raises(MnistNotFound, match="DREAMFLOW_MNIST"):
        N.load_data(quick=False)
    assert "MNIST NOT AVAILABLE" in capsys.readouterr().out


def test_setup_quick_and_full(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(N, "load_data", lambda data_dir, quick, dataset="mnist": (synthetic_data(3000, 100), "synthetic"))
    quick = N.setup("02_log_block_C_s=10_N2=100", **PARAMS, quick=True, figures_dir=tmp_path)
    out_quick = capsys.readouterr().out
    assert "QUICK MODE" in out_quick and (quick.config.T_s, quick.config.Nep) == (3000, 20)  # 60000 samples
    assert quick.requested == LOG_EXPERIMENTS["log block C_s=10 N2=100"][0]
    assert quick.log == ("log block C_s=10 N2=100", 0.6818, 45) and quick.log_accuracy == 0.6818
    full = N.setup("02_log_block_C_s=10_N2=100", **PARAMS, quick=False, figures_dir=tmp_path)
    assert "QUICK" not in capsys.readouterr().out and full.config == full.requested
    # the NBVAL_CHECK_OUTPUT cell's text does not depend on the mode
    quick.describe()
    d_quick = capsys.readouterr().out
    full.describe()
    assert capsys.readouterr().out == d_quick
    assert "68.18%" in d_quick and "seed=0" in d_quick and re.search(r"sha256 [0-9a-f]{16}", d_quick)


def test_describe_checksum_depends_on_seed(monkeypatch, capsys):
    monkeypatch.setattr(N, "load_data", lambda data_dir, quick, dataset="mnist": (synthetic_data(200, 50), "synthetic"))
    outs = []
    for seed in (0, 0, 1):
        N.setup("x", **{**PARAMS, "seed": seed}, quick=True).describe()
        outs.append(capsys.readouterr().out.split("sha256")[1])
    assert outs[0] == outs[1] != outs[2]


# ----------------------------------------------------------------------------- figures
def test_figures_folder_rules(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert repo_root() == tmp_path
    assert N.figures_folder(quick=False) == tmp_path / "figures"
    assert N.figures_folder(quick=True) == tmp_path / "figures" / "quick"
    rec = tmp_path / "runs" / "01_x" / "01_x__seed=3.result.json"
    assert N.figures_folder(record_path=rec, quick=True) == rec.parent / "01_x__seed=3.figures"
    assert N.figures_folder("elsewhere", record_path=rec, quick=True) == Path("elsewhere")


def test_run_show_saves_png_and_displays_it(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(N.plots, "show_png", shown.append)
    run = N.Run("07_test", None, None, None, "synthetic", True, tmp_path)
    fig = Figure(figsize=(2, 2))
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    run.show(fig, "curve")
    path = tmp_path / "07_test_curve.png"
    assert shown == [path] and path.read_bytes().startswith(PNG_MAGIC)


def test_end_to_end_on_synthetic_data(tmp_path, monkeypatch, capsys):
    """The cells of an experiment notebook, in order, on tiny data (quick mode)."""
    from dreamflow_utils import plots
    from dreamflow_utils.plots.live import LiveView
    from dreamflow_utils.core.train import train

    monkeypatch.setattr(N.plots, "show_png", lambda path: None)
    monkeypatch.setattr(N, "load_data", lambda data_dir, quick, dataset="mnist": (synthetic_data(600, 100), "synthetic"))
    rec = tmp_path / "runs" / "r.result.json"
    run = N.setup("01_log_overlap_C_s=10_N2=100", **{**PARAMS, "layout": "overlap", "B": 50, "T_s": 600, "Nep": 1}, quick=True,
                  record_path=rec, exploratory=True)  # no committed records of this configuration
    view = LiveView(C_s=run.config.C_s, n_epochs=run.config.Nep, log_accuracy=run.log_accuracy, title=run.title)
    result = train(run.config, run.data, callback=view, progress=False)
    assert view.epoch == 1 and (run.config.T_s, run.config.Nep) == (600, 1)
    run.report(result)
    assert "QUICK MODE" in capsys.readouterr().out
    run.show(plots.plot_confusion(plots.confusion_matrix(run.test_y, result.predictions)), "confusion")
    run.show(plots.plot_layer2(*result.weights, n=20, C_s=run.config.C_s), "layer2")
    run.save(result)
    assert sorted(p.name for p in run.figures_dir.iterdir()) == [
        "01_log_overlap_C_s=10_N2=100_confusion.png", "01_log_overlap_C_s=10_N2=100_layer2.png"]
    assert run.figures_dir == tmp_path / "runs" / "r.figures"
    record = json.loads(rec.read_text())
    assert record["quick"] is True and record["test_accuracy"] == result.test_accuracy
    assert record["log_accuracy"] is None  # B=50 is not the log's configuration


# ----------------------------------------------------------------------------- summary
def write_runs_csv(path, rows):
    fields = ["notebook", "run_id", "seed", "test_accuracy", "seconds", "status", "error", "epoch_accuracies"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def fake_rows():
    rows = []
    for stem, base in (("01_log_overlap_C_s=10_N2=100", 0.69), ("03_log_block_C_s=20_N2=200", 0.73)):
        for seed in range(5):
            acc = base + 0.002 * seed
            rows.append(dict(notebook=f"notebooks/{stem}.ipynb", run_id=f"{stem}__seed={seed}", seed=seed,
                             test_accuracy=acc, seconds=20 + seed, status="ok", error="",
                             epoch_accuracies=";".join([str(acc)] * 10)))
    rows.append(dict(notebook="notebooks/01_log_overlap_C_s=10_N2=100.ipynb", run_id="q", seed=9, test_accuracy=0.1,
                     seconds=1, status="ok", error="", epoch_accuracies="0.1"))  # quick mode: 1 epoch
    rows.append(dict(notebook="notebooks/02_log_block_C_s=10_N2=100.ipynb", run_id="f", seed=0, test_accuracy="",
                     seconds="", status="failed", error="boom", epoch_accuracies=""))
    rows.append(dict(notebook="notebooks/07_other.ipynb", run_id="o", seed=0, test_accuracy=0.5, seconds=1,
                     status="ok", error="", epoch_accuracies="0.5"))
    return rows


def test_summarize_fake_runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    write_runs_csv(path, fake_rows())
    s = R.summarize(read_csv_rows(path))
    by = {e["name"]: e for e in s["experiments"]}
    assert list(by) == list(LOG_EXPERIMENTS)
    e = by["log overlap C_s=10 N2=100"]
    assert e["n"] == 5 and e["seeds"] == [0, 1, 2, 3, 4] and e["log_accuracy"] == pytest.approx(69.07)
    assert e["mean"] == pytest.approx(69.4) and e["sd"] == pytest.approx(np.std([69, 69.2, 69.4, 69.6, 69.8], ddof=1))
    assert e["seconds_mean"] == 22 and e["log_seconds"] == 660
    assert by["log block C_s=10 N2=100"]["n"] == 0 and by["log block C_s=100 N2=100"]["n"] == 0
    assert s["excluded"] == {"not 10 epochs": 1, "failed": 1, "not a log experiment": 1}
    md = R.log_table(s)
    assert "| log overlap C_s=10 N2=100 | 69.07% | 69.40% ± 0.32 (5) | +0.33 |" in md
    assert "| log block C_s=10 N2=100 | 68.18% | –% ± – (0) |" in md
    assert md.count("\n") == 5
    fig = R.plot_log_summary(s)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_summary_notebook_step(tmp_path, monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(N.plots, "show_png", shown.append)
    import IPython.display
    displayed = []
    monkeypatch.setattr(IPython.display, "display", displayed.append)
    # no CSV yet: a note, no error
    assert N.summary(tmp_path / "missing.csv", tmp_path) is None
    assert "No complete runs" in capsys.readouterr().out and not shown
    path = tmp_path / "runs.csv"
    write_runs_csv(path, fake_rows())
    s = N.summary(path, tmp_path / "fig")
    assert s["experiments"][0]["n"] == 5
    assert "69.40%" in displayed[0].data
    assert shown == [tmp_path / "fig" / "05_summary_accuracy_time.png"] and shown[0].is_file()
    assert "rows left out" in capsys.readouterr().out


def test_print_log_lists_the_logs_numbers(capsys):
    N.print_log()
    out = capsys.readouterr().out
    for s in ("69.07%", "68.18%", "73.34%", "68.20%", "4500 s per run"):
        assert s in out


def test_experiment_of():
    assert R.experiment_of({"notebook": "notebooks/04_log_block_C_s=100_N2=100.ipynb"}) == "log block C_s=100 N2=100"
    assert R.experiment_of({"notebook": "runs/x/04_log_block_C_s=100_N2=100__seed=1.ipynb"}) is None
    assert R.experiment_of({"notebook": "notebooks/07_other.ipynb"}) is None
    assert R.experiment_of({"variant": "log block C_s=10 N2=100"}) == "log block C_s=10 N2=100"
    assert R.experiment_of({"variant": "log block C_s=10 wta=own_units N2=100"}) is None


# ----------------------------------------------------------------------------- clean / check
def widget_notebook(path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "HBox(children=(...))",
        N.WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0}})]
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    cell.metadata["papermill"] = {"duration": 1.0}
    nb.cells = [cell]
    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_p", "IPY_MODEL_b"]}},
        "a": {"model_name": "HTMLModel", "state": {"value": "epoch 1/10: 100%"}},
        "p": {"model_name": "FloatProgressModel", "state": {"value": 600, "max": 600, "min": 0}},
        "b": {"model_name": "HTMLModel", "state": {"value": "600/600 [00:05&lt;00:00]"}},
    }
    nb.metadata["widgets"] = {N.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    nb.metadata["papermill"] = {"input_path": "/work/x.ipynb"}  # abs-path: test input
    nbformat.write(nb, path)


def test_clean_notebook_turns_widgets_into_text(tmp_path):
    path = tmp_path / "w.ipynb"
    widget_notebook(path)
    assert any("widget" in p for p in N.check_notebook(path))
    assert N.clean_notebook(path, rendered="full") == []
    nb = nbformat.read(path, as_version=4)
    out = nb.cells[0].outputs[0]
    assert out.data == {"text/plain": "epoch 1/10: 100% |" + "█" * 20 + "| 600/600 [00:05<00:00]"}
    assert "widgets" not in nb.metadata and "papermill" not in nb.metadata
    assert nb.cells[0].metadata == {}
    assert nb.metadata["dreamflow"]["rendered"] == "full"


def test_check_notebook_finds_absolute_paths_and_size(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", text="saved /work/main/figures/a.png\n"),  # abs-path: test input
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBOR/tmp/xx", "text/plain": "ok"})]
    nb.cells = [cell]
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    problems = N.check_notebook(path)
    assert len(problems) == 1 and "absolute path" in problems[0]  # image data is not searched
    assert any("MB" in p for p in N.check_notebook(path, max_bytes=100))


# ----------------------------------------------------------------------------- the committed notebooks
PARAMETER_NAMES = {"layout", "C_s", "N2", "T_s", "Nep", "B", "xi", "prec", "seed", "engine", "data_dir",
                   "figures_dir", "record_path"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_follows_conventions(path):
    """Every notebook: no widget state, no absolute paths, < 2 MB, one `parameters` cell, a markdown opening."""
    nb = nbformat.read(path, as_version=4)
    assert N.check_notebook(path) == []
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    assert nb.cells[0].cell_type == "markdown"
    if R.experiment_of({"notebook": path}):  # an experiment of the log: its values, the standard names, a checked cell
        assert any(c.cell_type == "code" and c.source.startswith("# NBVAL_CHECK_OUTPUT") for c in nb.cells)
        import papermill as pm
        declared = pm.inspect_notebook(str(path))
        assert PARAMETER_NAMES <= set(declared)
        config = LOG_EXPERIMENTS[R.experiment_of({"notebook": path})][0]
        for name in ("layout", "C_s", "N2", "T_s", "Nep", "B", "xi", "prec"):
            assert eval(declared[name]["default"]) == getattr(config, name), name
        assert f'notebook.setup("{path.stem}"' in "".join(c.source for c in nb.cells)


# ----------------------------------------------------------------------------- render
def test_render_executes_cleans_and_reports_failures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(f'seed {seed} squared {seed ** 2}')")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, tmp_path / "ok.ipynb")
    nb.cells[1] = nbformat.v4.new_code_cell("raise ValueError('broken on purpose')")
    nbformat.write(nb, tmp_path / "bad.ipynb")
    out = tmp_path / "out"
    assert N.render([tmp_path / "ok.ipynb", tmp_path / "bad.ipynb"], out_dir=out) == 1  # one failure
    done = nbformat.read(out / "ok.ipynb", 4)
    assert done.cells[1].outputs[0]["text"] == "seed 0 squared 0\n"
    assert not N.check_notebook(out / "ok.ipynb")  # cleaned: no widget state, no absolute path
    err = capsys.readouterr().err
    assert "bad.ipynb: FAILED" in err and "ValueError: broken on purpose" in err
    assert not (out / "bad.ipynb").exists() and not list(out.glob(".*.ipynb"))
