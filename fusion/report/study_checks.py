"""Display tables of the results page's checks: target shift, uncertainty vs target, protocol, optimal point, OOD.

Pure functions of the ``analyze`` stage's tables, like
:mod:`fusion.report.study_tables` (whose formatting helpers they share): a
sentence the page quotes comes from the same function as its table and reads
correctly for either sign.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from fusion.report import palette
from fusion.report.formatting import by_ratio, ci_cell, fmt_p, label, signed, span, unit_of
from fusion.report.study_tables import ALPHA
from fusion.verdict import describe_change


def _ordered(df: pd.DataFrame, *by: str) -> pd.DataFrame:
    order = {m: k for k, m in enumerate(palette.ordered(df["method"]))}
    return df.assign(rank=[order[m] for m in df["method"]]).sort_values(["dataset", "rank", *by])


# ----------------------------------------------------------------------------- target shift


def shift_display(shift: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method (rows) and fraction removed (columns): ``top-decile share · KS``."""
    part = shift[shift["ratio"] > 0] if len(shift) else shift
    if part.empty:
        return pd.DataFrame()
    part = _ordered(part, "ratio")
    cell = [f"{100 * t:.0f} % · {k:.2f}" for t, k in zip(part["top_decile_share"], part["ks"], strict=True)]
    return by_ratio(part, cell)


def shift_numbers(shift: pd.DataFrame, method: str = "fusion_neg", prefix: str = "neg") -> dict[str, Any]:
    """``method``'s smallest and largest top-decile share of its kept sets (random keeps about 10 %)."""
    part = shift[(shift["method"] == method) & (shift["ratio"] > 0)] if len(shift) else shift
    if part.empty:
        return {f"{prefix}_top_range": "not measured", f"{prefix}_top_min": float("nan"), f"{prefix}_top_max": float("nan"),
                f"{prefix}_top_min_at": "–", f"{prefix}_top_max_at": "–"}  # fmt: skip
    lo, hi = part.loc[part["top_decile_share"].idxmin()], part.loc[part["top_decile_share"].idxmax()]
    lo_at, hi_at = (
        f"{lo.dataset} with {100 * lo.ratio:.0f} % removed",
        f"{hi.dataset} with {100 * hi.ratio:.0f} % removed",
    )
    return {
        f"{prefix}_top_range": span(
            f"{100 * lo.top_decile_share:.0f} %", lo_at, f"{100 * hi.top_decile_share:.0f} %", hi_at
        ),
        f"{prefix}_top_min": 100 * float(lo.top_decile_share),
        f"{prefix}_top_max": 100 * float(hi.top_decile_share),
        f"{prefix}_top_min_at": f"{lo.dataset} with {100 * lo.ratio:.0f} % removed",
        f"{prefix}_top_max_at": f"{hi.dataset} with {100 * hi.ratio:.0f} % removed",
    }


def spearman_display(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Mean over seeds of the rank correlation of ``U_ale`` and ``U_epi`` with the target, per dataset.

    Returns:
        The display table and ``rho_ale_max`` (the largest mean correlation),
        ``rho_ale_max_dataset``, ``rho_ale_min``, ``rho_ale_min_dataset`` and
        ``rho_ale_direction``: "rises" / "falls" / "does not move" (|rho| < 0.1) with
        the target on the dataset of the strongest correlation.
    """
    if table.empty:
        return pd.DataFrame(), {"rho_ale_range": "not measured", "rho_ale_strongest": float("nan"),
                                "rho_ale_strongest_dataset": "–", "rho_ale_max": float("nan"), "rho_ale_max_dataset": "–",
                                "rho_ale_min": float("nan"), "rho_ale_min_dataset": "–",
                                "rho_ale_direction": "–"}  # fmt: skip
    g = table.groupby("dataset")
    mean = g[["spearman_u_ale", "spearman_u_epi"]].mean()
    lo, hi = g["spearman_u_ale"].min(), g["spearman_u_ale"].max()
    shown = pd.DataFrame(
        {
            "dataset": mean.index,
            "seeds": g["seed"].nunique().to_numpy(),
            "pool size": g["n"].mean().round().astype(int).to_numpy(),
            "ρ(U_ale, target)": [signed(v, 2) for v in mean["spearman_u_ale"]],
            "range over seeds": [f"{signed(a, 2)} to {signed(b, 2)}" for a, b in zip(lo, hi, strict=True)],
            "ρ(U_epi, target)": [signed(v, 2) for v in mean["spearman_u_epi"]],
        }
    )
    strongest = mean["spearman_u_ale"].abs().idxmax()
    rho = float(mean.loc[strongest, "spearman_u_ale"])
    direction = "does not move" if abs(rho) < 0.1 else ("rises" if rho > 0 else "falls")
    lo_d, hi_d = mean["spearman_u_ale"].idxmin(), mean["spearman_u_ale"].idxmax()
    rng = span(
        signed(mean.loc[lo_d, "spearman_u_ale"], 2),
        str(lo_d),
        signed(mean.loc[hi_d, "spearman_u_ale"], 2),
        str(hi_d),
    )
    return shown, {
        "rho_ale_range": rng,
        "rho_ale_max": float(mean["spearman_u_ale"].max()),
        "rho_ale_max_dataset": str(mean["spearman_u_ale"].idxmax()),
        "rho_ale_min": float(mean["spearman_u_ale"].min()),
        "rho_ale_min_dataset": str(mean["spearman_u_ale"].idxmin()),
        "rho_ale_strongest": rho,
        "rho_ale_strongest_dataset": str(strongest),
        "rho_ale_direction": direction,
    }


# ----------------------------------------------------------------------------- protocol, optimal, ood


def protocol_display(protocol: pd.DataFrame, units: Mapping[str, str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fixed against pruned validation for the same seeds, method and ratio.

    Returns:
        The display table (its last column: the pruned protocol's test MAE
        against the fixed one, in words) and ``protocol_sentence`` (FUSION's
        rows, s = −1 first, in the same words).
    """
    if protocol.empty:
        return pd.DataFrame(), {"protocol_sentence": "the pruned-validation protocol was not run"}
    wide = protocol.pivot_table(index=["dataset", "method", "ratio"], columns="val_protocol",
                                values=["n", "n_val", "val_mae", "test_mae"])  # fmt: skip
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    # One unit for every row goes to the headers; several stay in the cells.
    shared = {unit_of(units, k) for k in protocol["dataset"]}
    head = f" ({next(iter(shared))})" if len(shared) == 1 else ""
    rows, said = [], []
    for r in _ordered(wide.reset_index(), "ratio").to_dict("records"):
        g = {k: r.get(k, float("nan")) for k in ("n_pruned", "n_val_fixed", "n_val_pruned", "val_mae_fixed",
                                                 "val_mae_pruned", "test_mae_fixed", "test_mae_pruned")}  # fmt: skip
        u = "" if head else " " + unit_of(units, r["dataset"])
        pct = 100 * (g["test_mae_fixed"] - g["test_mae_pruned"]) / g["test_mae_fixed"]
        change = describe_change(pct, "")
        removed = f"{100 * r['ratio']:.0f} %"
        rows.append(
            {
                "dataset": r["dataset"],
                "method": label(r["method"]),
                "removed": removed,
                "val. records": f"{g['n_val_fixed']:.0f} → {g['n_val_pruned']:.0f}",
                f"val MAE, fixed → pruned{head}": f"{g['val_mae_fixed']:.4g} → {g['val_mae_pruned']:.4g}{u}",
                f"test MAE, fixed → pruned{head}": f"{g['test_mae_fixed']:.4g} → {g['test_mae_pruned']:.4g}{u}",
                "test MAE, pruned validation": change,
            }
        )
        if r["method"].startswith("fusion"):
            said.append(f"{label(r['method'])} on {r['dataset']} with {removed} removed has "
                        f"{describe_change(pct, 'test MAE')} with the pruned validation set")  # fmt: skip
    sentence = "; ".join(said) if said else "no FUSION rows in the protocol runs"
    return pd.DataFrame(rows), {"protocol_sentence": sentence}


def optimal_display(optimal: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The optimal point chosen on validation, compared on test with no pruning and with random.

    Returns:
        The display table and ``optimal_sentence`` (the best FUSION row against
        no pruning, in words), ``optimal_n`` (seeds).
    """
    if optimal.empty:
        return pd.DataFrame(), {
            "optimal_sentence": "the optimal-point search has not run in this study",
            "optimal_n": 0,
        }
    o = _ordered(optimal.assign(vrank=optimal["versus"] != "ratio 0"), "vrank")  # no pruning first
    table = pd.DataFrame(
        {
            "dataset": o["dataset"].to_numpy(),
            "method": [label(m) for m in o["method"]],
            "chosen fraction": [f"{100 * r:.1f} %" for r in o["chosen_ratio"]],
            "against": ["no pruning" if v == "ratio 0" else str(v) for v in o["versus"]],
            "improvement, 95 % CI (%)": [
                ci_cell(x, a, b)
                for x, a, b in zip(o["improvement_pct"], o["ci_low"], o["ci_high"], strict=True)
            ],
            "p": [fmt_p(p) for p in o["p"]],
            "p (Holm)": [fmt_p(p) for p in o["p_holm"]],
        }
    )
    fus = optimal[(optimal["versus"] == "ratio 0") & optimal["method"].str.startswith("fusion")]
    if fus.empty:
        sentence = "no FUSION row was compared with no pruning"
    else:
        b = fus.loc[fus["improvement_pct"].idxmax()]
        chosen = "no pruning itself" if b.chosen_ratio == 0 else f"removing {100 * b.chosen_ratio:.1f} %"
        sentence = (
            f"the best is {label(b.method)} on {b.dataset}: validation chose {chosen}, which gives "
            f"{describe_change(b.improvement_pct)} on test than no pruning (Holm p {fmt_p(b.p_holm)})"
        )
    return table, {"optimal_sentence": sentence, "optimal_n": int(optimal["n"].max())}


def ood_display(ood: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Leave-one-cluster-out comparisons with random, paired by (seed, held-out cluster).

    Returns:
        The display table and ``ood_sentence`` (every FUSION row, in words).
    """
    if ood.empty:
        return pd.DataFrame(), {"ood_sentence": "the out-of-distribution check has not run in this study"}
    o = _ordered(ood if "folds" in ood else ood.assign(folds="kmeans"), "folds")
    folds = o["folds"]
    source = {"kmeans": "our k-means folds", "paper": "the paper's LOCO folds"}
    table = pd.DataFrame(
        {
            "dataset": o["dataset"].to_numpy(),
            "folds": [source.get(f, f) for f in folds],
            "method": [label(m) for m in o["method"]],
            "pairs": o["n"].astype(int).to_numpy(),
            "improvement, 95 % CI (%)": [
                ci_cell(x, a, b)
                for x, a, b in zip(o["improvement_pct"], o["ci_low"], o["ci_high"], strict=True)
            ],
            "p": [fmt_p(p) for p in o["p"]],
            "p (Holm)": [fmt_p(p) for p in o["p_holm"]],
        }
    )
    said = [
        f"{label(r.method)} on {r.dataset} ({source.get(f, f)}): {describe_change(r.improvement_pct)} than random "
        f"({'Holm-significant' if r.p_holm < ALPHA else 'not significant'}, Holm p {fmt_p(r.p_holm)})"
        for r, f in zip(o.itertuples(), folds, strict=True)
        if r.method.startswith("fusion")
    ]
    return table, {"ood_sentence": "; ".join(said) if said else "no FUSION rows"}
