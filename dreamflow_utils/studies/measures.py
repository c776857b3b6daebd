"""What a study measures on a trained model, beyond its own test accuracy; each function
returns a dict of record fields (accuracies in [0, 1]).

- `votes`: the model's read-out with the top-k layer-2 vote (`engines.predict_vote`);
- `shifted`: its accuracy on test images moved by up to 1 and 2 pixels;
- `probes`: linear probes (ridge) on its layer-1 codes, trained on the training images;
- `logistic`: a logistic-regression probe on its value codes;
- `translation`: are its detectors translated copies of each other, and how much does a
  1-2 pixel shift change its code (`translation` module); for layer1="clusters" also for
  the untrained weights (the chance level);
- `ladder`: probes of a shared bank read out on other grids and poolings.
"""
from __future__ import annotations

import time

import numpy as np

from ..core.config import Config
from ..core.geometry import shift_images
from ..core.model import Weights, init_weights
from ..engines import make_engine, predict_vote
from .probes import PROBES, ridge_probe
from .translation import code_shift_similarity, translation_match, unit_patches

TEST_SHIFT_SEED = 12345  # the shifted test copies are the same for every model
N_TRANSLATION = 1000  # test images the code similarities use


def votes(engine, test, ks=(5, 20)) -> dict:
    scores = engine.scores(test[0])
    w3 = engine.weights().w3
    return {f"vote{k}": float(np.mean(predict_vote(scores, w3, k) == test[1])) for k in ks}


def shifted(engine, test, shifts=(1, 2)) -> dict:
    rng = np.random.default_rng(TEST_SHIFT_SEED)
    return {f"test_shift{k}": float(np.mean(engine.predict(shift_images(test[0], k, rng)) == test[1]))
            for k in shifts}


def probes(engine, train, test, kinds=("value", "onehot")) -> dict:
    t = time.perf_counter()
    out = {f"probe_{k}": ridge_probe(engine.codes(train[0], k), train[1], engine.codes(test[0], k), test[1])
           for k in kinds}
    return out | {"probe_seconds": time.perf_counter() - t}


def logistic(engine, train, test) -> dict:
    """A logistic-regression probe on the value codes (stronger and slower than ridge)."""
    t = time.perf_counter()
    acc = PROBES["logistic"](engine.codes(train[0]), train[1], engine.codes(test[0]), test[1])
    return {"probe_logistic": acc, "logistic_seconds": time.perf_counter() - t}


def translation(config: Config, weights: Weights, test) -> dict:
    """Detector match across positions (1 by construction for a shared bank) and code cosine
    under 1 and 2 pixel shifts; for clusters the same of the seeded initial weights."""
    x = test[0][:N_TRANSLATION]
    out = {}
    for prefix, w in (("", weights), ("initial_", init_weights(config))):
        if config.layer1 == "shared":
            match = {"score": 1.0, "score_no_shift": 1.0, "best_shift_fraction": 0.0}
        else:
            match = translation_match(unit_patches(w.w1, config.layout, config.C_s, config.stride), config.C_s, 2)
        codes = make_engine(config, w).codes
        out |= {f"{prefix}match": match["score"], f"{prefix}match_no_shift": match["score_no_shift"],
                f"{prefix}best_shift_fraction": match["best_shift_fraction"],
                f"{prefix}code_sim_1px": code_shift_similarity(codes, x, 1),
                f"{prefix}code_sim_2px": code_shift_similarity(codes, x, 2)}
        if config.layer1 == "shared":
            break
    return out


def bank_engine(config: Config, bank, stride: int, pool: int, pool_mode: str, code: str):
    """An engine reading the shared `bank` (81, C_s) on another grid (layout "stride"), pooled
    and coded as given (layer 2 is a placeholder: only its codes are meaningful)."""
    c = config.replace(layout="stride", stride=stride, pool=pool, pool_mode=pool_mode, code=code, norm=False,
                       N2=1, vote=1)
    return make_engine(c, Weights(np.asarray(bank), np.zeros((c.N1, 1)), np.zeros((10, 1))))


def ladder(config: Config, weights: Weights, train, test, settings) -> dict:
    """Probe accuracy of the bank's codes for each (stride, pool, pool_mode, code, method) in
    `settings`, with the code cosines under 1 and 2 pixel shifts."""
    rows = []
    for stride, pool, mode, code, method in settings:
        t = time.perf_counter()
        engine = bank_engine(config, weights.w1, stride, pool, mode, code)
        acc = PROBES[method](engine.codes(train[0]), train[1], engine.codes(test[0]), test[1])
        x = test[0][:N_TRANSLATION]
        rows.append(dict(stride=stride, pool=pool, pool_mode=mode, code=code, method=method,
                         N1=engine.config.N1, probe_accuracy=acc, seconds=time.perf_counter() - t,
                         code_sim_1px=code_shift_similarity(engine.codes, x, 1),
                         code_sim_2px=code_shift_similarity(engine.codes, x, 2)))
    return {"ladder": rows}
