"""Accuracy bands from the committed records, and the notebooks' check against them."""
import json

import numpy as np
import pytest

from dreamflow_utils import bands
from dreamflow_utils.bands import AccuracyOutOfBand, accuracy_band, band_of, committed_accuracies
from dreamflow_utils.experiments import LOG_EXPERIMENTS
from dreamflow_utils.quick import quick_config
from helpers import REAL_MNIST, needs_mnist

CONFIG = LOG_EXPERIMENTS["block_Cs10_N2100"][0]


def test_band_is_mean_plus_minus_k_sd_with_a_floor():
    b = band_of([0.60, 0.62, 0.64], "x")
    assert (b.mean, b.n) == (pytest.approx(0.62), 3)
    assert (b.low, b.high) == (pytest.approx(0.62 - bands.K_SD * 0.02), pytest.approx(0.62 + bands.K_SD * 0.02))
    tight = band_of([0.5, 0.5, 0.5001], "x")
    assert tight.sd == bands.SD_FLOOR and tight.low < 0.5 - 0.02
    assert band_of([0.5, 0.6], "x") is None and band_of([0.5, None, 0.6], "x") is None
    assert "inside" in b.check(0.62)
    with pytest.raises(AccuracyOutOfBand, match=r"9.80% is outside"):
        b.check(0.098)


def _record(folder, name, config, accs, **extra):
    r = {"status": "ok", "quick": False, "split": "test", "seed": config.seed, "config": config.to_dict(),
         "variant": "block_Cs10_N2100", "dataset": config.dataset,
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


@pytest.mark.parametrize("name", list(LOG_EXPERIMENTS))
def test_the_committed_bands_exclude_chance(name):
    """Every log experiment has a band in full and quick mode (MNIST) and on the demo digits."""
    config = LOG_EXPERIMENTS[name][0]
    for cfg, demo, n in ((config, False, 10), (quick_config(config), False, 10), (quick_config(config, 1500), True, 5)):
        band = accuracy_band(cfg, demo=demo)
        assert band is not None and band.n >= n and band.low > 0.15, (name, cfg.Nep, demo, band)


@needs_mnist
def test_a_quick_run_is_the_first_epoch_of_the_committed_run():
    """Quick mode's configuration learns: one epoch of all 60000 images is bit-for-bit the first
    epoch of the committed 10-epoch run with the same seed, and lies inside its band."""
    from dreamflow_utils.data import load_mnist
    from dreamflow_utils.train import train
    q = quick_config(CONFIG)
    assert (q.T_s, q.Nep) == (60000, 1)
    result = train(q, load_mnist(REAL_MNIST))
    assert result.test_accuracy == committed_accuracies(q)[0]
    accuracy_band(q).check(result.test_accuracy)
    assert np.isfinite(result.weights.w1).all()
