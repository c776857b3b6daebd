"""The log's "next step": where the accuracy is lost, a model that uses symmetry (a shared bank),
one that might find it (shift training), and baselines on pixels (notebooks 06-08).

Every variant is a `Config` (or a baseline); the model variants measure the top-k vote,
shifted test images, ridge probes on their codes and the translation measurements; the
best shared variant also the probe ladder (its bank read out on denser grids).
"""
from __future__ import annotations

import numpy as np

from ..core.config import Config
from .. import plots
from ..core.experiments import LOG_EXPERIMENTS
from . import Study, Variant, model, tables, variants

LOG_ACCURACY = 0.7334  # the log's best: block, C_s=20, N2=200, 10 epochs
MODEL_MEASURES = ("votes", "shifted", "probes", "translation")
LADDER_SOURCE = "shared stride=4 C_s=20 N2=2000 norm xi=0.05 5 epochs"
LADDER = ((2, 2, "max", "value", "ridge"), (1, 2, "max", "value", "ridge"),
          (1, 3, "sum", "onehot", "ridge"), (1, 3, "sum", "onehot", "logistic"))


def _faithful(layout, C_s, N2, note="", **kw):
    return model(Config(layout=layout, C_s=C_s, N2=N2, **kw), note, MODEL_MEASURES)


def _shared(layout, C_s, N2, note="", measures=MODEL_MEASURES, ladder=(), **kw):
    return model(Config(layer1="shared", layout=layout, C_s=C_s, N2=N2, **kw), note, measures, ladder=ladder)


def _baseline(name, seeds=None, **spec):
    return Variant(name, "baseline", baseline=spec, seeds=seeds, note="deterministic: one run" if seeds else "")


LOG_FOUR = list(LOG_EXPERIMENTS)
VARIANTS = [
    # the log's four configurations: where is the accuracy lost?
    *[_faithful(c.layout, c.C_s, c.N2, f"log: {100 * acc:.2f}%") for c, acc, _ in LOG_EXPERIMENTS.values()],
    # read-out sweeps on the log's best layout (N2, epochs, xi, wta)
    _faithful("block", 20, 200, xi=0.05),
    _faithful("block", 20, 1000),
    _faithful("block", 20, 2000),
    _faithful("block", 20, 200, Nep=20),
    _faithful("block", 20, 200, wta="own_units"),
    # finds symmetry? shift-trained unshared layouts
    _faithful("block", 20, 200, shift=2),
    _faithful("overlap", 10, 100, shift=2),
    # uses symmetry: one shared bank
    _shared("block", 20, 200),
    _shared("overlap", 10, 100),
    _shared("stride", 20, 200, stride=4),
    _shared("stride", 20, 200, stride=2, pool=2, Nep=3),
    # the read-out fixes found in exploration (normalised codes, larger xi, large N2), 5 epochs
    _shared("stride", 20, 1000, stride=4, norm=True, xi=0.05, Nep=5),
    _shared("stride", 20, 2000, stride=4, norm=True, xi=0.05, Nep=5, measures=MODEL_MEASURES + ("ladder",),
            ladder=LADDER),
    _shared("block", 20, 2000, norm=True, xi=0.05, Nep=5),
    # baselines on the pixels
    _baseline("ridge on pixels", seeds=(0,), method="ridge"),
    _baseline("logistic regression on pixels", seeds=(0,), method="logistic"),
    _baseline("kNN k=3 on pixels", seeds=(0,), method="knn", k=3),
    _baseline("k-means N2=200 on pixels", method="kmeans", n=200),
    _baseline("k-means N2=2000 on pixels", method="kmeans", n=2000),
]

SUMMARY = {"test_accuracy": "end-to-end", "vote5": "top-5 vote", "probe_value": "probe (l1 values)",
           "probe_onehot": "probe (one-hot winners)", "probe_dense": "probe (all units, pre-WTA)",
           "test_shift2": "end-to-end, test shifted <=2px", "seconds": "seconds / run"}
READOUT = [*LOG_FOUR, "log block C_s=20 N2=1000", "log block C_s=20 N2=2000", "log block C_s=20 N2=200 20 epochs",
           "log block C_s=20 N2=200 xi=0.05", "log block C_s=20 wta=own_units N2=200", "ridge on pixels",
           "logistic regression on pixels", "k-means N2=200 on pixels", "k-means N2=2000 on pixels"]
SHARING = ["log block C_s=20 N2=200", "shared block C_s=20 N2=200", "shared stride=4 C_s=20 N2=200",
           "shared overlap C_s=10 N2=100", "shared stride=2 C_s=20 pool 2x2 max N2=200 3 epochs",
           "shared block C_s=20 N2=2000 norm xi=0.05 5 epochs", "shared stride=4 C_s=20 N2=1000 norm xi=0.05 5 epochs",
           LADDER_SOURCE]
TRANSLATION = [*LOG_FOUR, "log block C_s=20 N2=200 shift=2", "log overlap C_s=10 N2=100 shift=2",
               "shared block C_s=20 N2=200", "shared stride=4 C_s=20 N2=200", LADDER_SOURCE]


def _ordered(records, names=None):
    """Records of `names` (default: every variant), in that order."""
    names = names or list(STUDY.variants)
    return [r for n in names for r in records if r["variant"] == n]


def summary_table(records, names=None) -> str:
    """Per variant: n, epochs and mean ± sd of the end-to-end accuracy, vote, probes, shifted test, seconds."""
    rows = []
    for (name,), rs in tables.by(_ordered(records, names), "variant").items():
        note = STUDY.variants[name].note
        epochs = rs[0].get("config", {}).get("Nep", "") if rs[0].get("config") else ""
        cells = [name + (f" ({note})" if note else ""), len(rs), epochs]
        cells += [tables.fmt(tables.stats(r.get(c) for r in rs), *((1, 0) if c == "seconds" else (100, 2)))
                  for c in SUMMARY]
        rows.append(cells)
    return tables.markdown(["variant", "n", "epochs", *SUMMARY.values()], rows)


def translation_table(records) -> str:
    """Mean ± sd of the translation measurements per variant, trained and untrained ('initial')."""
    rows = []
    for r in _ordered(records, TRANSLATION):
        if "match" in r:
            rows.append({"variant": r["variant"], "weights": "trained", **{k: r[k] for k in _TR}})
            if "initial_match" in r:
                rows.append({"variant": r["variant"], "weights": "initial", **{k: r["initial_" + k] for k in _TR}})
        for lad in r.get("ladder", []):
            if lad["code"] == "onehot" and lad["method"] == "ridge":
                rows.append({"variant": r["variant"], "weights": f"trained, stride {lad['stride']}, "
                             f"{lad['pool']}x{lad['pool']} {lad['pool_mode']}-pooled one-hot",
                             "match": 1.0, "match_no_shift": 1.0, **{k: lad[k] for k in _TR[2:]}})
    return tables.group_table(rows, ("variant", "weights"), dict(zip(_TR, _TR_LABELS)),
                              {k: (1, 3) for k in _TR})


_TR = ("match_no_shift", "match", "code_sim_1px", "code_sim_2px")
_TR_LABELS = ("detector match, no shift", "detector match, shifts <= 2 px", "code cosine, 1 px shift",
              "code cosine, 2 px shift")


def ladder_table(records) -> str:
    """Probe accuracy of the best shared variant's bank read out at other strides and poolings."""
    rows = [{"variant": r["variant"], **lad} for r in _ordered(records, [LADDER_SOURCE]) for lad in r.get("ladder", [])]
    return tables.group_table(rows, ("stride", "pool", "pool_mode", "code", "N1", "method"),
                              {"probe_accuracy": "probe accuracy (%)", "seconds": "seconds"},
                              {"seconds": (1, 0)})


def summary_markdown(records) -> str:
    return ("Accuracies in % on the MNIST test set (mean ± sd over n seeds; deterministic baselines: one run). "
            f"The log's best: {100 * LOG_ACCURACY:.2f}%. End-to-end = the model's own read-out (DreamFlow: the "
            "layer-2 winner's class); probe = ridge regression (closed form, one-hot targets, standardised "
            "features) trained on the 60000 training codes.\n\n" + summary_table(records)
            + "\n\n**Probe ladder** (the best shared variant's bank read out on other grids; one-hot winners "
            "sum-pooled = counts of each detector's wins):\n\n" + ladder_table(records)
            + "\n\n**Translation measurements** (`dreamflow_utils/studies/translation.py`; 'initial' = the untrained "
            "weights, the chance level):\n\n" + translation_table(records) + "\n")


# ----------------------------------------------------------------------------- figures
COLORS = {"faithful": "tab:red", "shared": "tab:blue", "baseline": "tab:gray"}


def plot_summary(records, title="DreamFlow variants and baselines on MNIST"):
    """End-to-end accuracy (mean ± sd) of every variant, with its linear probe."""
    from matplotlib.figure import Figure
    groups = tables.by(_ordered(records), "variant")
    names = [k[0] for k in groups]
    fig = Figure(figsize=(11, 0.32 * len(names) + 1.5))
    ax = fig.add_subplot()
    yy = np.arange(len(names))[::-1]
    for y, (name, rs) in zip(yy, ((k[0], v) for k, v in groups.items())):
        m, s = tables.stats(r["test_accuracy"] for r in rs)
        ax.barh(y, 100 * m, xerr=100 * (s or 0), color=COLORS[rs[0]["family"]], alpha=0.8)
        probe = tables.stats(r.get("probe_value") for r in rs)
        if probe:
            ax.plot(100 * probe[0], y, "k|", ms=12, mew=2)
    ax.axvline(100 * LOG_ACCURACY, color="k", ls="--", lw=1, label="log's 73.34%")
    ax.plot([], [], "k|", ms=12, mew=2, label="linear probe on layer-1 codes")
    ax.set_yticks(yy, names, fontsize=8)
    ax.set_xlim(40, 100)
    ax.set_xlabel("test accuracy (%)   red: faithful (unshared)  blue: shared bank  grey: baselines")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_readout(records, title="Where is the accuracy lost? (faithful layouts)"):
    """Left: end-to-end vs top-5 vote vs probes for the log's configurations (+ pixel baselines).
    Right: test accuracy after each epoch (mean ± sd over seeds) for the read-out sweeps."""
    from matplotlib.figure import Figure
    groups = {k[0]: v for k, v in tables.by(records, "variant").items()}
    logs = [n for n in LOG_FOUR if n in groups]
    fig = Figure(figsize=(12, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    cols = [("test_accuracy", "end-to-end (layer-2 WTA)"), ("vote5", "top-5 vote"),
            ("probe_onehot", "probe: one-hot winners"), ("probe_value", "probe: l1 values")]
    w = 0.8 / len(cols)
    for i, (c, lab) in enumerate(cols):
        ms = [tables.stats(r.get(c) for r in groups[n]) or (np.nan, None) for n in logs]
        ax.bar(np.arange(len(logs)) + (i - 1.5) * w, [100 * m for m, _ in ms], w,
               yerr=[100 * (s or 0) for _, s in ms], label=lab)
    for name, style, color in (("ridge on pixels", ":", "k"), ("logistic regression on pixels", "-.", "k"),
                               ("k-means N2=200 on pixels", "--", "tab:purple")):
        if name in groups:
            ax.axhline(100 * tables.stats(r["test_accuracy"] for r in groups[name])[0], color=color, ls=style,
                       lw=1, label=name)
    ax.axhline(100 * LOG_ACCURACY, color="r", ls="--", lw=1, label="log's 73.34%")
    ax.set_xticks(np.arange(len(logs)), [n.replace("log ", "").replace(" C_s", "\nC_s") for n in logs], fontsize=8)
    ax.set_ylim(50, 100)
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    ax.set_title(title, fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    for name in STUDY.variants:
        if name in groups and (name.startswith("log block C_s=20 ") or name.startswith("shared stride=4")):
            curves = [r["epoch_accuracies"] for r in groups[name]]
            n_ep = min(len(c) for c in curves)
            a = 100 * np.array([c[:n_ep] for c in curves])
            ax2.errorbar(np.arange(1, n_ep + 1), a.mean(0), a.std(0), label=f"{name} (n={len(curves)})", lw=1, capsize=2)
    ax2.axhline(100 * LOG_ACCURACY, color="r", ls="--", lw=1)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("end-to-end test accuracy (%)")
    ax2.set_ylim(0, 100)
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=6)
    ax2.set_title("Read-out sweeps: N2, epochs, xi, wta", fontsize=10)
    fig.tight_layout()
    return fig


def plot_translation(records, title="Does it find the symmetry?"):
    """Detector match across positions and code cosine under 1-2 px shifts, per variant."""
    from matplotlib.figure import Figure
    rows = []
    for r in _ordered(records, TRANSLATION):
        if "match" in r:
            rows.append((r["variant"], [r[k] for k in _TR]))
            if "initial_match" in r:
                rows.append((r["variant"] + " (untrained)", [r["initial_" + k] for k in _TR]))
    groups = {}
    for name, vals in rows:
        groups.setdefault(name, []).append(vals)
    names = list(groups)
    fig = Figure(figsize=(12, 0.3 * len(names) + 2))
    for i, (cols, lab) in enumerate((((0, 1), "detector match across positions"),
                                     ((2, 3), "code cosine: image vs shifted copy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        yy = np.arange(len(names))[::-1]
        for j, c in enumerate(cols):
            v = [np.array(groups[n])[:, c] for n in names]
            ax.barh(yy + (j - 0.5) * 0.4, [a.mean() for a in v], 0.4, xerr=[a.std() for a in v],
                    label=("no shift", "shifts <= 2 px", "1 px", "2 px")[c])
        ax.set_yticks(yy, names if i == 0 else [""] * len(names), fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(lab, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_banks(records, variant=LADDER_SOURCE, seeds=(0, 1, 2)):
    """Tapestries of the shared banks of `variant` (one tile per detector, each scaled to its max)."""
    from matplotlib.figure import Figure
    from . import load_bank
    banks = [(r["seed"], load_bank(r)) for r in records if r["variant"] == variant and r["seed"] in seeds]
    banks = [(seed, bank) for seed, bank in banks if bank is not None]
    fig = Figure(figsize=(3.8 * max(1, len(banks)), 1.9))
    if not banks:
        fig.text(0.5, 0.5, f"no banks of {variant!r}", ha="center", va="center")
        return fig
    for i, (seed, W) in enumerate(banks):
        ax = fig.add_subplot(1, len(banks), i + 1)
        Wn = W / np.maximum(W.max(axis=1, keepdims=True), 1e-300)
        ax.imshow(np.ma.masked_invalid(plots.bank_tapestry(Wn.T, cols=10)), cmap="Reds", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(f"{variant}, seed {seed}", fontsize=7)
    fig.suptitle("shared banks: one 9x9 tile per shared detector", fontsize=9)
    fig.tight_layout()
    return fig


STUDY = Study("symmetry", "the log's next step: read-out, weight sharing, shift training, baselines",
              variants(*VARIANTS), summary=summary_markdown)
