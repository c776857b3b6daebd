"""The "next step" experiments: where the accuracy is lost, weight sharing, shift training, baselines.

``python -m dreamflow_utils.symmetry --phase A B ... [--seeds 0 1 2 3 4]`` runs the named
variants on MNIST and appends one row per (variant, seed) to ``results/symmetry.csv``
as each run finishes (rows already there are skipped, so an interrupted sweep resumes).
``--quick`` runs the named variants on small synthetic data into a scratch CSV (a smoke test).
``--ladder S,P,MODE,CODE[,METHOD] ...`` probes the saved banks of the best shared variant read
out at stride S with P x P pooling (``results/symmetry_probes.csv``); ``--translation``
measures the saved weights (``results/symmetry_translation.csv``, see shift.py) and exports
the shared banks (``results/symmetry_banks.npz``); ``--summarize`` writes
``results/symmetry.md`` (mean ± sd tables) and ``figures/symmetry_*.png``.

The full sweep, as run for the committed results (2 shared CPU cores, about 2 hours)::

    python -m dreamflow_utils.symmetry --phase A B C D E F --save-weights /tmp/symw
    python -m dreamflow_utils.symmetry --save-weights /tmp/symw --seeds 0 1 2 3 4 --ladder 1,3,sum,onehot
    python -m dreamflow_utils.symmetry --save-weights /tmp/symw --translation --summarize

Columns: variant, family, seed, test_accuracy (end-to-end, DreamFlow's own read-out, or
the baseline's), probe_accuracy (ridge on the layer-1 "value" codes, see probes.py; for
shared variants on the layer-2 input, i.e. after pooling / normalisation), probe_onehot
(the winners as 1), probe_dense (faithful only: all units before the winner-take-all), vote5 / vote20 (end-to-end with the top-k layer-2 vote),
test_shift1 / test_shift2 (end-to-end on test images moved by a random (dy, dx) in
[-1, 1]^2 / [-2, 2]^2), seconds (training + the per-epoch test evaluations; baselines:
fit + predict), probe_seconds, epoch_accuracies (JSON list) and the variant's parameters.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np

from .config import Config
from .engines.numpy_engine import NumpyEngine
from .files import read_csv_rows
from .model import init_weights
from .probes import layer1_codes, ridge_probe
from .shared import SharedConfig, SharedEngine, predict_vote, shift_images

LOG_ACCURACY = 0.7334  # the log's best: block, C_s=20, N2=200, 10 epochs
RESULTS = Path("results")
COLUMNS = ["variant", "family", "seed", "test_accuracy", "probe_accuracy", "probe_onehot", "probe_dense",
           "vote5", "vote20", "test_shift1", "test_shift2", "seconds", "probe_seconds", "epochs",
           "layout", "C_s", "N2", "N1", "stride", "pool", "shift", "xi", "epoch_accuracies", "note"]
TEST_SHIFT_SEED = 12345

# ----------------------------------------------------------------------------- variants
# name -> (kind, parameters). Faithful variants use the unmodified NumpyEngine.
V = {}


def _f(name, layout, C_s, N2, Nep=10, shift=0, xi=0.01, wta="log", note=""):
    V[name] = ("faithful", dict(layout=layout, C_s=C_s, N2=N2, Nep=Nep, shift=shift, xi=xi, wta=wta), note)


def _s(name, note="", **kw):
    V[name] = ("shared", kw, note)  # SharedConfig fields (Nep defaults to 10)


def _b(name, **kw):
    V[name] = ("baseline", kw, "")


# A: the log's four configurations (where is the accuracy lost?)
_f("log overlap C10 N100", "overlap", 10, 100, note="log: 69.07%")
_f("log block C10 N100", "block", 10, 100, note="log: 68.18%")
_f("log block C20 N200", "block", 20, 200, note="log: 73.34%")
_f("log block C100 N100", "block", 100, 100, note="log: 68.2%")
# B: baselines
_b("ridge on pixels", method="ridge")
_b("kNN k=3 on pixels", method="knn")
_b("k-means N2=200 on pixels", method="kmeans", n=200)
_b("k-means N2=2000 on pixels", method="kmeans", n=2000)
_b("logistic regression on pixels", method="logistic")
# C: read-out sweeps on the log's best layout (N2, epochs, xi, wta)
for n2 in (1000, 2000):
    _f(f"block C20 N{n2}", "block", 20, n2)
_f("block C20 N200 20 epochs", "block", 20, 200, Nep=20)
_f("block C20 N200 xi=0.05", "block", 20, 200, xi=0.05)
_f("block C20 N200 wta=cluster", "block", 20, 200, wta="cluster")
# D: finds symmetry: shift-trained unshared layouts
_f("block C20 N200 shift2", "block", 20, 200, shift=2)
_f("overlap C10 N100 shift2", "overlap", 10, 100, shift=2)
# E: uses symmetry: shared bank
_s("shared block C20 N200", grid="block", C_s=20, N2=200)
_s("shared overlap C10 N100", grid="overlap", C_s=10, N2=100)
_s("shared s4 C20 N200", grid="stride", stride=4, C_s=20, N2=200)
_s("shared s2 pool2 C20 N200", grid="stride", stride=2, C_s=20, N2=200, pool=2, Nep=3, note="3 epochs")
# F: the read-out fixes found in exploration (normalised codes, larger xi, large N2), 5 epochs
_s("shared s4 C20 N2000 norm xi=0.05", grid="stride", stride=4, C_s=20, N2=2000, norm=True, xi=0.05, Nep=5,
   note="5 epochs")
_s("shared s4 C20 N1000 norm xi=0.05", grid="stride", stride=4, C_s=20, N2=1000, norm=True, xi=0.05, Nep=5,
   note="5 epochs")
_s("shared block C20 N2000 norm xi=0.05", grid="block", C_s=20, N2=2000, norm=True, xi=0.05, Nep=5,
   note="5 epochs")

PHASES = {  # in priority order (2 shared CPU cores: the optional variants run last, if at all)
    "A": [k for k in V if k.startswith("log ")],
    "B": ["ridge on pixels", "k-means N2=200 on pixels", "kNN k=3 on pixels", "k-means N2=2000 on pixels",
          "logistic regression on pixels"],
    "C": ["block C20 N200 xi=0.05", "block C20 N2000", "block C20 N200 20 epochs"],
    "D": ["block C20 N200 shift2"],
    "E": ["shared block C20 N200", "shared s4 C20 N200"],
    "F": ["shared s4 C20 N2000 norm xi=0.05", "shared block C20 N2000 norm xi=0.05"],
    "G": ["block C20 N1000", "block C20 N200 wta=cluster", "shared s4 C20 N1000 norm xi=0.05", "overlap C10 N100 shift2", "shared overlap C10 N100",
          "shared s2 pool2 C20 N200"],
}


# the order of the summary table: the log, the read-out sweeps, shift training, sharing, baselines
ORDER = (PHASES["A"] + PHASES["C"] + ["block C20 N1000", "block C20 N200 wta=cluster"] + PHASES["D"]
         + ["overlap C10 N100 shift2"] + PHASES["E"] + ["shared overlap C10 N100", "shared s2 pool2 C20 N200"]
         + ["shared s4 C20 N1000 norm xi=0.05"] + PHASES["F"] + PHASES["B"])


# ----------------------------------------------------------------------------- helpers
def shifted_tests(tx, shifts=(1, 2)):
    rng = np.random.default_rng(TEST_SHIFT_SEED)
    return {k: shift_images(tx, k, rng) for k in shifts}


def _vote_acc(l2_in, w3, ty, k):
    return float(np.mean(predict_vote(l2_in, w3, k) == ty))


def _faithful_l2(engine: NumpyEngine, x, chunk=2000):
    return np.concatenate([engine._layer2(*engine._layer1(x[s:s + chunk])) for s in range(0, len(x), chunk)])


def run_faithful(params: dict, seed: int, data, probes: bool = True, save_dir=None, T_s=None) -> dict:
    """Train the faithful model (NumpyEngine, the log's math) with optional shifted training copies."""
    (x, y), (tx, ty) = data
    T_s = T_s or len(x)
    config = Config(layout=params["layout"], C_s=params["C_s"], N2=params["N2"], Nep=params["Nep"],
                    xi=params["xi"], wta=params["wta"], seed=seed, T_s=T_s, B=min(100, T_s))
    t0 = time.perf_counter()
    engine = NumpyEngine(config, init_weights(config))
    rng = np.random.default_rng(seed + 1)
    xs, ys = x[:T_s], y[:T_s]
    accs = []
    for _ in range(config.Nep):
        xe = shift_images(xs, params["shift"], rng) if params["shift"] else xs
        engine.train_batches(xe, ys)
        accs.append(float(np.mean(engine.predict(tx) == ty)))
    seconds = time.perf_counter() - t0
    weights = engine.weights()
    l2 = _faithful_l2(engine, tx)
    row = dict(test_accuracy=accs[-1], seconds=seconds, epoch_accuracies=json.dumps([round(a, 4) for a in accs]),
               vote5=_vote_acc(l2, engine.w3, ty, 5), vote20=_vote_acc(l2, engine.w3, ty, 20),
               epochs=config.Nep, layout=config.layout, C_s=config.C_s, N2=config.N2, N1=config.N1,
               shift=params["shift"], xi=config.xi)
    for k, sx in shifted_tests(tx).items():
        row[f"test_shift{k}"] = float(np.mean(engine.predict(sx) == ty))
    if probes:
        t = time.perf_counter()
        for kind, col in (("value", "probe_accuracy"), ("onehot", "probe_onehot"), ("dense", "probe_dense")):
            row[col] = ridge_probe(layer1_codes(config, weights, x, kind), y, layer1_codes(config, weights, tx, kind), ty)
        row["probe_seconds"] = time.perf_counter() - t
    if save_dir is not None:
        from .model import save_weights
        save_weights(Path(save_dir) / f"seed{seed}.npz", weights, config)
    return row


def run_shared(params: dict, seed: int, data, probes: bool = True, save_dir=None, T_s=None) -> dict:
    (x, y), (tx, ty) = data
    T_s = T_s or len(x)
    config = SharedConfig(**params, seed=seed, T_s=T_s, B=min(100, T_s))
    t0 = time.perf_counter()
    engine = SharedEngine(config)
    rng = np.random.default_rng(seed + 1)
    xs, ys = x[:T_s], y[:T_s]
    accs = []
    for _ in range(config.Nep):
        xe = shift_images(xs, config.shift, rng) if config.shift else xs
        engine.train_batches(xe, ys)
        engine.xi *= config.xi_decay
        accs.append(float(np.mean(engine.predict(tx, vote=1) == ty)))
    seconds = time.perf_counter() - t0
    l2 = engine.layer2_scores(tx)
    row = dict(test_accuracy=accs[-1], seconds=seconds, epoch_accuracies=json.dumps([round(a, 4) for a in accs]),
               vote5=_vote_acc(l2, engine.w3, ty, 5), vote20=_vote_acc(l2, engine.w3, ty, 20),
               epochs=config.Nep, layout=f"shared-{config.grid}", C_s=config.C_s, N2=config.N2, N1=config.N1,
               stride=config.stride if config.grid == "stride" else "", pool=config.pool, shift=config.shift,
               xi=config.xi)
    for k, sx in shifted_tests(tx).items():
        row[f"test_shift{k}"] = float(np.mean(engine.predict(sx, vote=1) == ty))
    if probes:
        t = time.perf_counter()
        row["probe_accuracy"] = ridge_probe(engine.codes(x), y, engine.codes(tx), ty)
        oh = engine.__class__(config.replace(code="onehot", norm=False), engine.weights())
        row["probe_onehot"] = ridge_probe(oh.codes(x), y, oh.codes(tx), ty)
        row["probe_seconds"] = time.perf_counter() - t
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        w = engine.weights()
        np.savez(Path(save_dir) / f"seed{seed}.npz", W=w.W, w2=w.w2, w3=w.w3,
                 config=np.array(json.dumps(config.to_dict())))
    return row


def run_baseline(params: dict, seed: int, data) -> dict:
    from . import baselines
    m = params["method"]
    if m in ("ridge", "logistic"):
        acc, sec = baselines.linear_pixels(data, m)
    elif m == "knn":
        acc, sec = baselines.knn(data, k=3)
    else:
        acc, sec = baselines.kmeans_prototypes(data, params["n"], seed=seed)
    return dict(test_accuracy=acc, seconds=sec, N2=params.get("n", ""))


DETERMINISTIC = {"ridge", "logistic", "knn"}


def run_variant(name: str, seed: int, data, probes=True, save_root=None, T_s=None) -> dict:
    kind, params, note = V[name]
    save_dir = None if save_root is None else Path(save_root) / name.replace(" ", "_")
    if kind == "faithful":
        row = run_faithful(params, seed, data, probes, save_dir, T_s)
    elif kind == "shared":
        row = run_shared(params, seed, data, probes, save_dir, T_s)
    else:
        row = run_baseline(params, seed, data)
    return {"variant": name, "family": kind, "seed": seed, "note": note, **row}


read_rows = read_csv_rows


def append_row(path, row: dict):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        f.flush()
        os.fsync(f.fileno())


def run(names, seeds, data, out, probes=True, save_root=None, T_s=None, log=print):
    done = {(r["variant"], int(r["seed"])) for r in read_rows(out)}
    for name in names:
        det = V[name][0] == "baseline" and V[name][1]["method"] in DETERMINISTIC
        for seed in ([seeds[0]] if det else seeds):
            if (name, seed) in done:
                continue
            row = run_variant(name, seed, data, probes, save_root, T_s)
            if det:
                row["note"] = "deterministic: one run"
            append_row(out, row)
            log(f"{name} seed {seed}: acc {row['test_accuracy']:.4f} probe {row.get('probe_accuracy', '')} "
                f"{row['seconds']:.1f}s", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--phase", nargs="*", default=[], help=f"phases {sorted(PHASES)}")
    p.add_argument("--variant", nargs="*", default=[])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--out", default=None, help="CSV to append to (default results/symmetry.csv)")
    p.add_argument("--save-weights", default=None, help="directory for trained weights")
    p.add_argument("--mnist", default=os.environ.get("DREAMFLOW_MNIST", "/work/shared/data/mnist"))
    p.add_argument("--quick", action="store_true",
                   help="smoke test: synthetic data (600 train / 200 test), CSV in the temp folder unless --out")
    p.add_argument("--no-probes", action="store_true")
    p.add_argument("--summarize", action="store_true", help="write results/symmetry.md and the figures")
    p.add_argument("--translation", action="store_true", help="translation analysis of saved weights")
    p.add_argument("--ladder", nargs="*", default=None,
                   help="probe ladder on the saved banks of LADDER_SOURCE: settings stride,pool,mode,code[,method]")
    a = p.parse_args(argv)
    names = [n for ph in a.phase for n in PHASES[ph]] + list(a.variant)
    if a.out is None:
        import tempfile
        a.out = str(Path(tempfile.gettempdir()) / "symmetry_quick.csv") if a.quick else str(RESULTS / "symmetry.csv")
    if names:
        if a.quick:
            data = quick_data()
        else:
            from .data import load_mnist
            data = load_mnist(a.mnist)
        run(names, a.seeds, data, a.out, probes=not a.no_probes, save_root=a.save_weights)
    if a.ladder:
        from .data import load_mnist
        run_ladder(a.save_weights or "/tmp/symw", load_mnist(a.mnist), RESULTS / "symmetry_probes.csv",
                   seeds=a.seeds, settings=[tuple(x.split(",")) for x in a.ladder])
    if a.translation:
        export_banks(a.save_weights or "/tmp/symw")
        analyze_translation(a.save_weights or "/tmp/symw", RESULTS / "symmetry_translation.csv", a.mnist)
    if a.summarize:
        summarize(a.out)


# ----------------------------------------------------------------------------- probe ladder
PROBE_COLUMNS = ["source", "seed", "C_s", "stride", "pool", "pool_mode", "code", "N1", "method", "probe_accuracy",
                 "seconds"]


def bank_codes(W, x, stride: int, pool: int = 1, pool_mode: str = "max", code: str = "value") -> np.ndarray:
    """Layer-1 codes of a shared bank W (C_s, 81) applied on any stride grid, pooled: the bank
    is position-free, so a bank trained at one stride can be read out at another."""
    c = SharedConfig(grid="stride", stride=stride, pool=pool, pool_mode=pool_mode, code=code, C_s=len(W), N2=1)
    from .shared import SharedWeights
    eng = SharedEngine(c, SharedWeights(np.asarray(W), np.zeros((c.N1, 1)), np.zeros((10, 1))))
    return eng.codes(x)


def probe_ladder(W, data, settings, source="", seed=0, out=None, log=print) -> list[dict]:
    """Ridge-probe accuracy of ``bank_codes`` for each (stride, pool, pool_mode, code) in ``settings``."""
    (x, y), (tx, ty) = data
    rows = []
    from .probes import logistic_probe
    for setting in settings:
        stride, pool, mode, code = setting[:4]
        method = setting[4] if len(setting) > 4 else "ridge"
        t = time.perf_counter()
        ftr = bank_codes(W, x, stride, pool, mode, code)
        fte = bank_codes(W, tx, stride, pool, mode, code)
        fn = ridge_probe if method == "ridge" else logistic_probe
        acc = fn(ftr, y, fte, ty)
        row = dict(source=source, seed=seed, C_s=len(W), stride=stride, pool=pool, pool_mode=mode, code=code,
                   N1=ftr.shape[1], method=method, probe_accuracy=acc, seconds=time.perf_counter() - t)
        del ftr, fte
        rows.append(row)
        log(row, flush=True)
        if out is not None:
            new = not Path(out).exists()
            with open(out, "a", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=PROBE_COLUMNS)
                if new:
                    w.writeheader()
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return rows


LADDER_SOURCE = "shared s4 C20 N2000 norm xi=0.05"
TRANSLATION_VARIANTS = ("log overlap C10 N100", "log block C10 N100", "log block C20 N200", "log block C100 N100",
                        "block C20 N200 shift2", "shared block C20 N200", "shared s4 C20 N200", LADDER_SOURCE)




def run_ladder(save_root, data, out, seeds=(0, 1, 2, 3, 4), settings=(("4", "1", "max", "value"),),
               source=LADDER_SOURCE, log=print):
    """Probe ladder on the banks saved by the 5-seed runs of ``source``."""
    d = Path(save_root) / source.replace(" ", "_")
    rows = []
    for seed in seeds:
        f = d / f"seed{seed}.npz"
        if not f.exists():
            continue
        W = _load_saved(f)[1]["W"]
        st = [(int(a[0]), int(a[1]), *a[2:]) for a in settings]
        rows += probe_ladder(W, data, st, source=source, seed=seed, out=out, log=log)
    return rows


def export_banks(save_root, out=RESULTS / "symmetry_banks.npz", sources=None) -> Path:
    """The trained shared banks W (C_s, 81) of every saved shared run, in one small .npz:
    key ``"<variant>|seed<k>"``."""
    banks = {}
    for d in sorted(p for p in Path(save_root).iterdir() if p.is_dir()):
        name = d.name.replace("_", " ")
        if name in V and V[name][0] == "shared" and (sources is None or name in sources):
            for f in sorted(d.glob("seed*.npz")):
                banks[f"{name}|{f.stem}"] = _load_saved(f)[1]["W"]
    np.savez_compressed(out, **banks)
    return Path(out)


def plot_banks(path=RESULTS / "symmetry_banks.npz", variant=LADDER_SOURCE, seeds=(0, 1, 2)):
    """Tapestries of the shared banks of ``variant`` (one tile per detector, each scaled to its max)."""
    from matplotlib.figure import Figure
    from .shared import shared_tapestry
    with np.load(path) as f:
        keys = [k for k in f.files if k.startswith(variant + "|")]
        keys = [k for k in keys if int(k.split("|seed")[1]) in seeds]
        banks = [f[k] for k in keys]
    fig = Figure(figsize=(3.8 * max(1, len(banks)), 1.9))
    if not banks:
        fig.text(0.5, 0.5, f"no saved banks of {variant!r}", ha="center", va="center")
        return fig
    for i, (k, W) in enumerate(zip(keys, banks)):
        ax = fig.add_subplot(1, len(banks), i + 1)
        Wn = W / np.maximum(W.max(axis=1, keepdims=True), 1e-300)
        ax.imshow(np.ma.masked_invalid(shared_tapestry(Wn, cols=10)), cmap="Reds", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(k.replace("|", ", "), fontsize=7)
    fig.suptitle("shared banks: one 9x9 tile per shared detector", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- analysis
TRANSLATION_COLUMNS = ["variant", "seed", "weights", "score", "score_no_shift", "best_shift_fraction",
                       "code_sim_1px", "code_sim_2px", "test_shift1", "test_shift2"]


def _load_saved(path):
    with np.load(path) as f:
        cfg = json.loads(str(f["config"]))
        arrays = {k: f[k] for k in f.files if k != "config"}
    return cfg, arrays


def translation_row(kind: str, cfg: dict, arrays: dict, x_test, trained: bool = True) -> dict:
    """Translation-copy score of the layer-1 detectors and shift similarity of the codes."""
    from .model import Weights
    from .shift import code_shift_similarity, translation_match, unit_patches

    if kind == "faithful":
        config = Config(**cfg)
        w = Weights(arrays["w1"], arrays["w2"], arrays["w3"]) if trained else init_weights(config)
        tm = translation_match(unit_patches(w.w1, config.layout, config.C_s), config.C_s, max_shift=2)
        codes = lambda a: layer1_codes(config, w, a, "value")
    else:
        from .shared import SharedWeights, init_shared
        config = SharedConfig(**cfg)
        w = SharedWeights(arrays["W"], arrays["w2"], arrays["w3"]) if trained else init_shared(config)
        tm = {"score": 1.0, "score_no_shift": 1.0, "best_shift_fraction": 0.0}  # shared by construction
        codes = SharedEngine(config, w).codes
    return {"weights": "trained" if trained else "initial", "score": tm["score"],
            "score_no_shift": tm["score_no_shift"], "best_shift_fraction": tm["best_shift_fraction"],
            "code_sim_1px": code_shift_similarity(codes, x_test, 1),
            "code_sim_2px": code_shift_similarity(codes, x_test, 2)}


def analyze_translation(save_root, out, mnist=None, n_test: int = 1000, log=print, x_test=None):
    """One row per saved (variant, seed) (+ the initial weights of each faithful variant's seed 0)."""
    from .data import load_mnist
    save_root, out = Path(save_root), Path(out)
    x_test = (load_mnist(mnist)[1][0] if x_test is None else x_test)[:n_test]
    rows = []
    for d in sorted(p for p in save_root.iterdir() if p.is_dir()):
        name = d.name.replace("_", " ")
        if name not in V:
            continue
        kind = V[name][0]
        for f in sorted(d.glob("seed*.npz")):
            seed = int(f.stem[4:])
            cfg, arrays = _load_saved(f)
            for trained in ((True, False) if seed == 0 and kind == "faithful" else (True,)):
                row = {"variant": name, "seed": seed, **translation_row(kind, cfg, arrays, x_test, trained)}
                rows.append(row)
                log(row, flush=True)
            if name == LADDER_SOURCE:  # the same bank, read out as the best probe reads it
                from .shift import code_shift_similarity
                codes = lambda a: bank_codes(arrays["W"], a, 1, 3, "sum", "onehot")
                row = {"variant": name, "seed": seed, "weights": "trained, stride 1, 3x3 sum-pooled one-hot",
                       "score": 1.0, "score_no_shift": 1.0, "best_shift_fraction": 0.0,
                       "code_sim_1px": code_shift_similarity(codes, x_test, 1),
                       "code_sim_2px": code_shift_similarity(codes, x_test, 2)}
                rows.append(row)
                log(row, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=TRANSLATION_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    return rows


# ----------------------------------------------------------------------------- summary
SUMMARY_COLUMNS = [("test_accuracy", "end-to-end"), ("vote5", "top-5 vote"), ("probe_accuracy", "probe (l1 values)"),
                   ("probe_onehot", "probe (one-hot winners)"), ("probe_dense", "probe (all units, pre-WTA)"),
                   ("test_shift2", "end-to-end, test shifted <=2px"), ("seconds", "seconds / run")]


def summary_table(path=RESULTS / "symmetry.csv") -> list[dict]:
    """Per variant (in order of first appearance): n and (mean, sd) of every numeric column."""
    rows = read_rows(path)
    out = {}
    for r in rows:
        out.setdefault(r["variant"], []).append(r)
    order = {n: i for i, n in enumerate(ORDER)}
    table = []
    for name, rs in sorted(out.items(), key=lambda kv: order.get(kv[0], len(order))):
        entry = {"variant": name, "family": rs[0]["family"], "n": len(rs), "note": rs[0].get("note", ""),
                 "epochs": rs[0].get("epochs", "")}
        for col, _ in SUMMARY_COLUMNS + [("vote20", ""), ("test_shift1", "")]:
            vals = [float(r[col]) for r in rs if r.get(col) not in (None, "")]
            entry[col] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else None) if vals else None
        table.append(entry)
    return table


def _fmt(ms, pct=True):
    if ms is None:
        return ""
    m, s = ms
    if not pct:
        return f"{m:.0f}"
    return f"{100 * m:.2f}" + ("" if s is None else f" ± {100 * s:.2f}")


def summary_markdown(table) -> str:
    head = ["variant", "n", "epochs"] + [label for _, label in SUMMARY_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in table:
        cells = [e["variant"] + (f" ({e['note']})" if e["note"] else ""), str(e["n"]), str(e["epochs"])]
        cells += [_fmt(e[c], pct=(c != "seconds")) for c, _ in SUMMARY_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(path=RESULTS / "symmetry.csv", md=RESULTS / "symmetry.md", fig_dir="figures"):
    table = summary_table(path)
    text = ("Accuracies in % on the MNIST test set (mean ± sd over n seeds; deterministic baselines: one run). "
            f"The log's best: {100 * LOG_ACCURACY:.2f}%. End-to-end = the model's own read-out "
            "(DreamFlow: the layer-2 winner's class); probe = ridge regression (closed form, one-hot targets, "
            "standardised features) trained on the 60000 training codes.\n\n" + summary_markdown(table) + "\n")
    tpath, ppath = Path(path).parent / "symmetry_translation.csv", Path(path).parent / "symmetry_probes.csv"
    if ppath.exists():
        text += ("\n**Probe ladder** (linear-probe accuracy in % of the codes of the saved shared banks, read out "
                 "at other strides / poolings; one-hot winners sum-pooled = counts of each detector's wins):\n\n" + probes_markdown(ppath) + "\n")
    if tpath.exists():
        text += ("\n**Translation measurements** (see `dreamflow_utils/shift.py`; 'initial' = the untrained "
                 "weights, the chance level):\n\n" + translation_markdown(tpath) + "\n")
    Path(md).write_text(text)
    from .plots import save_figure
    save_figure(plot_summary(table), "symmetry_summary", folder=fig_dir)
    save_figure(plot_readout(table, read_rows(path)), "symmetry_readout", folder=fig_dir)
    tpath = Path(path).parent / "symmetry_translation.csv"
    if tpath.exists():
        save_figure(plot_translation(read_rows(tpath)), "symmetry_translation", folder=fig_dir)
    bpath = Path(path).parent / "symmetry_banks.npz"
    if bpath.exists():
        save_figure(plot_banks(bpath), "symmetry_tapestry", folder=fig_dir)
    return table


def plot_summary(table, title="DreamFlow variants and baselines on MNIST"):
    from matplotlib.figure import Figure
    names = [e["variant"] for e in table]
    fig = Figure(figsize=(11, 0.32 * len(names) + 1.5))
    ax = fig.add_subplot()
    yy = np.arange(len(names))[::-1]
    colors = {"faithful": "tab:red", "shared": "tab:blue", "baseline": "tab:gray"}
    for y, e in zip(yy, table):
        m, s = e["test_accuracy"]
        ax.barh(y, 100 * m, xerr=100 * (s or 0), color=colors.get(e["family"], "k"), alpha=0.8)
        if e.get("probe_accuracy"):
            ax.plot(100 * e["probe_accuracy"][0], y, "k|", ms=12, mew=2)
    ax.axvline(100 * LOG_ACCURACY, color="k", ls="--", lw=1, label="log's 73.34%")
    ax.plot([], [], "k|", ms=12, mew=2, label="linear probe on layer-1 codes")
    ax.set_yticks(yy, names, fontsize=8)
    ax.set_xlim(40, 100)
    ax.set_xlabel("test accuracy (%)   red: faithful (unshared)  blue: shared bank  grey: baselines")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_readout(table, rows, title="Where is the accuracy lost? (faithful layouts)"):
    """Left: end-to-end vs top-5 vote vs probes for the log's configurations (+ ridge on pixels).
    Right: test accuracy after each epoch (mean over seeds) for the read-out sweeps."""
    from matplotlib.figure import Figure
    by = {e["variant"]: e for e in table}
    logs = [n for n in by if n.startswith("log ")]
    fig = Figure(figsize=(12, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    cols = [("test_accuracy", "end-to-end (layer-2 WTA)"), ("vote5", "top-5 vote"),
            ("probe_onehot", "probe: one-hot winners"), ("probe_accuracy", "probe: l1 values")]
    w = 0.8 / len(cols)
    for i, (c, lab) in enumerate(cols):
        m = [100 * by[n][c][0] if by[n].get(c) else np.nan for n in logs]
        sd = [100 * (by[n][c][1] or 0) if by[n].get(c) else 0 for n in logs]
        ax.bar(np.arange(len(logs)) + (i - 1.5) * w, m, w, yerr=sd, label=lab)
    for name, style in (("ridge on pixels", ":"), ("logistic regression on pixels", "-."),
                        ("k-means N2=200 on pixels", "--")):
        if name in by:
            ax.axhline(100 * by[name]["test_accuracy"][0], color="k" if "k-means" not in name else "tab:purple",
                       ls=style, lw=1, label=name)
    ax.axhline(100 * LOG_ACCURACY, color="r", ls="--", lw=1, label="log's 73.34%")
    ax.set_xticks(np.arange(len(logs)), [n.replace("log ", "") for n in logs], fontsize=8)
    ax.set_ylim(50, 100)
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    ax.set_title(title, fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    curves = {}
    for r in rows:
        if r["family"] != "baseline" and r.get("epoch_accuracies"):
            curves.setdefault(r["variant"], []).append(json.loads(r["epoch_accuracies"]))
    for name, cs in curves.items():
        if not (name.startswith("block C20") or name == "log block C20 N200" or name.startswith("best")
                or name.startswith("shared s4")):
            continue
        L = min(len(c) for c in cs)
        a = 100 * np.array([c[:L] for c in cs])
        ax2.errorbar(np.arange(1, L + 1), a.mean(0), a.std(0), label=f"{name} (n={len(cs)})", lw=1, capsize=2)
    ax2.axhline(100 * LOG_ACCURACY, color="r", ls="--", lw=1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("end-to-end test accuracy (%)")
    ax2.set_ylim(0, 100)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=6)
    ax2.set_title("Read-out sweeps: N2, epochs, xi, wta", fontsize=10)
    fig.tight_layout()
    return fig


def plot_translation(trows, title="Does it find the symmetry?", variants=TRANSLATION_VARIANTS):
    """Translation-copy score of layer-1 detectors and code similarity under 1-2 px shifts."""
    from matplotlib.figure import Figure
    trows = [r for r in trows if variants is None or r["variant"] in variants]
    trows.sort(key=lambda r: variants.index(r["variant"]) if variants else 0)
    groups = {}
    for r in trows:
        w = r["weights"]
        key = r["variant"] + ("" if w == "trained" else " (untrained)" if w == "initial"
                              else " (" + w.replace("trained, ", "read out at ") + ")")
        groups.setdefault(key, []).append(r)
    names = list(groups)
    fig = Figure(figsize=(12, 0.3 * len(names) + 2))
    legend = {"score_no_shift": "no shift", "score": "shifts <= 2 px", "code_sim_1px": "1 px", "code_sim_2px": "2 px"}
    for i, (cols, lab) in enumerate(((("score_no_shift", "score"), "detector match across positions"),
                                     (("code_sim_1px", "code_sim_2px"), "code cosine: image vs shifted copy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        yy = np.arange(len(names))[::-1]
        for j, c in enumerate(cols):
            m = [np.mean([float(r[c]) for r in groups[n]]) for n in names]
            sd = [np.std([float(r[c]) for r in groups[n]]) for n in names]
            ax.barh(yy + (j - 0.5) * 0.4, m, 0.4, xerr=sd, label=legend[c])
        ax.set_yticks(yy, names if i == 0 else [""] * len(names), fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(lab, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook steps
def table_markdown(names=None, path=RESULTS / "symmetry.csv", families=None) -> str:
    """The summary table restricted to ``names`` (in that order) and/or ``families``."""
    table = summary_table(path)
    by = {e["variant"]: e for e in table}
    if names is not None:
        table = [by[n] for n in names if n in by]
    if families is not None:
        table = [e for e in table if e["family"] in families]
    return summary_markdown(table)


def display_table(names=None, path=RESULTS / "symmetry.csv", families=None):
    from IPython.display import Markdown, display
    display(Markdown(table_markdown(names, path, families)))


def _group_markdown(rows, keys, cols, labels=None, scale=None) -> str:
    """Mean ± sd (sd omitted for n = 1) of ``cols`` per group of ``keys``; ``scale[col]`` = (factor, decimals)."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    labels = labels or cols
    scale = scale or {}
    lines = ["| " + " | ".join(list(keys) + ["n"] + list(labels)) + " |", "|" + "---|" * (len(keys) + 1 + len(cols))]
    for key, rs in groups.items():
        cells = list(key) + [str(len(rs))]
        for c in cols:
            f, d = scale.get(c, (1, 3))
            v = [f * float(r[c]) for r in rs if r.get(c) not in (None, "")]
            if not v:
                cells.append("")
            else:
                cells.append(f"{np.mean(v):.{d}f}" + (f" ± {np.std(v, ddof=1):.{d}f}" if len(v) > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def translation_markdown(path=RESULTS / "symmetry_translation.csv", variants=TRANSLATION_VARIANTS) -> str:
    """Mean ± sd per (variant, weights) of the translation measurements (see shift.py).  The other
    faithful block C_s=20 variants share the log's layer 1 exactly (layer 1 learns independently of
    layer 2 and draws its initial weights first), so they are left out by default."""
    rows = [r for r in read_rows(path) if variants is None or r["variant"] in variants]
    rows.sort(key=lambda r: variants.index(r["variant"]) if variants else 0)
    return _group_markdown(rows, ("variant", "weights"),
                           ("score_no_shift", "score", "code_sim_1px", "code_sim_2px"),
                           ("detector match, no shift", "detector match, shifts <= 2 px",
                            "code cosine, 1 px shift", "code cosine, 2 px shift"))


def probes_markdown(path=RESULTS / "symmetry_probes.csv") -> str:
    """Mean ± sd per read-out setting of the probe ladder (probe accuracy in %)."""
    return _group_markdown(read_rows(path), ("source", "stride", "pool", "pool_mode", "code", "N1", "method"),
                           ("probe_accuracy", "seconds"), ("probe accuracy (%)", "seconds"),
                           {"probe_accuracy": (100, 2), "seconds": (1, 0)})


def demo_run(name: str, data, quick: bool, seed: int = 0, quick_T_s: int = 2000, Nep: int | None = None,
             save_dir=None) -> dict:
    """Train one variant of :data:`V` once and print its row (quick: T_s=quick_T_s, 1 epoch)."""
    kind, params, _ = V[name]
    params = dict(params)
    if quick:
        params["Nep"] = 1
    elif Nep is not None:
        params["Nep"] = Nep
    T_s = min(quick_T_s, len(data[0][0])) if quick else None
    run_fn = run_faithful if kind == "faithful" else run_shared
    if kind == "faithful":
        params.setdefault("Nep", 10)
    row = run_fn(params, seed, data, True, save_dir, T_s)
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "epoch_accuracies"}
    print(f"{name}, seed {seed}" + (f" (QUICK: T_s={T_s}, 1 epoch; not comparable)" if quick else "") + ":")
    for k in ("test_accuracy", "vote5", "probe_accuracy", "probe_onehot", "probe_dense", "test_shift1",
              "test_shift2", "seconds"):
        if k in shown:
            print(f"  {k:15s} {shown[k]}")
    return row


def quick_data(n_train=600, n_test=200, seed=0):
    """Tiny MNIST-shaped synthetic data (for tests and --quick)."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 1, (n_train + n_test, 784)) * (rng.uniform(size=(n_train + n_test, 784)) < 0.2)
    lab = rng.integers(0, 10, n_train + n_test)
    return (img[:n_train], lab[:n_train]), (img[n_train:], lab[n_train:])


if __name__ == "__main__":
    main()
