"""The "next step" experiments: where the accuracy is lost, weight sharing, shift training, baselines.

``python -m dreamflow_utils.symmetry --phase A B ... [--seeds 0 1 2 3 4]`` runs the named
variants on MNIST and appends one row per (variant, seed) to ``results/symmetry.csv``
as each run finishes (rows already there are skipped, so an interrupted sweep resumes).
``--quick`` runs every phase on small synthetic data into a scratch CSV (for tests).
``--summarize`` writes ``results/symmetry.md`` (mean +- sd table) and the summary figure.

Columns: variant, family, seed, test_accuracy (end-to-end, DreamFlow's own read-out, or
the baseline's), probe_accuracy (ridge on the layer-1 "value" codes, see probes.py),
probe_onehot, probe_dense, vote5 / vote20 (end-to-end with the top-k layer-2 vote),
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
    V[name] = ("shared", kw, note)


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
for n2 in (500, 1000, 2000):
    _f(f"block C20 N{n2}", "block", 20, n2)
_f("block C20 N200 30 epochs", "block", 20, 200, Nep=30)
_f("block C20 N200 xi=0.05", "block", 20, 200, xi=0.05)
_f("block C20 N200 wta=cluster", "block", 20, 200, wta="cluster")
# D: finds symmetry: shift-trained unshared layouts
_f("block C20 N200 shift2", "block", 20, 200, shift=2)
_f("overlap C10 N100 shift2", "overlap", 10, 100, shift=2)
# E: uses symmetry: shared bank
_s("shared block C20 N200", grid="block", C_s=20, N2=200)
_s("shared overlap C10 N100", grid="overlap", C_s=10, N2=100)
_s("shared s4 C20 N200", grid="stride", stride=4, C_s=20, N2=200)
_s("shared s2 pool2 C20 N200", grid="stride", stride=2, C_s=20, N2=200, pool=2)

PHASES = {
    "A": [k for k in V if k.startswith("log ")],
    "B": [k for k in V if V[k][0] == "baseline"],
    "C": [k for k in V if k.startswith("block C20 N") and "shift" not in k],
    "D": [k for k in V if "shift2" in k],
    "E": [k for k in V if k.startswith("shared")],
}


# ----------------------------------------------------------------------------- helpers
def shifted_tests(tx, shifts=(1, 2)):
    rng = np.random.default_rng(TEST_SHIFT_SEED)
    return {k: shift_images(tx, k, rng) for k in shifts}


def _vote_acc(l2_in, w3, ty, k):
    return float(np.mean(predict_vote(l2_in, w3, k) == ty))


def _faithful_l2(engine: NumpyEngine, x, chunk=2000):
    return np.concatenate([engine._layer2(*engine._layer1(x[s:s + chunk])[1:]) for s in range(0, len(x), chunk)])


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


def read_rows(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
    p.add_argument("--out", default=str(RESULTS / "symmetry.csv"))
    p.add_argument("--save-weights", default=None, help="directory for trained weights")
    p.add_argument("--mnist", default=os.environ.get("DREAMFLOW_MNIST", "/work/shared/data/mnist"))
    p.add_argument("--quick", action="store_true", help="synthetic data, 2 epochs, tiny sizes")
    p.add_argument("--no-probes", action="store_true")
    p.add_argument("--summarize", action="store_true")
    a = p.parse_args(argv)
    names = [n for ph in a.phase for n in PHASES[ph]] + list(a.variant)
    if names:
        if a.quick:
            data = quick_data()
        else:
            from .data import load_mnist
            data = load_mnist(a.mnist)
        run(names, a.seeds, data, a.out, probes=not a.no_probes, save_root=a.save_weights)
    if a.summarize:
        from .symmetry_report import summarize
        summarize(a.out)


def quick_data(n_train=600, n_test=200, seed=0):
    """Tiny MNIST-shaped synthetic data (for tests and --quick)."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 1, (n_train + n_test, 784)) * (rng.uniform(size=(n_train + n_test, 784)) < 0.2)
    lab = rng.integers(0, 10, n_train + n_test)
    return (img[:n_train], lab[:n_train]), (img[n_train:], lab[n_train:])


if __name__ == "__main__":
    main()
