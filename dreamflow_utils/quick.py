"""Quick mode: a smoke test of a notebook or a study run (few samples, one epoch), never a result.

$DREAMFLOW_QUICK turns it on (1/true/yes/on) or off (unset, empty, 0/false/no/off); any other
value is an error, so a typo never runs (or records) the wrong mode.
"""
from __future__ import annotations

import os

from .config import Config

QUICK_ENV = "DREAMFLOW_QUICK"
QUICK_T_S = 2000  # training samples in quick mode
QUICK_NEP = 1  # epochs in quick mode
QUICK_TEST = 1000  # test images a quick study run measures on
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
    """The quick-mode version of `config`: T_s <= QUICK_T_S (and <= n_train), Nep <= QUICK_NEP."""
    T_s = min(config.T_s, QUICK_T_S, n_train if n_train is not None else config.T_s)
    T_s = max(config.B, T_s - T_s % config.B)
    return config.replace(T_s=T_s, Nep=min(config.Nep, QUICK_NEP))


def quick_data(data, n_train: int = QUICK_T_S, n_test: int = QUICK_TEST):
    """The first n_train training and n_test test samples of `data`."""
    (x, y), (tx, ty) = data
    return (x[:n_train], y[:n_train]), (tx[:n_test], ty[:n_test])
