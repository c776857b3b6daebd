import json
import math
import re

import numpy as np
import pytest

from dreamflow_utils import Config
from dreamflow_utils.core.config import NOT_IN_NAME, OPTIONS, check_memory, file_stem, memory_estimate, model_name


def test_defaults_are_the_logs():
    c = Config()
    assert (c.layout, c.C_s, c.N2, c.T_s, c.Nep, c.B, c.xi, c.prec) == ("overlap", 10, 100, 60000, 10, 100, 0.01, 1e-20)
    assert (c.engine, c.wta, c.n_positions, c.N1, c.layer1, c.dataset) == ("numpy", "full_row", 13, 130, "clusters", "mnist")
    assert Config(layout="block", C_s=20).N1 == 180
    assert c.w1_shape == (784, 130)


def test_the_shared_model_is_a_config():
    c = Config(layer1="shared", layout="stride", stride=4, C_s=20, N2=2000, norm=True, xi=0.05, Nep=5, seed=0)
    assert (c.wta, c.n_positions, c.N1, c.w1_shape) == ("own_units", 25, 500, (81, 20))
    assert Config(layer1="shared", layout="stride", stride=2, C_s=3, pool=2).N1 == 3 * 25
    assert Config(layer1="shared", layout="stride", stride=3, C_s=3, pool=2).N1 == 3 * 16  # 7x7 -> 4x4 cells
    assert Config(layer1="shared", layout="overlap", C_s=3).N1 == 39
    assert Config(**c.to_dict()) == c
    # switching the layer back takes the layer's own wta
    assert c.replace(layer1="clusters", layout="block", stride=None, norm=False).wta == "full_row"


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
    *[({"layer1": "shared", "layout": "block", name: value}, name)
      for name, value in [("patch_norm", 1), ("pixels", -0.5), ("pixels", math.inf), ("pixels", True),
                          ("l2_winners", 0), ("l2_winners", 2.0), ("l2_winners", 100)]],  # 100: not < N2
    # options that do not apply where they are set
    ({"stride": 4}, "stride"), ({"layout": "stride"}, "stride"), ({"layout": "stride", "stride": 20}, "stride"),
    ({"pool": 2}, "pool"), ({"norm": True}, "norm"), ({"code": "onehot"}, "code"), ({"label_gain": 2.0}, "label_gain"),
    ({"unit_norm": True}, "unit_norm"), ({"pool_mode": "sum"}, "pool_mode"),
    ({"layer1": "shared", "wta": "full_row"}, "wta"),
    ({"layer1": "shared", "engine": "tensorflow"}, "tensorflow"),
    ({"layer1": "shared", "pool": 2}, "pool"),  # the overlap layout is no square grid
    ({"engine": "tensorflow", "layout": "stride", "stride": 4}, "tensorflow"),
    ({"engine": "tensorflow", "vote": 3}, "vote"),
])
def test_bad_values_name_the_parameter(changes, name):
    with pytest.raises(ValueError, match=name):
        Config(**changes)


CLUSTERS = dict(layout="block")
SHARED = dict(layer1="shared", layout="block")
KROTOV = dict(layer1="krotov", layout=None, kh_epochs=1, Nep=2)
NOT_HERE = [  # (layer, option, value, the whole message)
    *[(CLUSTERS, name, value, f"{name} applies to layer1 'shared' only; layer1='clusters' needs {off}, got {got}")
      for name, value, off, got in [("pool", 2, "pool=1", "2"), ("pool_mode", "sum", "pool_mode='max'", "'sum'"),
                                    ("code", "onehot", "code='value'", "'onehot'"),
                                    ("patch_norm", True, "patch_norm=False", "True"),
                                    ("pixels", 1.0, "pixels=0.0", "1.0")]],
    (dict(), "pool", 2, "pool applies to layer1 'shared' only; layer1='clusters' needs pool=1, got 2"),
    (KROTOV, "pool", 2, "pool applies to layer1 'shared' only; layer1='krotov' needs pool=1, got 2"),
    (KROTOV, "pool_mode", "sum", "pool_mode applies to layer1 'shared' only; layer1='krotov' needs pool_mode='max', "
                                 "got 'sum'"),
    (KROTOV, "code", "onehot", "code applies to layer1 'shared' only; layer1='krotov' needs code='value', got 'onehot'"),
    (KROTOV, "patch_norm", True, "patch_norm applies to layer1 'shared' only; layer1='krotov' needs patch_norm=False, "
                                 "got True"),
    (KROTOV, "pixels", 0.5, "pixels applies to layer1 'shared' only; layer1='krotov' needs pixels=0.0, got 0.5"),
    (CLUSTERS, "l2_winners", 3, "l2_winners applies to layer1 'shared' and 'krotov' only; layer1='clusters' needs "
                                "l2_winners=1, got 3"),
    (CLUSTERS, "norm", True, "norm applies to layer1 'shared' and 'krotov' only; layer1='clusters' needs norm=False, "
                             "got True"),
    (CLUSTERS, "label_gain", 2.0, "label_gain applies to layer1 'shared' and 'krotov' only; layer1='clusters' needs "
                                  "label_gain=1.0, got 2.0"),
    (CLUSTERS, "unit_norm", True, "unit_norm applies to layer1 'shared' and 'krotov' only; layer1='clusters' needs "
                                  "unit_norm=False, got True"),
    *[(layer, name, value, f"{name} applies to layer1 'krotov' only; layer1={layer['layer1']!r} needs {off}, got {got}")
      for layer in (dict(CLUSTERS, layer1="clusters"), SHARED)
      for name, value, off, got in [("kh_epochs", 1, "kh_epochs=None", "1"), ("kh_p", 2.0, "kh_p=3.0", "2.0"),
                                    ("kh_k", 3, "kh_k=7", "3"), ("kh_delta", 0.2, "kh_delta=0.4", "0.2"),
                                    ("kh_eps0", 0.02, "kh_eps0=0.04", "0.02"), ("kh_n", 3.0, "kh_n=4.5", "3.0"),
                                    ("kh_top", 20, "kh_top=0", "20"), ("kh_center", True, "kh_center=False", "True")]],
    (CLUSTERS, "dtype", "float32", "dtype applies to engine='tensorflow' and layer1='krotov' only; engine='numpy' "
                                   "with layer1='clusters' is float64"),
    (dict(CLUSTERS, engine="reference"), "dtype", "float32", "dtype applies to engine='tensorflow' and "
                                                             "layer1='krotov' only; engine='reference' with "
                                                             "layer1='clusters' is float64"),
    (SHARED, "dtype", "float32", "dtype applies to engine='tensorflow' and layer1='krotov' only; engine='numpy' "
                                 "with layer1='shared' is float64"),
    (CLUSTERS, "jit_compile", True, "jit_compile applies to engine='tensorflow' only; engine='numpy'"),
    (KROTOV, "jit_compile", True, "jit_compile applies to engine='tensorflow' only; engine='numpy'"),
    (CLUSTERS, "stride", 4, "stride applies to layout='stride' only; layout='block' has stride=None"),
    (dict(), "stride", 4, "stride applies to layout='stride' only; layout='overlap' has stride=None"),
    (KROTOV, "stride", 4, "stride applies to layout='stride' only; layout=None has stride=None"),
    (SHARED, "wta", "full_row", "wta='full_row' (the log's quirk) applies to layer1='clusters' only; layer1='shared' "
                                "competes among each position's own units (wta='own_units')"),
    (KROTOV, "wta", "full_row", "wta='full_row' (the log's quirk) applies to layer1='clusters' only; layer1='krotov' "
                                "competes among each position's own units (wta='own_units')"),
]
HERE = [  # (layer, option, value): the same options where they apply
    *[(SHARED, name, value) for name, value in [("pool", 2), ("pool_mode", "sum"), ("code", "onehot"), ("norm", True),
                                                ("label_gain", 2.0), ("unit_norm", True), ("patch_norm", True),
                                                ("pixels", 1.0), ("l2_winners", 3)]],
    *[(KROTOV, name, value) for name, value in [("norm", True), ("label_gain", 2.0), ("unit_norm", True),
                                                ("l2_winners", 3),
                                                ("kh_epochs", 1), ("kh_p", 2.0), ("kh_k", 3), ("kh_delta", 0.2),
                                                ("kh_eps0", 0.02), ("kh_n", 3.0), ("kh_top", 5), ("kh_center", True),
                                                ("dtype", "float32")]],
    (dict(CLUSTERS, engine="tensorflow"), "dtype", "float32"), (dict(CLUSTERS, engine="tensorflow"), "jit_compile", True),
    (dict(layout="stride"), "stride", 4), (dict(SHARED, layout="stride"), "stride", 4),
    (CLUSTERS, "wta", "full_row"), (CLUSTERS, "wta", "own_units"), (SHARED, "wta", "own_units"),
]


def case_id(layer, name):
    c = {**dict(layer1="clusters", layout="overlap", engine="numpy"), **layer}
    return f"{c['layer1']}-{c['layout']}-{c['engine']}-{name}"


@pytest.mark.parametrize("layer,name,value,message", NOT_HERE, ids=[case_id(c[0], c[1]) for c in NOT_HERE])
def test_an_option_is_refused_where_it_does_not_apply(layer, name, value, message):
    """The whole message: it names the option, where it applies and the value that means "off"."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Config(**{**layer, name: value})


@pytest.mark.parametrize("layer,name,value", HERE, ids=[case_id(c[0], c[1]) for c in HERE])
def test_an_option_is_taken_where_it_applies(layer, name, value):
    assert getattr(Config(**{**layer, name: value}), name) == value


def test_every_research_option_is_checked_where_it_does_not_apply():
    refused = {(name, layer.get("layer1", "clusters")) for layer, name, _, _ in NOT_HERE}
    for name, (layers, _) in OPTIONS.items():
        assert {(name, layer) for layer in ("clusters", "shared", "krotov") if layer not in layers} <= refused, name
    assert {"dtype", "jit_compile", "stride", "wta"} <= {name for name, _ in refused}


def test_l2_winners_must_be_smaller_than_N2():
    with pytest.raises(ValueError, match=r"^l2_winners=5 must be smaller than N2=5 \(the layer-2 units that keep "
                                         r"their inputs in training\)$"):
        Config(**SHARED, N2=5, l2_winners=5)
    assert Config(**KROTOV, N2=5, l2_winners=4).l2_winners == 4
    assert Config(**SHARED, N2=1).N2 == 1  # the log's single winner needs no other unit


def test_pixels_add_the_side_channel_to_layer_2s_input():
    """pixels > 0: N1, w2 and the memory estimate grow by the 196 values of the side channel."""
    from dreamflow_utils.core.model import init_weights
    c = Config(layer1="shared", layout="stride", stride=4, C_s=20, N2=30, pixels=0.5)
    assert c.N1 == 500 + 196 and c.w1_shape == (81, 20) and init_weights(c).w2.shape == (696, 30)
    assert c.replace(pixels=0.0).N1 == 500 and c.replace(pool=2).N1 == 20 * 9 + 196
    assert memory_estimate(c)["w2 (N1 x N2: C_s, N2)"] == 4 * 8 * 696 * 30
    assert Config(**c.to_dict()) == c


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


def test_a_model_is_named_by_its_layer_and_the_settings_that_differ_from_the_logs():
    assert model_name(Config(layout="block", C_s=20, N2=200)) == "log block C_s=20 N2=200"
    assert model_name(Config(layout="block", C_s=20, N2=200, wta="own_units", seed=3, engine="reference")) \
        == "log block C_s=20 wta=own_units N2=200"
    assert model_name(Config(layer1="shared", layout="stride", stride=1, C_s=128, pool=7, pool_mode="sum", N2=2000,
                             norm=True, xi=0.05, Nep=8, pixels=1.0)) \
        == "shared stride=1 C_s=128 pool 7x7 sum pixels=1.0 N2=2000 norm xi=0.05 8 epochs"
    assert model_name(Config(layer1="krotov", layout=None, C_s=50, N2=30, kh_epochs=3, Nep=5, kh_top=5)) \
        == "krotov C_s=50 kh_epochs=3 kh_top=5 N2=30 5 epochs"
    assert file_stem("log block C_s=20 N2=200") == "log_block_C_s=20_N2=200"


ALTERNATIVES = {  # a valid other value of every field, on a base where it applies
    "layout": "block", "C_s": 11, "N2": 99, "T_s": 3000, "Nep": 3, "B": 50, "xi": 0.02, "prec": 1e-10,
    "wta": "own_units", "dtype": "float32", "stride": 4, "shift": 1, "xi_decay": 0.5, "vote": 3, "pool": 2,
    "pool_mode": "sum", "code": "onehot", "norm": True, "label_gain": 2.0, "unit_norm": True, "patch_norm": True,
    "pixels": 1.0, "l2_winners": 2, "shuffle": True, "kh_epochs": 3, "kh_p": 2.0, "kh_k": 3, "kh_delta": 0.2,
    "kh_eps0": 0.02, "kh_n": 2.0, "kh_top": 5, "kh_center": True}


def _base_for(field):
    if field in ("stride", "pool", "pool_mode", "code", "patch_norm", "pixels"):
        return Config(layer1="shared", layout="stride", stride=2)
    if field.startswith("kh_") or field == "dtype":
        return Config(layer1="krotov", layout=None, kh_epochs=2, Nep=5)
    if field in ("norm", "label_gain", "unit_norm", "l2_winners"):
        return Config(layer1="shared", layout="block")
    return Config()


def test_two_configs_that_train_different_models_have_different_names():
    fields = [f for f in Config.__dataclass_fields__ if f not in NOT_IN_NAME + ("layer1",)]
    assert set(fields) == set(ALTERNATIVES)  # a new field must be named too
    for field in fields:
        base = _base_for(field)
        other = base.replace(**{field: ALTERNATIVES[field]} | ({"layout": "stride"} if field == "stride" else {}))
        assert model_name(other) != model_name(base), field
    assert len({model_name(Config(layer1=layer, layout=None if layer == "krotov" else "block",
                                  kh_epochs=2 if layer == "krotov" else None)) for layer in ("clusters", "shared",
                                                                                             "krotov")}) == 3
