"""Quick mode: a notebook trains on 60000 samples in all: one epoch of all MNIST's training images
(the first epoch of the full run with the same seed, which learns: checked against the committed
records by `bands`), 40 epochs of the 1500 demo digits;
a quick *study* run is a smoke test of the batch (few samples, one epoch), never a result.

$DREAMFLOW_QUICK turns it on (1/true/yes/on) or off (unset, empty, 0/false/no/off); any other
value is an error, so a typo never runs (or records) the wrong mode.
"""
from __future__ import annotations

import os

from .config import Config

QUICK_ENV = "DREAMFLOW_QUICK"
QUICK_T_S = 60000  # training samples a quick notebook run sees, in all (all of MNIST's, once)
QUICK_NEP = 1  # epochs in quick mode
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


def quick_config(config: Config, n_train: int | None = None) -> Config:
    """The quick-mode version of `config`: min(T_s * Nep, QUICK_T_S) training samples in all,
    in epochs of T_s <= n_train (whole batches): one epoch of MNIST, 40 of the 1500 demo digits."""
    T_s = min(config.T_s, QUICK_T_S, n_train if n_train is not None else config.T_s)
    T_s = max(config.B, T_s - T_s % config.B)
    total = min(config.T_s * config.Nep, QUICK_T_S)
    return config.replace(T_s=T_s, Nep=max(QUICK_NEP, total // T_s))


def quick_data(data, n_train: int = QUICK_STUDY_TRAIN, n_test: int = QUICK_STUDY_TEST):
    """The first n_train training and n_test test samples of `data`."""
    (x, y), (tx, ty) = data
    return (x[:n_train], y[:n_train]), (tx[:n_test], ty[:n_test])
