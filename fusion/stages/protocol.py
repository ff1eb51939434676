"""Stage ``protocol``: what the paper's protocol (validation pruned with the pool) changes.

Once, on one dataset and one ratio: the surrogate is retrained on train + val,
the methods prune train + val together (METHOD.md step 1), and each kept
validation part selects its own checkpoint. The ``analyze`` stage sets these
runs beside the fixed-validation runs of the same seeds.
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
    load_fingerprint_rows,
    load_graph_cache,
    load_records,
    load_split,
    prunable_ids,
)
from fusion.stages.train import Settings, fit_or_reuse, kept_sets
from fusion.stages.uncertainty import resolve, surrogate_frame


def run(
    key: str,
    arch: str,
    seeds: Sequence[int],
    ratio: float = 0.4,
    methods: Sequence[str] = ("random", "fusion_neg", "fusion_pos"),
    gamma: float = 0.1,
    surrogate: dict[str, Any] | None = None,
    settings: Settings = Settings(),
) -> pd.DataFrame:
    """Prune train + val together and train with the kept validation part.

    Args:
        key: Dataset key.
        arch: Architecture trained.
        seeds: Split seeds.
        ratio: Fraction of train + val removed. Defaults to 0.4.
        methods: Methods compared (FUSION variants and random).
        gamma: Redundancy-weight decay. Defaults to 0.1.
        surrogate: The ``uncertainty`` stage's parameters (model, epochs, lr, ...).
        settings: The training settings (:class:`fusion.stages.train.Settings`).

    Returns:
        One row per (seed, method) with the val/test MAE and the kept validation size.
        Each finished run is written at once (``results/protocol/<key>.csv``), so a
        killed stage resumes at its first missing run (:class:`fusion.stages.common.RunLog`).
    """
    sur = {k: v for k, v in (surrogate or {}).items() if k not in {"val_protocol"}}
    s_epochs, s_lr = resolve(key, sur.pop("epochs", "tuned"), sur.pop("lr", "tuned"))
    n_epochs, peak_lr = settings.resolved(key)
    graphs = load_graph_cache(key)
    records = load_records(key).set_index("id")
    grid = [(m, float(ratio)) for m in methods]
    log = RunLog(paths.protocol_path(key))
    for seed in map(int, seeds):
        split = load_split(key, seed)
        pool = prunable_ids(split, "pruned")
        scores, _ = surrogate_frame([graphs[i] for i in pool], pool, seed, epochs=s_epochs, lr=s_lr, **sur)
        y = records.loc[pool, "target"].to_numpy(dtype=np.float64)
        table, _ = prune_stage.prune_pool(
            pool, grid, seed, load_fingerprint_rows(key, pool), y, scores.set_index("id"), gamma
        )
        for method, r in grid:
            tr, va = kept_sets(table, split, method, r, "pruned")
            cfg = settings.config(n_epochs, peak_lr, seed, len(tr), len(split["train"]))
            res = fit_or_reuse(log, arch, settings.size, graphs, (tr, va, split["test"]), cfg)
            log.add(
                {"dataset": key, "arch": arch, "seed": seed, "method": method, "ratio": r,
                 "val_protocol": "pruned", **res}
            )  # fmt: skip
    return log.frame().drop(columns="run_key")  # the key stays in the CSV
