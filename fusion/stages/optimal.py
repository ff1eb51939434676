"""Stage ``optimal``: the optimal pruning point, removing small fractions of the training part.

FUSION (both signs) and random remove 0-8 % of the training part; every run
takes the same optimiser steps as the unpruned run (budget rule ``steps``), so
that removing data does not also mean training less. The ``analyze`` stage
chooses the point on the fixed validation set and reports it on test, paired
against ratio 0 and against random at the same ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths
from fusion.stages import prune as prune_stage
from fusion.stages.common import (
    RunLog,
    budget_epochs,
    load_fingerprint_rows,
    load_graph_cache,
    load_records,
    load_split,
    prunable_ids,
    train_config,
)
from fusion.stages.train import fit_all, kept_sets
from fusion.stages.uncertainty import resolve


def run(
    key: str,
    arch: str,
    seeds: Sequence[int],
    ratios: Sequence[float] = (0.01, 0.02, 0.04, 0.06, 0.08),
    methods: Sequence[str] = ("random", "fusion_neg", "fusion_pos"),
    gamma: float = 0.1,
    size: str = "cpu",
    epochs: int | str = "tuned",
    lr: float | str = "tuned",
    budget: str = "steps",
    batch_size: int = 64,
    patience: int | None = None,
    num_threads: int | None = 1,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Train ``arch`` on the training part minus small fractions removed by each method.

    Args:
        key: Dataset key.
        arch: Architecture.
        seeds: Split seeds (the ``uncertainty`` stage's scores of the fixed protocol are used).
        ratios: Fractions of the training part removed (ratio 0 is always run).
        methods: Methods compared.
        gamma: Redundancy-weight decay. Defaults to 0.1.
        size: Model size preset. Defaults to ``"cpu"``.
        epochs: Epochs of the unpruned run, or ``"tuned"``.
        lr: Peak learning rate, or ``"tuned"``.
        budget: ``"steps"`` (default: equal optimiser steps at every ratio) or ``"epochs"``.
        batch_size: Batch size. Defaults to 64.
        patience: Early-stopping patience in epochs; None = no early stopping.
        num_threads: Torch threads. Defaults to 1.
        workers: Dask workers training runs side by side (``None``: one per
            core). Defaults to 1 (this process). The rows do not depend on it.
        scheduler: Address of an existing Dask scheduler. Defaults to None.

    Returns:
        One row per (seed, method, ratio) with the val and test MAE; ratio 0 once per seed.
    """
    n_epochs, peak_lr = resolve(key, epochs, lr)
    graphs = load_graph_cache(key)
    records = load_records(key).set_index("id")
    grid = [("random", 0.0)] + [(m, float(r)) for m in methods for r in ratios if r > 0]
    log = RunLog(paths.optimal_path(key))
    runs, cells = [], []
    for seed in map(int, seeds):
        split = load_split(key, seed)
        pool = prunable_ids(split, "fixed")
        scores = pd.read_csv(paths.uncertainty_path(key, seed), dtype={"id": str}).set_index("id").loc[pool]
        y = records.loc[pool, "target"].to_numpy(dtype=np.float64)
        X = load_fingerprint_rows(key, pool)
        table, _ = prune_stage.prune_pool(pool, grid, seed, X, y, scores, gamma)
        for method, ratio in grid:
            tr, va = kept_sets(table, split, method, ratio, "fixed")
            e = budget_epochs(n_epochs, len(tr), len(split["train"]), budget)
            runs.append(
                (
                    (tr, va, split["test"]),
                    train_config(e, batch_size, peak_lr, patience or e, seed, num_threads),
                )
            )
            cells.append((seed, method, ratio))

    def row(k: int, res: dict[str, Any]) -> dict[str, Any]:
        seed, method, ratio = cells[k]
        return {"dataset": key, "arch": arch, "seed": seed, **res, "method": method, "ratio": ratio}

    log.rows = fit_all(log, arch, size, graphs, runs, row, workers, scheduler)
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
