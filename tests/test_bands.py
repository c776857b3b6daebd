"""Accuracy bands from the committed records, and the notebooks' check against them."""
import json
import math

import numpy as np
import pytest
from scipy.stats import t

from dreamflow_utils.studies import bands
from dreamflow_utils import notebook as N
from dreamflow_utils.studies.bands import (AccuracyOutOfBand, ConfigMismatch, NotChecked, accuracy_band, band_of,
                                   committed_accuracies, quick_epochs)
from dreamflow_utils.core.experiments import LOG_EXPERIMENTS
from dreamflow_utils.core.quick import quick_config
from dreamflow_utils.core.train import train
from helpers import REAL_MNIST, learnable_data, needs_mnist

CONFIG = LOG_EXPERIMENTS["log block C_s=10 N2=100"][0]


def test_band_is_a_prediction_interval_for_one_more_seed_with_a_floor():
    b = band_of([0.60, 0.62, 0.64], "x", floor=0.001)
    half = t.ppf(1 - bands.LEVEL / 2, 2) * math.sqrt(1 + 1 / 3) * 0.02
    assert (b.mean, b.n, b.sd) == (pytest.approx(0.62), 3, pytest.approx(0.02))
    assert (b.low, b.high) == (pytest.approx(0.62 - half), pytest.approx(min(1.0, 0.62 + half)))
    tight = band_of([0.5, 0.5, 0.5001], "x", floor=0.01)
    assert tight.sd < 0.001 and tight.low == pytest.approx(0.5 + 0.0001 / 3 - tight.width * 0.01)
    assert band_of([0.5, 0.6], "x") is None and band_of([0.5, None, 0.6], "x") is None
    assert "inside" in b.check(0.62)
    with pytest.raises(AccuracyOutOfBand, match=r"9.80% is outside"):
        b.check(0.098)


def test_the_message_prints_the_measured_sd_and_the_floor_apart():
    text = band_of([0.9, 0.9001, 0.9002, 0.9001, 0.9], "x", floor=0.00107).describe()
    assert "sd 0.008, floor 0.107" in text and "over 5 seeds" in text


def test_a_seed_with_a_record_must_equal_it():
    b = band_of([0.70, 0.71, 0.72], "x", seeds={0: 0.70, 1: 0.71, 2: 0.72})
    assert "equal to the record of seed 1" in b.check(0.71, seed=1)
    with pytest.raises(AccuracyOutOfBand, match="differs from the committed record of seed 1"):
        b.check(0.7101, seed=1)  # inside the band, but not what seed 1 gives
    assert "inside" in b.check(0.705, seed=9)  # a seed without a record: the band


def test_a_model_a_point_worse_fails_where_the_seeds_sd_allows():
    """The frontier's chosen model has a seed sd of about 0.1 point: a model 1 point worse is outside."""
    b = band_of([0.9554 + d for d in (-0.0011, 0.0009, 0.0, 0.0012, -0.0010)], "x", floor=0.00107)
    with pytest.raises(AccuracyOutOfBand):
        b.check(0.9454)


def _record(folder, name, config, accs, **extra):
    r = {"status": "ok", "quick": False, "split": "test", "seed": config.seed, "config": config.to_dict(),
         "variant": "log block C_s=10 N2=100", "dataset": config.dataset,
         "epoch_accuracies": accs} | extra
    (folder / f"{name}.json").write_text(json.dumps(r))


def test_committed_accuracies_match_the_config_up_to_seed_nep_and_engine(tmp_path):
    folder = tmp_path / "reproduction" / "mnist"
    folder.mkdir(parents=True)
    for seed in range(4):
        _record(folder, f"ok{seed}", CONFIG.replace(seed=seed, engine="reference" if seed else "numpy"),
                [0.5 + seed / 100, 0.6 + seed / 100])
    _record(folder, "quick", CONFIG.replace(seed=7), [0.1, 0.1], quick=True)
    _record(folder, "failed", CONFIG.replace(seed=8), [0.1, 0.1], status="failed")
    _record(folder, "validation", CONFIG.replace(seed=9), [0.1, 0.1], split="validation")
    _record(folder, "other", CONFIG.replace(seed=10, C_s=11), [0.1, 0.1])
    (folder / "broken.json").write_text("{not json")
    assert committed_accuracies(CONFIG.replace(Nep=1), tmp_path) == {0: 0.5, 1: 0.51, 2: 0.52, 3: 0.53}
    assert committed_accuracies(CONFIG.replace(Nep=2, seed=5), tmp_path) == {0: 0.6, 1: 0.61, 2: 0.62, 3: 0.63}
    assert committed_accuracies(CONFIG.replace(Nep=3), tmp_path) == {}  # no record has a third epoch
    assert committed_accuracies(CONFIG.replace(Nep=1, dataset="fashion"), tmp_path) == {}
    assert accuracy_band(CONFIG.replace(Nep=3), tmp_path) is None
    _record(folder, "ok4", CONFIG.replace(seed=4), [0.55, 0.65])  # a new record is seen at once
    assert committed_accuracies(CONFIG.replace(Nep=1), tmp_path)[4] == 0.55


def test_quick_mode_trains_until_the_committed_runs_are_far_from_chance(tmp_path):
    folder = tmp_path / "reproduction" / "mnist"
    folder.mkdir(parents=True)
    for seed in range(5):
        _record(folder, f"r{seed}", CONFIG.replace(seed=seed), [0.10 + seed / 100, 0.35 + seed / 100, 0.7, 0.7])
    assert quick_epochs(CONFIG, tmp_path) == 3  # epoch 2's band reaches below QUICK_LOW
    assert quick_epochs(CONFIG.replace(C_s=11), tmp_path) == 1  # no records: one epoch, and the check fails


@pytest.mark.parametrize("name", list(LOG_EXPERIMENTS))
def test_the_committed_quick_bands_lie_far_above_chance(name):
    """Every log experiment has a band in full and quick mode (MNIST, above QUICK_LOW) and on the demo
    digits, where the notebooks' seed has a record to equal (the demo models' seeds differ by up to
    7 points: their band alone would admit chance)."""
    config = LOG_EXPERIMENTS[name][0]
    q = quick_config(config, epochs=quick_epochs(config))
    for cfg, demo, n, low in ((config, False, 10, 0.6), (q, False, 10, bands.QUICK_LOW)):
        band = accuracy_band(cfg, demo=demo)
        assert band is not None and band.n >= n and band.low >= low and 0 in band.seeds, (name, cfg.Nep, band)
    demo = accuracy_band(quick_config(config, 1500), demo=True)
    assert demo is not None and demo.n >= 5 and demo.seeds[0] > 0.15, (name, demo)
    with pytest.raises(AccuracyOutOfBand):
        demo.check(0.10, seed=0)


@needs_mnist
def test_a_quick_run_is_the_first_epochs_of_the_committed_run():
    """Quick mode's configuration learns: the first epoch of all 60000 images is bit-for-bit the first
    epoch of the committed 10-epoch run with the same seed, and lies inside its band."""
    from dreamflow_utils.core.data import load_mnist
    q = quick_config(CONFIG, epochs=quick_epochs(CONFIG))
    assert (q.T_s, q.Nep) == (60000, 1)
    result = train(q, load_mnist(REAL_MNIST))
    assert result.test_accuracy == committed_accuracies(q)[0]
    accuracy_band(q).check(result.test_accuracy, seed=0)
    assert np.isfinite(result.weights.w1).all()


# ----------------------------------------------------------------------------- the notebooks' check
SMALL = CONFIG.replace(T_s=200, B=20, C_s=4, N2=20, Nep=2)


def _run(tmp_path, config=SMALL, quick=True, exploratory=False, source="MNIST"):
    return N.Run("02_test", config, config, learnable_data(200, 100), source, quick, tmp_path,
                 exploratory=exploratory, results_dir=tmp_path / "results")


def _fake_records(tmp_path, config, accuracies):
    folder = tmp_path / "results" / "reproduction" / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for seed, acc in accuracies.items():
        _record(folder, f"s{seed}", config.replace(seed=seed), [acc] * config.Nep)


def test_report_checks_the_run_against_the_committed_records(tmp_path, capsys):
    result = train(SMALL, learnable_data(200, 100))
    _fake_records(tmp_path, SMALL, {0: result.test_accuracy, 1: 0.2, 2: 0.9, 3: 0.5})
    _run(tmp_path).report(result)
    assert "equal to the record of seed 0" in capsys.readouterr().out
    _fake_records(tmp_path, SMALL, {0: result.test_accuracy + 0.01})  # records that disagree: report fails
    with pytest.raises(AccuracyOutOfBand, match="seed 0"):
        _run(tmp_path).report(result)


def test_a_run_that_trained_another_configuration_fails(tmp_path):
    result = train(SMALL.replace(xi=1e-12), learnable_data(200, 100))
    _fake_records(tmp_path, SMALL, {0: 0.5, 1: 0.5, 2: 0.5})
    with pytest.raises(ConfigMismatch, match=r"xi: declared 0.01, trained 1e-12"):
        _run(tmp_path).check(result)


def test_no_records_fail_a_quick_experiment_notebook_only(tmp_path, capsys):
    result = train(SMALL, learnable_data(200, 100))
    with pytest.raises(NotChecked, match="no committed records of the declared configuration"):
        _run(tmp_path).check(result)
    _run(tmp_path, exploratory=True).check(result)
    _run(tmp_path, quick=False).check(result)
    assert capsys.readouterr().out.count("accuracy not checked") == 2
