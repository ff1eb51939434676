"""The verdict on the paper's claims and the metrics contract (``results/metrics.json``).

Pure functions of the :mod:`fusion.analysis` tables. Each claim of the paper
(METHOD.md) gets ``holds``, ``does not hold`` or ``unresolved`` with a one-line
reason; :func:`describe_change` is the one function that puts a relative change
into words, here and in the book.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion import stats
from fusion.analysis import ALPHA, count
from fusion.transfer import headline_rows

#: The number of architectures the paper's transfer claim covers.
PAPER_ARCHITECTURES = 11


def _paired(
    runs: pd.DataFrame, dataset: str, arch: str, ratio: float, reference: str, other: str
) -> dict[str, Any] | None:
    """:func:`fusion.stats.paired_improvement` of ``other`` over ``reference`` at one cell (None if missing)."""
    cell = runs[(runs["dataset"] == dataset) & (runs["arch"] == arch) & (runs["ratio"] == ratio)]
    a = cell[cell["method"] == reference].set_index("seed")["test_mae"]
    b = cell[cell["method"] == other].set_index("seed")["test_mae"]
    seeds = sorted(set(a.index) & set(b.index))
    if len(seeds) < 2:
        return None
    return stats.paired_improvement(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy())


def describe_change(pct: float, noun: str = "MAE", digits: int = 1) -> str:
    """A relative change in words that reads correctly for either sign.

    The one function that turns an improvement into text, for the verdict and the book alike.

    Args:
        pct: Relative improvement in %, positive = lower ``noun`` (:mod:`fusion.analysis`'s convention).
        noun: What changed. Defaults to ``"MAE"``; ``""`` leaves it out.
        digits: Decimals. Defaults to 1.

    Returns:
        ``"12.0 % lower MAE"``, ``"12.0 % higher MAE"``, ``"the same MAE (within 0.05 %)"``
        or ``"no measurement"`` for NaN.
    """
    tail = f" {noun}" if noun else ""
    if pct is None or not np.isfinite(pct):
        return "no measurement"
    if round(abs(pct), digits) == 0:
        return f"the same{tail} (within {0.5 * 10.0**-digits:g} %)"
    return f"{abs(pct):.{digits}f} % {'lower' if pct > 0 else 'higher'}{tail}"


def verdict(
    comparison: pd.DataFrame,
    cross: pd.DataFrame,
    gated: Sequence[str],
    arch: str,
    optimal: pd.DataFrame | None = None,
    ood: pd.DataFrame | None = None,
    claimed_low: float = 1.91,
    runs: pd.DataFrame | None = None,
    transfer_accuracy: pd.DataFrame | None = None,
    transfer: pd.DataFrame | None = None,
    transfer_headline: dict[str, str] | None = None,
    transfer_ratio: float = 0.4,
    ood_ratio: float = 0.4,
    gate_reasons: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """One entry per claim of the paper (METHOD.md): ``holds``, ``does not hold`` or ``unresolved``.

    Only the ``gated`` datasets (converged and accurate, :func:`fusion.analysis.accuracy_table`)
    decide a claim. A claim whose runs are all on datasets that fail the gate
    is ``unresolved``; its reason still gives what was measured, and why those
    datasets fail (``gate_reasons``: dataset -> the gate's reason).

    Rules (stated in the book):

    - *FUSION beats random by 1.91-13.65 %*: for each sign, the cross-dataset
      mean improvement over the gated datasets and ratios 0.2-0.8. Holds if the
      paper's sign (s = -1) has a positive Holm-significant improvement in more
      cells than a negative one and its cross-dataset CI lies above 0; does not
      hold if its CI lies below the paper's smallest gain (1.91 %) at every
      ratio; else unresolved.
    - *FUSION 12.7 % below diversity on jdft2d at 80 %*: FUSION (s = −1) against
      diversity at 0.8 on jdft2d, paired by seed (``runs``): holds if the 95 % CI
      of the improvement lies above 0, does not hold if below, else unresolved.
    - *optimal point*: holds if a FUSION point chosen on validation beats
      ratio 0 with Holm p < 0.05, else unresolved.
    - *OOD gaps shrink*: per dataset and fold source, FUSION's OOD improvement
      over random (``ood``) against its in-distribution one at ``ood_ratio``
      (``comparison``). Holds if the OOD gap is smaller in magnitude everywhere
      and the in-distribution gap is Holm-significant somewhere (a gap must
      exist to shrink); does not hold if an OOD gap is larger in magnitude with
      a 95 % CI excluding 0; else unresolved.
    - *transfer across 11 architectures*: the better FUSION sign (chosen on
      validation, ``transfer_headline``) against random at ``transfer_ratio``
      for every gated (dataset, architecture) of the grid. Holds if it is
      better in every one and Holm-significant in a majority, and the gated
      pairs cover :data:`PAPER_ARCHITECTURES` architectures (fewer cannot show
      a claim about 11, though one counterexample can refute it); does not
      hold if it is Holm-significantly worse in any, or worse in a majority;
      else unresolved.
    """
    out: dict[str, dict[str, str]] = {}
    main = comparison[(comparison["arch"] == arch) & comparison["dataset"].isin(list(gated))]
    fus = main[main["method"] == "fusion_neg"]
    cr = cross[cross["method"] == "fusion_neg"] if not cross.empty else cross
    if fus.empty or cr.empty:
        out["beats_random"] = {"status": "unresolved", "reason": "no gated dataset with FUSION (s = −1) runs"}
    else:
        sig = fus[fus["p_holm"] < ALPHA]
        n_better, n_worse = int((sig["improvement_pct"] > 0).sum()), int((sig["improvement_pct"] < 0).sum())
        best = cr.loc[cr["improvement_pct"].idxmax()]
        text = (
            f"FUSION (s = −1) against random over {len(gated)} dataset(s): Holm-significant better in "
            f"{n_better}, worse in {n_worse} of {len(fus)} cells; best cross-dataset mean "
            f"{describe_change(best.improvement_pct)} at ratio {best.ratio:g} "
            f"(95 % CI {best.ci_low:+.1f} to {best.ci_high:+.1f} %)"
        )
        if n_better > n_worse and (cr["ci_low"] > 0).any():
            status = "holds"
        elif (cr["ci_high"] < claimed_low).all():
            status = "does not hold"
        else:
            status = "unresolved"
        out["beats_random"] = {"status": status, "reason": text}
    fus_div = (
        _paired(runs, "jdft2d", arch, 0.8, reference="diversity", other="fusion_neg")
        if runs is not None
        else None
    )
    reasons = dict(gate_reasons or {})
    if fus_div is not None:
        pct, lo, hi = fus_div["improvement_pct"], *fus_div["ci95"]
        status = "holds" if lo > 0 else "does not hold" if hi < 0 else "unresolved"
        text = (
            f"on jdft2d at 80 %, FUSION (s = −1) has {describe_change(pct)} than diversity "
            f"(95 % CI {lo:+.1f} to {hi:+.1f} %, {fus_div['n']} seeds; paper: 12.7 % lower)"
        )
        if "jdft2d" not in gated:
            status, text = "unresolved", text + _outside_gate(["jdft2d"], reasons)
        out["beats_diversity_jdft2d_80"] = {"status": status, "reason": text}
    else:
        out["beats_diversity_jdft2d_80"] = {"status": "unresolved", "reason": "jdft2d diversity@0.8 not run"}
    out["optimal_point"] = _optimal_verdict(optimal, gated, reasons)
    out["ood_gaps_shrink"] = _ood_verdict(comparison, ood, arch, ood_ratio, gated, reasons)
    out["transfer_11_architectures"] = _transfer_verdict(
        transfer_accuracy, transfer, transfer_headline or {}, transfer_ratio
    )
    return out


def _outside_gate(datasets: Sequence[str], gate_reasons: Mapping[str, str]) -> str:
    """The tail of a reason whose datasets all fail the accuracy gate: which, and why."""
    why = [gate_reasons.get(d, "reason not given") for d in datasets]
    if len(datasets) == 1:
        return f"; {datasets[0]} fails the accuracy gate, so the claim stays unresolved here: {why[0]}"
    each = "; ".join(f"{d}: {w}" for d, w in zip(datasets, why, strict=True))
    return f"; {' and '.join(datasets)} fail the accuracy gate, so the claim stays unresolved here: {each}"


def _left_out(datasets: Sequence[str], gated: Sequence[str]) -> str:
    """The tail of a reason decided on part of its datasets: which were left out (failing the gate)."""
    out = sorted(set(datasets) - set(gated))
    return f"; left out, failing the accuracy gate: {', '.join(out)}" if out else ""


def _optimal_verdict(
    optimal: pd.DataFrame | None, gated: Sequence[str], gate_reasons: Mapping[str, str]
) -> dict[str, str]:
    """The *optimal point* entry of :func:`verdict`, decided on the gated datasets."""
    if optimal is None or optimal.empty:
        return {"status": "unresolved", "reason": "no optimal-point runs at this budget"}
    v0 = optimal[(optimal["versus"] == "ratio 0") & optimal["method"].str.startswith("fusion")]
    if v0.empty:
        return {"status": "unresolved", "reason": "no FUSION optimal-point comparison with ratio 0"}
    decided = v0[v0["dataset"].isin(list(gated))]
    shown = decided if len(decided) else v0
    sig = shown[(shown["p_holm"] < ALPHA) & (shown["improvement_pct"] > 0)]
    best = shown.loc[shown["improvement_pct"].idxmax()]
    text = (
        f"best FUSION point chosen on validation: {describe_change(best.improvement_pct)} than no pruning on "
        f"{best.dataset} ({best.method}, ratio {best.chosen_ratio:g}, Holm p {best.p_holm:.2g}); "
        f"{len(sig)} of {len(shown)} significant (paper: up to 12.67 % lower)"
    )
    if decided.empty:
        return {
            "status": "unresolved",
            "reason": text + _outside_gate(sorted(set(v0["dataset"])), gate_reasons),
        }
    return {"status": "holds" if len(sig) else "unresolved", "reason": text + _left_out(v0["dataset"], gated)}


def _ood_verdict(
    comparison: pd.DataFrame,
    ood: pd.DataFrame | None,
    arch: str,
    ratio: float,
    gated: Sequence[str],
    gate_reasons: Mapping[str, str],
) -> dict[str, str]:
    """The *OOD gaps shrink* entry of :func:`verdict`, decided on the gated datasets."""
    if ood is None or ood.empty:
        return {"status": "unresolved", "reason": "no OOD runs"}
    decided = ood[ood["dataset"].isin(list(gated))]
    if decided.empty:
        entry = _ood_verdict(comparison, ood, arch, ratio, sorted(set(ood["dataset"])), {})
        return {
            "status": "unresolved",
            "reason": entry["reason"] + _outside_gate(sorted(set(ood["dataset"])), gate_reasons),
        }
    left_out = _left_out(ood["dataset"], gated)
    ood = decided
    ident = comparison[(comparison["arch"] == arch) & (comparison["ratio"] == ratio)].set_index(
        ["dataset", "method"]
    )
    pairs, smaller, larger = [], 0, 0
    for r in ood[ood["method"].str.startswith("fusion")].itertuples():
        if (r.dataset, r.method) not in ident.index:
            continue
        i = ident.loc[(r.dataset, r.method)]
        pairs.append((r, i))
        if abs(r.improvement_pct) < abs(i.improvement_pct):
            smaller += 1
        elif r.ci_low > 0 or r.ci_high < 0:
            larger += 1
    if not pairs:
        return {
            "status": "unresolved",
            "reason": f"no in-distribution comparison at ratio {ratio:g} for the OOD datasets",
        }
    gap = any(i.p_holm < ALPHA for _, i in pairs)
    text = "; ".join(
        f"{r.dataset} {r.folds} folds, {r.method}: {r.improvement_pct:+.1f} % OOD against {i.improvement_pct:+.1f} % "
        f"in distribution"
        for r, i in pairs
    )
    status = "holds" if smaller == len(pairs) and gap else "does not hold" if larger else "unresolved"
    if status == "unresolved" and not gap:
        text += " (no Holm-significant in-distribution gap to shrink)"
    return {"status": status, "reason": text + left_out}


def _transfer_verdict(
    accuracy: pd.DataFrame | None, transfer: pd.DataFrame | None, headline: dict[str, str], ratio: float
) -> dict[str, str]:
    """The *transfer across 11 architectures* entry of :func:`verdict`."""
    if accuracy is None or transfer is None or accuracy.empty or transfer.empty or not headline:
        return {"status": "unresolved", "reason": "no transfer grid at this budget"}
    n_gated = int(accuracy["passes"].sum())
    head = headline_rows(transfer, headline, accuracy)
    rows = list(head[head["ratio"] == ratio].itertuples())
    n_arch = accuracy["arch"].nunique()
    if not rows:
        return {
            "status": "unresolved",
            "reason": f"{'the' if len(accuracy) == 1 else 'none of the'} "
            f"{count(len(accuracy), '(dataset, architecture) pair')} of {count(n_arch, 'architecture')} "
            f"{'fails' if len(accuracy) == 1 else 'passes'} the convergence and accuracy gates",
        }
    better = sum(r.improvement_pct > 0 for r in rows)
    sig_better = sum(r.improvement_pct > 0 and r.p_holm < ALPHA for r in rows)
    sig_worse = sum(r.improvement_pct < 0 and r.p_holm < ALPHA for r in rows)
    text = (
        f"the better FUSION sign (on validation) against random at {100 * ratio:g} %: lower MAE in {better} of "
        f"{len(rows)} gated (dataset, architecture) pairs, Holm-significant in {sig_better}, significantly "
        f"higher in {sig_worse}; {len(accuracy) - n_gated} of {len(accuracy)} pairs fail a gate"
    )
    n_measured = len({r.arch for r in rows})
    if sig_worse or 2 * better < len(rows):
        status = "does not hold"
    elif better == len(rows) and 2 * sig_better > len(rows):
        if n_measured >= PAPER_ARCHITECTURES:
            status = "holds"
        else:
            status = "unresolved"
            text += (f"; consistent with the claim, but on {n_measured} gated architectures of the paper's "
                     f"{PAPER_ARCHITECTURES}")  # fmt: skip
    else:
        status = "unresolved"
    return {"status": status, "reason": text}


def _r(x: Any, nd: int = 4) -> Any:
    """Round a float for metrics.json (NaN becomes None)."""
    x = float(x)
    return None if not np.isfinite(x) else round(x, nd)


def metrics(
    study: dict[str, Any],
    accuracy: pd.DataFrame,
    comparison: pd.DataFrame,
    effective: pd.DataFrame,
    verdicts: dict[str, dict[str, str]],
    arch: str,
) -> dict[str, Any]:
    """``results/metrics.json``: study, accuracy, vs_random and verdict sections (the metrics contract)."""
    acc = {}
    for r in accuracy.itertuples():
        acc[r.dataset] = {
            "test_mae": _r(r.test_mae),
            "median_predictor_mae": _r(r.median_predictor_mae),
            "matbench_cgcnn_mae": _r(r.matbench_cgcnn_mae),
            "ratio_to_matbench": _r(r.ratio_to_matbench, 3),
            "converged": None if r.converged is None or pd.isna(r.converged) else bool(r.converged),
            "doubling_change_pct": _r(r.doubling_change_pct, 2),
            "passes_gate": bool(r.passes),
        }
        if r.subsampled:
            acc[r.dataset]["full_data_test_mae"] = _r(r.full_data_test_mae)
    eff = effective.set_index(["dataset", "method", "ratio"]) if not effective.empty else None
    vs: dict[str, Any] = {}
    for r in comparison[comparison["arch"] == arch].itertuples():
        key = (r.dataset, r.method, r.ratio)
        entry = {
            "improvement_pct": _r(r.improvement_pct, 3),
            "ci95": [_r(r.ci_low, 3), _r(r.ci_high, 3)],
            "p": _r(r.p, 5),
            "p_holm": _r(r.p_holm, 5),
            "n_eff_ratio": _r(eff.loc[key, "n_eff_ratio"], 3)
            if eff is not None and key in eff.index
            else None,
        }
        vs.setdefault(r.dataset, {}).setdefault(r.method, {})[f"{r.ratio:g}"] = entry
    return {"study": study, "accuracy": acc, "vs_random": vs, "verdict": verdicts}


def _entry(r: Any) -> dict[str, Any]:
    """``improvement_pct``, ``ci95``, ``p_holm`` (and ``n``) of one comparison row."""
    return {"improvement_pct": _r(r.improvement_pct, 3), "ci95": [_r(r.ci_low, 3), _r(r.ci_high, 3)],
            "p_holm": _r(r.p_holm, 5), "n": int(r.n)}  # fmt: skip


def claim_sections(
    transfer_accuracy: pd.DataFrame,
    transfer: pd.DataFrame,
    headline: dict[str, str],
    optimal: pd.DataFrame,
    ood: pd.DataFrame,
    transfer_ratio: float = 0.4,
) -> dict[str, Any]:
    """The ``transfer``, ``optimal_point`` and ``ood`` sections of ``results/metrics.json``.

    - ``transfer``: per dataset, per architecture: ``test_mae`` (unpruned),
      ``matbench_mae``, ``median_predictor_mae``, ``converged``, ``change_pct``
      (doubled budget), ``passes_gate``, the headline comparison (``method``:
      the better FUSION sign on validation, at ``ratio``) as
      ``improvement_pct``, ``ci95``, ``p_holm``, and every comparison of the
      grid under ``comparisons`` (``"<method>@<ratio>"``).
    - ``optimal_point``: per dataset, per FUSION sign and random: the
      ``chosen_ratio`` (on validation) and the comparisons ``vs_ratio0`` and
      ``vs_random`` (same ratio).
    - ``ood``: per dataset, per fold source, per FUSION sign: the improvement
      over random.
    """
    tr: dict[str, Any] = {}
    for r in transfer_accuracy.itertuples():
        tr.setdefault(r.dataset, {})[r.arch] = {
            "test_mae": _r(r.test_mae), "matbench_mae": _r(r.matbench_mae),
            "median_predictor_mae": _r(r.median_predictor_mae), "converged": bool(r.converged),
            "change_pct": _r(r.change_pct, 2), "passes_gate": bool(r.passes),
            "method": headline.get(r.dataset), "ratio": transfer_ratio,
            "improvement_pct": None, "ci95": [None, None], "p_holm": None, "comparisons": {},
        }  # fmt: skip
    for r in transfer.itertuples():
        entry = tr.get(r.dataset, {}).get(r.arch)
        if entry is None:
            continue
        entry["comparisons"][f"{r.method}@{r.ratio:g}"] = _entry(r)
        if r.method == headline.get(r.dataset) and r.ratio == transfer_ratio:
            entry.update({k: v for k, v in _entry(r).items() if k != "n"})
    opt: dict[str, Any] = {}
    for r in optimal.itertuples():
        cell = opt.setdefault(r.dataset, {}).setdefault(r.method, {"chosen_ratio": float(r.chosen_ratio)})
        cell["vs_ratio0" if r.versus == "ratio 0" else "vs_random"] = _entry(r)
    od: dict[str, Any] = {}
    for r in ood.itertuples():
        od.setdefault(r.dataset, {}).setdefault(r.folds, {})[r.method] = _entry(r)
    return {"transfer": tr, "optimal_point": opt, "ood": od}
