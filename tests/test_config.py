import json
import math

import numpy as np
import pytest

from dreamflow_utils import Config
from dreamflow_utils.config import check_memory, memory_estimate


def test_defaults_are_the_logs():
    c = Config()
    assert (c.layout, c.C_s, c.N2, c.T_s, c.Nep, c.B, c.xi, c.prec) == ("overlap", 10, 100, 60000, 10, 100, 0.01, 1e-20)
    assert (c.engine, c.wta, c.n_positions, c.N1, c.layer1, c.dataset) == ("numpy", "log", 13, 130, "clusters", "mnist")
    assert Config(layout="block", C_s=20).N1 == 180
    assert c.w1_shape == (784, 130)


def test_the_shared_model_is_a_config():
    c = Config(layer1="shared", layout="stride", stride=4, C_s=20, N2=2000, norm=True, xi=0.05, Nep=5, seed=0)
    assert (c.wta, c.n_positions, c.N1, c.w1_shape) == ("cluster", 25, 500, (81, 20))
    assert Config(layer1="shared", layout="stride", stride=2, C_s=3, pool=2).N1 == 3 * 25
    assert Config(layer1="shared", layout="stride", stride=3, C_s=3, pool=2).N1 == 3 * 16  # 7x7 -> 4x4 cells
    assert Config(layer1="shared", layout="overlap", C_s=3).N1 == 39
    assert Config(**c.to_dict()) == c
    # switching the layer back takes the layer's own wta
    assert c.replace(layer1="clusters", layout="block", stride=None, norm=False).wta == "log"


@pytest.mark.parametrize("changes,name", [
    ({"layout": "grid"}, "layout"), ({"layout": 9}, "layout"),
    ({"engine": "torch"}, "engine"),
    ({"wta": "global"}, "wta"),
    ({"C_s": 0}, "C_s"), ({"C_s": -3}, "C_s"), ({"C_s": 2.5}, "C_s"), ({"C_s": True}, "C_s"),
    ({"N2": 0}, "N2"), ({"T_s": 0}, "T_s"), ({"Nep": 0}, "Nep"), ({"B": 0}, "B"),
    ({"B": 200, "T_s": 100}, "B"),
    ({"xi": 0}, "xi"), ({"xi": math.nan}, "xi"), ({"xi": math.inf}, "xi"), ({"xi": -0.1}, "xi"),
    ({"prec": math.nan}, "prec"), ({"prec": 0}, "prec"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"dtype": "float16", "engine": "tensorflow"}, "dtype"),
    ({"dtype": "float32"}, "dtype"),
    ({"jit_compile": "yes", "engine": "tensorflow"}, "jit_compile"),
    ({"layer1": "conv"}, "layer1"), ({"dataset": "cifar"}, "dataset"),
    ({"shift": -1}, "shift"), ({"vote": 0}, "vote"), ({"xi_decay": 1.5}, "xi_decay"), ({"xi_decay": 0}, "xi_decay"),
    ({"norm": 1}, "norm"),
    # options that do not apply where they are set
    ({"stride": 4}, "stride"), ({"layout": "stride"}, "stride"), ({"layout": "stride", "stride": 20}, "stride"),
    ({"pool": 2}, "pool"), ({"norm": True}, "norm"), ({"code": "onehot"}, "code"), ({"label_gain": 2.0}, "label_gain"),
    ({"unit_norm": True}, "unit_norm"), ({"pool_mode": "sum"}, "pool_mode"),
    ({"layer1": "shared", "wta": "log"}, "wta"),
    ({"layer1": "shared", "engine": "tensorflow"}, "tensorflow"),
    ({"layer1": "shared", "pool": 2}, "pool"),  # the overlap layout is no square grid
    ({"engine": "tensorflow", "layout": "stride", "stride": 4}, "tensorflow"),
    ({"engine": "tensorflow", "vote": 3}, "vote"),
])
def test_bad_values_name_the_parameter(changes, name):
    with pytest.raises(ValueError, match=name):
        Config(**changes)


def test_replace_and_dict_round_trip():
    c = Config(layout="block", C_s=100, seed=3)
    assert Config(**c.to_dict()) == c
    assert c.replace(seed=4).seed == 4


def test_T_s_must_be_a_multiple_of_B():
    with pytest.raises(ValueError, match=r"T_s=1999 is not a multiple of B=100.*last 99 samples.*T_s=1900"):
        Config(T_s=1999)
    assert Config(T_s=2000).T_s == 2000


def test_numpy_scalars_become_python_scalars():
    c = Config(C_s=np.int64(12), N2=np.int32(7), xi=np.float32(0.5), seed=np.uint8(3), norm=False,
               layout=np.str_("block"))
    assert type(c.C_s) is int and type(c.N2) is int and type(c.xi) is float and type(c.seed) is int
    assert json.loads(json.dumps(c.to_dict()))["C_s"] == 12 and c.layout == "block"


def test_sizes_that_do_not_fit_in_memory_are_refused():
    with pytest.raises(ValueError, match=r"N2=1000000000.*GiB"):
        Config(N2=10**9)
    with pytest.raises(ValueError, match=r"C_s="):
        Config(C_s=10**8)
    c = Config(layout="block", C_s=100, N2=2000)
    assert 0 < sum(memory_estimate(c).values()) < 2**30
    with pytest.raises(ValueError, match="w2"):
        check_memory(c, available=2**20)
