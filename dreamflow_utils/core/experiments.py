"""The log's four experiments, the accuracies and seconds it reported for them, and their notebooks."""
from .config import Config, file_stem, model_name

_LOG = [
    # (config, the log's test accuracy, the log's seconds per epoch), in the log's order
    (Config(layout="overlap", C_s=10, N2=100), 0.6907, 66),
    (Config(layout="block", C_s=10, N2=100), 0.6818, 45),
    (Config(layout="block", C_s=20, N2=200), 0.7334, 101),
    (Config(layout="block", C_s=100, N2=100), 0.682, 450),
]
LOG_EXPERIMENTS = {model_name(c): (c, acc, sec) for c, acc, sec in _LOG}  # "log block C_s=20 N2=200": ...
# the notebook that reproduces each, by name: "01_log_overlap_C_s=10_N2=100"
LOG_NOTEBOOKS = {name: f"{i:02d}_{file_stem(name)}" for i, name in enumerate(LOG_EXPERIMENTS, start=1)}
