"""A run repeated in another process, with other numbers of numba and BLAS threads, gives
bit-identical weights and accuracies (the README's promise that the papermill batch, `reproduce`
and a notebook agree per seed: the compiled engines split only independent work between threads,
and BLAS, whose float32 and float64 products round differently on 1, 2 or 3 threads, runs on one
thread while a run trains)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numba

from dreamflow_utils import Config

CONFIGS = {
    "clusters": Config(layout="overlap", C_s=5, N2=30, T_s=1000, Nep=2, B=20, xi=0.1, seed=4),
    "shared": Config(layer1="shared", layout="stride", stride=4, C_s=6, N2=30, T_s=1000, Nep=2, B=20, xi=0.1,
                     norm=True, shift=2, shuffle=True, seed=4),
    "krotov": Config(layer1="krotov", layout=None, C_s=40, N2=30, T_s=1000, Nep=3, B=20, kh_epochs=2, kh_k=2,
                     norm=True, seed=4),
    "krotov float32": Config(layer1="krotov", layout=None, C_s=300, N2=100, T_s=1000, Nep=3, B=50, kh_epochs=2,
                             kh_k=3, norm=True, dtype="float32", shuffle=True, seed=4),
}
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from helpers import learnable_data
from test_determinism import fingerprints
print("\\n".join(fingerprints(learnable_data(1000, 300)).values()))
"""


def fingerprints(data):
    """{name: "name sha256-of-the-weights per-epoch-accuracies"} of every run of CONFIGS on `data`."""
    from dreamflow_utils.core.train import train
    out = {}
    for name, config in CONFIGS.items():
        r = train(config, data)
        out[name] = f"{name} {hashlib.sha256(b''.join(w.tobytes() for w in r.weights)).hexdigest()} " \
                    f"{r.epoch_accuracies!r}"
    return out


def test_a_run_in_another_process_is_bit_identical():
    from helpers import learnable_data
    from threadpoolctl import threadpool_limits
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            here = fingerprints(learnable_data(1000, 300))
    finally:
        numba.set_num_threads(threads)
    script = SCRIPT.format(tests=str(Path(__file__).parent))
    env = os.environ | {"NUMBA_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "2"}  # 3 and 2 threads there, 1 here
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True,
                         env=env)
    assert out.stdout.split("\n")[:len(CONFIGS)] == list(here.values())

