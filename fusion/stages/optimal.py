"""Stage ``optimal``: the optimal pruning point, removing small fractions of the training part.

FUSION (both signs) and random remove 0-8 % of the training part; every run
takes the same optimiser steps as the unpruned run (budget rule ``steps``), so
that removing data does not also mean training less. The ``analyze`` stage
chooses the point on the fixed validation set and reports it on test, paired
against ratio 0 and against random at the same ratio.

The stage may use more seeds than the rest of the study (the paper's claim
needs 10). For a seed of the study it reuses that seed's split
(``prepare``) and surrogate scores (``uncertainty``); for any other seed it
builds the split with the same function on the same ids (:func:`split_of`)
and trains the surrogate with the same settings itself, keeping its scores in
``results/optimal/<key>-surrogates/`` for a rerun.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths
from fusion.splits import random_split
from fusion.stages import prune as prune_stage
from fusion.stages.common import (
    RunLog,
    load_fingerprint_rows,
    load_graph_cache,
    load_records,
    load_split,
    prunable_ids,
)
from fusion.stages.surrogates import scores_of, settings_of
from fusion.stages.train import Settings, fit_all, kept_sets


def split_of(key: str, seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)) -> dict[str, list[str]]:
    """The train/val/test split of dataset ``key`` for ``seed``.

    ``prepare`` writes one split per seed of the study; for another seed this
    calls the function ``prepare`` uses (:func:`fusion.splits.random_split`)
    on the same ids, so split ``seed`` is the same whichever stage builds it.

    Args:
        key: Dataset key.
        seed: Split seed.
        fractions: Train, val and test fractions (``prepare.fractions``); used
            only for a seed ``prepare`` did not write. Defaults to 70/15/15.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.
    """
    if paths.split_path(key, int(seed)).exists():
        return load_split(key, int(seed))
    return random_split(load_records(key)["id"].tolist(), int(seed), tuple(fractions))


def run(
    key: str,
    arch: str,
    seeds: Sequence[int],
    ratios: Sequence[float] = (0.01, 0.02, 0.04, 0.06, 0.08),
    methods: Sequence[str] = ("random", "fusion_neg", "fusion_pos"),
    gamma: float = 0.1,
    settings: Settings = Settings(budget="steps"),
    workers: int | None = 1,
    scheduler: str | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    surrogate: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train ``arch`` on the training part minus small fractions removed by each method.

    Args:
        key: Dataset key.
        arch: Architecture.
        seeds: Split seeds; may go beyond the study's (module docstring).
        ratios: Fractions of the training part removed (ratio 0 is always run).
        methods: Methods compared.
        gamma: Redundancy-weight decay. Defaults to 0.1.
        settings: The training settings (:class:`fusion.stages.train.Settings`);
            by default budget ``"steps"``: equal optimiser steps at every ratio.
        workers: Dask workers training runs side by side (``None``: one per
            core). Defaults to 1 (this process). The rows do not depend on it.
        scheduler: Address of an existing Dask scheduler. Defaults to None.
        fractions: Train/val/test fractions of a split ``prepare`` did not
            write (``prepare.fractions``). Defaults to 70/15/15.
        surrogate: The ``uncertainty`` stage's parameters, for a seed it did
            not score. Defaults to None (its defaults, tuned budget).

    Returns:
        One row per (seed, method, ratio) with the val and test MAE; ratio 0 once per seed.
    """
    n_epochs, peak_lr = settings.resolved(key)
    graphs = load_graph_cache(key)
    records = load_records(key).set_index("id")
    grid = [("random", 0.0)] + [(m, float(r)) for m in methods for r in ratios if r > 0]
    log = RunLog(paths.optimal_path(key))
    runs, cells = [], []
    sur = settings_of(key, surrogate)
    for seed in map(int, seeds):
        split = split_of(key, seed, fractions)
        pool = prunable_ids(split, "fixed")
        scores = scores_of(key, seed, pool, graphs, paths.surrogates_dir("optimal", key), **sur)
        y = records.loc[pool, "target"].to_numpy(dtype=np.float64)
        X = load_fingerprint_rows(key, pool)
        table, _ = prune_stage.prune_pool(pool, grid, seed, X, y, scores, gamma)
        for method, ratio in grid:
            tr, va = kept_sets(table, split, method, ratio, "fixed")
            cfg = settings.config(n_epochs, peak_lr, seed, len(tr), len(split["train"]))
            runs.append(((tr, va, split["test"]), cfg))
            cells.append((seed, method, ratio))

    def row(k: int, res: dict[str, Any]) -> dict[str, Any]:
        seed, method, ratio = cells[k]
        return {"dataset": key, "arch": arch, "seed": seed, **res, "method": method, "ratio": ratio}

    log.rows = fit_all(log, arch, settings.size, graphs, runs, row, workers, scheduler)
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
