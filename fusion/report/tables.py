"""The paper's quoted claims and the numbers of the method and paper pages.

Every function is pure: DataFrames in, a display DataFrame and/or a dict of
numbers for :func:`fusion.report.glue.glue_values` out. The results page's
tables are in :mod:`fusion.report.study_tables` and :mod:`fusion.report.study_checks`.
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


SIGNS: dict[str, int] = {"neg": -1, "pos": 1}


def method_numbers(scores: pd.DataFrame, summary: pd.DataFrame, seed: int, ratio: float) -> dict[str, Any]:
    """Numbers the method page quotes for one pool, for both signs of the aleatoric term.

    Args:
        scores: The prune table of one seed (``y``, ``W``, ``U_neg``, ``U_pos``,
            ``I_neg``, ``I_pos`` and ``<method>@<ratio>`` keep columns).
        summary: The dataset's prune summary (``seed``, ``method``, ``ratio``,
            ``n_pool``, ``n_kept``, ``epsilon``).
        seed: The seed shown.
        ratio: The pruning ratio shown.

    Returns:
        ``pool_size``, ``W_min``/``W_max``, per sign ``<s>`` in ``neg``/``pos``:
        ``U_<s>_min``/``U_<s>_max``, ``rho_U_I_<s>``, ``rho_W_I_<s>``,
        ``epsilon_<s>``, ``n_removed_<s>``, ``removed_mean_<s>`` (mean target of
        the removed records); ``pool_mean`` (mean target of the pool),
        ``overlap`` (Jaccard overlap of the two signs' removed sets) and ``ratio``.
    """
    from scipy.stats import spearmanr

    out: dict[str, Any] = {
        "pool_size": len(scores),
        "W_min": float(scores["W"].min()),
        "W_max": float(scores["W"].max()),
        "pool_mean": float(scores["y"].mean()),
        "ratio": float(ratio),
        "ratio_pct": 100.0 * float(ratio),
    }
    removed = {}
    for s in SIGNS:
        u, imp = scores[f"U_{s}"], scores[f"I_{s}"]
        row = summary[
            (summary["seed"] == seed)
            & (summary["method"] == f"fusion_{s}")
            & np.isclose(summary["ratio"], ratio)
        ]
        col = f"fusion_{s}@{ratio:g}"
        removed[s] = ~scores[col].astype(bool) if col in scores else pd.Series(False, index=scores.index)
        out.update(
            {
                f"U_{s}_min": float(u.min()),
                f"U_{s}_max": float(u.max()),
                f"rho_U_I_{s}": _rho(spearmanr, u, imp),
                f"rho_W_I_{s}": _rho(spearmanr, scores["W"], imp),
                f"epsilon_{s}": float(row["epsilon"].iloc[0]) if len(row) else float("nan"),
                f"n_removed_{s}": int(removed[s].sum()),
                f"removed_mean_{s}": float(scores.loc[removed[s], "y"].mean())
                if removed[s].any()
                else float("nan"),
            }
        )
    union = int((removed["neg"] | removed["pos"]).sum())
    out["overlap"] = float((removed["neg"] & removed["pos"]).sum() / union) if union else float("nan")
    return out


def _rho(spearmanr: Any, a: pd.Series, b: pd.Series) -> float:
    """Spearman's rho (NaN when either side is constant or too short)."""
    if len(a) < 3 or a.nunique() < 2 or b.nunique() < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def removed_side(removed_mean: float, pool_mean: float) -> str:
    """``above`` / ``below`` / ``at``: where the removed records' mean target lies against the pool's."""
    if not (np.isfinite(removed_mean) and np.isfinite(pool_mean)):
        return "–"
    if np.isclose(removed_mean, pool_mean, rtol=1e-3):
        return "at"
    return "above" if removed_mean > pool_mean else "below"


def _range(part: pd.DataFrame) -> str:
    """The smallest and largest improvement over random of some comparison rows, in words."""
    from fusion.verdict import describe_change

    if part.empty:
        return "not run"
    lo, hi = part["improvement_pct"].min(), part["improvement_pct"].max()
    if np.isclose(lo, hi):
        return f"{describe_change(lo)} than random ({len(part)} comparison)"
    return f"from {describe_change(lo)} to {describe_change(hi)} than random ({len(part)} comparisons)"


def paper_table(
    comparison: pd.DataFrame,
    optimal: pd.DataFrame,
    ood: pd.DataFrame,
    verdict: Mapping[str, Mapping[str, str]],
    transfer: str,
) -> pd.DataFrame:
    """The paper's claims (quoted constants) beside this run's measurements and verdict.

    Args:
        comparison: ``results/analysis/comparison.csv`` (main architecture).
        optimal: ``results/analysis/optimal.csv``.
        ood: ``results/analysis/ood.csv``.
        verdict: ``metrics.json``'s ``verdict``.
        transfer: The transfer grid in words (:func:`fusion.report.transfer.transfer_measured`).

    Returns:
        ``claim``, ``the paper (quoted)``, ``this run (measured)``, ``verdict``:
        improvements over random as the range over dataset × ratio cells of
        FUSION (s = −1), in words.
    """
    from fusion.verdict import describe_change

    p = PAPER_CLAIMS
    fus = comparison[comparison["method"] == "fusion_neg"] if len(comparison) else comparison
    div = comparison[
        (comparison["dataset"] == "jdft2d") & np.isclose(comparison["ratio"], 0.8)
    ].set_index("method") if len(comparison) else comparison  # fmt: skip
    if {"fusion_neg", "diversity"} <= set(div.index):
        mae_f, mae_d = float(div.loc["fusion_neg", "mae_mean"]), float(div.loc["diversity", "mae_mean"])
        vs_div = f"{describe_change(100 * (mae_d - mae_f) / mae_d)} than diversity"
    else:
        vs_div = "not run (needs jdft2d, diversity and FUSION at 80 %)"
    v0 = (
        optimal[(optimal["versus"] == "ratio 0") & optimal["method"].str.startswith("fusion")]
        if len(optimal)
        else optimal
    )
    if len(v0):
        b = v0.loc[v0["improvement_pct"].idxmax()]
        opt = (f"{_method_name(b.method)} on {b.dataset}: removing {100 * b.chosen_ratio:.1f} % (chosen on "
               f"validation) gives {describe_change(b.improvement_pct)} than no pruning")  # fmt: skip
    else:
        opt = "not run"
    o = ood[ood["method"] == "fusion_neg"] if len(ood) else ood
    rows = [
        ("FUSION vs random",
         (f"{p['improvement_min_pct']:.2f} to {p['improvement_max_pct']:.2f} % lower MAE "
          f"(average {p['improvement_mean_pct']:.2f} %)"), f"FUSION (s = −1): {_range(fus)}", "beats_random"),
        ("jdft2d, 80 % removed: FUSION vs diversity", f"{p['jdft2d_80_vs_diversity_pct']:.1f} % lower MAE",
         vs_div, "beats_diversity_jdft2d_80"),
        ("optimal pruning point",
         f"removing 0 to {100 * p['optimal_ratio_max']:.0f} %: up to {p['optimal_improvement_max_pct']:.2f} % lower MAE",
         opt, "optimal_point"),
        ("out of distribution", "FUSION ahead of random", f"FUSION (s = −1): {_range(o)}", "ood_gaps_shrink"),
        ("transfer across architectures", "11 architectures", transfer, "transfer_11_architectures"),
    ]  # fmt: skip
    return pd.DataFrame(
        [(c, q, m, verdict.get(k, {}).get("status", "not evaluated")) for c, q, m, k in rows],
        columns=["claim", "the paper (quoted)", "this run (measured)", "verdict"],
    )


def _method_name(method: str) -> str:
    from fusion.report import palette

    try:
        return palette.label(method)
    except KeyError:
        return method
