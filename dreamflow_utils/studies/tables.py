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
