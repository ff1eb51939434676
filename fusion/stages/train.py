"""Stage ``train``: one architecture on every kept set of one (dataset, seed), scored on the fixed test set.

One DVC cell per (dataset, architecture, seed) with its own CSV, so a new seed
or architecture trains only its own cells and a long study resumes cell by cell.

Under the fixed-validation protocol (the default) the kept training records
train and the whole validation part selects the checkpoint, identical for every
method; under the paper's protocol the kept validation records do. Learning
rate and budget come from the ``tune`` stage unless given; the budget rule
(:func:`fusion.stages.common.budget_epochs`) says whether a pruned run trains
the same epochs or the same optimiser steps as the unpruned one.

The runs of a cell are independent: :func:`fit_all` sends those not stored
yet to Dask workers (:mod:`fusion.parallel`; ``workers`` local processes of one
thread each, or an existing cluster), saves each as it finishes and writes the
CSV in the cell's own order at the end, so the rows are the same for any
number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fusion import paths
from fusion.parallel import map_ordered
from fusion.parallel import workers as dask_workers
from fusion.paths import column
from fusion.stages.common import (
    RunLog,
    budget_epochs,
    code_version,
    fit_and_score,
    graphs_hash,
    ids_hash,
    load_graph_cache,
    load_split,
    run_key,
    train_config,
)
from fusion.stages.uncertainty import resolve

Ids = tuple[Sequence[str], Sequence[str], Sequence[str]]
"""``(train, val, test)`` ids of one run."""


@dataclass(frozen=True)
class Settings:
    """The ``train`` group of ``params.yaml``: how every run of the training stages is trained.

    ``train``, ``converge``, ``transfer``, ``protocol``, ``optimal`` and ``ood``
    take one ``Settings`` (their notebooks build it from the injected values),
    so the budget is defined once for all of them.

    Attributes:
        size: Model size preset. Defaults to ``"cpu"``.
        epochs: Epochs of the unpruned run, or ``"tuned"`` (the ``tune`` stage's
            choice for the dataset).
        lr: Peak learning rate, or ``"tuned"``.
        budget: ``"epochs"`` or ``"steps"``: how a pruned run's epochs follow
            from the unpruned run's (:func:`fusion.stages.common.budget_epochs`).
            Defaults to ``"epochs"``.
        batch_size: Batch size. Defaults to 64.
        patience: Early-stopping patience in epochs; None (default) = no early stopping.
        num_threads: Torch threads per run. Defaults to 1.
    """

    size: str = "cpu"
    epochs: int | str = "tuned"
    lr: float | str = "tuned"
    budget: str = "epochs"
    batch_size: int = 64
    patience: int | None = None
    num_threads: int | None = 1

    def resolved(self, key: str) -> tuple[int, float]:
        """Epochs of the unpruned run and peak learning rate for dataset ``key`` (``"tuned"`` read from ``tune``)."""
        return resolve(key, self.epochs, self.lr)

    def config(
        self, epochs: int, lr: float, seed: int, n_train: int | None = None, n_full: int | None = None
    ) -> Any:
        """The :class:`fusion.train.TrainConfig` of one run.

        Args:
            epochs: Epochs of the unpruned run (times a budget factor, if any).
            lr: Peak learning rate.
            seed: Initialisation seed.
            n_train: Training records of this run; with ``n_full``, the budget
                rule sets its epochs. Defaults to None: ``epochs`` as given.
            n_full: Training records of the unpruned run.

        Returns:
            The config; early stopping after ``patience`` epochs, or never.
        """
        e = int(epochs) if n_train is None else budget_epochs(epochs, n_train, n_full or n_train, self.budget)
        return train_config(e, self.batch_size, lr, self.patience or e, seed, self.num_threads)


def key_of(arch: str, size: str, ids: Ids, config: Any, graphs_id: str, code: str | None = None) -> str:
    """The :class:`fusion.stages.common.RunLog` key of one run.

    The run is identified by its settings, the hash of its train/val/test ids,
    the hash of the graphs it reads (:func:`fusion.stages.common.graphs_hash`)
    and the training code's version (:func:`fusion.stages.common.code_version`).

    Args:
        arch: Architecture.
        size: Model size preset.
        ids: ``(train, val, test)`` ids.
        config: The :class:`fusion.train.TrainConfig`.
        graphs_id: :func:`~fusion.stages.common.graphs_hash` of the graphs.
        code: The training code's version; computed when None. Defaults to None.

    Returns:
        The key.
    """
    tr, va, te = ids
    return run_key(arch=arch, size=size, seed=config.seed, epochs=config.epochs, lr=config.lr,
                   batch=config.batch_size, patience=config.patience, threads=config.num_threads,
                   ids=ids_hash(tr, va, te), graphs=graphs_id, code=code or code_version())  # fmt: skip


def fit_or_reuse(
    log: RunLog, arch: str, size: str, graphs: dict[str, Any], ids: Ids, config: Any
) -> dict[str, Any]:
    """One training run, or its stored row when ``log`` holds the same run (:func:`key_of`).

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
    key = key_of(arch, size, ids, config, graphs_hash(graphs))
    row = log.get(key)
    if row is None:
        row = {**fit_and_score(arch, size, graphs, *ids, config), "run_key": key}
    return row


def _fit_task(task: tuple[str, str, dict[str, Any], Ids, Any]) -> dict[str, Any]:
    """Worker: one training run (:func:`fusion.stages.common.fit_and_score`)."""
    arch, size, graphs, ids, config = task
    return fit_and_score(arch, size, graphs, *ids, config)


def fit_all(
    log: RunLog,
    arch: str,
    size: str,
    graphs: dict[str, Any],
    runs: Sequence[tuple[Ids, Any]],
    row: Callable[[int, dict[str, Any]], dict[str, Any]],
    workers: int | None = 1,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Every run of a stage cell: reused from ``log``, or trained on Dask workers.

    A finished run is added to ``log`` (so written to disk) at once, in
    completion order, so a killed cell resumes at its missing runs. The rows
    returned are in the order of ``runs``: pass them to ``log.rows`` before
    ``log.frame()`` and the CSV does not depend on the number of workers.

    Args:
        log: The stage's :class:`fusion.stages.common.RunLog`.
        arch: Architecture.
        size: Model size preset.
        graphs: Graph of every id (sent once to each worker).
        runs: ``((train, val, test) ids, TrainConfig)`` of each run.
        row: ``row(k, result)`` builds the CSV row of run ``k`` from
            :func:`fit_or_reuse`'s fields (``run_key`` included).
        workers: Local worker processes (one torch thread each; ``None``: one
            per core). Defaults to 1: this process, no cluster.
        scheduler: Address of an existing Dask scheduler (or the
            ``DASK_SCHEDULER_ADDRESS`` environment variable). Defaults to None.

    Returns:
        One row per run, in the order of ``runs``.
    """
    # Once per cell: both hash files or tensors.
    code, graphs_id = code_version(), graphs_hash(graphs)
    keys = [key_of(arch, size, ids, cfg, graphs_id, code) for ids, cfg in runs]
    rows: list[dict[str, Any] | None] = [None] * len(runs)
    todo = []
    for k, key in enumerate(keys):
        stored = log.get(key)
        if stored is None:
            todo.append(k)
        else:
            rows[k] = row(k, stored)
            log.add(rows[k])

    def done(j: int, result: dict[str, Any]) -> None:
        k = todo[j]
        rows[k] = row(k, {**result, "run_key": keys[k]})
        log.add(rows[k])

    if todo:
        with dask_workers(workers if len(todo) > 1 else 1, scheduler) as client:
            # One copy of the graphs per worker, not one per task.
            shared = graphs if client is None else client.scatter([graphs], broadcast=True)[0]
            tasks = [(arch, size, shared, runs[k][0], runs[k][1]) for k in todo]
            map_ordered(_fit_task, tasks, client, on_result=done)
    return [r for r in rows if r is not None]


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


def plan(
    key: str,
    seed: int,
    val_protocol: str = "fixed",
    settings: Settings = Settings(),
    runs: Sequence[str] | None = None,
) -> list[tuple[str, float, Ids, Any]]:
    """The runs of one ``train`` cell: what :func:`run` trains, and ``tools/check_rows.py`` re-runs.

    Args:
        key: Dataset key.
        seed: Split seed (also seeds the initialisation).
        val_protocol: ``"fixed"`` or ``"pruned"``.
        settings: The training settings. Defaults to :class:`Settings`'s defaults.
        runs: Keep columns (``method@ratio``) to plan; None = every column of the prune table.

    Returns:
        ``(method, ratio, (train, val, test) ids, TrainConfig)`` per keep column, in the prune table's order.
    """
    n_epochs, peak_lr = settings.resolved(key)
    split = load_split(key, seed)
    table = pd.read_csv(paths.prune_path(key, seed), dtype={"id": str})
    planned = []
    for col in (c for c in table.columns if "@" in c and (runs is None or c in runs)):
        method, ratio = col.split("@")[0], float(col.split("@")[1])
        tr, va = kept_sets(table, split, method, ratio, val_protocol)
        cfg = settings.config(n_epochs, peak_lr, seed, len(tr), len(split["train"]))
        planned.append((method, ratio, (tr, va, split["test"]), cfg))
    return planned


def run(
    key: str,
    arch: str,
    seed: int,
    val_protocol: str = "fixed",
    settings: Settings = Settings(),
    runs: Sequence[str] | None = None,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Train ``arch`` on every kept set of (``key``, ``seed``) and score it on the test set.

    Args:
        key: Dataset key.
        arch: Architecture.
        seed: Split seed (also seeds the initialisation).
        val_protocol: ``"fixed"`` or ``"pruned"``.
        settings: The training settings. Defaults to :class:`Settings`'s defaults.
        runs: Keep columns (``method@ratio``) to train; None = every column of the prune table.
        workers: Dask workers training runs side by side (``None``: one per
            core). Defaults to 1 (this process). The rows do not depend on it.
        scheduler: Address of an existing Dask scheduler. Defaults to None.

    Returns:
        One row per (method, ratio), also written to ``results/train/<key>/<arch>-seed-<s>.csv``.
    """
    graphs = load_graph_cache(key)
    planned = plan(key, seed, val_protocol, settings, runs)
    log = RunLog(paths.train_path(key, arch, seed))
    cells = [(method, ratio) for method, ratio, _, _ in planned]
    todo = [(ids, cfg) for _, _, ids, cfg in planned]

    def row(k: int, result: dict[str, Any]) -> dict[str, Any]:
        method, ratio = cells[k]
        return {"dataset": key, "arch": arch, "seed": int(seed), "method": method, "ratio": ratio, **result}

    log.rows = fit_all(log, arch, settings.size, graphs, todo, row, workers, scheduler)
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
