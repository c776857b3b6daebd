#!/usr/bin/env bash
# The main job: reproduce the whole DreamFlow Local log from a fresh clone.
#
#   scripts/reproduce.sh            # or: SEEDS=0-9 JOBS=1 scripts/reproduce.sh
#
# 1. creates .venv and installs the package (scripts/install.sh: uv, else pip; TensorFlow is the extra ".[tensorflow]")
#    if needed;
# 2. reads DREAMFLOW_QUICK exactly as Python does (dreamflow_utils.core.quick.quick_mode:
#    1/true/yes/on = quick, unset/0/false/no/off = full; anything else: exit 2, nothing done);
# 3. checks that MNIST is reachable ($DREAMFLOW_MNIST, default ../shared/data/mnist if it
#    exists, else Keras' cache); if not, says how to supply it and exits with status 2;
# 4. runs the log's four experiments (notebooks/01-04) x seeds 0-4 through the batch
#    (python -m dreamflow_utils.sweeps.batch: an embedded Dask cluster of $JOBS worker processes):
#    executed notebooks and records in runs/, the table in $CSV (results/reproduction/notebook_runs.csv);
#    finished runs are never redone, so rerunning after an interruption resumes;
# 5. renders notebooks 01-04 in place (full run, seed 0; skipped when already rendered from
#    the same sources) with their figures in figures/, then notebooks/05_summary.ipynb
#    (table and figure of $CSV);
# 6. prints the time it took.
# With DREAMFLOW_QUICK=1 it is a quick check instead: 1 epoch of the 60000 samples, everything
# under runs/quick/ (the committed notebooks, figures/ and results/ are left alone).
# DRY_RUN=1 only says what it would do (the batch's --dry-run) and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
CSV_MAIN=results/reproduction/notebook_runs.csv     # the committed table of the main job
SEEDS=${SEEDS:-0-4}
JOBS=${JOBS:-2}
PY=${PY:-.venv/bin/python}

quietly() {  # run a command; show its output only when it fails
    local log; log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
    rm -f "$log"
}

if [ ! -x "$PY" ]; then
    echo "== creating .venv and installing dreamflow_utils (the installer's log is shown only if it fails)"
    python3 -m venv .venv
    PY=.venv/bin/python
    quietly scripts/install.sh "$PY"
elif ! "$PY" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('dreamflow_utils', 'papermill', 'distributed')))"; then
    echo "== installing dreamflow_utils into .venv"
    quietly scripts/install.sh "$PY"
fi

# quick or full, decided by Python's own parser: no second opinion in bash
if ! QUICK=$("$PY" -c '
import sys
from dreamflow_utils.core.quick import quick_mode
try:
    print(int(quick_mode()))
except ValueError as e:
    sys.exit(f"error: {e}; nothing was run")
'); then
    exit 2
fi

if [ "$QUICK" = 1 ]; then
    echo "== DREAMFLOW_QUICK=${DREAMFLOW_QUICK}: smoke test, results under runs/quick/ (not a reproduction)"
    export DREAMFLOW_QUICK=1
    RUNS=runs/quick; CSV=runs/quick/runs.csv; RENDER=(--out-dir runs/quick/notebooks --force)
else
    echo "== full run (DREAMFLOW_QUICK=${DREAMFLOW_QUICK:-<not set>}): the log's configuration"
    export DREAMFLOW_QUICK=0
    RUNS=runs; CSV=$CSV_MAIN; RENDER=()
fi
BATCH=(notebooks/0[1-4]_*.ipynb --seeds "$SEEDS" --jobs "$JOBS" --runs-dir "$RUNS" --csv "$CSV")

if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "== DRY_RUN=1: the batch would do this (records in $RUNS/, table in $CSV); nothing else is done"
    "$PY" -m dreamflow_utils.sweeps.batch "${BATCH[@]}" --dry-run
    exit 0
fi

if [ -z "${DREAMFLOW_MNIST:-}" ] && [ -d ../shared/data/mnist ]; then
    DREAMFLOW_MNIST=$(cd ../shared/data/mnist && pwd)
fi
[ -n "${DREAMFLOW_MNIST:-}" ] && export DREAMFLOW_MNIST
echo "== checking MNIST (DREAMFLOW_MNIST=${DREAMFLOW_MNIST:-<not set>})"
if ! "$PY" -m dreamflow_utils.notebook check-data; then
    cat >&2 <<'MSG'

The log's experiments need MNIST (the four IDX files train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz,
or a Keras mnist.npz). Supply it and rerun, e.g.:
    DREAMFLOW_MNIST=/path/to/mnist scripts/reproduce.sh
(or put mnist.npz in ~/.keras/datasets/). Nothing was run.
MSG
    exit 2
fi

echo "== batch: notebooks 01-04 x seeds $SEEDS, $JOBS at a time (records in $RUNS/, table in $CSV)"
"$PY" -m dreamflow_utils.sweeps.batch "${BATCH[@]}"

echo "== rendering notebooks 01-04 (seed 0) with their figures"
"$PY" -m dreamflow_utils.notebook render "${RENDER[@]}" --jobs "$JOBS" notebooks/0[1-4]_*.ipynb

echo "== rendering the summary"
if [ "$QUICK" = 1 ]; then
    "$PY" -m dreamflow_utils.notebook render --out-dir runs/quick/notebooks --force -p csv_path="$(pwd)/$CSV" \
        notebooks/05_summary.ipynb
else
    "$PY" -m dreamflow_utils.notebook render --force notebooks/05_summary.ipynb
fi

secs=$(( $(date +%s) - start ))
printf '== done in %dm%02ds: %s, notebooks/, figures/\n' $((secs / 60)) $((secs % 60)) "$CSV"
