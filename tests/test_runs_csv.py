"""The runs tables (`store.collect`: <runs_dir>/runs.csv, results/<study>/runs.csv) hold a run's config
as JSON, in `Config`'s field order; `store.parse_cell` reads it (and the Python reprs of older tables),
and `store.json_cells` converts an older table in place without touching anything else."""
import csv
import dataclasses
import json
from pathlib import Path

import pytest

from dreamflow_utils.sweeps import store as S
from dreamflow_utils.core.config import Config

REPO = Path(__file__).resolve().parents[1]


def _record(run_id="r1", **changes):
    config = Config(layout="block", C_s=4, N2=20, T_s=1000, Nep=2, seed=1, **changes).to_dict()
    return {"group": "mnist", "name": run_id, "func": "dreamflow_utils.studies:run_variant", "run_id": run_id,
            "params": {"study": "s", "variant": "v", "seed": 1, "config": config}, "seed": 1, "quick": False,
            "status": "ok", "test_accuracy": 0.5, "seconds": 1.5, "epoch_accuracies": [0.4, 0.5], "config": config}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_collect_writes_the_config_as_json_in_field_order(tmp_path):
    rec = _record(wta="own_units")
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "r1.json").write_text(json.dumps(rec))
    S.collect(tmp_path)
    (row,) = _rows(tmp_path / "runs.csv")
    assert row["config"] == json.dumps(rec["config"]) and row["config"].startswith('{"layout": "block"')
    assert list(json.loads(row["config"])) == [f.name for f in dataclasses.fields(Config)]
    assert S.parse_cell(row["config"]) == rec["config"] and json.loads(row["config"])["stride"] is None
    assert Config(**S.parse_cell(row["config"])) == Config(**rec["config"])


def test_parse_cell_reads_json_and_the_old_python_repr():
    config = _record()["config"]
    assert S.parse_cell(json.dumps(config)) == config == S.parse_cell(repr(config))
    assert S.parse_cell("") is None and S.parse_cell(None) is None
    with pytest.raises((ValueError, SyntaxError)):
        S.parse_cell("{'layout': ")


def test_json_cells_converts_an_old_table_in_place_and_nothing_else(tmp_path):
    old = [_record("a"), _record("b", xi=0.02), {**_record("c"), "config": None}]
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as f:  # as collect wrote it before: the dict's str(), \r\n line ends
        w = csv.DictWriter(f, ["run_id", "config", "epoch_accuracies", "error"], extrasaction="ignore")
        w.writeheader()
        for r in old:
            w.writerow({**r, "epoch_accuracies": ";".join(map(str, r["epoch_accuracies"])), "error": "x, 'y'"})
    before = _rows(path)
    assert before[0]["config"].startswith("{'layout': 'block'")
    assert S.json_cells(path) == 2
    after = _rows(path)
    assert [r["config"] for r in after] == [json.dumps(old[0]["config"]), json.dumps(old[1]["config"]), ""]
    assert [{k: v for k, v in r.items() if k != "config"} for r in after] == \
        [{k: v for k, v in r.items() if k != "config"} for r in before]
    text = path.read_bytes()
    assert text.count(b"\r\n") == 4 and S.json_cells(path) == 0 and path.read_bytes() == text  # idempotent
    assert S.main(["json-cells", str(path)]) == 0


@pytest.mark.parametrize("table", sorted(str(p.relative_to(REPO)) for p in (REPO / "results").glob("*/runs.csv")))
def test_committed_tables_hold_json_configs_equal_to_their_records(table):
    rows = _rows(REPO / table)
    assert rows and "config" in rows[0]
    folder = (REPO / table).parent
    for row in rows:
        if not row["config"]:
            continue
        config = json.loads(row["config"])  # JSON, not a Python repr
        record = json.loads((folder / row["group"] / f"{row['run_id']}.json").read_text())
        assert config == record["config"] and row["config"] == json.dumps(record["config"]), row["run_id"]
