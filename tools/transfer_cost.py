"""Estimate the core-hours of the ``transfer`` grid before running it.

Each run is priced as the main architecture's unpruned run on the same dataset
(the median ``seconds`` of the ``train`` stage's ratio-0 rows at the tuned
budget, as recorded by the study), times the architecture's training time relative to the main one
(``benchmarks/results/denormals.json``: 300 phonons records, 1 thread,
subnormals flushed), times the fraction of data and budget it trains on
(:func:`fusion.stages.transfer.cost_seconds`). It is an estimate: the relative
costs were measured on one dataset at one size.

Usage, from the repository root::

    python tools/transfer_cost.py                      # the cells of params.yaml
    python tools/transfer_cost.py --datasets phonons dielectric --all-architectures
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusion import paths
from fusion.models import available
from fusion.stages.common import load_tuned
from fusion.stages.transfer import cost_seconds


def relative_costs(main: str, path: str = "benchmarks/results/denormals.json") -> dict[str, float]:
    """Architecture -> training time relative to ``main`` (subnormals flushed, as the trainer runs)."""
    archs = json.loads(Path(path).read_text())["architectures"]
    base = archs[main]["seconds_flushed"]
    return {a: v["seconds_flushed"] / base for a, v in archs.items()}


def unpruned_seconds(params: dict, keys: list[str], main: str) -> dict[str, float]:
    """Dataset -> median seconds of the main architecture's unpruned ``train`` runs at the tuned budget.

    Rows of an earlier budget (a stale table) are left out; the median because
    the recorded times vary with the machine and with what ran beside them.
    """
    out = {}
    for key in keys:
        tuned = load_tuned(key)["epochs"]
        tables = [paths.train_path(key, main, int(s)) for s in params["seeds"]]
        runs = pd.concat([pd.read_csv(t) for t in tables if t.exists()] or [pd.DataFrame()])
        if not runs.empty:
            runs = runs[(runs["ratio"] == 0) & (runs["method"] == "random") & (runs["epochs"] == tuned)]
        if runs.empty:
            raise SystemExit(
                f"no unpruned train run of {main} on {key} at {tuned} epochs: nothing to price by"
            )
        out[key] = float(runs["seconds"].median())
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the estimate per cell and in total."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", help="price these datasets instead of params.yaml's cells")
    parser.add_argument(
        "--all-architectures", action="store_true", help="every architecture but the main one"
    )
    parser.add_argument("--seeds", type=int, help="number of seeds (default: params.yaml's)")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path("params.yaml").read_text())
    tr, main_arch = params["transfer"], params["analyze"]["arch"]
    cells = dict(tr["cells"])
    if args.datasets:
        archs = (
            [a for a in available() if a != main_arch]
            if args.all_architectures
            else [*dict.fromkeys(c["arch"] for c in cells.values())]
        )
        cells = {f"{k}-{a}": {"dataset": k, "arch": a} for k in args.datasets for a in archs}
    seeds = list(range(args.seeds)) if args.seeds else tr["seeds"]
    keys = sorted({c["dataset"] for c in cells.values()})
    est = cost_seconds(
        cells, seeds, tr["ratios"], tr["methods"], tr["converge_seeds"], tr["factor"],
        unpruned_seconds(params, keys, main_arch), relative_costs(main_arch), params["train"]["budget"],
    )  # fmt: skip
    est["core_hours"] = est["seconds"] / 3600
    print(est.drop(columns="seconds").round(2).to_string(index=False))
    total = est["core_hours"].sum()
    print(f"\n{len(est)} cells, {int(est['runs'].sum())} runs, {len(seeds)} seeds: about {total:.1f} core-hours "
          f"({total / 2:.1f} h on 2 cores)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
