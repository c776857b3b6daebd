"""Why Krotov & Hopfield's 100-unit setting collapses on Fashion-MNIST, measured (notebook 11).

The rule makes the unit with the largest input learn each image; when the images are alike
(large mean pairwise cosine), one unit that resembles their average wins more and more of
them. `measure` records, per data set and with or without centring each image on its own
mean (`kh_center`): the images' mean pairwise cosine, and after each of the first rule epochs
of the 100-unit setting of their notebook (`frontier.KROTOV_NOTEBOOK`) the share of the test images won by the most frequent unit
and how many units win any. Written to results/frontier/collapse.json by
``python -m dreamflow_utils.studies.collapse`` (an existing file is kept unless --force).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ..core.data import load_dataset
from ..engines import make_engine, machine_load
from ..core.train import StopTraining, train
from . import RESULTS
from .frontier import KROTOV_NOTEBOOK

EPOCHS = 10
N_COSINE = 2000
PATH = RESULTS / "frontier" / "collapse.json"


def mean_cosine(x, n: int = N_COSINE, seed: int = 0, center: bool = False) -> float:
    """Mean cosine between distinct pairs of n images drawn without replacement."""
    v = x[np.random.default_rng(seed).choice(len(x), n, replace=False)]
    if center:
        v = v - v.mean(axis=1, keepdims=True)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    g = v @ v.T
    return float((g.sum() - np.trace(g)) / (n * (n - 1)))


def winner_shares(config, data, epochs: int = EPOCHS) -> dict:
    """Train `config` for its first `epochs` epochs; after each, the share of the test images
    whose strongest unit is the most frequent one, and the number of units that win any."""
    test_x = data[1][0]
    top, used = [], []

    def look(epoch, weights, _accuracy):
        won = make_engine(config, weights).codes(test_x, "onehot").argmax(axis=1)
        counts = np.bincount(won, minlength=config.C_s)
        top.append(float(counts.max() / len(won)))
        used.append(int((counts > 0).sum()))
        if epoch >= epochs:
            raise StopTraining

    t = time.perf_counter()
    try:
        train(config.replace(eval_every=1), data, callback=look)
    except StopTraining:  # stopped inside the rule's epochs: no read-out, no result; the shares are the point
        pass
    return {"top_unit_share": top, "units_winning": used, "seconds": time.perf_counter() - t}


def measure(datasets=("mnist", "fashion"), seed: int = 0, epochs: int = EPOCHS) -> dict:
    base = KROTOV_NOTEBOOK
    out = {"config": base.to_dict(), "seed": seed, "epochs": epochs, "load": machine_load(), "datasets": {}}
    for dataset in datasets:
        data = load_dataset(dataset)
        rows = {}
        for center in (False, True):
            config = base.replace(seed=seed, dataset=dataset, kh_center=center)
            rows["centred" if center else "raw"] = {"mean_cosine": mean_cosine(data[0][0], center=center),
                                                   **winner_shares(config, data, epochs)}
        out["datasets"][dataset] = rows
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.studies.collapse", description=__doc__.split("\n")[0])
    p.add_argument("--force", action="store_true", help="overwrite an existing results/frontier/collapse.json")
    a = p.parse_args(argv)
    if PATH.exists() and not a.force:
        print(f"{PATH} exists (kept; --force to measure again)")
        return 0
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(json.dumps(measure(), indent=1) + "\n")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
