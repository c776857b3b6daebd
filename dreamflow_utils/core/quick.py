"""Quick mode: a notebook trains the first k epochs of its full run (the same seed gives the same
epochs bit for bit, so the committed records check it: `bands`), k the fewest epochs after which the
committed runs are far from chance (`bands.quick_epochs`: one for the log's models); on the demo
digits (no MNIST) 40 epochs of its 1500 images. A quick *study* run is a smoke test of the batch
(few samples, one epoch), never a result.

$DREAMFLOW_QUICK turns it on (1/true/yes/on) or off (unset, empty, 0/false/no/off); any other
value is an error, so a typo never runs (or records) the wrong mode.
"""
from __future__ import annotations

import os

from .config import Config

QUICK_ENV = "DREAMFLOW_QUICK"
QUICK_T_S = 60000  # training samples a quick run on a small data set (the demo digits) sees in all
QUICK_NEP = 1  # epochs of a quick run without committed records to choose more
QUICK_STUDY_TRAIN = 2000  # training images of a quick study run (and of a quick notebook's probes)
QUICK_STUDY_TEST = 1000  # test images a quick study run measures on
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick_mode(environ=None) -> bool:
    """True when $DREAMFLOW_QUICK is 1/true/yes/on (unset, 0, false, no, off: False)."""
    value = (os.environ if environ is None else environ).get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{QUICK_ENV}={value!r}: use 1 (quick) or 0 (full)")


def quick_config(config: Config, n_train: int | None = None, epochs: int = QUICK_NEP) -> Config:
    """The quick-mode version of `config`: on a data set with the T_s training images it asks for, its
    first `epochs` epochs (at most Nep); on a smaller one (n_train < T_s: the demo digits), epochs of
    all n_train images (whole batches), min(T_s * Nep, QUICK_T_S) samples in all."""
    if n_train is None or n_train >= config.T_s:
        return config.replace(Nep=min(config.Nep, epochs))
    T_s = max(config.B, n_train - n_train % config.B)
    return config.replace(T_s=T_s, Nep=max(1, min(config.T_s * config.Nep, QUICK_T_S) // T_s))


def quick_data(data, n_train: int = QUICK_STUDY_TRAIN, n_test: int = QUICK_STUDY_TEST):
    """The first n_train training and n_test test samples of `data`."""
    (x, y), (tx, ty) = data
    return (x[:n_train], y[:n_train]), (tx[:n_test], ty[:n_test])
