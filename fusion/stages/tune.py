"""Stage ``tune``: the main architecture's learning rate and budget, once per dataset.

The search trains on the unpruned training part of one split (seed 0 by
default) and reads the **validation** MAE only: the test set plays no part in
any choice of the study. Every run goes to ``results/tune/<key>.csv``; the
choice, which the ``train``, ``converge`` and ``protocol`` stages read, to
``results/tune/<key>.json``.

Choice rule: the lowest validation MAE over the grid, except that the
cheapest budget whose MAE is within ``tolerance`` of the best (at the best
run's learning rate) wins, so that a longer budget is taken only when it pays.
Whether the chosen budget has converged is a separate check (the ``converge``
stage doubles it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fusion import paths
from fusion.stages.common import (
    RunLog,
    code_version,
    fit_and_score,
    ids_hash,
    load_graph_cache,
    load_split,
    run_key,
    train_config,
    write_json,
)


def choose(grid: pd.DataFrame, tolerance: float = 0.02) -> dict[str, Any]:
    """Pick the learning rate and epochs from a search table.

    Args:
        grid: One row per run with ``lr``, ``epochs`` and ``val_mae``.
        tolerance: Relative validation-MAE margin within which a cheaper budget
            is preferred. Defaults to 0.02 (2 %).

    Returns:
        ``{"lr", "epochs", "val_mae", "best_val_mae", "tolerance"}``.
    """
    best = grid.loc[grid["val_mae"].idxmin()]
    same_lr = grid[grid["lr"] == best["lr"]].sort_values("epochs")
    pick = same_lr[same_lr["val_mae"] <= best["val_mae"] * (1 + tolerance)].iloc[0]
    return {
        "lr": float(pick["lr"]),
        "epochs": int(pick["epochs"]),
        "val_mae": float(pick["val_mae"]),
        "best_val_mae": float(best["val_mae"]),
        "tolerance": float(tolerance),
    }


def run(
    key: str,
    arch: str = "cgcnn",
    size: str = "cpu",
    seed: int = 0,
    lrs: Sequence[float] = (1e-3, 3e-3),
    epochs: dict[str, Sequence[int]] | Sequence[int] = (50, 100),
    batch_size: int = 64,
    tolerance: float = 0.02,
    num_threads: int | None = 1,
) -> pd.DataFrame:
    """Search learning rate x epochs for ``arch`` on the unpruned split ``seed`` of ``key``.

    Args:
        key: Dataset key.
        arch: Architecture. Defaults to ``"cgcnn"``.
        size: Model size preset. Defaults to ``"cpu"``.
        seed: Split and initialisation seed. Defaults to 0.
        lrs: Peak learning rates of the one-cycle schedule.
        epochs: Budgets in epochs, or a dict of them per dataset key.
        batch_size: Batch size. Defaults to 64.
        tolerance: See :func:`choose`. Defaults to 0.02.
        num_threads: Torch threads. Defaults to 1.

    Returns:
        The search table (also written); the choice is written beside it.
    """
    budgets = epochs[key] if isinstance(epochs, dict) else epochs
    graphs = load_graph_cache(key)
    split = load_split(key, seed)
    log, version = RunLog(paths.tune_path(key)), code_version()
    ids = ids_hash(split["train"], split["val"], split["test"])
    for lr in lrs:
        for n_epochs in budgets:
            # No early stopping: every run uses its whole budget; the best
            # validation checkpoint is the model.
            cfg = train_config(n_epochs, batch_size, lr, int(n_epochs), seed, num_threads)
            rk = run_key(arch=arch, size=size, seed=seed, epochs=n_epochs, lr=lr, batch=batch_size,
                         threads=num_threads, ids=ids, code=version)  # fmt: skip
            row = log.get(rk)
            if row is None:
                res = fit_and_score(arch, size, graphs, split["train"], split["val"], split["test"], cfg)
                res.pop("test_mae")  # model selection sees validation only
                row = {"dataset": key, "arch": arch, "seed": int(seed), "lr": float(lr), **res, "run_key": rk}
            log.add(row)
    grid = log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
    write_json(paths.tune_choice_path(key), {"dataset": key, "arch": arch, **choose(grid, tolerance)})
    return grid
