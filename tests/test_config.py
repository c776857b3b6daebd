import math

import pytest

from dreamflow_utils import Config


def test_defaults_are_the_logs():
    c = Config()
    assert (c.layout, c.C_s, c.N2, c.T_s, c.Nep, c.B, c.xi, c.prec) == ("overlap", 10, 100, 60000, 10, 100, 0.01, 1e-20)
    assert (c.engine, c.wta, c.n_clusters, c.N1) == ("numpy", "log", 13, 130)
    assert Config(layout="block", C_s=20).N1 == 180


@pytest.mark.parametrize("changes,name", [
    ({"layout": "grid"}, "layout"),
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
])
def test_bad_values_name_the_parameter(changes, name):
    with pytest.raises(ValueError, match=name):
        Config(**changes)


def test_replace_and_dict_round_trip():
    c = Config(layout="block", C_s=100, seed=3)
    assert Config(**c.to_dict()) == c
    assert c.replace(seed=4).seed == 4
