"""The transfer grid's tables: every architecture's accuracy, convergence and FUSION-vs-random comparison.

The paper claims FUSION's advantage holds across 11 architectures. The rows
come from three stages: ``train`` (the main architecture, and any other in its
matrix), ``transfer`` (the other architectures on the same kept sets) and
``converge`` (the main architecture's doubled budget). Pure functions of
DataFrames, with the conventions of :mod:`fusion.analysis`: comparisons are
paired by seed against random at the same ratio, Holm's correction runs over
the whole grid, errors of different datasets are never averaged.

An architecture's comparison counts (``gated``) when its unpruned model is
converged (doubling the budget moves its test MAE by less than 3 %), within
:data:`GATE_MATBENCH` x its Matbench MAE where Matbench lists it, and at least
10 % better than the median predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion.analysis import CONVERGED, GATE_MEDIAN, MATBENCH, compare, describe_doubling, describe_vs_median

#: An architecture's unpruned MAE may be at most this multiple of its Matbench MAE.
GATE_MATBENCH = 2.0
#: The FUSION variants whose better one (on validation) heads the grid.
FUSION_SIGNS = ("fusion_neg", "fusion_pos")
_KEYS = ["dataset", "arch", "seed", "method", "ratio", "factor"]


def grid_rows(train: pd.DataFrame, transfer: pd.DataFrame, converge: pd.DataFrame) -> pd.DataFrame:
    """One long table of every run of the grid.

    Args:
        train: ``train`` stage rows (budget factor 1).
        transfer: ``transfer`` stage rows (``factor`` 1 or the doubled budget).
        converge: ``converge`` stage rows; only its longer runs (``factor`` != 1)
            are added, since its factor-1 rows repeat the ``train`` stage's.

    Returns:
        ``dataset``, ``arch``, ``seed``, ``method``, ``ratio``, ``factor``,
        ``val_mae``, ``test_mae``; a run present twice (an architecture in both
        the ``train`` matrix and the ``transfer`` grid) is kept once, the
        ``train`` stage's.
    """
    parts = []
    if not train.empty:
        parts.append(train.assign(factor=1.0))
    if not transfer.empty:
        parts.append(transfer)
    if not converge.empty:
        parts.append(converge[converge["factor"] != 1.0].assign(method="random"))
    if not parts:
        return pd.DataFrame(columns=[*_KEYS, "val_mae", "test_mae"])
    rows = pd.concat(parts, ignore_index=True)
    rows = rows.reindex(columns=[*_KEYS, "val_mae", "test_mae"])
    rows["factor"] = rows["factor"].astype(float)
    return rows.drop_duplicates(subset=_KEYS, keep="first").reset_index(drop=True)


def accuracy(
    rows: pd.DataFrame, predictors: pd.DataFrame, datasets: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    """Per (dataset, architecture): the unpruned test MAE, its convergence and its gates.

    Args:
        rows: :func:`grid_rows`.
        predictors: :func:`fusion.analysis.predictor_table` (median predictor per dataset and seed).
        datasets: params.yaml ``datasets`` (``name`` and ``limit``).

    Returns:
        ``dataset``, ``arch``, ``n_seeds``, ``test_mae`` (mean over seeds),
        ``mae_1x`` and ``mae_2x`` (mean over the seeds with a doubled run),
        ``change_pct`` (``100 (mae_2x - mae_1x) / mae_1x``), ``converged``,
        ``matbench_mae`` (NaN where Matbench does not list the architecture, or
        the dataset is a subsample), ``ratio_to_matbench``,
        ``median_predictor_mae``, ``vs_median_pct`` (positive = better),
        ``passes`` and ``reason``.
    """
    unpruned = rows[(rows["method"] == "random") & (rows["ratio"] == 0)]
    out = []
    for (key, arch), part in unpruned.groupby(["dataset", "arch"], sort=True):
        one = part[part["factor"] == 1.0].set_index("seed")["test_mae"]
        two = part[part["factor"] != 1.0].set_index("seed")["test_mae"]
        if one.empty:
            continue
        both = sorted(set(one.index) & set(two.index))
        mae_1x = float(one.loc[both].mean()) if both else np.nan
        mae_2x = float(two.loc[both].mean()) if both else np.nan
        change = 100.0 * (mae_2x - mae_1x) / mae_1x if both else np.nan
        spec = datasets.get(key, {})
        full = spec.get("limit") is None
        ref = MATBENCH.get(spec.get("name", ""), {}).get(arch, np.nan) if full else np.nan
        mae = float(one.mean())
        pred = predictors[predictors["dataset"] == key]
        median = float(pred.loc[pred["seed"].isin(one.index), "median_mae"].mean())
        vs_median = 100.0 * (median - mae) / median
        ratio = mae / ref if np.isfinite(ref) else np.nan
        reasons = []
        if not both:
            reasons.append("no doubled-budget run")
        elif abs(change) >= 100 * CONVERGED:
            reasons.append(f"not converged: {describe_doubling(change)}")
        if np.isfinite(ratio) and ratio > GATE_MATBENCH:
            reasons.append(f"{ratio:.2f}x its Matbench MAE (gate {GATE_MATBENCH:g}x)")
        if not vs_median >= 100 * GATE_MEDIAN:
            reasons.append(describe_vs_median(vs_median))
        out.append(
            {"dataset": key, "arch": arch, "n_seeds": len(one), "test_mae": mae, "mae_1x": mae_1x,
             "mae_2x": mae_2x, "change_pct": change, "converged": bool(both) and abs(change) < 100 * CONVERGED,
             "matbench_mae": ref, "ratio_to_matbench": ratio, "median_predictor_mae": median,
             "vs_median_pct": vs_median, "passes": not reasons, "reason": "; ".join(reasons) or "passes"}
        )  # fmt: skip
    return pd.DataFrame(out)


def better_fusion(rows: pd.DataFrame, arch: str, ratio: float) -> dict[str, str]:
    """Per dataset, the FUSION sign with the lower seed-mean validation MAE of ``arch`` at ``ratio``.

    Chosen on validation (never on test), on the main architecture's runs, so
    that the grid's headline compares the same method for every architecture.

    Returns:
        Dataset key -> ``"fusion_neg"`` or ``"fusion_pos"`` (datasets without both are left out).
    """
    cell = rows[(rows["arch"] == arch) & (rows["ratio"] == ratio) & (rows["factor"] == 1.0)]
    out = {}
    for key, part in cell.groupby("dataset", sort=True):
        val = part[part["method"].isin(FUSION_SIGNS)].groupby("method")["val_mae"].mean()
        if len(val) == len(FUSION_SIGNS):
            out[key] = str(val.idxmin())
    return out


def comparison(
    rows: pd.DataFrame, ratios: Sequence[float], architectures: Sequence[str] | None = None
) -> pd.DataFrame:
    """Every FUSION sign against random at each of ``ratios``, per (dataset, architecture), paired by seed.

    Args:
        rows: :func:`grid_rows`.
        ratios: The grid's ratios (the main architecture's other ratios stay out of the family).
        architectures: Architectures of the grid; None = every one in ``rows``.

    Returns:
        :func:`fusion.analysis.compare`'s columns; Holm's family is the whole grid.
    """
    base = rows[
        (rows["factor"] == 1.0)
        & rows["method"].isin(["random", *FUSION_SIGNS])
        & rows["ratio"].isin([float(r) for r in ratios])
    ]
    if architectures is not None:
        base = base[base["arch"].isin(list(architectures))]
    return compare(base, by=("dataset", "arch"))


def headline_rows(
    comparison: pd.DataFrame, heads: dict[str, str], accuracy: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The rows of :func:`comparison` for each dataset's headline FUSION sign (``heads``).

    With ``accuracy`` (:func:`accuracy`), only the (dataset, architecture) pairs that pass its gates.
    """
    if comparison.empty:
        return comparison
    keep = comparison["method"].to_numpy() == comparison["dataset"].map(dict(heads)).to_numpy()
    if accuracy is not None:
        gated = {(r.dataset, r.arch) for r in accuracy.itertuples() if r.passes}
        pairs = zip(comparison["dataset"], comparison["arch"], strict=True)
        keep &= np.array([pair in gated for pair in pairs], dtype=bool)
    return comparison[keep]
