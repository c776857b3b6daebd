"""Mutation check: the accuracy tests fail when the science breaks.

Applies each mutant (one exact replacement in the package) to a copy of the repository, runs
only the tests that should catch it, and checks that they fail. The unmutated copy must pass
the same tests first. Exit 1 if a mutant survives or no longer applies (the code it targets
changed: update the mutant).

    python scripts/mutation_check.py [--mutants NAME,NAME] [--full] [--jobs 2] [--no-baseline]
    python scripts/mutation_check.py --notebooks [--mutants NAME,NAME] [--jobs 2]

By default each mutant meets the learning test of the numpy engine (what tests/test_mutation.py
runs in CI); --full adds the quick MNIST run against its committed band and notebook 02 under
nbval (slower; needs MNIST). --notebooks runs the notebook mutants (NOTEBOOK_MUTANTS) through the
numbered notebooks under nbval in quick mode on real MNIST, each over the notebooks that train
what it breaks, and prints how many cells of each notebook fail (about 6 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPY = ("dreamflow_utils", "tests", "notebooks", "conftest.py", "pyproject.toml", "results")
MUTANTS = {  # name: (file, original text (must occur once), mutant text)
    "labels shifted by one class inside train": (
        "dreamflow_utils/core/train.py",
        "engine.train_batches(xe[start * config.B:stop * config.B], ye[start * config.B:stop * config.B])",
        "engine.train_batches(xe[start * config.B:stop * config.B], (ye[start * config.B:stop * config.B] + 1) % 10)"),
    "xi close to 0": (
        "dreamflow_utils/engines/numpy_engine.py", "self.xi = config.xi", "self.xi = config.xi * 1e-9"),
    "prediction fixed to one class": (
        "dreamflow_utils/engines/base.py", "return (scores[np.arange(n), j][:, None] * w3.T[j]).argmax(axis=1)",
        "return np.zeros(n, dtype=np.int64)"),
    "layer-1 winner-take-all picks the loser": (
        "dreamflow_utils/engines/kernels.py", "best = np.argmax(a)  # the first of equal maxima", "best = np.argmin(a)  #"),
    "layer-2 winner-take-all picks the loser": (
        "dreamflow_utils/engines/kernels.py", "        j = np.argmax(l2_in[b])\n        s = l2_in[b, j]",
        "        j = np.argmin(l2_in[b])\n        s = l2_in[b, j]"),
}
TRAINING = ["notebooks/01_log_overlap_C_s=10_N2=100.ipynb", "notebooks/02_log_block_C_s=10_N2=100.ipynb",
            "notebooks/03_log_block_C_s=20_N2=200.ipynb", "notebooks/04_log_block_C_s=100_N2=100.ipynb",
            "notebooks/06_where_accuracy_is_lost.ipynb", "notebooks/07_weight_sharing.ipynb",
            "notebooks/08_shift_training_and_baselines.ipynb", "notebooks/10_shared_bank.ipynb",
            "notebooks/11_frontier.ipynb"]  # the notebooks that train a model and check it
SHARED = [nb for nb in TRAINING if nb.split("/")[1][:2] in ("07", "10", "11")]  # those that train a shared bank
NOTEBOOK_MUTANTS = {  # name: (file, original text (must occur once), mutant text, notebooks)
    "labels shifted by one class inside train": (*MUTANTS["labels shifted by one class inside train"], TRAINING),
    "train runs with a near-zero step size": (
        "dreamflow_utils/core/train.py", "engine = make_engine(config, initial)",
        "engine = make_engine(config.replace(xi=config.xi * 1e-9), initial)", TRAINING),
    "the weight-shared engine's step size near zero": (
        "dreamflow_utils/engines/shared_engine.py", "self.xi = config.xi", "self.xi = config.xi * 1e-9", SHARED),
    "the shared bank's layer-1 update near zero while layer 2 learns": (
        "dreamflow_utils/engines/shared_kernels.py", "_scale(xi, m3, prec), _scale(xi, m1, prec)",
        "_scale(xi, m3, prec), _scale(xi * 1e-9, m1, prec)", SHARED),
    "prediction fixed to one class": (*MUTANTS["prediction fixed to one class"], TRAINING),
}
TESTS = ["tests/test_learning.py::test_training_beats_chance_by_a_margin[numpy-block]"]
FULL = ["tests/test_bands.py::test_a_quick_run_is_the_first_epochs_of_the_committed_run",
        "--nbval-lax", "notebooks/02_log_block_C_s=10_N2=100.ipynb"]


def make_copy(root: Path) -> Path:
    for name in COPY:
        src, dst = REPO / name, root / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("quick"))  # keeps numba's cache (mtimes too)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return root


def mutate(root: Path, file: str, original: str, mutant: str) -> None:
    path = root / file
    text = path.read_text()
    if text.count(original) != 1:
        raise SystemExit(f"mutant no longer applies: {original!r} occurs {text.count(original)} times in {file}")
    path.write_text(text.replace(original, mutant))


def run_tests(root: Path, args: list[str]) -> tuple[int, list[str], float]:
    """pytest in the copy (its package first on the path, for nbval's kernels too): exit code,
    the failed tests, seconds."""
    env = os.environ | {"PYTHONPATH": str(root), "DREAMFLOW_QUICK": "1"}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *args],
                         cwd=root, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", out.stdout, re.M)
    return out.returncode, failed, time.perf_counter() - t


def notebook_check(names, jobs: int, baseline: bool) -> int:
    """Each notebook mutant through its notebooks under nbval (quick mode): failing cells per notebook."""
    survived = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        if baseline:
            code, failed, sec = run_tests(make_copy(Path(tmp) / "clean"), ["--nbval-lax", *TRAINING])
            print(f"unmutated notebooks: {'pass' if code == 0 else 'FAIL'} ({sec:.0f} s)", flush=True)
            if code != 0:
                print(f"the notebooks fail without a mutant ({failed}): fix them first", file=sys.stderr)
                return 1

        def one(i_name):
            i, name = i_name
            root = make_copy(Path(tmp) / f"mutant{i}")
            file, original, mutant, notebooks = NOTEBOOK_MUTANTS[name]
            mutate(root, file, original, mutant)
            return name, notebooks, *run_tests(root, ["--nbval-lax", *notebooks])

        with ThreadPoolExecutor(jobs) as pool:
            for name, notebooks, code, failed, sec in pool.map(one, enumerate(names)):
                per = {nb: sum(f.startswith(nb + "::") for f in failed) for nb in notebooks}
                caught = code == 1 and all(per.values())
                print(f"{name}: {sum(per.values())} failing cells ({sec:.0f} s): "
                      + ", ".join(f"{Path(nb).stem} {n}" for nb, n in per.items())
                      + ("" if caught else "  SURVIVED in " + ", ".join(Path(nb).stem for nb, n in per.items() if not n)),
                      flush=True)
                if not caught:
                    survived.append(name)
    print(f"{len(names) - len(survived)} of {len(names)} notebook mutants caught by every notebook they meet")
    return 1 if survived else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", help="comma-separated names (default: all): " + "; ".join(MUTANTS))
    p.add_argument("--full", action="store_true", help="also the quick MNIST run and notebook 02 under nbval")
    p.add_argument("--jobs", type=int, default=2, help="mutants tested side by side (default 2)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the check that the unmutated copy passes (the test suite runs those tests anyway)")
    p.add_argument("--notebooks", action="store_true", help="the notebook mutants through the notebooks (nbval)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    known = NOTEBOOK_MUTANTS if a.notebooks else MUTANTS
    names = list(known) if a.mutants is None else [n.strip() for n in a.mutants.split(",")]
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown mutants {unknown}; known: {list(known)}")
    if a.notebooks:
        return notebook_check(names, a.jobs, not a.no_baseline)
    args = TESTS + (FULL if a.full else [])
    survived = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        if not a.no_baseline:
            code, failed, sec = run_tests(make_copy(Path(tmp) / "clean"), args)
            print(f"unmutated copy: {'pass' if code == 0 else 'FAIL'} ({sec:.0f} s)", flush=True)
            if code != 0:
                print(f"the tests fail without a mutant ({failed}): fix them first", file=sys.stderr)
                return 1

        def one(i_name):
            i, name = i_name
            root = make_copy(Path(tmp) / f"mutant{i}")
            mutate(root, *MUTANTS[name])
            return name, *run_tests(root, args)

        with ThreadPoolExecutor(a.jobs) as pool:  # each mutant in its own copy and pytest process
            for name, code, failed, sec in pool.map(one, enumerate(names)):
                caught = code == 1 and failed
                print(f"{name}: {'caught by ' + ', '.join(failed) if caught else f'SURVIVED (pytest exit {code})'}"
                      f" ({sec:.0f} s)", flush=True)
                if not caught:
                    survived.append(name)
    print(f"{len(names) - len(survived)} of {len(names)} mutants caught")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
