"""The repository itself: no absolute path of any machine in a tracked file."""
import subprocess
from pathlib import Path

from dreamflow_utils.notebook import ABS_PATH

REPO = Path(__file__).parents[1]
ALLOWED = "abs-path: test input"  # a line carrying this marker holds such a path on purpose


def tracked_text_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in out.decode().split("\0"):
        path = REPO / name
        if name and path.is_file() and path.suffix not in {".png", ".npz", ".npy", ".gz"}:
            try:
                yield name, path.read_text()
            except UnicodeDecodeError:
                continue


def test_no_machine_paths_in_tracked_files():
    found = []
    for name, text in tracked_text_files():
        for number, line in enumerate(text.splitlines(), 1):
            m = ABS_PATH.search(line)
            if m and ALLOWED not in line:
                found.append(f"{name}:{number}: {m.group(0)}")
    assert found == [], "absolute machine paths: " + ", ".join(found[:20])
