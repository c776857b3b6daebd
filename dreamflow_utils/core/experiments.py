"""The log's four experiments and the accuracies it reported for them."""
from .config import Config

LOG_EXPERIMENTS = {
    # name: (config, the log's test accuracy, the log's seconds per epoch)
    "overlap_Cs10_N2100": (Config(layout="overlap", C_s=10, N2=100), 0.6907, 66),
    "block_Cs10_N2100": (Config(layout="block", C_s=10, N2=100), 0.6818, 45),
    "block_Cs20_N2200": (Config(layout="block", C_s=20, N2=200), 0.7334, 101),
    "block_Cs100_N2100": (Config(layout="block", C_s=100, N2=100), 0.682, 450),
}
