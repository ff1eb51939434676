"""Stage ``ood``: leave-one-cluster-out evaluation of pruning methods (see :mod:`fusion.ood`).

Two sources of folds (``folds``):

* ``kmeans``: our own k-means clusters of the SOAP fingerprints (seed 0); the
  other clusters form the fold's pool, split into train and a fixed
  validation part by the seed.
* ``paper``: the FUSION group's SOAP leave-one-cluster-out folds (MatUQ,
  ``data/<name>/<name>.soap_loco.json.gz``, restricted to the kept records by
  ``prepare``), with their own train/val/test.

For each fold whose held-out cluster has at least ``min_test`` records, a
surrogate trained on the fold's training part scores it, each method prunes it
at ``ratio``, and ``arch`` trained on the kept records is tested on the
held-out cluster. Repeated over ``seeds`` (seeding the k-means folds' train/val
split, the surrogate, random pruning and the initialisation). Finished
training runs are kept in the CSV, and the fold surrogates' scores in
``results/ood/<key>-surrogates/``; a rerun reuses both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths
from fusion.stages import prune as prune_stage
from fusion.stages.common import (
    RunLog,
    load_fingerprint_rows,
    load_graph_cache,
    load_records,
    write_csv,
)
from fusion.stages.surrogates import cached_scores, settings_of
from fusion.stages.train import Settings, fit_all


def run(
    key: str,
    arch: str,
    seeds: Sequence[int] = (0,),
    n_clusters: int = 5,
    min_test: int = 50,
    ratio: float = 0.4,
    methods: Sequence[str] = ("random", "fusion_neg", "fusion_pos"),
    val_fraction: float = 0.15,
    gamma: float = 0.1,
    surrogate: dict[str, Any] | None = None,
    settings: Settings = Settings(),
    folds: Sequence[str] = ("kmeans",),
    workers: int | None = 1,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Leave-one-cluster-out comparison of ``methods`` at ``ratio``.

    Args:
        key: Dataset key.
        arch: Architecture trained.
        seeds: Seeds (see the module docstring). Defaults to (0,).
        n_clusters: Number of k-means clusters. Defaults to 5.
        min_test: Smallest held-out cluster evaluated. Defaults to 50.
        ratio: Fraction of each fold's training part removed. Defaults to 0.4.
        methods: Methods compared.
        val_fraction: Validation share of each fold's pool. Defaults to 0.15.
        gamma: Redundancy-weight decay. Defaults to 0.1.
        surrogate: The ``uncertainty`` stage's parameters.
        settings: The training settings (:class:`fusion.stages.train.Settings`; its
            budget rule does not apply: every fold trains the tuned epochs).
        folds: Fold sources, ``"kmeans"`` and/or ``"paper"`` (module docstring).
            Defaults to k-means only.
        workers: Dask workers training runs side by side (``None``: one per
            core). Defaults to 1 (this process). The rows do not depend on it.
        scheduler: Address of an existing Dask scheduler. Defaults to None.

    Returns:
        One row per (fold source, seed, cluster, method), written to
        ``results/ood/<key>.csv``; the k-means cluster of every id goes to
        ``results/ood/<key>-clusters.csv``.

    Raises:
        ValueError: On an unknown fold source, or ``paper`` for a dataset without such folds.
    """
    import json

    from fusion.ood import leave_one_cluster_out, paper_folds, soap_clusters

    unknown = set(folds) - {"kmeans", "paper"}
    if unknown:
        raise ValueError(f"unknown fold sources {sorted(unknown)}; use 'kmeans' and/or 'paper'")
    sur = settings_of(key, surrogate)
    n_epochs, peak_lr = settings.resolved(key)
    graphs = load_graph_cache(key)
    records = load_records(key).set_index("id")
    ids = records.index.tolist()
    X = load_fingerprint_rows(key, ids)
    labels = soap_clusters(X, n_clusters, 0)
    write_csv(pd.DataFrame({"id": ids, "cluster": labels}), paths.ood_clusters_path(key))
    loco = json.loads(paths.loco_path(key).read_text()) if "paper" in folds else None
    if loco is not None and not loco["folds"]:
        raise ValueError(f"{key}: the dataset has no paper LOCO folds; use folds: [kmeans]")
    pos = {i: k for k, i in enumerate(ids)}
    grid = [(m, float(ratio)) for m in methods]
    cfg = settings.config(n_epochs, peak_lr, seed=0)
    runs, cells = [], []
    for source in folds:
        for seed in map(int, seeds):
            split = (
                leave_one_cluster_out(ids, labels, seed, val_fraction)
                if source == "kmeans"
                else paper_folds(loco)
            )
            for fold in split:
                if len(fold["test"]) < min_test or len(fold["train"]) < 2 or not fold["val"]:
                    continue
                pool = fold["train"]
                scores = cached_scores(paths.surrogates_dir("ood", key), graphs, pool, seed, **sur)
                y = records.loc[pool, "target"].to_numpy(dtype=np.float64)
                Xp = X[[pos[i] for i in pool]]
                table, _ = prune_stage.prune_pool(pool, grid, seed, Xp, y, scores.set_index("id"), gamma)
                for method, r in grid:
                    kept = set(table.loc[table[paths.column(method, r)], "id"])
                    tr = [i for i in pool if i in kept]
                    runs.append(((tr, fold["val"], fold["test"]), replace(cfg, seed=seed)))
                    cells.append((source, seed, fold["cluster"], len(fold["test"]), method, r))

    def row(k: int, res: dict[str, Any]) -> dict[str, Any]:
        source, seed, cluster, size_test, method, r = cells[k]
        return {"dataset": key, "arch": arch, "folds": source, "seed": seed, "cluster": cluster,
                "cluster_size": size_test, "method": method, "ratio": r, **res}  # fmt: skip

    log = RunLog(paths.ood_path(key))
    log.rows = fit_all(log, arch, settings.size, graphs, runs, row, workers, scheduler)
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
