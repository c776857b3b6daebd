"""Accuracy checks: what a correct run of a configuration reaches, from the committed records.

A notebook's `Run.report` checks its final accuracy against the committed records of the
configuration the notebook *declares* (its parameters cell, or the study variant it names), so a
notebook fails (under nbval too) when the science breaks, not only when the code raises.

* Real data (MNIST, Fashion-MNIST): the records are the ok, non-quick records of the studies under
  results/ whose configuration equals the declared one up to seed, Nep, eval_every and engine (the
  engines are equal to the reference). A run of Nep = k epochs is compared with the records'
  accuracy after epoch k, so a quick run (the first k epochs of the full run, see `quick_epochs`)
  is compared with epoch k of the committed runs: it *is* that epoch for the same seed.
* Where the run's seed has a record, the accuracy must equal it (runs are deterministic:
  `EXACT` allows float rounding only). Every run must also lie inside the band of all seeds.
* The band is a prediction interval for one more seed: mean ± t(n-1) * sqrt(1 + 1/n) * sd at the
  two-sided level `LEVEL` (3 sigma), with sd at least `sd_floor`: the smallest seed-to-seed sd
  measured among the committed models (`measured_sd_floor`), so a band is never narrower than any
  spread we have measured. A broken model (chance: 10%) or one a point worse than the committed
  one (where the seeds' sd is a few tenths) falls outside.
* The demo digits (scikit-learn's 8x8 digits, quick mode without MNIST): results/bands/
  demo_digits.csv, measured by ``python -m dreamflow_utils.studies.bands`` (the log's four
  configurations in quick mode, seeds 0-4); not comparable to MNIST.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..core.config import Config, non_default
from . import RESULTS as RESULTS_DIR
from . import get_study, load_records

LEVEL = 0.0027  # two-sided: the share of correct runs of a new seed that a band leaves out (3 sigma)
EXACT = 1e-9  # a seed's rerun equals its record up to float rounding of the accuracy
QUICK_LOW = 0.40  # quick mode trains until the committed band of the runs lies above this (chance: 0.10)
MIN_SEEDS = 3
STUDIES = ("reproduction", "symmetry", "frontier")
DEMO_CSV = Path("bands") / "demo_digits.csv"
_FREE = ("seed", "Nep", "eval_every", "engine", "jit_compile")  # fields that leave epoch k's accuracy unchanged


class AccuracyOutOfBand(AssertionError):
    """A run's accuracy differs from its committed records: the model did not learn as it should."""


class NotChecked(AssertionError):
    """A numbered experiment notebook ran in quick mode without committed records to check it against."""


class ConfigMismatch(AssertionError):
    """A run trained another configuration than the notebook declared."""


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    mean: float
    sd: float  # measured over the seeds
    floor: float  # the sd the band uses at least
    n: int
    source: str
    seeds: dict  # {seed: accuracy} of the records (empty on the demo digits)

    @property
    def width(self) -> float:
        """The half-width in sds: t(n-1) at LEVEL times sqrt(1 + 1/n)."""
        from scipy.stats import t
        return float(t.ppf(1 - LEVEL / 2, self.n - 1) * math.sqrt(1 + 1 / self.n))

    def describe(self) -> str:
        return (f"band [{100 * self.low:.2f}, {100 * self.high:.2f}]% = mean {100 * self.mean:.2f} ± {self.width:.2f} "
                f"x max(sd {100 * self.sd:.3f}, floor {100 * self.floor:.3f}) over {self.n} seeds ({self.source})")

    def check(self, accuracy: float, seed: int | None = None) -> str:
        """The verdict; raises AccuracyOutOfBand when `accuracy` differs from `seed`'s record or lies
        outside [low, high]."""
        if seed in self.seeds and abs(accuracy - self.seeds[seed]) > EXACT:
            raise AccuracyOutOfBand(f"test accuracy {100 * accuracy:.2f}% differs from the committed record of seed "
                                    f"{seed} ({100 * self.seeds[seed]:.2f}%): runs are deterministic; "
                                    + self.describe())
        if not self.low <= accuracy <= self.high:
            raise AccuracyOutOfBand(f"test accuracy {100 * accuracy:.2f}% is outside the " + self.describe())
        same = f"equal to the record of seed {seed}, " if seed in self.seeds else ""
        return f"test accuracy {100 * accuracy:.2f}% is {same}inside the " + self.describe()


def band_of(accuracies, source: str, floor: float = 0.0, seeds: dict | None = None) -> Band | None:
    """The prediction band of `accuracies` (None with fewer than MIN_SEEDS)."""
    acc = [a for a in accuracies if a is not None]
    if len(acc) < MIN_SEEDS:
        return None
    m, sd = statistics.mean(acc), statistics.stdev(acc)
    band = Band(0.0, 1.0, m, sd, floor, len(acc), source, dict(seeds or {}))
    half = band.width * max(sd, floor)
    return Band(max(0.0, m - half), min(1.0, m + half), m, sd, floor, len(acc), source, dict(seeds or {}))


def _key(config: dict) -> dict:
    """The fields that make the model: seed and data-set-free fields aside, defaults dropped
    (records made before a field existed match)."""
    return {k: v for k, v in non_default(config).items() if k not in _FREE}


def _records(results_dir) -> tuple:
    """(study, record) of every ok, non-quick record of STUDIES under results_dir (read again when a
    record file changed)."""
    files = sorted(p for study in STUDIES for p in (Path(results_dir) / study).glob("*/*.json"))
    return _read_records(str(results_dir), tuple((str(p), p.stat().st_mtime_ns) for p in files))


@lru_cache(maxsize=4)
def _read_records(results_dir: str, signature: tuple) -> tuple:
    return tuple((study, r) for study in STUDIES for r in load_records(get_study(study), Path(results_dir) / study))


def committed_accuracies(config: Config, results_dir=RESULTS_DIR) -> dict[int, float]:
    """{seed: accuracy after epoch config.Nep} of the committed records of `config` (see the module)."""
    want, k = _key(config.to_dict()), config.Nep
    out = {}
    for _, r in _records(results_dir):
        c, accs = r.get("config"), r.get("epoch_accuracies") or []
        if r.get("dataset", "mnist") == config.dataset and r.get("split", "test") == "test" \
                and isinstance(c, dict) and _key(c) == want and len(accs) >= k and accs[k - 1] is not None:
            out.setdefault(r["seed"], accs[k - 1])
    return out


def measured_sd_floor(results_dir=RESULTS_DIR) -> float:
    """The smallest seed-to-seed sd of the final accuracy among the committed models with at least
    5 seeds (models whose seeds all give the same accuracy, i.e. constant predictions, left out)."""
    finals: dict = {}
    for study, r in _records(results_dir):
        accs = r.get("epoch_accuracies") or []
        if accs and accs[-1] is not None:
            finals.setdefault((study, r.get("dataset"), r.get("split"), r.get("variant")), []).append(accs[-1])
    sds = [statistics.stdev(v) for v in finals.values() if len(v) >= 5 and statistics.stdev(v) > 0]
    return min(sds, default=0.01)


def demo_accuracies(config: Config, results_dir=RESULTS_DIR) -> dict[int, float]:
    """{seed: accuracy} of `config` (up to seed) in results/bands/demo_digits.csv."""
    path = Path(results_dir) / DEMO_CSV
    if not path.is_file():
        return {}
    want = _key(config.to_dict())
    with path.open() as f:
        return {int(r["seed"]): float(r["test_accuracy"]) for r in csv.DictReader(f)
                if _key(json.loads(r["config"])) == want and int(r["Nep"]) == config.Nep}


def accuracy_band(config: Config, results_dir=RESULTS_DIR, demo: bool = False) -> Band | None:
    """The band of `config` (as trained: after quick mode) on real data, or on the demo digits."""
    floor = measured_sd_floor(results_dir)
    if demo:
        acc = demo_accuracies(config, results_dir)
        return band_of(acc.values(), f"{DEMO_CSV}: demo digits, not comparable to MNIST", floor, acc)
    acc = committed_accuracies(config, results_dir)
    return band_of(acc.values(), f"committed records under results/, after epoch {config.Nep}", floor, acc)


def quick_epochs(config: Config, results_dir=RESULTS_DIR) -> int:
    """The epochs a quick run of `config` trains: the fewest k whose committed band after epoch k lies
    above QUICK_LOW (a model after one epoch can still be near chance: the N2 = 2000 banks), at most
    config.Nep; 1 without records."""
    for k in range(1, config.Nep + 1):
        band = accuracy_band(config.replace(Nep=k), results_dir)
        if band is not None and band.low >= QUICK_LOW:
            return k
    return 1


def measure_demo(seeds=range(5)) -> list[dict]:
    """The log's four configurations in quick mode on the demo digits, one row per seed."""
    from ..core.data import load_digits_demo
    from ..core.experiments import LOG_EXPERIMENTS
    from ..core.quick import quick_config
    from ..core.train import train

    data = load_digits_demo()
    rows = []
    for name, (config, _, _) in LOG_EXPERIMENTS.items():
        for seed in seeds:
            c = quick_config(config.replace(seed=seed), len(data[0][0]))
            cfg = c.to_dict()
            rows.append({"experiment": name, "seed": seed, "Nep": c.Nep, "test_accuracy": train(c, data).test_accuracy,
                         "config": json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True)})
    return rows


def main(argv=None) -> int:
    """python -m dreamflow_utils.studies.bands [RESULTS_DIR]: measure the demo-digits band (results/bands/demo_digits.csv)."""
    import argparse
    import io

    from ..core.files import atomic_write
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.studies.bands", description=main.__doc__)
    p.add_argument("results_dir", nargs="?", default=str(RESULTS_DIR))
    a = p.parse_args(argv)
    rows = measure_demo()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["experiment", "seed", "Nep", "test_accuracy", "config"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # accuracies in full: a seed's rerun must equal its row
    out = atomic_write(Path(a.results_dir) / DEMO_CSV, buf.getvalue())
    print(f"{out}: {len(rows)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
