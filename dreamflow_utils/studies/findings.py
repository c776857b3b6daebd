"""The README's findings, rendered from the committed records and tables under results/.

    python -m dreamflow_utils.studies.findings                      # print the findings block
    python -m dreamflow_utils.studies.findings --write README.md    # rewrite it between the markers
    python -m dreamflow_utils.studies.findings --check README.md    # exit 1 if README's block is stale

Every number comes from a file under results/ (nothing is typed by hand):

* results/reproduction/<dataset>/*.json   the log's four experiments x seeds, the log's rule and
                                          wta="own_units" (`reproduction.summarize`);
* results/benchmark/benchmark.csv         ms per training batch of each engine (`bench`);
* results/benchmark/benchmark_models.csv  full runs of the faithful and the weight-shared model;
* results/symmetry/<dataset>/*.json       probes on the log's models, the unshared and shared variants;
* results/frontier.csv                    the frontier, one row per (dataset, variant, read-out, seed)
                                          (else the frontier records, `frontier.frontier_rows`).

"Best" is chosen by rule, never by name: the best mean over seeds among the variants with at least
`MIN_SEEDS` seeds (a variant with fewer seeds that ranks higher is named beside it); variants and
read-outs this module does not know are ranked like the others. A missing source gives a line that
says so. Seconds of study runs are not shown (they were measured under load); speeds come from the
benchmark only.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..core.files import atomic_write, read_csv_rows
from . import RESULTS, get_study, load_records, tables

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
MIN_SEEDS = 5
DATASET_NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}

__all__ = ["END", "MIN_SEEDS", "START", "readme_findings", "render", "replace_findings", "write_readme_findings"]


# ----------------------------------------------------------------------------- helpers
def _pct(ms, n=None) -> str:
    """'95.54 ± 0.11% (n=5)' from (mean, sd) in [0, 1]."""
    return tables.fmt(ms) + "%" + ("" if n is None else f" (n={n})")


def _span(values, fmt="{:.2f}", unit="") -> str:
    """'lo-hi' (' to ' when lo is negative) in `fmt`, then `unit`; one number when they print alike."""
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo + unit if lo == hi else f"{lo}{' to ' if min(values) < 0 else '-'}{hi}{unit}"


def _records(name, results):
    try:
        study = get_study(name)
    except ValueError:
        return []
    folder = Path(results) / name
    return load_records(study, folder) if folder.is_dir() else []


def _missing(what, path) -> str:
    return f"- **{what}**: no records under `{path}` yet."


# ----------------------------------------------------------------------------- the log
def reproduction_lines(results=RESULTS) -> list[str]:
    from .reproduction import summarize, wta_differences

    records = _records("reproduction", results)
    exps = [e for e in summarize(records)["experiments"] if e["n"]]
    if not exps:
        return [_missing("The log, reproduced", "results/reproduction/")]
    cells = [f"{e['name']} {e['mean']:.2f}" + ("" if math.isnan(e["sd"]) else f" ± {e['sd']:.2f}")
             + f"% (n={e['n']}) vs {e['log_accuracy']:.2f}%" for e in exps]
    lines = ["- **The log, reproduced** ([summary](results/reproduction/summary.md)): test accuracy after 10 epochs, "
             "mean ± sd over n seeds here vs the log's single run: " + "; ".join(cells) + "."]
    inside = [e for e in exps if not math.isnan(e["sd"]) and abs(e["mean"] - e["log_accuracy"]) <= e["sd"]]
    outside = []
    for e in exps:
        if e in inside or math.isnan(e["sd"]) or not e["sd"]:
            continue
        diff = e["log_accuracy"] - e["mean"]
        side = "above" if diff > 0 else "below"
        edge = max(e["accuracies"]) if diff > 0 else min(e["accuracies"])
        outside.append(f"{e['name']}'s {e['log_accuracy']:.2f}% is {abs(diff):.2f} points ({abs(diff) / e['sd']:.1f} "
                       f"sd) {side} our mean (our {'best' if diff > 0 else 'worst'} of {e['n']} seeds: {edge:.2f}%)")
    line = f"- The log's number is within one sd of our mean for {len(inside)} of {len(exps)} experiments"
    lines.append(line + ("; " + "; ".join(outside) if outside else "") + ".")
    diffs = {k: tables.stats(v) + (len(v),) for k, v in wta_differences(records).items() if len(v) > 1}
    if diffs:
        means = [m for m, _, _ in diffs.values()]
        small = sum(abs(m) < s for m, s, _ in diffs.values())
        ns = sorted({n for _, _, n in diffs.values()})
        lines.append(f"- **The log's quirk**, corrected (`wta=\"own_units\"`), changes the mean accuracy by "
                     f"{_span(means, '{:+.2f}')} points (paired by seed, {'/'.join(map(str, ns))} seeds each): less "
                     f"than the seed-to-seed sd in {small} of {len(diffs)} experiments.")
    return lines


# ----------------------------------------------------------------------------- speed
def speed_lines(results=RESULTS) -> list[str]:
    from ..core.experiments import LOG_EXPERIMENTS

    rows = read_csv_rows(Path(results) / "benchmark" / "benchmark.csv")
    rows = [r for r in rows if tables.number(r.get("reference ms")) and tables.number(r.get("numpy ms"))]
    if not rows:
        return [_missing("Speed", "results/benchmark/benchmark.csv")]
    ratio = {r["experiment"]: float(r["reference ms"]) / float(r["numpy ms"]) for r in rows}
    top = max(ratio, key=ratio.get)
    top_row = next(r for r in rows if r["experiment"] == top)
    line = (f"- **Speed** ([benchmark](results/benchmark/benchmark.md)): the compiled numpy engine trains a batch of "
            f"100 images in {_span([float(r['numpy ms']) for r in rows])} ms, "
            f"{_span(list(ratio.values()), '{:.0f}', 'x')} faster than the literal reference ({top}: "
            f"{float(top_row['reference ms']):.0f} -> {float(top_row['numpy ms']):.2f} ms)")
    log = [LOG_EXPERIMENTS[r["experiment"]][2] for r in rows if r["experiment"] in LOG_EXPERIMENTS]
    if log:
        line += f"; the log took {_span(log, '{:.0f}', ' s')} per epoch of 600 batches"
    rel = {label: [float(r[column]) / float(r["numpy ms"]) for r in rows if tables.number(r.get(column))]
           for column, label in (("TF XLA f32 ms", "TensorFlow XLA float32"), ("TF eager f64 ms", "eager TensorFlow"))}
    rel = [f"{label} {_span(v, '{:.1f}' if max(v) < 10 else '{:.0f}', 'x')}" for label, v in rel.items() if v]
    if rel:
        line += "; time relative to numpy: " + ", ".join(rel)
    return [line + "."]


# ----------------------------------------------------------------------------- the log's next step
def _config_of(record):
    """The record's Config (fields this version does not know dropped), or None."""
    from ..core.config import Config
    fields = Config.__dataclass_fields__
    try:
        return Config(**{k: v for k, v in (record.get("config") or {}).items() if k in fields})
    except (TypeError, ValueError):
        return None


def symmetry_lines(results=RESULTS) -> list[str]:
    from ..core.experiments import LOG_EXPERIMENTS

    records = _records("symmetry", results)
    if not records:
        return [_missing("Where the accuracy is lost", "results/symmetry/")]
    log_configs = {c.replace(seed=0, dataset="mnist") for c, _, _ in LOG_EXPERIMENTS.values()}
    lines = []
    for dataset in sorted({r["dataset"] for r in records}, key=lambda d: (d != "mnist", d)):
        rs = [r for r in records if r["dataset"] == dataset]
        log = [r for r in rs if r["family"] == "faithful" and (c := _config_of(r)) is not None
               and c.replace(seed=0, dataset="mnist") in log_configs]
        own, probe = tables.groups(log, ("variant",)), tables.groups(log, ("variant",), "probe_value")
        on = "" if dataset == "mnist" else f" on {DATASET_NAMES.get(dataset, dataset)}"
        parts = []
        if own and probe:
            parts.append(f"a ridge probe on the layer-1 codes of the log's {len(own)} models{on} gets "
                         f"{_span([100 * m for m, _, _ in probe.values()])}% (means over seeds), their own layer-2 "
                         f"read-out {_span([100 * m for m, _, _ in own.values()])}%")
        faithful, _ = tables.best(tables.groups([r for r in rs if r["family"] == "faithful"], ("variant",)), MIN_SEEDS)
        if faithful:
            (name,), (m, s, n) = faithful
            parts.append(f"the best unshared variant, `{name}`: {_pct((m, s), n)}")
        if parts:
            lines.append("- **Where the accuracy is lost** ([summary](results/symmetry/summary.md); exploratory: "
                         "variants compared on the test set): " + "; ".join(parts) + ".")
        shared, _ = tables.best(tables.groups([r for r in rs if r["family"] == "shared"], ("variant",)), MIN_SEEDS)
        if shared:
            (name,), (m, s, n) = shared
            epochs = {(_config_of(r) or _config_of({})).Nep for r in rs if r["variant"] == name}
            line = (f"- **Weight sharing** (one bank of 9x9 detectors at every position): the best shared "
                    f"variant{on}, `{name}`, gets {_pct((m, s), n)} in {'/'.join(map(str, sorted(epochs)))} epochs "
                    f"with the local rule and its own read-out")
            ladder = [{"setting": (lad.get("stride"), lad.get("pool"), lad.get("pool_mode"), lad.get("code"),
                                   lad.get("method")), "test_accuracy": lad.get("probe_accuracy"), "variant": r["variant"]}
                      for r in rs for lad in r.get("ladder", [])]
            top, _ = tables.best(tables.groups(ladder, ("variant", "setting")), MIN_SEEDS)
            if top:
                (variant, (stride, pool, mode, code, method)), (lm, ls, ln) = top
                line += (f"; `{variant}`'s bank read out at stride {stride}, {pool}x{pool} {mode}-pooled {code}, by a "
                         f"{method} probe: {_pct((lm, ls), ln)}")
            lines.append(line + ".")
    return lines


def models_line(results=RESULTS) -> list[str]:
    rows = [r for r in read_csv_rows(Path(results) / "benchmark" / "benchmark_models.csv")
            if tables.number(r.get("seconds")) and tables.number(r.get("test accuracy"))]
    if not rows:
        return []
    first = rows[0]
    cells = []
    for r in rows:
        cell = f"`{r['model']}` {100 * float(r['test accuracy']):.2f}% after {r['epochs']} epochs in {float(r['seconds']):.2f} s"
        if r is not first:
            cell += f" ({float(r['seconds']) / float(first['seconds']):.2f}x the time of the first)"
        cells.append(cell)
    return ["- **Shared against faithful** ([benchmark](results/benchmark/benchmark.md), full runs on MNIST, "
            "seed 0): " + "; ".join(cells) + "."]


# ----------------------------------------------------------------------------- frontier
def frontier_rows(results=RESULTS) -> list[dict]:
    """results/frontier.csv's rows (else the frontier records' rows)."""
    rows = read_csv_rows(Path(results) / "frontier.csv")
    if rows:
        return rows
    from .frontier import frontier_rows as rows_of
    return rows_of(_records("frontier", results))


def frontier_lines(results=RESULTS) -> list[str]:
    from .frontier import GOALS
    rows = [r for r in frontier_rows(results) if tables.number(r.get("test_accuracy")) is not None]
    if not rows:
        return [_missing("Frontier", "results/frontier.csv")]
    lines = []
    datasets = sorted({r["dataset"] for r in rows}, key=lambda d: (list(DATASET_NAMES).index(d) if d in DATASET_NAMES
                                                                  else len(DATASET_NAMES), d))
    for dataset in datasets:
        rs = [r for r in rows if r["dataset"] == dataset]
        parts = []
        for kind, label in (("local", "local model (own read-out)"), ("probe", "probe")):
            groups = tables.groups([r for r in rs if r["readout"] == kind or (kind == "probe" and r["readout"].startswith(
                "probe"))], ("variant", "readout"))
            top, above = tables.best(groups, MIN_SEEDS)
            goal = GOALS.get((dataset, kind))
            if top is None:
                parts.append(f"no {label} with >= {MIN_SEEDS} seeds")
                continue
            (variant, readout), (m, s, n) = top
            part = f"best {label}: `{variant}`" + (f" ({readout})" if kind == "probe" else "") + f" {_pct((m, s), n)}"
            if goal is not None:
                part += f", goal {100 * goal:.1f}%: {'met' if m >= goal else 'missed'} by {abs(100 * (m - goal)):.2f} points"
            if above:
                (av, ar), (am, as_, an) = above
                part += f" (higher with fewer than {MIN_SEEDS} seeds: `{av}` ({ar}) {_pct((am, as_), an)})"
            parts.append(part)
        other = sorted({r["readout"] for r in rs} - {"local", "baseline"} - {r["readout"] for r in rs
                                                                           if r["readout"].startswith("probe")})
        for readout in other:  # read-outs this module does not know: their best, by the same rule
            top, _ = tables.best(tables.groups([r for r in rs if r["readout"] == readout], ("variant",)), MIN_SEEDS)
            if top:
                parts.append(f"best {readout}: `{top[0][0]}` {_pct(top[1][:2], top[1][2])}")
        base = tables.groups([r for r in rs if r["readout"] == "baseline"], ("variant",))
        if base:
            cells = [f"{name} {_pct((m, s), n)}" for (name,), (m, s, n) in
                     sorted(base.items(), key=lambda kv: (-kv[1][0], kv[0]))]
            parts.append("baselines: " + ", ".join(cells))
        lines.append(f"- **Frontier, {DATASET_NAMES.get(dataset, dataset)}** ([summary](results/frontier/summary.md); "
                     f"settings chosen on a validation split): " + "; ".join(parts) + ".")
    return lines


# ----------------------------------------------------------------------------- the block
def render(results=RESULTS) -> str:
    """The findings block (Markdown bullets), from the files under `results`."""
    lines = (reproduction_lines(results) + speed_lines(results) + symmetry_lines(results) + models_line(results)
             + frontier_lines(results))
    return "\n".join(lines) + "\n"


def _span_of(text: str) -> tuple[int, int]:
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start or text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"the text must hold {START} and then {END}, once each")
    return start + len(START), end


def readme_findings(text: str) -> str:
    """The block between the markers of `text` (without the newlines that frame it)."""
    a, b = _span_of(text)
    return text[a:b].strip("\n") + "\n"


def replace_findings(text: str, block: str) -> str:
    a, b = _span_of(text)
    return text[:a] + "\n" + block.strip("\n") + "\n" + text[b:]


def write_readme_findings(path="README.md", results=RESULTS) -> bool:
    """Rewrite the findings block of the Markdown file `path` from `results`; True if it changed."""
    path = Path(path)
    text = path.read_text()
    new = replace_findings(text, render(results))
    if new != text:
        atomic_write(path, new)
    return new != text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dreamflow_utils.studies.findings",
                                description="The README's findings block, rendered from results/.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", metavar="README", help="rewrite the block between the findings markers of this file")
    g.add_argument("--check", metavar="README", help="exit 1 if this file's block differs from the rendered one")
    p.add_argument("--results", default=str(RESULTS), help="the results folder (default: the repository's)")
    a = p.parse_args(argv)
    try:
        if a.write:
            print(f"{a.write}: {'rewritten' if write_readme_findings(a.write, a.results) else 'already up to date'}")
        elif a.check:
            if readme_findings(Path(a.check).read_text()) != render(a.results):
                print(f"{a.check}: the findings block is stale; run python -m dreamflow_utils.studies.findings "
                      f"--write {a.check}", file=sys.stderr)
                return 1
            print(f"{a.check}: the findings block is up to date")
        else:
            print(render(a.results), end="")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
