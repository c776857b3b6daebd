"""The accuracy tests catch broken science: scripts/mutation_check.py applies five mutants (labels
shifted by one class, xi near 0, a constant prediction, a layer-1 or layer-2 winner-take-all
that picks the loser) to a copy of the package and checks that the learning test fails for each."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "mutation_check.py"


def test_every_mutant_is_caught():
    # the unmutated code passes the same test in this suite (tests/test_learning.py)
    out = subprocess.run([sys.executable, str(SCRIPT), "--no-baseline"], capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 of 5 mutants caught" in out.stdout
