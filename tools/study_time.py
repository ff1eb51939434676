"""How much compute the recorded study took, from its own artefacts.

The default study runs for days, two stages at a time, across sessions and
machines, so no single clock measured it. Each stage leaves two records of its
time, and this script adds them up per stage kind:

* the executed notebook's papermill ``duration`` (s), which covers only the
  stage's last invocation (a resumed stage reuses its finished runs in seconds);
* the ``seconds`` column of the stage's results table (one row per training
  run; ``tune``, ``train``, ``protocol``, ``optimal``, ``ood``, ``transfer``),
  which covers every run, in whichever session it ran.

A stage counts with the larger of the two. The total is in core-hours (every
stage runs on one core with one torch thread); the study's wall time on 2 cores
is half of it when both cores are always busy, which is how it ran
(``tools/parallel_repro.py``). The runs were timed with another stage on the
other core, on an Intel Xeon and on an AMD EPYC (about 1.2-2.1x slower): the
figures are what this study took, not a benchmark.

Only stages that ``dvc status`` reports up to date count: a stale stage's
record belongs to an earlier study.

Usage, from the repository root with the venv's ``dvc`` on the path::

    python tools/study_time.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml


def notebook_seconds(path: Path) -> float:
    """Papermill's ``duration`` of an executed notebook (0 if it has none)."""
    if not path.exists():
        return 0.0
    meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
    return float(meta.get("duration") or 0.0)


def table_seconds(paths: list[Path]) -> float:
    """Sum of the ``seconds`` column over the stage's results tables (0 without one)."""
    total = 0.0
    for p in paths:
        if p.suffix == ".csv" and p.exists():
            df = pd.read_csv(p)
            if "seconds" in df.columns:
                total += float(df["seconds"].fillna(0).sum())
    return total


def stage_times(lock_path: Path = Path("dvc.lock")) -> pd.DataFrame:
    """One row per stage recorded in ``dvc.lock``: kind, notebook and table seconds, counted seconds."""
    stages = yaml.safe_load(lock_path.read_text())["stages"]
    rows = []
    for name, spec in stages.items():
        outs = [Path(o["path"]) for o in spec.get("outs", [])]
        notebooks = [p for p in outs if p.suffix == ".ipynb"]
        tables: list[Path] = []
        for p in outs:
            tables += sorted(p.rglob("*.csv")) if p.is_dir() else [p]
        nb = sum(notebook_seconds(p) for p in notebooks)
        runs = table_seconds(tables)
        rows.append(
            {"stage": name, "kind": re.split(r"[@-]", name)[0], "notebook_s": nb, "runs_s": runs,
             "counted_s": max(nb, runs)}
        )  # fmt: skip
    return pd.DataFrame(rows)


def stale_stages() -> set[str]:
    """Names of the stages ``dvc status`` reports changed."""
    # The venv's dvc, beside this interpreter, also when the venv is not on PATH.
    beside = Path(sys.executable).with_name("dvc")
    dvc = str(beside) if beside.exists() else shutil.which("dvc") or "dvc"
    out = subprocess.run([dvc, "status", "--json"], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out or "{}"))


def main() -> int:
    """Print core-hours per stage kind and in total."""
    times = stage_times()
    skipped = sorted(stale_stages() & set(times["stage"]))
    if skipped:
        print(f"not counted, stale ({len(skipped)}): {', '.join(skipped)}\n")
    times = times[~times["stage"].isin(skipped)]
    by_kind = times.groupby("kind", sort=False).agg(stages=("stage", "size"), core_hours=("counted_s", "sum"))
    by_kind["core_hours"] /= 3600
    total = float(by_kind["core_hours"].sum())
    print(by_kind.round(2).to_string())
    print(f"\ntotal: {total:.1f} core-hours; on 2 cores, both busy: {total / 2:.1f} h wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
