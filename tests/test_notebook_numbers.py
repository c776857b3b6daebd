"""Numbers in the notebooks' prose come from the records.

Every percentage or seconds figure quoted in a committed notebook's markdown cells must equal (to the
digits it is quoted with) a number printed in that notebook's own outputs, or a value of the committed
records the notebook cites (`results/<name>` anywhere in its cells): the records' accuracies (in %) and
seconds, their means over seeds, and the numbers of the summaries and tables there. A sentence that
states a measured number is printed by a code cell (`dreamflow_utils.notebook`: `reproduction_summary`,
`Quotes`, ...), so it cannot drift from the records. Reads files only: no notebook is executed.
"""
import csv
import json
import re
import statistics
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Notebooks being rewritten elsewhere that fail this check meanwhile: marked xfail (not strict) while listed.
# Empty now: 10_shared_bank and 11_frontier pass (11 failed on cell 0's "73.34%" before its rewrite).
REWRITING: set[str] = set()

NUMBER = r"(\d+(?:\.\d+)?)"
RANGE = NUMBER + r"(?:\s*[-–]\s*" + NUMBER + r")?"
PERCENT = re.compile(r"(?<![\w.])" + RANGE + r"\s?%")
SECONDS = re.compile(r"(?<![\w.:])" + RANGE + r"\s?(?:s|sec|seconds?)\b")
TOKEN = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
CITED = re.compile(r"results/([\w.=-]+)")
ACCURACY_KEY = re.compile(r"accurac|probe|vote|test_shift")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _prose(markdown: str) -> str:
    """The cell's prose: code blocks, inline code and links' targets removed."""
    markdown = re.sub(r"```.*?```", " ", markdown, flags=re.DOTALL)
    markdown = re.sub(r"`[^`]*`", " ", markdown)
    return re.sub(r"\]\([^)]*\)", "]", markdown)


def quoted(markdown: str):
    """(number as written, unit) of every percentage and seconds figure in the prose; a range 'a-b%' gives both."""
    prose = _prose(markdown)
    for pattern, unit in ((PERCENT, "%"), (SECONDS, "s")):
        for m in pattern.finditer(prose):
            yield from ((n, unit) for n in m.groups() if n is not None)


def _numbers(text: str) -> set[float]:
    return {float(t) for t in TOKEN.findall(text)}


def _table_seconds(text: str) -> set[float]:
    """Numbers in the columns of Markdown tables whose header speaks of seconds or time."""
    found, header = set(), None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [bool(re.search(r"second|\btime\b|(?:^|[\s(])s(?:$|[\s)])", c)) for c in cells]
            continue
        for timed, cell in zip(header, cells):
            if timed:
                found |= _numbers(cell)
    return found


def output_numbers(nb: dict) -> tuple[set[float], set[float]]:
    """(every number printed in the notebook's outputs: streams, text, Markdown; the seconds among them:
    numbers followed by 's' or 'seconds', and the time columns of Markdown tables)."""
    numbers, seconds = set(), set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts = [_text(out.get("text"))] + [_text(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
            for text in texts:
                numbers |= _numbers(text)
                seconds |= {float(n) for m in SECONDS.finditer(text) for n in m.groups() if n is not None}
                seconds |= _table_seconds(text)
    return numbers, seconds


def _walk(value, key=""):
    """(key, number) of every number in a JSON record (nested dicts and lists: the innermost key)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("config", "params", "identity", "versions", "load", "threads"):
                yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield key, float(value)


@cache
def record_values(name: str) -> tuple[frozenset, frozenset]:
    """(percentages, seconds) of the committed records under results/<name> (a folder or a file): each
    record's accuracies (x 100; not the per-epoch ones), the means over the records of one variant and
    data set of its accuracies and seconds, and every number of the folder's Markdown summaries and of
    its tables other than runs.csv."""
    path = RESULTS / name
    percent, seconds, groups = set(), set(), {}
    files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
    for f in files:
        if "superseded" in f.parts:
            continue
        if f.suffix == ".json":
            try:
                record = json.loads(f.read_text())
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            group = (record.get("variant"), record.get("dataset"), record.get("split"))
            for key, v in _walk({k: v for k, v in record.items() if k != "epoch_accuracies"}):
                if ACCURACY_KEY.search(key) and 0 <= v <= 1:
                    percent.add(100 * v)
                    groups.setdefault(("%", *group, key), []).append(100 * v)
                elif key.endswith("seconds") and key not in ("wall_seconds", "epoch_seconds"):
                    groups.setdefault(("s", *group, key), []).append(v)
        elif f.suffix == ".md":
            text = f.read_text()
            numbers = _numbers(text)
            percent |= numbers | {100 * v for v in numbers if 0 <= v <= 1}
            seconds |= {float(n) for m in SECONDS.finditer(text) for n in m.groups() if n is not None}
            seconds |= _table_seconds(text)
        elif f.suffix == ".csv" and f.name != "runs.csv":  # the runs tables repeat the records
            with open(f, newline="") as table:
                for row in csv.DictReader(table):
                    for column, cell in row.items():
                        numbers = _numbers(cell or "") if ";" not in (cell or "") else set()
                        if ACCURACY_KEY.search(column or ""):
                            percent |= {100 * v if 0 <= v <= 1 else v for v in numbers}
                        elif "second" in (column or ""):
                            seconds |= numbers
    for (unit, *_), values in groups.items():
        (percent if unit == "%" else seconds).add(statistics.mean(values))
    return frozenset(percent), frozenset(seconds)


def matches(written: str, values) -> bool:
    """Does a value round to the number as written (its digits after the point)?"""
    digits = len(written.split(".")[1]) if "." in written else 0
    target = float(written)
    return any(abs(round(v, digits) - target) < 10 ** -(digits + 3) for v in values)


def unmatched(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    printed, printed_seconds = output_numbers(nb)
    cited = sorted({m for c in nb["cells"] for m in CITED.findall(_text(c.get("source")))})
    percent = set().union(*(record_values(n)[0] for n in cited)) if cited else set()
    seconds = set().union(*(record_values(n)[1] for n in cited)) if cited else set()
    missing = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for written, unit in quoted(_text(cell["source"])):
            if not matches(written, printed | percent if unit == "%" else printed_seconds | seconds):
                missing.append(f"{path.name} cell {i}: {written}{'%' if unit == '%' else ' s'}")
    return missing


def _param(path):
    marks = [pytest.mark.xfail(strict=False, reason="being rewritten elsewhere: its prose quotes numbers that its "
                               "outputs and the records it cites do not hold")] if path.stem in REWRITING else []
    return pytest.param(path, marks=marks, id=path.stem)


@pytest.mark.parametrize("path", [_param(p) for p in NOTEBOOKS])
def test_prose_numbers_come_from_outputs_or_records(path):
    missing = unmatched(path)
    assert not missing, ("numbers quoted in prose that neither the notebook's outputs nor the committed records it "
                         "cites hold (print them from the records instead): " + "; ".join(missing))


def test_the_check_finds_a_number_that_is_not_there():
    """The check itself: a quoted figure is found, ranges give both ends, rounding follows the digits quoted."""
    found = list(quoted("Time: 12.5 s for the run, 66.5-69.9% after `--seeds 0-4`, 2.6 sd, 5 seeds, 1.30 ms, 9.2 it/s"))
    assert found == [("66.5", "%"), ("69.9", "%"), ("12.5", "s")]
    assert matches("69.9", {69.92}) and not matches("69.9", {69.96}) and matches("70", {69.54})
    assert not matches("12.5", {26.8, 2.1})


def test_every_notebook_is_checked():
    assert len(NOTEBOOKS) >= 12 and {"10_shared_bank", "11_frontier"} <= {p.stem for p in NOTEBOOKS}


# ----------------------------------------------------------------------------- the helpers that print the numbers
def _records():
    def rec(variant, seed, acc, seconds, started, finished, **more):
        return {"variant": variant, "seed": seed, "dataset": "mnist", "split": "test", "test_accuracy": acc,
                "seconds": seconds, "started": started, "finished": finished, **more}
    day = "2026-01-01T00:00:{:02d}+00:00"
    return [rec("a", 0, 0.70, 10.0, day.format(0), day.format(10), probe_value=0.9, code_sim_1px=0.5,
                ladder=[{"stride": 1, "pool": 3, "pool_mode": "sum", "code": "onehot", "method": "ridge",
                         "probe_accuracy": 0.96, "code_sim_1px": 0.8}]),
            rec("a", 1, 0.72, 12.0, day.format(5), day.format(15), probe_value=0.92, code_sim_1px=0.6,
                ladder=[{"stride": 1, "pool": 3, "pool_mode": "sum", "code": "onehot", "method": "ridge",
                         "probe_accuracy": 0.98, "code_sim_1px": 0.9}]),
            rec("b", 0, 0.60, 4.0, day.format(20), day.format(24)),
            {**rec("a", 0, 0.1, 1.0, "", ""), "dataset": "fashion"}]


def test_quotes_format_means_over_seeds():
    from dreamflow_utils.notebook import Quotes
    q = Quotes(_records())
    assert q("a") == "71.0% ± 1.4 (n=2)" and q("b", digits=2) == "60.00% (n=1)" and q.mean("a") == "71.0%"
    assert q("a", "probe_value") == "91.0% ± 1.4 (n=2)" and q.diff("a", "b") == "+11.0 points"
    assert q.diff_span(["a"], "probe_value", "test_accuracy") == "20 points"
    assert q.value("a", "code_sim_1px") == "0.55 ± 0.07"
    assert q.seconds("a") == "11 ± 1 s (load not recorded; up to 2 of the study's runs at a time, by their " \
                             "start and finish times)"
    assert q.ladder(1, 3, "sum", "onehot", "ridge", 2) == "97.00% ± 1.41 (n=2)"
    assert q.ladder_value(1, 3, "sum", "onehot", "ridge", "code_sim_1px") == "0.85 ± 0.07"
    assert Quotes.against(0.978, 0.985) == "0.7 points short of" and Quotes.against(0.99, 0.985) == "0.5 points above"
    with pytest.raises(KeyError):
        q("no such variant")


def test_reproduction_summary_prints_from_the_committed_records(capsys):
    from dreamflow_utils import notebook as N
    from dreamflow_utils.core.experiments import LOG_EXPERIMENTS
    c = LOG_EXPERIMENTS["log block C_s=20 N2=200"][0]
    run = N.Run("03", c, c, None, "", False, Path("."), log=N.find_log(c))
    N.reproduction_summary(run, compare=["log block C_s=10 N2=100"])
    out = capsys.readouterr().out
    n = len(list((RESULTS / "reproduction" / "mnist").glob("log_block_C_s=20_N2=200_seed_*.json")))
    assert f"log block C_s=20 N2=200, {n} committed seeds (results/reproduction/)" in out
    assert "the log's 73.34%" in out and "sd above the mean, above every seed" in out
    assert "log block C_s=20 N2=200 - log block C_s=10 N2=100: +" in out and "load not recorded" in out
    assert str(REPO) not in out  # paths relative to the repository
    N.reproduction_summary(N.Run("x", c.replace(C_s=7), c.replace(C_s=7), None, "", False, Path(".")))
    assert "nothing to conclude" in capsys.readouterr().out


def test_bench_span_and_overlap():
    from dreamflow_utils import notebook as N
    from dreamflow_utils.notebook.engine_speed import LOG_LABEL, LOG_MS_PER_BATCH
    table = {"log block C_s=10 N2=100": {"numpy": 1.0, "TF eager f64": 40.0, "TF graph f64": 4.0},
             "log block C_s=20 N2=200": {"numpy": 2.0, "TF eager f64": 60.0, "TF graph f64": 5.0}}
    assert N.bench_span(table, "numpy") == "1.00-2.00"
    assert N.bench_span(table, "TF eager f64", ["numpy", "TF graph f64"], 0) == "10-40"
    assert N.bench_span(table, LOG_LABEL, digits=0) == f"{LOG_MS_PER_BATCH['log block C_s=10 N2=100']:.0f}-" \
                                                      f"{LOG_MS_PER_BATCH['log block C_s=20 N2=200']:.0f}"
    assert N._overlap(_records()) == 2 and N._overlap([]) == 0 and N.span([3.0]) == "3.0"
