"""Studies: registries of named models (`Variant`s, each a `Config` or a baseline) run by the
batch, one record per (variant, seed, data set), results under ``results/<study>/``.

    python -m dreamflow_utils.studies symmetry --seeds 0-4 --jobs 2
    python -m dreamflow_utils.studies symmetry --summarize

A run is `run_variant(...)`, executed by a batch worker (`runs.CallRun`); its record holds the
variant's config, seed, data set, quick mode, the per-epoch test accuracies, seconds, versions
and what the variant measures (`measures`). Records live in ``results/<study>/<dataset>/``,
the table of all of them in ``results/<study>/runs.csv``; an interrupted study resumes.
Quick mode (`quick=True`, or DREAMFLOW_QUICK=1 on the command line): 2000 training samples,
1 epoch, measurements on the first 2000 training and 1000 test images: a smoke test whose
records are marked quick and never count as results.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.config import Config, model_name
from ..core.data import load_dataset, validation_split
from ..core.quick import quick_data
from ..core.train import train, versions
from . import measures

RESULTS = Path(__file__).resolve().parents[2] / "results"  # the repository's results folder
FAMILIES = ("faithful", "shared", "krotov", "baseline")
FAMILY_OF_LAYER = {"clusters": "faithful", "shared": "shared", "krotov": "krotov"}


@dataclass(frozen=True)
class Variant:
    """One model of a study: a model is named by its config (`model_name`, use `model`), a
    baseline by what it is ("k-means N2=2000 on pixels").

    family   "faithful" (layer1="clusters"), "shared", "krotov" (a peer engine) or "baseline".
    config   the model (every family but baselines); its seed and dataset are set per run.
    baseline {"method": "knn" | "ridge" | "logistic" | "kmeans", ...} for family "baseline".
    measures names of `measures` functions run after training: "votes", "shifted", "probes",
             "translation", "ladder".
    ladder   (stride, pool, pool_mode, code, method) settings of the "ladder" measure.
    seeds    None: every seed asked for; a tuple: only these (deterministic baselines: (0,)).
    datasets None: runs on every data set asked for; a tuple: only on these (a configuration
             chosen on one data set's validation split).
    """

    name: str
    family: str
    config: Config | None = None
    baseline: dict | None = None
    measures: tuple[str, ...] = ()
    ladder: tuple[tuple, ...] = ()
    seeds: tuple[int, ...] | None = None
    note: str = ""
    datasets: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family must be one of {FAMILIES}, got {self.family!r}")
        if (self.family == "baseline") != (self.baseline is not None) or (self.config is None) != (self.baseline is not None):
            raise ValueError(f"{self.name}: a baseline has `baseline` and no config; every other family a config")
        if self.config is not None and (self.name, self.family) != (model_name(self.config),
                                                                    FAMILY_OF_LAYER[self.config.layer1]):
            raise ValueError(f"a model variant is named by its config and its family by its layer 1: "
                             f"{model_name(self.config)!r} ({FAMILY_OF_LAYER[self.config.layer1]}), got "
                             f"{self.name!r} ({self.family})")
        unknown = set(self.measures) - set(MEASURES)
        if unknown:
            raise ValueError(f"{self.name}: unknown measures {sorted(unknown)}; known: {sorted(MEASURES)}")


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    variants: dict[str, Variant] = field(repr=False)
    summary: Callable[[list], str] | None = field(default=None, repr=False)  # records -> Markdown
    exports: Callable[[list], dict] | None = field(default=None, repr=False)  # records -> {file in results/: text}
    split: str = "test"  # "test": report the test set; "validation": the last 10000 training images, held out

    @property
    def folder(self) -> Path:
        return RESULTS / self.name


def model(config: Config, note: str = "", measures: tuple[str, ...] = (), **kw) -> Variant:
    """The variant that trains `config`, named by it (`model_name`)."""
    return Variant(model_name(config), FAMILY_OF_LAYER[config.layer1], config, measures=measures, note=note, **kw)


def variants(*vs: Variant) -> dict[str, Variant]:
    """A study's registry: its variants by name (a name given twice is an error)."""
    out = {}
    for v in vs:
        if v.name in out:
            raise ValueError(f"two variants named {v.name!r}")
        out[v.name] = v
    return out


MEASURES = ("votes", "shifted", "probes", "logistic", "translation", "ladder")


def registry() -> dict[str, Study]:
    """Every study, by name."""
    from . import frontier, reproduction, symmetry
    return {s.name: s for s in (reproduction.STUDY, symmetry.STUDY, frontier.STUDY, frontier.SEARCH)}


def get_study(name: str) -> Study:
    studies = registry()
    if name not in studies:
        raise ValueError(f"unknown study {name!r}; studies: {', '.join(studies)}")
    return studies[name]


@lru_cache(maxsize=2)
def _load(dataset: str):
    return load_dataset(dataset)


def study_data(dataset: str, split: str = "test", quick: bool = False):
    """((train_x, train_y), (eval_x, eval_y)) of a run: the test set, or the validation split
    (the last 10000 training images, a sixth of smaller sets); quick: the first 2000 / 1000 of them."""
    data = _load(dataset)
    if split == "validation":
        data = validation_split(data, min(10000, len(data[0][0]) // 6))
    elif split != "test":
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    return quick_data(data) if quick else data


def run_variant(study: str, variant: str, seed: int, dataset: str = "mnist", quick: bool = False,
                config: dict | None = None, split: str = "test"):
    """Train and measure one (variant, seed, data set); returns its record (the batch's worker
    function), and for a shared bank also the file "bank.npy" (the trained bank, (C_s, 81)).
    `config` is the variant's config as planned (part of the run's identity): it must still be
    the registry's."""
    st = get_study(study)
    v = st.variants[variant]
    if config is not None and v.config is not None and Config(**config) != v.config:
        raise ValueError(f"{study}/{variant}: the registry's config changed since this run was planned")
    data = study_data(dataset, split, quick)
    record = {"study": study, "variant": variant, "family": v.family, "seed": seed, "dataset": dataset,
              "split": split, "quick": quick, "note": v.note}
    if v.family == "baseline":
        from . import baselines
        acc, seconds = baselines.run(v.baseline, data, seed)
        return record | {"test_accuracy": acc, "seconds": seconds, "versions": versions()}
    cfg = v.config.replace(seed=seed, dataset=dataset)
    n_train = len(data[0][0])
    if quick or cfg.T_s > n_train:  # quick, or the validation split's 50000 training images
        cfg = cfg.replace(T_s=min(cfg.T_s, n_train - n_train % cfg.B), Nep=1 if quick else cfg.Nep)
    result = train(cfg, data)
    record |= result.record() | {"config": cfg.to_dict()}
    record |= measure(v, cfg, result.weights, data)
    if cfg.layer1 == "shared":
        buf = io.BytesIO()
        np.save(buf, result.weights.w1.T)
        return record, {"bank.npy": buf.getvalue()}
    return record


def measure(variant: Variant, config: Config, weights, data) -> dict:
    """What `variant` measures (`variant.measures`) on the trained `weights` of `config`, with the
    probes trained on data's training half and everything evaluated on its test half."""
    from ..engines import make_engine

    train_data, test_data = data
    engine = make_engine(config, weights)
    out, t = {}, time.perf_counter()
    for m in variant.measures:
        if m == "votes":
            out |= measures.votes(engine, test_data)
        elif m == "shifted":
            out |= measures.shifted(engine, test_data)
        elif m == "probes":
            kinds = ("value", "onehot", "dense") if config.layer1 == "clusters" else ("value", "onehot")
            out |= measures.probes(engine, train_data, test_data, kinds)
        elif m == "logistic":
            out |= measures.logistic(engine, train_data, test_data)
        elif m == "translation":
            out |= measures.translation(config, weights, test_data)
        elif m == "ladder":
            out |= measures.ladder(config, weights, train_data, test_data, variant.ladder)
    return out | ({"measure_seconds": time.perf_counter() - t} if variant.measures else {})


def study_runs(study: Study, seeds, variants=None, dataset: str = "mnist", quick: bool = False) -> list:
    """The batch runs of `variants` (default: all) x `seeds` on `dataset` (a variant with its own
    `seeds` runs only those it shares with `seeds`, or its first if none)."""
    from ..sweeps.runs import CallRun

    names = list(study.variants) if variants is None else list(variants)
    unknown = [n for n in names if n not in study.variants]
    if unknown:
        raise ValueError(f"unknown variants of {study.name}: {unknown}; known: {', '.join(study.variants)}")
    runs = []
    for name in names:
        v = study.variants[name]
        if v.datasets is not None and dataset not in v.datasets:
            continue
        own = list(seeds) if v.seeds is None else ([s for s in seeds if s in v.seeds] or [v.seeds[0]])
        for seed in own:
            kwargs = {"study": study.name, "variant": name, "seed": seed, "dataset": dataset, "quick": quick,
                      "config": None if v.config is None else v.config.to_dict(), "split": study.split}
            runs.append(CallRun(dataset, f"{name} seed {seed}", "dreamflow_utils.studies:run_variant", kwargs))
    return runs


def load_records(study: Study, folder: Path | None = None, include_quick: bool = False) -> list[dict]:
    """The ok records under the study's folder (every data set), in file order; each gets
    "record_path", where it was read from."""
    folder = Path(folder or study.folder)
    out = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and r.get("status", "ok") == "ok" and r.get("variant") in study.variants \
                and (include_quick or not r.get("quick")):
            out.append(r | {"record_path": str(path)})
    return out


def load_bank(record) -> np.ndarray | None:
    """The trained shared bank (C_s, 81) stored beside a record, or None."""
    path = Path(record["record_path"]).with_name(f"{record['run_id']}.bank.npy") if "record_path" in record else None
    return np.load(path) if path is not None and path.is_file() else None
