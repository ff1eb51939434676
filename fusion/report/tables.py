"""Tables and quoted numbers of the method, results and paper pages, from the analysis tables.

Every function is pure: DataFrames in, a display DataFrame and/or a dict of
numbers for :func:`fusion.report.glue.glue_values` out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

#: The paper's claims, quoted from Wang et al., AAAI 2026 (see METHOD.md). These
#: are constants typed from the paper, not measurements of this project.
PAPER_CLAIMS: dict[str, float] = {
    "improvement_min_pct": 1.91,
    "improvement_max_pct": 13.65,
    "improvement_mean_pct": 6.36,
    "optimal_ratio_max": 0.08,
    "optimal_improvement_max_pct": 12.67,
    "jdft2d_80_vs_diversity_pct": 12.7,
}


def method_numbers(scores: pd.DataFrame, summary: pd.DataFrame, seed: int, ratio: float) -> dict[str, Any]:
    """Numbers the method page quotes for one pool: size, correlations, epsilon at ``ratio``."""
    from scipy.stats import spearmanr

    row = summary[
        (summary["seed"] == seed) & (summary["method"] == "fusion") & np.isclose(summary["ratio"], ratio)
    ]
    return {
        "pool_size": len(scores),
        "rho_U_I": float(spearmanr(scores["U"], scores["I"]).statistic),
        "rho_W_I": float(spearmanr(scores["W"], scores["I"]).statistic),
        "W_min": float(scores["W"].min()),
        "W_max": float(scores["W"].max()),
        "U_min": float(scores["U"].min()),
        "U_max": float(scores["U"].max()),
        "epsilon": float(row["epsilon"].iloc[0]) if len(row) else float("nan"),
        "n_removed": int(row["n_removed"].iloc[0]) if len(row) else 0,
        "ratio": float(ratio),
        "ratio_pct": 100.0 * float(ratio),
    }


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.4g}" if not np.isfinite(std) else f"{mean:.4g} ± {std:.2g}"


def reference_table(summary: pd.DataFrame, baseline: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Unpruned test MAE of every architecture beside the mean predictor's, per dataset.

    Args:
        summary: ``results/analysis/summary.csv``.
        baseline: ``results/analysis/mean_predictor.csv`` (``dataset``, ``seed``, ``test_mae``).

    Returns:
        The display table (``dataset``, ``mean predictor``, one column per architecture,
        each as mean over seeds and, in brackets, its ratio to the mean predictor) and
        glue values: ``n_ref_cells`` (dataset × architecture pairs) and
        ``n_ref_below`` (pairs more than 10 % below the mean predictor).
    """
    if summary.empty or baseline.empty:
        return pd.DataFrame(), {"n_ref_cells": 0, "n_ref_below": 0}
    floor = baseline.groupby("dataset")["test_mae"].mean()
    full = summary[summary["ratio"] == 0].pivot_table(
        index="dataset", columns="arch", values="mean", aggfunc="mean"
    )
    ratio = full.div(floor.reindex(full.index), axis=0)
    table = pd.DataFrame(
        {arch: [f"{m:.4g} ({r:.2f})" for m, r in zip(full[arch], ratio[arch], strict=True)] for arch in full},
        index=full.index,
    )
    table.insert(0, "mean predictor", [f"{v:.4g}" for v in floor.reindex(full.index)])
    table.columns.name = None
    values = {"n_ref_cells": int(ratio.notna().sum().sum()), "n_ref_below": int((ratio < 0.9).sum().sum())}
    return table.reset_index(), values


def uncertainty_target_summary(table: pd.DataFrame, sign: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per dataset, the mean over seeds of the uncertainty-target rank correlations.

    Args:
        table: ``results/analysis/uncertainty_vs_target.csv``.
        sign: The run's aleatoric sign ``s``; with ``Lambda = 0``, ``U`` falls
            as ``s * U_ale`` falls.

    Returns:
        The display table and glue values: ``rho_ale_max`` (the largest mean
        correlation of ``U_ale`` with the target), its dataset ``rho_ale_max_dataset``,
        and ``prefix_end``: the end of the target range (``large``/``small``) that a
        positive correlation puts first in FUSION's removal order when ``Lambda = 0``.
    """
    if table.empty:
        return pd.DataFrame(), {"rho_ale_max": float("nan"), "rho_ale_max_dataset": "–", "prefix_end": "–"}
    cols = {
        "spearman_target_u_ale": "ρ(target, U_ale)",
        "spearman_target_u_epi": "ρ(target, U_epi)",
        "spearman_target_U": "ρ(target, U)",
    }
    mean = table.groupby("dataset")[list(cols)].mean()
    shown = mean.rename(columns=cols).map(lambda v: f"{v:+.2f}").reset_index()
    best = mean["spearman_target_u_ale"].idxmax()
    return shown, {
        "rho_ale_max": float(mean.loc[best, "spearman_target_u_ale"]),
        "rho_ale_max_dataset": str(best),
        "prefix_end": "large" if sign < 0 else "small",
    }


def main_table(
    summary: pd.DataFrame, tests: pd.DataFrame, method: str = "fusion", reference: str = "random"
) -> pd.DataFrame:
    """Test MAE per dataset × architecture × ratio (rows) and method (columns), mean ± std over seeds.

    Args:
        summary: ``results/analysis/summary.csv`` (``mean``, ``std``, ``n`` per key).
        tests: ``results/analysis/tests.csv`` (paired tests against the reference).
        method: The method whose paired test is shown. Defaults to ``"fusion"``.
        reference: The reference of the tests. Defaults to ``"random"``.

    Returns:
        A display table: ``dataset``, ``arch``, ``ratio``, ``seeds``, one column per
        method, and the paired t-test and Wilcoxon p-values of ``method`` vs ``reference``.
    """
    if summary.empty:
        return pd.DataFrame()
    cell = summary.assign(cell=[_fmt(m, s) for m, s in zip(summary["mean"], summary["std"], strict=True)])
    wide = cell.pivot_table(
        index=["dataset", "arch", "ratio"], columns="method", values="cell", aggfunc="first"
    )
    seeds = summary.groupby(["dataset", "arch", "ratio"])["n"].max().rename("seeds")
    out = wide.join(seeds).reset_index()
    if not tests.empty:
        t = tests[tests["method"] == method].set_index(["dataset", "arch", "ratio"])
        p = t[["t_pvalue", "wilcoxon_pvalue"]].rename(
            columns={
                "t_pvalue": f"p (t, {method} vs {reference})",
                "wilcoxon_pvalue": f"p (Wilcoxon, {method} vs {reference})",
            }
        )
        out = out.merge(p.reset_index(), on=["dataset", "arch", "ratio"], how="left")
    out.columns.name = None
    return out


def improvement_matrix(improvement: pd.DataFrame, method: str = "fusion") -> pd.DataFrame:
    """Mean improvement over the reference (%) of ``method`` per architecture (rows) and dataset (columns).

    Averaged over the pruning ratios above 0.
    """
    data = improvement[(improvement["method"] == method) & (improvement["ratio"] > 0)]
    return data.pivot_table(index="arch", columns="dataset", values="improvement_pct", aggfunc="mean")


def optimal_table(optimal: pd.DataFrame) -> pd.DataFrame:
    """The optimal-point search: mean test MAE and improvement vs ratio 0 per dataset and ratio."""
    if optimal.empty:
        return optimal
    g = optimal.groupby(["dataset", "arch", "ratio"])
    out = g.agg(
        test_mae=("test_mae", "mean"),
        mae_std=("test_mae", "std"),
        improvement_pct=("improvement_pct", "mean"),
        seeds=("seed", "nunique"),
    ).reset_index()
    return out.round({"test_mae": 4, "mae_std": 3, "improvement_pct": 2})


def ood_table(ood: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-cluster-out test MAE per dataset, held-out cluster and method."""
    if ood.empty:
        return ood
    wide = (
        ood.pivot_table(
            index=["dataset", "arch", "cluster", "cluster_size"], columns="method", values="test_mae"
        )
        .round(4)
        .reset_index()
    )
    wide.columns.name = None
    return wide


def optimal_points(optimal: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per dataset, the ratio of lowest seed-mean test MAE and its improvement over ratio 0.

    The definition of ``optimal_point`` in ``results/metrics.json``: the
    improvement of the seed-mean MAE, not the mean of per-seed improvements.

    Args:
        optimal: Optimal-point table (``dataset``, ``seed``, ``ratio``, ``test_mae``).

    Returns:
        ``{dataset: {"ratio": r, "improvement_pct": pct}}``, ``pct`` rounded to
        3 decimals (positive = lower MAE than no pruning).
    """
    curve = optimal.groupby(["dataset", "ratio"])["test_mae"].mean().reset_index()
    best = {}
    for ds, part in curve.groupby("dataset"):
        base = float(part.loc[part["ratio"] == 0, "test_mae"].iloc[0])
        row = part.loc[part["test_mae"].idxmin()]
        best[ds] = {
            "ratio": float(row["ratio"]),
            "improvement_pct": round(100.0 * (base - float(row["test_mae"])) / base, 3),
        }
    return best


def result_numbers(
    improvement: pd.DataFrame,
    optimal: pd.DataFrame,
    ood: pd.DataFrame,
    method: str = "fusion",
    reference: str = "random",
) -> dict[str, Any]:
    """Numbers the results and paper pages quote, computed from the analysis tables.

    Returns:
        ``imp_mean``/``imp_min``/``imp_max``: FUSION's improvement over random
        (%), averaged over architectures and ratios > 0 per dataset, then its
        mean, min and max over datasets; ``imp_cells_pos``/``imp_cells``: the
        dataset × arch × ratio cells where FUSION beats random; ``opt_ratio`` and
        ``opt_imp``: the best optimal point (largest improvement over all
        datasets); ``ood_imp``: mean out-of-distribution improvement over random.
    """
    out: dict[str, Any] = {"method": method, "reference": reference}
    imp = improvement[(improvement["method"] == method) & (improvement["ratio"] > 0)]
    per = imp.groupby("dataset")["improvement_pct"].mean()
    out.update(
        imp_mean=float(per.mean()) if len(per) else float("nan"),
        imp_min=float(per.min()) if len(per) else float("nan"),
        imp_max=float(per.max()) if len(per) else float("nan"),
        imp_cells=len(imp),
        imp_cells_pos=int((imp["improvement_pct"] > 0).sum()),
    )
    if len(optimal):
        points = optimal_points(optimal)
        ds = max(points, key=lambda k: points[k]["improvement_pct"])
        out.update(
            opt_ratio_pct=100 * points[ds]["ratio"],
            opt_imp=points[ds]["improvement_pct"],
            opt_dataset=str(ds),
        )
    else:
        out.update(opt_ratio_pct=float("nan"), opt_imp=float("nan"), opt_dataset="none")
    if len(ood) and {method, reference} <= set(ood["method"]):
        mean = ood.groupby("method")["test_mae"].mean()
        out["ood_imp"] = float(100 * (mean[reference] - mean[method]) / mean[reference])
    else:
        out["ood_imp"] = float("nan")
    return out


def jdft2d_vs_diversity(summary: pd.DataFrame, key: str = "jdft2d", ratio: float = 0.8) -> float:
    """How much lower FUSION's MAE is than diversity sampling's (%), averaged over architectures.

    NaN when the dataset, ratio or either method is missing from ``summary``.
    """
    part = summary[(summary["dataset"] == key) & np.isclose(summary["ratio"], ratio)]
    mean = part.groupby("method")["mean"].mean()
    if not {"fusion", "diversity"} <= set(mean.index):
        return float("nan")
    return float(100 * (mean["diversity"] - mean["fusion"]) / mean["diversity"])


def paper_comparison(numbers: Mapping[str, Any], vs_diversity: float) -> pd.DataFrame:
    """The paper's claims (quoted constants) beside this run's measurements.

    Args:
        numbers: :func:`result_numbers` output.
        vs_diversity: :func:`jdft2d_vs_diversity` output.
    """
    p = PAPER_CLAIMS
    rows = [
        (
            "FUSION vs random, range over datasets (%)",
            f"{p['improvement_min_pct']:.2f} to {p['improvement_max_pct']:.2f}",
            f"{numbers['imp_min']:.2f} to {numbers['imp_max']:.2f}",
        ),
        ("FUSION vs random, average (%)", f"{p['improvement_mean_pct']:.2f}", f"{numbers['imp_mean']:.2f}"),
        (
            "optimal point: fraction removed (%)",
            f"0 to {100 * p['optimal_ratio_max']:.0f}",
            f"{numbers['opt_ratio_pct']:.1f}",
        ),
        (
            "optimal point: best MAE improvement (%)",
            f"up to {p['optimal_improvement_max_pct']:.2f}",
            f"{numbers['opt_imp']:.2f}",
        ),
        (
            "jdft2d at 80 %: FUSION MAE below diversity (%)",
            f"{p['jdft2d_80_vs_diversity_pct']:.1f}",
            f"{vs_diversity:.2f}",
        ),
    ]
    return pd.DataFrame(rows, columns=["claim", "paper (quoted, METHOD.md)", "this run (measured)"])
