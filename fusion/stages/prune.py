"""Stage ``prune``: every method prunes every seed's prunable records at its ratios.

Methods (names used everywhere, see :mod:`fusion.report.palette`):

- ``random``;
- ``fusion_neg``: FUSION with ``U = sigmoid(Lambda U_epi - U_ale)`` (s = -1, the
  paper's formula and its public code), ``fusion_pos``: the opposite sign (s = +1);
- ``matched_neg`` / ``matched_pos``: target-matched random controls, drawn so that
  the kept set has the same count per target decile as ``fusion_neg``'s /
  ``fusion_pos``'s at the same ratio (:func:`fusion.selection.target_matched_random`);
- ``uncertainty`` (U with s = -1 only), ``weight`` (W only), ``diversity``
  (k-centre greedy) and ``active`` (ensemble active learning).

Ratio 0 is one column, ``random@0``: every method keeps everything there.
Every kept set's shift from the pool's target distribution (KS distance,
top-decile share) goes to the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths
from fusion.paths import column
from fusion.stages.common import load_fingerprint_rows, load_records, load_split, prunable_ids, write_csv

#: FUSION variants and the uncertainty column each uses.
FUSION_SIGNS = {"fusion_neg": "U_neg", "fusion_pos": "U_pos"}
#: Target-matched controls and the FUSION variant each matches.
MATCHED_TO = {"matched_neg": "fusion_neg", "matched_pos": "fusion_pos"}
METHODS = ("random", *FUSION_SIGNS, *MATCHED_TO, "uncertainty", "weight", "diversity", "active")


def runs(
    methods: Sequence[str],
    ratios: Sequence[float],
    baselines: Sequence[str],
    baseline_ratios: Sequence[float],
) -> list[tuple[str, float]]:
    """The (method, ratio) grid: ``random@0``, ``methods x ratios``, ``baselines x baseline_ratios``.

    Raises:
        ValueError: Unknown method, a ratio outside (0, 1), or a matched control without its FUSION variant.
    """
    grid = [("random", 0.0)]
    grid += [(m, float(r)) for m in methods for r in ratios]
    grid += [(m, float(r)) for m in baselines for r in baseline_ratios if (m, float(r)) not in grid]
    for m, r in grid:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {METHODS}")
        if m in MATCHED_TO and (MATCHED_TO[m], r) not in grid:
            raise ValueError(f"{m}@{r:g} needs {MATCHED_TO[m]}@{r:g} in the grid")
        if not (0.0 <= r < 1.0) or (r == 0.0 and m != "random"):
            raise ValueError(f"bad ratio {r} for {m}")
    return grid


def prune_pool(
    ids: Sequence[str],
    grid: Sequence[tuple[str, float]],
    seed: int,
    X: np.ndarray,
    y: np.ndarray,
    scores: pd.DataFrame | None = None,
    gamma: float = 0.1,
    active: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prune one pool with every (method, ratio) of ``grid``.

    Args:
        ids: Pool ids.
        grid: (method, ratio) pairs (:func:`runs`).
        seed: Seed of random, matched, diversity and active.
        X: ``[n, d]`` fingerprints of the pool.
        y: Targets of the pool (active learning, matched controls, shift).
        scores: ``U_neg`` and ``U_pos`` per pool id, in ``ids`` order (FUSION, uncertainty).
        gamma: Redundancy-weight decay. Defaults to 0.1.
        active: Extra keyword arguments of the active learner.

    Returns:
        ``(table, summary)``: ``id``, ``y``, ``d_nn``, ``W``, the scores and ``I``
        per sign, one boolean keep column per run; and one summary row per run
        with sizes, FUSION's epsilon and the target shift.
    """
    from fusion.selection import (
        importance,
        nearest_neighbor_distance,
        redundancy_weight,
        select,
        target_matched_random,
    )
    from fusion.stats import target_shift

    ids = [str(i) for i in ids]
    y = np.asarray(y, dtype=np.float64)
    d_nn = nearest_neighbor_distance(X)
    W = redundancy_weight(d_nn, gamma)
    table: dict[str, Any] = {"id": ids, "y": y, "d_nn": d_nn, "W": W}
    if scores is not None:
        for method, col in FUSION_SIGNS.items():
            table[col] = scores[col].to_numpy()
            table[f"I_{method.split('_')[1]}"] = importance(table[col], W)
    rows = []
    for method, ratio in grid:
        epsilon = None
        if ratio == 0:
            kept = np.ones(len(ids), dtype=bool)
        elif method in MATCHED_TO:
            kept = target_matched_random(y, table[column(MATCHED_TO[method], ratio)], seed)
        else:
            name = "fusion" if method in FUSION_SIGNS else method
            U = table["U_neg"] if method == "uncertainty" else table.get(FUSION_SIGNS.get(method, ""))
            extra = {"y": y, **(active or {})} if method == "active" else {}
            sel = select(name, ratio, ids=ids, seed=seed, U=U, X=X, gamma=gamma, d_nn=d_nn, **extra)
            kept, epsilon = sel.kept_mask, sel.epsilon
        table[column(method, ratio)] = kept
        shift = target_shift(y, kept)
        rows.append(
            {
                "method": method,
                "ratio": float(ratio),
                "n_pool": len(ids),
                "n_kept": int(kept.sum()),
                "epsilon": np.nan if epsilon is None else float(epsilon),
                "ks": shift["ks"],
                "top_decile_share": shift["top_decile_share"],
                "kept_mean": shift["kept_mean"],
            }
        )
    return pd.DataFrame(table), pd.DataFrame(rows)


def run(
    key: str,
    seeds: Sequence[int],
    val_protocol: str = "fixed",
    methods: Sequence[str] = ("random", "fusion_neg", "fusion_pos", "matched_neg"),
    ratios: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
    baselines: Sequence[str] = ("uncertainty", "weight", "diversity", "active"),
    baseline_ratios: Sequence[float] = (0.4, 0.8),
    gamma: float = 0.1,
    active: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Prune every seed's prunable records of ``key`` with every run of the grid; write the tables.

    Args:
        key: Dataset key.
        seeds: Split seeds.
        val_protocol: ``"fixed"`` (prune the training part) or ``"pruned"`` (train + val).
        methods: Methods run at every ratio of ``ratios``.
        ratios: Fractions removed.
        baselines: Methods run at ``baseline_ratios`` only.
        baseline_ratios: Their fractions removed.
        gamma: Redundancy-weight decay. Defaults to 0.1.
        active: Extra keyword arguments of the active learner.

    Returns:
        The summary over seeds (also written).
    """
    grid = runs(methods, ratios, baselines, baseline_ratios)
    records = load_records(key).set_index("id")
    parts = []
    for seed in seeds:
        pool = prunable_ids(load_split(key, int(seed)), val_protocol)
        scores = (
            pd.read_csv(paths.uncertainty_path(key, int(seed)), dtype={"id": str}).set_index("id").loc[pool]
        )
        X = load_fingerprint_rows(key, pool)
        y = records.loc[pool, "target"].to_numpy(dtype=np.float64)
        table, summary = prune_pool(pool, grid, int(seed), X, y, scores, gamma, active)
        write_csv(table, paths.prune_path(key, int(seed)))
        summary.insert(0, "seed", int(seed))
        parts.append(summary)
    summary = pd.concat(parts, ignore_index=True)
    write_csv(summary, paths.prune_summary_path(key))
    return summary
