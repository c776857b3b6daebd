"""Root pytest configuration, shared by the unit tests and nbval.

`python -m pytest --nbval-lax tests notebooks` runs every notebook in quick mode:
DREAMFLOW_QUICK=1 is inherited by the nbval kernels, and `dreamflow_utils.notebook.setup`
then trains on 60000 samples in all, one epoch of MNIST (figures go to figures/quick/, ignored by git),
and checks the accuracy against the committed records' band (dreamflow_utils.studies.bands).
Export DREAMFLOW_QUICK=0 to run the notebooks' full configuration under pytest instead.
"""
import os

os.environ.setdefault("DREAMFLOW_QUICK", "1")

# not notebooks to validate: the batch tests' fixtures, executed copies, checkpoints
collect_ignore_glob = ["tests/fixtures/*.ipynb", "runs/*", "**/.ipynb_checkpoints/*", "figures/*", "notebooks/.*"]
