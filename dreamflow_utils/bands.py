"""Accuracy bands: what a correct run of a configuration reaches, from the committed records.

A notebook's `run.report` checks its final accuracy against the band of its configuration, so
a notebook fails (under nbval too) when the science breaks, not only when the code raises.

* Real data (MNIST, Fashion-MNIST): the band comes from the ok, non-quick records of the
  studies under results/ (reproduction, symmetry, frontier) whose configuration equals the
  run's up to seed, Nep, eval_every and engine (the engines are equal to the reference). A run
  of Nep = k epochs is compared with the records' accuracy after epoch k, so a quick run
  (one epoch of all 60000 images) is compared with the first epoch of the committed 10-epoch
  runs: it *is* that epoch for the same seed.
* The demo digits (scikit-learn's 8x8 digits, quick mode without MNIST): results/bands/
  demo_digits.csv, measured by ``python -m dreamflow_utils.bands`` (the log's four
  configurations in quick mode, seeds 0-4); not comparable to MNIST.

The band is mean ± K_SD standard deviations over the seeds (sd at least SD_FLOOR): a correct run
of another seed falls inside it with probability ~99.7% (for a normal spread; the committed sd
are 0.5-2.7 points on MNIST, up to 7 on the demo digits), and the notebooks' seed is one of the
committed seeds (a run is deterministic), while a broken model (chance: 10%) falls far outside.
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .studies import RESULTS as RESULTS_DIR
from .studies import get_study, load_records

K_SD = 3
SD_FLOOR = 0.01
STUDIES = ("reproduction", "symmetry", "frontier")
DEMO_CSV = Path("bands") / "demo_digits.csv"
_FREE = ("seed", "Nep", "eval_every", "engine", "jit_compile")  # fields that leave epoch k's accuracy unchanged


class AccuracyOutOfBand(AssertionError):
    """A run's accuracy lies outside the band of its configuration: the model did not learn as it should."""


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    mean: float
    sd: float
    n: int
    source: str

    def check(self, accuracy: float) -> str:
        """The one-line verdict; raises AccuracyOutOfBand when `accuracy` is outside [low, high]."""
        text = (f"accuracy band [{100 * self.low:.2f}, {100 * self.high:.2f}]% = mean {100 * self.mean:.2f} "
                f"± {K_SD} x sd {100 * self.sd:.2f} over {self.n} seeds ({self.source})")
        if not self.low <= accuracy <= self.high:
            raise AccuracyOutOfBand(f"test accuracy {100 * accuracy:.2f}% is outside the {text}")
        return f"test accuracy {100 * accuracy:.2f}% is inside the {text}"


def band_of(accuracies, source: str) -> Band | None:
    """mean ± K_SD * max(sd, SD_FLOOR) of `accuracies` (None with fewer than 3)."""
    acc = [a for a in accuracies if a is not None]
    if len(acc) < 3:
        return None
    m, sd = statistics.mean(acc), max(statistics.stdev(acc), SD_FLOOR)
    return Band(max(0.0, m - K_SD * sd), min(1.0, m + K_SD * sd), m, sd, len(acc), source)


def _key(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _FREE}


def committed_accuracies(config: Config, results_dir=RESULTS_DIR) -> dict[int, float]:
    """{seed: accuracy after epoch config.Nep} of the committed records of `config` (see the module)."""
    want, k = _key(config.to_dict()), config.Nep
    out = {}
    for study in STUDIES:
        for r in load_records(get_study(study), Path(results_dir) / study):  # ok, not quick
            c, accs = r.get("config"), r.get("epoch_accuracies") or []
            if r.get("dataset", "mnist") == config.dataset and r.get("split", "test") == "test" \
                    and isinstance(c, dict) and _key(c) == want and len(accs) >= k and accs[k - 1] is not None:
                out.setdefault(r["seed"], accs[k - 1])
    return out


def demo_accuracies(config: Config, results_dir=RESULTS_DIR) -> list[float]:
    """Accuracies of `config` (up to seed) in results/bands/demo_digits.csv."""
    path = Path(results_dir) / DEMO_CSV
    if not path.is_file():
        return []
    want = _key(config.to_dict())
    with path.open() as f:
        return [float(r["test_accuracy"]) for r in csv.DictReader(f)
                if _key(json.loads(r["config"])) == want and int(r["Nep"]) == config.Nep]


def accuracy_band(config: Config, results_dir=RESULTS_DIR, demo: bool = False) -> Band | None:
    """The band of `config` (as trained: after quick mode) on real data, or on the demo digits."""
    if demo:
        return band_of(demo_accuracies(config, results_dir), f"{DEMO_CSV}: demo digits, not comparable to MNIST")
    acc = committed_accuracies(config, results_dir)
    return band_of(acc.values(), f"committed records under results/, after epoch {config.Nep}")


def measure_demo(seeds=range(5)) -> list[dict]:
    """The log's four configurations in quick mode on the demo digits, one row per seed."""
    from .data import load_digits_demo
    from .experiments import LOG_EXPERIMENTS
    from .quick import quick_config
    from .train import train

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
    """python -m dreamflow_utils.bands [RESULTS_DIR]: measure the demo-digits band (results/bands/demo_digits.csv)."""
    import argparse
    import io

    from .files import atomic_write
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.bands", description=main.__doc__)
    p.add_argument("results_dir", nargs="?", default=str(RESULTS_DIR))
    a = p.parse_args(argv)
    rows = measure_demo()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["experiment", "seed", "Nep", "test_accuracy", "config"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(r | {"test_accuracy": f"{r['test_accuracy']:.4f}"} for r in rows)
    out = atomic_write(Path(a.results_dir) / DEMO_CSV, buf.getvalue())
    print(f"{out}: {len(rows)} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
