"""Mutation check: the accuracy tests fail when the science breaks.

Applies each mutant (one exact replacement in the package) to a copy of the repository, runs
only the tests that should catch it, and checks that they fail. The unmutated copy must pass
the same tests first. Exit 1 if a mutant survives or no longer applies (the code it targets
changed: update the mutant).

    python scripts/mutation_check.py [--mutants NAME,NAME] [--full] [--jobs 2] [--no-baseline]

By default each mutant meets the learning test of the numpy engine (what tests/test_mutation.py
runs in CI); --full adds the quick MNIST run against its committed band and notebook 02 under
nbval (slower; needs MNIST).
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
COPY = ("dreamflow_utils", "tests", "notebooks", "conftest.py", "pyproject.toml", "results/reproduction",
        "results/bands")
MUTANTS = {  # name: (file, original text (must occur once), mutant text)
    "labels shifted by one class inside train": (
        "dreamflow_utils/train.py",
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
TESTS = ["tests/test_learning.py::test_training_beats_chance_by_a_margin[numpy-block]"]
FULL = ["tests/test_bands.py::test_a_quick_run_is_the_first_epoch_of_the_committed_run",
        "--nbval-lax", "notebooks/02_block_Cs10_N2100.ipynb"]


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", help="comma-separated names (default: all): " + "; ".join(MUTANTS))
    p.add_argument("--full", action="store_true", help="also the quick MNIST run and notebook 02 under nbval")
    p.add_argument("--jobs", type=int, default=2, help="mutants tested side by side (default 2)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the check that the unmutated copy passes (the test suite runs those tests anyway)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    names = list(MUTANTS) if a.mutants is None else [n.strip() for n in a.mutants.split(",")]
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        p.error(f"unknown mutants {unknown}; known: {list(MUTANTS)}")
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
