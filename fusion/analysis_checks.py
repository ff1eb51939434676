"""The checks beside the main comparison: kept-set shift, uncertainty vs target, protocol, optimal point, OOD.

Pure functions of the stages' long tables, like :mod:`fusion.analysis` (which
holds the accuracy gate, the paired comparisons with random pruning and the
effective size) and with its conventions: an improvement is ``100 (MAE_ref -
MAE) / MAE_ref`` (positive = lower error), paired by seed (and by held-out
cluster out of distribution), summarised by
:func:`fusion.stats.paired_improvement`, with Holm's correction over all rows of
a table. The ``analyze`` stage reads and writes the files.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fusion import stats

__all__ = ["ood_table", "optimal_table", "protocol_table", "shift_table", "uncertainty_target_table"]


# ----------------------------------------------------------------------------- kept-set shift and uncertainty


def shift_table(prune_summary: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of each kept set's target shift (KS distance, top-decile share).

    Args:
        prune_summary: Every dataset's prune summary (one row per seed, method
            and ratio) with a ``dataset`` column.

    Returns:
        ``dataset``, ``method``, ``ratio`` and the means of ``ks``,
        ``top_decile_share``, ``kept_mean`` and ``epsilon``.
    """
    cols = ["ks", "top_decile_share", "kept_mean", "epsilon"]
    return prune_summary.groupby(["dataset", "method", "ratio"], sort=True)[cols].mean().reset_index()


def uncertainty_target_table(
    targets: dict[str, pd.Series], scores: dict[tuple[str, int], pd.DataFrame]
) -> pd.DataFrame:
    """Spearman correlation of the surrogate's uncertainties with the target, per dataset and seed.

    A score that ranks structures by their target makes any prefix removal cut
    one end of the target range, shifting the training distribution.

    Args:
        targets: Dataset key -> target per record id (str index).
        scores: ``(dataset key, seed)`` -> the uncertainty stage's scores
            (``id``, ``u_ale``, ``u_epi``).

    Returns:
        ``dataset``, ``seed``, ``n``, ``spearman_u_ale``, ``spearman_u_epi``.
    """
    from scipy.stats import spearmanr

    rows = []
    for (key, seed), frame in sorted(scores.items()):
        u = frame.set_index("id")
        y = targets[key].loc[u.index].to_numpy(dtype=float)
        row: dict[str, Any] = {"dataset": key, "seed": seed, "n": len(u)}
        for col in ("u_ale", "u_epi"):
            row[f"spearman_{col}"] = float(spearmanr(u[col], y).statistic)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- protocol, optimal point, ood


def protocol_table(protocol: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Pruned-validation runs beside the fixed-validation runs of the same seeds, method and ratio.

    Args:
        protocol: The protocol stage's runs (``val_protocol`` = ``pruned``).
        runs: The train stage's runs (fixed validation set).

    Returns:
        ``dataset``, ``method``, ``ratio``, ``n``, mean ``val_mae``/``test_mae``
        and kept validation size under each protocol.
    """
    if protocol.empty:
        return pd.DataFrame()
    keys = ["dataset", "arch", "seed", "method", "ratio"]
    fixed = runs.merge(protocol[keys], on=keys)
    both = pd.concat([fixed.assign(val_protocol="fixed"), protocol], ignore_index=True)
    g = both.groupby(["dataset", "method", "ratio", "val_protocol"])
    return g.agg(n=("seed", "count"), val_mae=("val_mae", "mean"), test_mae=("test_mae", "mean"),
                 n_val=("n_val", "mean")).reset_index()  # fmt: skip


def optimal_table(optimal: pd.DataFrame) -> pd.DataFrame:
    """The optimal pruning point, chosen on validation and reported on test.

    Per (dataset, method), the ratio with the lowest seed-mean validation MAE
    (ratio 0 included, so "no pruning" can win) is chosen; its test MAE is then
    compared, paired by seed, with ratio 0 and with random at the same ratio.

    Args:
        optimal: The optimal stage's runs (``val_mae`` and ``test_mae`` per
            dataset, seed, method and ratio, ratio 0 included).

    Returns:
        One row per (dataset, method, versus): ``chosen_ratio``, ``n``,
        ``improvement_pct``, ``ci_low``, ``ci_high``, ``p``, ``p_holm`` (Holm over all rows).
    """
    if optimal.empty:
        return pd.DataFrame()
    rows = []
    for (key, method), part in optimal[optimal["ratio"] > 0].groupby(["dataset", "method"], sort=True):
        zero = optimal[(optimal["dataset"] == key) & (optimal["ratio"] == 0)].set_index("seed")
        cand = pd.concat([part, zero.reset_index()]).groupby("ratio")["val_mae"].mean()
        chosen = float(cand.idxmin())
        at = zero if chosen == 0 else part[part["ratio"] == chosen].set_index("seed")
        refs = {"ratio 0": zero}
        if method != "random" and chosen > 0:
            rand = optimal[
                (optimal["dataset"] == key) & (optimal["method"] == "random") & (optimal["ratio"] == chosen)
            ]
            refs["random"] = rand.set_index("seed")
        for versus, ref in refs.items():
            seeds = sorted(set(ref.index) & set(at.index))
            res = stats.paired_improvement(
                ref.loc[seeds, "test_mae"].to_numpy(), at.loc[seeds, "test_mae"].to_numpy()
            )
            rows.append(
                {"dataset": key, "method": method, "versus": versus, "chosen_ratio": chosen, "n": res["n"],
                 "improvement_pct": res["improvement_pct"], "ci_low": res["ci95"][0],
                 "ci_high": res["ci95"][1], "p": res["p"]}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    out["p_holm"] = stats.holm(out["p"].to_numpy())
    return out


def ood_table(ood: pd.DataFrame, reference: str = "random") -> pd.DataFrame:
    """Out-of-distribution comparison per dataset and fold source, paired by (seed, held-out cluster).

    Args:
        ood: The ood stage's runs (``seed``, ``cluster``, ``method``, ``test_mae``; ``folds`` optional).
        reference: The reference method. Defaults to ``"random"``.

    Returns:
        ``dataset``, ``folds`` (``kmeans`` or ``paper``; ``kmeans`` for runs
        that predate the column), ``method``, ``n`` (seed x fold pairs),
        ``improvement_pct``, ``ci_low``, ``ci_high``, ``p``, ``p_holm`` (Holm
        over all rows).
    """
    if ood.empty:
        return pd.DataFrame()
    if "folds" not in ood:
        ood = ood.assign(folds="kmeans")
    rows = []
    for (key, source), part in ood.groupby(["dataset", "folds"], sort=True):
        ref = part[part["method"] == reference].set_index(["seed", "cluster"])["test_mae"]
        for method, other in part[part["method"] != reference].groupby("method", sort=True):
            o = other.set_index(["seed", "cluster"])["test_mae"]
            pairs = sorted(set(ref.index) & set(o.index))
            res = stats.paired_improvement(ref.loc[pairs].to_numpy(), o.loc[pairs].to_numpy())
            rows.append(
                {"dataset": key, "folds": source, "method": method, "n": res["n"],
                 "improvement_pct": res["improvement_pct"], "ci_low": res["ci95"][0], "ci_high": res["ci95"][1],
                 "p": res["p"]}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    out["p_holm"] = stats.holm(out["p"].to_numpy())
    return out
