"""Mean ± sd tables of study records (Markdown)."""
from __future__ import annotations

import math
import statistics


def stats(values) -> tuple[float, float | None] | None:
    """(mean, sd) of the numbers in `values` (None and "" skipped; sd None for one value); None if empty."""
    v = [float(x) for x in values if x not in (None, "") and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else None)


def fmt(ms, scale: float = 100, digits: int = 2) -> str:
    """'mean ± sd' (scaled: accuracies in %), '' for None."""
    if ms is None:
        return ""
    m, s = ms
    return f"{scale * m:.{digits}f}" + ("" if s is None else f" ± {scale * s:.{digits}f}")


def by(records, *keys) -> dict:
    """Records grouped by the values of `keys`, groups in order of first appearance."""
    out = {}
    for r in records:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def number(x) -> float | None:
    """x as a float; None for what is not a number (None, "", text, NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def groups(records, keys, value="test_accuracy") -> dict:
    """{key: (mean, sd, n)} of `value` per group of `keys` (records without a number skipped)."""
    out = {}
    for key, rs in by(records, *keys).items():
        v = [x for x in (number(r.get(value)) for r in rs) if x is not None]
        if v:
            m, s = stats(v)
            out[key] = (m, s, len(v))
    return out


def best(grouped: dict, min_seeds: int):
    """(key, (mean, sd, n)) of the best mean among the `groups` with >= min_seeds values (ties: the
    first key in sorted order), and the same for a group with fewer values whose mean is higher, or None."""
    ranked = sorted(grouped.items(), key=lambda kv: (-kv[1][0], str(kv[0])))
    top = next(((k, g) for k, g in ranked if g[2] >= min_seeds), None)
    above = None
    if ranked and ranked[0][1][2] < min_seeds and (top is None or ranked[0][1][0] > top[1][0]):
        above = ranked[0]
    return top, above


def markdown(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def group_table(records, keys, columns, scale=None) -> str:
    """One row per group of `keys`: n and mean ± sd of each column; `columns` maps a record field to
    its header; `scale[field]` = (factor, digits), default (100, 2) (accuracies in %)."""
    scale = scale or {}
    rows = []
    for key, rs in by(records, *keys).items():
        rows.append(list(key) + [len(rs)] + [fmt(stats(r.get(c) for r in rs), *scale.get(c, (100, 2)))
                                             for c in columns])
    return markdown(list(keys) + ["n"] + list(columns.values()), rows)


def measured_alone(record) -> bool | None:
    """Were the record's seconds measured with the machine to itself (one run at a time, nothing else
    runnable at its start, and a 1-minute load average below cores + 1: a run's own threads and the
    batch's client, not a busy machine caught at a quiet instant)? None when the record does not
    say (made before loads were recorded)."""
    load = record.get("load")
    if not isinstance(load, dict):
        return None
    busy = load.get("loadavg") is not None and load.get("cores") and load["loadavg"] >= load["cores"] + 1
    return load.get("jobs", 1) == 1 and not load.get("running_others") and not busy


def timed(records, key: str = "seconds"):
    """((mean, sd), note) of `key` over the runs measured alone, note "" (some runs under load: which share
    was alone); with none alone over every run, the note says under what load (or that it was not
    recorded). None without timed runs."""
    records = [r for r in records if r.get(key) not in (None, "")]
    if not records:
        return None
    alone = [r for r in records if measured_alone(r)]
    if alone:
        note = "" if len(alone) == len(records) else f" (alone: {len(alone)} of {len(records)} runs)"
        return stats(float(r[key]) for r in alone), note
    known = [r for r in records if measured_alone(r) is not None]
    if not known:
        return stats(float(r[key]) for r in records), " (load not recorded)"
    jobs = sorted({r["load"].get("jobs", 1) for r in known})
    busy = "other processes busy" if jobs == [1] else f"{'/'.join(map(str, jobs))} runs at a time"
    return stats(float(r[key]) for r in known), f" (under load: {busy})"


def seconds_cell(records, key: str = "seconds", digits: int = 1) -> str:
    """`timed` as a table cell: 'mean ± sd' of the runs measured alone, else with the load they ran under."""
    t = timed(records, key)
    return "" if t is None else fmt(t[0], 1, digits) + t[1]
