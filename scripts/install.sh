#!/usr/bin/env bash
# Install this repository (editable) into the environment of a Python: scripts/install.sh PYTHON [EXTRAS]
# e.g. scripts/install.sh .venv-ci/bin/python dev. uv resolves pyproject.toml to the same packages as pip
# in about a third of the time (compiled to bytecode, as pip does); pip installs when uv cannot be had.
set -euo pipefail
py=$1
target=.${2:+[$2]}
cd "$(dirname "$0")/.."
if "$py" -m pip install -q uv && "$py" -m uv pip install -q --compile-bytecode --python "$py" -e "$target"; then
    exit 0
fi
echo "installing with pip (uv could not be installed or failed)" >&2
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q -e "$target"
