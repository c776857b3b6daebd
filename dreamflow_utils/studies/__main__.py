"""python -m dreamflow_utils.studies STUDY [--seeds 0-4] [--variants A,B] [--dataset mnist] [--jobs 2]
[--scheduler ADDRESS] [--dry-run] [--summarize] [--list]

Runs a study's variants x seeds through the batch (resumable: finished runs are skipped), writes
its records under results/<study>/<dataset>/ and the table results/<study>/runs.csv;
--summarize (instead of running) writes results/<study>/summary.md from the records (and the
study's exports, e.g. results/frontier.csv). With DREAMFLOW_QUICK=1 the runs
are smoke tests (2000 samples, 1 epoch) recorded under runs/studies/<study>/ instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.config import DATASETS
from ..core.files import atomic_write, repo_root
from ..core.quick import quick_mode
from ..sweeps.batch import add_cluster_options, run_batch
from ..sweeps.cli import ArgumentParser, CliError, nonnegative_int, parse_seeds, positive_int, run_cli
from . import get_study, load_records, registry, study_runs


@run_cli
def main(argv=None) -> int:
    p = ArgumentParser(prog="python -m dreamflow_utils.studies", description=__doc__.split("\n")[0])
    p.add_argument("study", help="one of: " + ", ".join(registry()))
    p.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,1,7 (default 0-4)")
    p.add_argument("--variants", default=None, help="comma-separated variant names (default: all)")
    p.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)}")
    add_cluster_options(p)
    p.add_argument("--results-dir", default=None, help="records and table (default results/<study>)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    p.add_argument("--summarize", action="store_true", help="write results/<study>/summary.md from the records")
    p.add_argument("--list", action="store_true", help="list the study's variants")
    a = p.parse_args(argv)
    try:
        study = get_study(a.study)
        quick = quick_mode()
    except ValueError as e:
        raise CliError(str(e)) from None
    jobs, retries = positive_int(a.jobs, "--jobs"), nonnegative_int(a.retries, "--retries")
    if a.dataset not in DATASETS:
        raise CliError(f"--dataset must be one of {', '.join(DATASETS)}, got {a.dataset!r}")
    folder = Path(a.results_dir) if a.results_dir else (
        repo_root() / "runs" / "studies" / study.name if quick else study.folder)
    if a.list:
        for v in study.variants.values():  # a model's name holds its settings (`model_name`)
            what = v.baseline if v.config is None else v.note
            print(f"{v.family:9s} {v.name}" + (f"  ({what})" if what else ""))
        return 0
    if not a.summarize:
        variants = None if a.variants is None else [v.strip() for v in a.variants.split(",")]
        try:
            runs = study_runs(study, parse_seeds(a.seeds), variants, a.dataset, quick)
        except ValueError as e:
            raise CliError(str(e)) from None
        if a.dry_run:
            for r in runs:
                print(r.run_id)
            print(f"{len(runs)} runs")
            return 0
        records = run_batch(runs, folder, csv=folder / "runs.csv", jobs=jobs, scheduler=a.scheduler,
                            retries=retries)
        failed = [r for r in records if r.get("status") != "ok"]
        for r in failed:
            print(f"FAILED {r.get('run_id')}: {(r.get('error') or '').splitlines()[0]}", file=sys.stderr)
        print(f"{len(records) - len(failed)}/{len(records)} ok; records in {folder}/")
        if failed:
            return 1
    if a.summarize:
        if study.summary is None:
            raise CliError(f"study {study.name!r} has no summary")
        records = load_records(study, folder)
        text = study.summary(records)
        atomic_write(folder / "summary.md", text)
        for name, content in (study.exports(records) if study.exports else {}).items():
            atomic_write(folder.parent / name, content)
            print(f"wrote {folder.parent / name}")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
