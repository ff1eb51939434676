"""Stage ``converge``: does doubling the training budget move the test MAE?

For the main architecture, random pruning at the ratios given (0 and 0.8 by
default) and the first seeds, the runs of the ``train`` stage are repeated
with ``factor`` times the epochs. Training counts as converged at a ratio when
the mean test MAE over those seeds changes by less than the stated threshold
(3 %), which the ``analyze`` stage checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from fusion import paths
from fusion.stages.common import RunLog, load_graph_cache, load_split
from fusion.stages.train import Settings, fit_all, kept_sets


def run(
    key: str,
    arch: str,
    seeds: Sequence[int] | Mapping[str, Sequence[int]],
    val_protocol: str = "fixed",
    ratios: Sequence[float] = (0.0, 0.8),
    factor: float = 2.0,
    settings: Settings = Settings(),
    workers: int | None = 1,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Retrain random@ratio with ``factor`` x the budget and put it beside the ``train`` stage's run.

    Args:
        key: Dataset key.
        arch: The main architecture (its ``train`` cells must exist for ``seeds``).
        seeds: Seeds checked, or dataset key -> seeds (3 in the study; 5 on
            jdft2d, whose 96 test records leave a 3-seed mean too noisy to
            resolve a 3 % change).
        val_protocol: ``"fixed"`` or ``"pruned"``.
        ratios: Random-pruning ratios checked. Defaults to 0 and 0.8.
        factor: Budget multiplier. Defaults to 2.
        settings: The training settings (:class:`fusion.stages.train.Settings`).
        workers: Dask workers training runs side by side (``None``: one per
            core). Defaults to 1 (this process). The rows do not depend on it.
        scheduler: Address of an existing Dask scheduler. Defaults to None.

    Returns:
        One row per (seed, ratio, budget factor 1 or ``factor``) with the test MAE.
    """
    if isinstance(seeds, Mapping):
        if key not in seeds:
            raise KeyError(f"converge: no seeds for dataset {key!r} (seeds are given for {sorted(seeds)})")
        seeds = seeds[key]
    n_epochs, peak_lr = settings.resolved(key)
    graphs = load_graph_cache(key)
    log = RunLog(paths.converge_path(key))
    runs, cells = [], []
    for seed in map(int, seeds):
        split = load_split(key, seed)
        table = pd.read_csv(paths.prune_path(key, seed), dtype={"id": str})
        base = pd.read_csv(paths.train_path(key, arch, seed)).set_index(["method", "ratio"])
        for ratio in map(float, ratios):
            tr, va = kept_sets(table, split, "random", ratio, val_protocol)
            cfg = settings.config(round(n_epochs * factor), peak_lr, seed, len(tr), len(split["train"]))
            runs.append(((tr, va, split["test"]), cfg))
            cells.append(
                (
                    {"dataset": key, "arch": arch, "seed": seed, "ratio": ratio},
                    cfg.epochs,
                    base.loc[("random", ratio)],
                )
            )

    def row(k: int, res: dict[str, Any]) -> dict[str, Any]:
        common, e, _ = cells[k]
        return {
            **common,
            "factor": float(factor),
            "epochs": e,
            "test_mae": res["test_mae"],
            "run_key": res["run_key"],
        }

    longer = fit_all(log, arch, settings.size, graphs, runs, row, workers, scheduler)
    rows = []
    for (common, _, one), again in zip(cells, longer, strict=True):
        # The train stage's run (factor 1) beside the longer one.
        rows.append({**common, "factor": 1.0, "epochs": int(one["epochs"]), "test_mae": float(one["test_mae"]),
                     "run_key": ""})  # fmt: skip
        rows.append(again)
    log.rows = rows
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
