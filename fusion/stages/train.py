"""Stage ``train``: one architecture on every kept set of one (dataset, seed), scored on the fixed test set.

One DVC cell per (dataset, architecture, seed) with its own CSV, so a new seed
or architecture trains only its own cells and a long study resumes cell by cell.

Under the fixed-validation protocol (the default) the kept training records
train and the whole validation part selects the checkpoint, identical for every
method; under the paper's protocol the kept validation records do. Learning
rate and budget come from the ``tune`` stage unless given; the budget rule
(:func:`fusion.stages.common.budget_epochs`) says whether a pruned run trains
the same epochs or the same optimiser steps as the unpruned one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from fusion import paths
from fusion.paths import column
from fusion.stages.common import (
    RunLog,
    budget_epochs,
    code_version,
    fit_and_score,
    ids_hash,
    load_graph_cache,
    load_split,
    run_key,
    train_config,
)
from fusion.stages.uncertainty import resolve


def fit_or_reuse(
    log: RunLog,
    arch: str,
    size: str,
    graphs: dict[str, Any],
    ids: tuple[Sequence[str], Sequence[str], Sequence[str]],
    config: Any,
) -> dict[str, Any]:
    """One training run, or its stored row when ``log`` holds the same run.

    The run is identified by its settings, the hash of its train/val/test ids
    and the training code's version (:func:`fusion.stages.common.code_version`).

    Args:
        log: The stage's :class:`fusion.stages.common.RunLog`.
        arch: Architecture.
        size: Model size preset.
        graphs: Graph of every id.
        ids: ``(train, val, test)`` ids.
        config: The :class:`fusion.train.TrainConfig`.

    Returns:
        :func:`fusion.stages.common.fit_and_score`'s fields plus ``run_key``.
    """
    tr, va, te = ids
    key = run_key(arch=arch, size=size, seed=config.seed, epochs=config.epochs, lr=config.lr,
                  batch=config.batch_size, patience=config.patience, threads=config.num_threads,
                  ids=ids_hash(tr, va, te), code=code_version())  # fmt: skip
    row = log.get(key)
    if row is None:
        row = {**fit_and_score(arch, size, graphs, tr, va, te, config), "run_key": key}
    return row


def kept_sets(
    table: pd.DataFrame, split: dict[str, list[str]], method: str, ratio: float, val_protocol: str
) -> tuple[list[str], list[str]]:
    """Training and validation ids of one kept set (split order).

    Raises:
        ValueError: If the fixed protocol's prune table holds validation ids.
    """
    kept = set(table.loc[table[column(method, ratio)].astype(bool), "id"])
    if val_protocol == "fixed":
        if kept & set(split["val"]):
            raise ValueError("fixed-validation protocol, but the prune table holds validation ids")
        return [i for i in split["train"] if i in kept], list(split["val"])
    return [i for i in split["train"] if i in kept], [i for i in split["val"] if i in kept]


def run(
    key: str,
    arch: str,
    seed: int,
    val_protocol: str = "fixed",
    size: str = "cpu",
    epochs: int | str = "tuned",
    lr: float | str = "tuned",
    budget: str = "epochs",
    batch_size: int = 64,
    patience: int | None = None,
    num_threads: int | None = 1,
    runs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Train ``arch`` on every kept set of (``key``, ``seed``) and score it on the test set.

    Args:
        key: Dataset key.
        arch: Architecture.
        seed: Split seed (also seeds the initialisation).
        val_protocol: ``"fixed"`` or ``"pruned"``.
        size: Model size preset. Defaults to ``"cpu"``.
        epochs: Epochs of the unpruned run, or ``"tuned"``.
        lr: Peak learning rate, or ``"tuned"``.
        budget: ``"epochs"`` or ``"steps"`` (see :func:`fusion.stages.common.budget_epochs`).
        batch_size: Batch size. Defaults to 64.
        patience: Early-stopping patience in epochs; None = no early stopping.
        num_threads: Torch threads. Defaults to 1.
        runs: Keep columns (``method@ratio``) to train; None = every column of the prune table.

    Returns:
        One row per (method, ratio), also written to ``results/train/<key>/<arch>-seed-<s>.csv``.
    """
    n_epochs, peak_lr = resolve(key, epochs, lr)
    graphs = load_graph_cache(key)
    split = load_split(key, seed)
    table = pd.read_csv(paths.prune_path(key, seed), dtype={"id": str})
    columns = [c for c in table.columns if "@" in c and (runs is None or c in runs)]
    n_full = len(split["train"])
    log = RunLog(paths.train_path(key, arch, seed))
    for col in columns:
        method, ratio = col.split("@")[0], float(col.split("@")[1])
        tr, va = kept_sets(table, split, method, ratio, val_protocol)
        e = budget_epochs(n_epochs, len(tr), n_full, budget)
        cfg = train_config(e, batch_size, peak_lr, patience or e, seed, num_threads)
        row = fit_or_reuse(log, arch, size, graphs, (tr, va, split["test"]), cfg)
        log.add({"dataset": key, "arch": arch, "seed": int(seed), "method": method, "ratio": ratio, **row})
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
