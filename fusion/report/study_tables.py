"""Display tables and quoted sentences of the results and paper pages, from the ``analyze`` tables.

Every function is pure: analysis tables (``results/analysis/<name>.csv``) in,
a display DataFrame and/or a dict of values for
:func:`fusion.report.glue.glue_values` out. A number the text quotes comes from
the same function as the table beside it, and every sentence built from a
number reads correctly for either sign: :func:`fusion.verdict.describe_change` says "12.0 %
lower MAE" or "12.0 % higher MAE", never "-12.0 % lower".

Sign convention of the inputs (that of :mod:`fusion.analysis`):
``improvement_pct = 100 (MAE_ref - MAE) / MAE_ref``, positive = lower error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fusion.report import palette
from fusion.report.formatting import (
    by_ratio,
    ci_cell,
    fmt_mae,
    fmt_p,
    label,
    span,
    unit_of,
)
from fusion.verdict import describe_change

ALPHA = 0.05  # Holm-adjusted significance level (that of fusion.analysis)


# ----------------------------------------------------------------------------- study and verdict


def study_values(metrics: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``metrics.json``'s ``study`` section as glue values (``study_<field>``).

    Before the ``analyze`` stage has written it, the values come from ``params``
    (the run as configured), so the page still says what the run is.
    """
    st = dict(metrics.get("study", {}))
    if not st and params is not None:
        st = {
            "architecture": params.get("analyze", {}).get("arch", "not recorded"),
            "seeds": len(params.get("seeds", [])),
            "val_protocol": params.get("val_protocol", "not recorded"),
            "budget": f"{params.get('train', {}).get('budget', 'epochs')} rule; learning rate and epochs "
            "from the tune stage",
            "datasets": list(params.get("datasets", {})),
        }
    wall = st.get("wall_hours")
    return {
        "study_arch": str(st.get("architecture", "not recorded")),
        "study_seeds": st.get("seeds", 0),
        "study_val_protocol": str(st.get("val_protocol", "not recorded")),
        "study_budget": str(st.get("budget", "not recorded")),
        "study_wall": f"{wall:g} h" if isinstance(wall, int | float) else "not measured",
        "study_datasets": ", ".join(st.get("datasets", [])) or "none",
    }


def claims(paper: Mapping[str, float]) -> dict[str, str]:
    """The paper's claims as short sentences, keyed like ``metrics.json``'s ``verdict``.

    Args:
        paper: :data:`fusion.report.tables.PAPER_CLAIMS` (constants quoted from METHOD.md).
    """
    return {
        "beats_random": (
            f"FUSION beats random pruning by {paper['improvement_min_pct']:.2f} to "
            f"{paper['improvement_max_pct']:.2f} % (average {paper['improvement_mean_pct']:.2f} %)"
        ),
        "beats_diversity_jdft2d_80": (
            f"on jdft2d at 80 % pruning, FUSION's MAE is {paper['jdft2d_80_vs_diversity_pct']:.1f} % "
            "below diversity sampling's"
        ),
        "optimal_point": (
            f"removing 0 to {100 * paper['optimal_ratio_max']:.0f} % of the training data at the optimal "
            f"point lowers the MAE by up to {paper['optimal_improvement_max_pct']:.2f} %"
        ),
        "ood_gaps_shrink": "FUSION's advantage persists out of distribution (leave-one-cluster-out)",
        "transfer_11_architectures": "the pruned sets transfer across 11 architectures",
    }


def verdict_values(verdict: Mapping[str, Mapping[str, str]], paper: Mapping[str, float]) -> dict[str, str]:
    """One sentence per claim (``verdict_<claim>``) and its status (``status_<claim>``).

    Every claim of :func:`claims` gets a value, so the page's glue keys exist even
    when ``metrics.json`` lacks an entry ("not evaluated").
    """
    out: dict[str, str] = {}
    for key, claim in claims(paper).items():
        entry = verdict.get(key, {"status": "not evaluated", "reason": "no entry in results/metrics.json"})
        out[f"status_{key}"] = entry["status"]
        out[f"verdict_{key}"] = f"The paper: {claim}. This run: {entry['status']}; {entry['reason']}."
    return out


def verdict_table(verdict: Mapping[str, Mapping[str, str]], paper: Mapping[str, float]) -> pd.DataFrame:
    """The claims (quoted) beside this run's status and reason."""
    rows = []
    for key, claim in claims(paper).items():
        entry = verdict.get(key, {"status": "not evaluated", "reason": "no entry in results/metrics.json"})
        rows.append({"the paper claims (quoted)": claim, "this run": entry["status"], "why": entry["reason"]})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- accuracy gate, convergence


def accuracy_display(accuracy: pd.DataFrame, units: Mapping[str, str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The accuracy gate: our unpruned test MAE beside Matbench's CGCNN and the median predictor.

    A subsampled dataset also shows its full-data run (``ours: full data``), the
    MAE its ratio to Matbench is computed from; ``not run`` where it is missing.

    Returns:
        The display table and ``n_gate_pass``, ``n_gate`` and ``gate_sentence``
        (each dataset's outcome with the analysis' reason).
    """
    if accuracy.empty:
        return pd.DataFrame(), {"n_gate_pass": 0, "n_gate": 0, "gate_sentence": "No unpruned runs yet."}
    rows, said = [], []
    for r in accuracy.itertuples():
        u = unit_of(units, r.dataset)
        vs = r.vs_median_pct
        against = "better" if vs > 0 else "worse"
        sub = bool(r.subsampled)
        full = float(getattr(r, "full_data_test_mae", np.nan)) if sub else np.nan
        rows.append(
            {
                "dataset": r.dataset,
                "ours: test MAE": fmt_mae(r.test_mae, u),
                "ours: full data": fmt_mae(full, u) if np.isfinite(full) else ("not run" if sub else "–"),
                "Matbench CGCNN": fmt_mae(r.matbench_cgcnn_mae, u),
                "median predictor": fmt_mae(r.median_predictor_mae, u),
                "vs median predictor": f"{abs(vs):.1f} % {against}" if np.isfinite(vs) else "–",
                "vs Matbench CGCNN": f"{r.ratio_to_matbench:.2f}×"
                if np.isfinite(r.ratio_to_matbench)
                else "–",
                "gate": "passes" if bool(r.passes) else "fails",
            }
        )
        said.append(f"{r.dataset} {'passes' if bool(r.passes) else 'fails'}: {r.reason}.")
    passed = int(accuracy["passes"].astype(bool).sum())
    return pd.DataFrame(rows), {
        "n_gate_pass": passed,
        "n_gate": len(accuracy),
        "gate_sentence": " ".join(said),
    }


def convergence_display(
    convergence: pd.DataFrame, units: Mapping[str, str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Random pruning's test MAE at the budget and at the doubled budget.

    Returns:
        The display table and ``n_converged``, ``n_convergence``,
        ``convergence_sentence`` (the largest change, in words).
    """
    if convergence.empty:
        return pd.DataFrame(), {
            "n_converged": 0, "n_convergence": 0,
            "convergence_sentence": "no doubled-budget runs in this run",
        }  # fmt: skip
    rows = []
    for r in convergence.itertuples():
        u = unit_of(units, r.dataset)
        rows.append(
            {
                "dataset": r.dataset,
                "fraction removed": f"{r.ratio:g}",
                "seeds": int(r.n_seeds),
                "MAE at the budget": fmt_mae(r.mae_1x, u),
                "MAE at 2× the budget": fmt_mae(r.mae_2x, u),
                "doubling gives": describe_change(-r.change_pct),
                "converged (< 3 %)": "yes" if bool(r.converged) else "no",
            }
        )
    worst = convergence.loc[convergence["change_pct"].abs().idxmax()]
    sentence = (
        f"the largest change is on {worst.dataset} at fraction removed {worst.ratio:g}: doubling the "
        f"budget gives {describe_change(-worst.change_pct)}"
    )
    return pd.DataFrame(rows), {
        "n_converged": int(convergence["converged"].astype(bool).sum()),
        "n_convergence": len(convergence),
        "convergence_sentence": sentence,
    }


# ----------------------------------------------------------------------------- effective size


def effective_display(effective: pd.DataFrame) -> pd.DataFrame:
    """``n_eff / n_kept`` per dataset and method (rows) and fraction removed (columns).

    A cell reads ``1.04× (87 / 84)``: the kept set of 84 records reaches the MAE
    random pruning reaches with 87. The bracket's spaces do not break, so a narrow
    column wraps the cell only before the bracket.
    """
    part = effective[effective["ratio"] > 0] if len(effective) else effective
    if part.empty:
        return pd.DataFrame()
    cell = [
        f"{q:.2f}× ({e:.0f}\N{NO-BREAK SPACE}/\N{NO-BREAK SPACE}{k:.0f})"
        for q, e, k in zip(part["n_eff_ratio"], part["n_eff"], part["n_kept"], strict=True)
    ]
    return by_ratio(part, cell)


def effective_numbers(effective: pd.DataFrame, method: str = "fusion_neg") -> dict[str, Any]:
    """The extremes of ``n_eff / n_kept`` of ``method`` (``eff_min``, ``eff_max`` and where)."""
    part = (
        effective[(effective["method"] == method) & (effective["ratio"] > 0)] if len(effective) else effective
    )
    if part.empty:
        return {"eff_range": "not measured", "eff_min": float("nan"), "eff_max": float("nan"),
                "eff_min_at": "–", "eff_max_at": "–",
                "eff_above": 0, "eff_cells": 0}  # fmt: skip
    lo, hi = part.loc[part["n_eff_ratio"].idxmin()], part.loc[part["n_eff_ratio"].idxmax()]
    lo_at, hi_at = (
        f"{lo.dataset} with {100 * lo.ratio:.0f} % removed",
        f"{hi.dataset} with {100 * hi.ratio:.0f} % removed",
    )
    return {
        "eff_range": span(f"{lo.n_eff_ratio:.2f}×", lo_at, f"{hi.n_eff_ratio:.2f}×", hi_at),
        "eff_min": float(lo.n_eff_ratio),
        "eff_max": float(hi.n_eff_ratio),
        "eff_min_at": f"{lo.dataset} with {100 * lo.ratio:.0f} % removed",
        "eff_max_at": f"{hi.dataset} with {100 * hi.ratio:.0f} % removed",
        "eff_above": int((part["n_eff_ratio"] > 1).sum()),
        "eff_cells": len(part),
    }


# ----------------------------------------------------------------------------- paired comparisons


def comparison_display(comparison: pd.DataFrame, dataset: str, unit: str) -> pd.DataFrame:
    """One dataset's paired comparisons against random (8 columns)."""
    part = comparison[comparison["dataset"] == dataset] if len(comparison) else comparison
    if part.empty:
        return pd.DataFrame()
    order = {m: k for k, m in enumerate(palette.ordered(part["method"]))}
    part = part.assign(rank=[order[m] for m in part["method"]]).sort_values(["rank", "ratio"])
    out = pd.DataFrame(
        {
            "method": [label(m) for m in part["method"]],
            "removed": [f"{100 * r:.0f} %" for r in part["ratio"]],
            "seeds": part["n"].astype(int).to_numpy(),
            f"MAE: method vs random ({unit})": [
                f"{a:.4g} vs {b:.4g}" for a, b in zip(part["mae_mean"], part["mae_ref_mean"], strict=True)
            ],
            "improvement, 95 % CI (%)": [
                ci_cell(x, a, b)
                for x, a, b in zip(part["improvement_pct"], part["ci_low"], part["ci_high"], strict=True)
            ],
            "p": [fmt_p(p) for p in part["p"]],
            "p (Holm)": [fmt_p(p) for p in part["p_holm"]],
        }
    )
    # One seed count for every row goes to the caption (comparison_sections), not a column.
    return out.drop(columns="seeds") if (out["seeds"] == out["seeds"].iloc[0]).all() else out


def significance_counts(comparison: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Per method: comparisons with random, Holm-significantly lower / higher MAE, and neither."""
    if comparison.empty:
        return pd.DataFrame()
    rows = []
    for method in palette.ordered(comparison["method"]):
        g = comparison[comparison["method"] == method]
        sig = g["p_holm"] < alpha
        lower = int((sig & (g["improvement_pct"] > 0)).sum())
        higher = int((sig & (g["improvement_pct"] < 0)).sum())
        rows.append({"method": label(method), "comparisons": len(g), "significantly lower MAE": lower,
                     "significantly higher MAE": higher, "not significant": len(g) - lower - higher})  # fmt: skip
    return pd.DataFrame(rows)


def comparison_numbers(
    comparison: pd.DataFrame, method: str = "fusion_neg", prefix: str = "neg"
) -> dict[str, Any]:
    """``<prefix>_best`` / ``<prefix>_worst``: ``method``'s best and worst comparison with random, in words."""
    part = comparison[comparison["method"] == method] if len(comparison) else comparison
    if part.empty:
        return {f"{prefix}_best": "not run", f"{prefix}_worst": "not run", f"{prefix}_cells": 0}

    def where(r: Any) -> str:
        return (f"{describe_change(r.improvement_pct)} than random on {r.dataset} with {100 * r.ratio:.0f} % "
                f"removed (Holm p {fmt_p(r.p_holm)})")  # fmt: skip

    return {
        f"{prefix}_best": where(part.loc[part["improvement_pct"].idxmax()]),
        f"{prefix}_worst": where(part.loc[part["improvement_pct"].idxmin()]),
        f"{prefix}_cells": len(part),
    }


def cross_display(cross: pd.DataFrame) -> pd.DataFrame:
    """The cross-dataset mean relative improvement over random per method and ratio."""
    if cross.empty:
        return pd.DataFrame()
    order = {m: k for k, m in enumerate(palette.ordered(cross["method"]))}
    c = cross.assign(rank=[order[m] for m in cross["method"]]).sort_values(["rank", "ratio"])
    return pd.DataFrame(
        {
            "method": [label(m) for m in c["method"]],
            "removed": [f"{100 * r:.0f} %" for r in c["ratio"]],
            "datasets": c["k"].astype(int).to_numpy(),
            "mean improvement, 95 % CI (%)": [
                ci_cell(x, a, b)
                for x, a, b in zip(c["improvement_pct"], c["ci_low"], c["ci_high"], strict=True)
            ],
            "reads as": [describe_change(x) for x in c["improvement_pct"]],
        }
    )


def comparison_sections(
    comparison: pd.DataFrame, units: Mapping[str, str]
) -> dict[str, tuple[pd.DataFrame, str]]:
    """Per dataset: :func:`comparison_display` and its caption (for :func:`fusion.report.glue.glue_sections`)."""
    if comparison.empty:
        return {}
    out = {}
    for key in sorted(comparison["dataset"].unique()):
        unit = unit_of(units, key)
        seeds = sorted(comparison.loc[comparison["dataset"] == key, "n"].astype(int).unique())
        caption = (
            f"`{key}`: each method against random pruning at the same fraction removed, paired by seed "
            f"({', '.join(map(str, seeds))} seeds). "
            f"MAE: seed-mean test MAE of the method vs random ({unit}); improvement: mean over seeds of "
            "100 (MAE_random − MAE) / MAE_random, positive = lower error, with its 95 % t-interval; p: paired "
            "t-test; p (Holm): adjusted over every comparison of every dataset (datasets × methods × ratios)."
        )
        out[key] = (comparison_display(comparison, key, unit), caption)
    return out
