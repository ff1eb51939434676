"""The transfer grid on the Results page and in ``results/figures/``: one table, one heatmap, one sentence.

Reads the ``analyze`` stage's ``transfer_accuracy`` and ``transfer`` tables
(:mod:`fusion.transfer`) and the headline method of ``results/metrics.json``'s
``transfer`` section; pure functions, like :mod:`fusion.report.study_tables`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fusion.analysis import CONVERGED, GATE_MEDIAN, count
from fusion.report.figures import pyplot
from fusion.report.formatting import ci_cell, fmt_mae, fmt_p, label, signed, unit_of
from fusion.report.study import FONT, placeholder
from fusion.report.study_tables import ALPHA
from fusion.transfer import GATE_MATBENCH, headline_rows
from fusion.verdict import describe_change

#: Colour scale of the heatmap: improvements beyond this (in %) saturate.
SCALE_PCT = 15.0


def headline_of(metrics: Mapping[str, Any]) -> tuple[dict[str, str], float]:
    """Per dataset, the FUSION sign heading the grid, and the grid's first ratio, from ``metrics.json``."""
    section = metrics.get("transfer", {})
    heads, ratio = {}, 0.4
    for key, archs in section.items():
        for entry in archs.values():
            if entry.get("method"):
                heads[key] = entry["method"]
                ratio = float(entry.get("ratio", ratio))
    return heads, ratio


def why_not_counted(r: Any) -> str:
    """A row of ``transfer_accuracy`` in a few words: ``counted`` or the gates it fails.

    Built from the numbers (true minus signs, the median-predictor gap through
    :func:`fusion.verdict.describe_change`), so it reads the same for either sign.
    """
    if r.passes:
        return "counted"
    why = []
    if not np.isfinite(r.change_pct):
        why.append("no run with twice the budget")
    elif abs(r.change_pct) >= 100 * CONVERGED:
        why.append(f"not converged ({signed(r.change_pct)} % with twice the budget)")
    if np.isfinite(r.ratio_to_matbench) and r.ratio_to_matbench > GATE_MATBENCH:
        why.append(f"{r.ratio_to_matbench:.1f}× its Matbench MAE")
    if not r.vs_median_pct >= 100 * GATE_MEDIAN:
        why.append(f"{describe_change(r.vs_median_pct)} than the median predictor")
    return "; ".join(why)


def transfer_display(
    accuracy: pd.DataFrame, comparison: pd.DataFrame, heads: Mapping[str, str], units: Mapping[str, str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per dataset and architecture: the unpruned model's quality and the headline FUSION sign against random.

    Returns:
        The display table (one row per dataset and architecture, MAEs in the
        dataset's unit, why a pair does not count, one column per ratio of the
        grid) and the glue value ``transfer_summary`` (how many pairs count,
        and :func:`transfer_sentence`).
    """
    if accuracy.empty:
        return pd.DataFrame(), {"transfer_summary": "The transfer grid has not run in this study."}
    ratios = sorted(comparison["ratio"].unique()) if len(comparison) else []
    cmp = comparison.set_index(["dataset", "arch", "method", "ratio"]) if len(comparison) else None
    rows = []
    for r in accuracy.sort_values(["dataset", "test_mae"]).itertuples():
        unit = unit_of(units, r.dataset)
        row = {
            "dataset": r.dataset,
            "architecture": r.arch,
            "unpruned test MAE": fmt_mae(r.test_mae, unit),
            "Matbench": fmt_mae(r.matbench_mae, unit),
            "median predictor": fmt_mae(r.median_predictor_mae, unit),
            "counted?": why_not_counted(r),
        }
        method = heads.get(r.dataset)
        for ratio in ratios:
            name = f"{label(method or 'fusion_neg')} vs random, {100 * ratio:g} % removed (%)"
            key = (r.dataset, r.arch, method, ratio)
            if cmp is None or method is None or key not in cmp.index:
                row[name] = "–"
                continue
            c = cmp.loc[key]
            star = "*" if c["p_holm"] < ALPHA else ""
            row[name] = f"{ci_cell(c['improvement_pct'], c['ci_low'], c['ci_high'])}{star}"
        rows.append(row)
    n_pass = int(accuracy["passes"].sum())
    sentence = transfer_sentence(comparison, accuracy, heads)
    summary = (
        f"{n_pass} of {count(len(accuracy), '(dataset, architecture) pair')}, over "
        f"{count(accuracy['arch'].nunique(), 'architecture')}, {'passes' if n_pass == 1 else 'pass'} the gates"
        f"{'' if n_pass == len(accuracy) else '; the table below gives the reason of each one that fails'}. "
        f"{sentence[:1].upper()}{sentence[1:]}."
    )
    return pd.DataFrame(rows), {"transfer_summary": summary}


def transfer_heatmap(accuracy: pd.DataFrame, comparison: pd.DataFrame, heads: Mapping[str, str]) -> Any:
    """Heatmap of the headline FUSION sign's improvement over random: architectures x (dataset, ratio).

    Each cell shows the mean improvement over seeds (%, positive = lower MAE
    than random) and its 95 % interval; the colour saturates at
    :data:`SCALE_PCT`. A cell whose architecture fails a gate on that dataset
    stays grey, its text in italics; a Holm-significant one is marked ``*``.
    """
    if accuracy.empty or comparison.empty or not heads:
        return placeholder("The transfer grid has not run in this study.")
    head = headline_rows(comparison, heads)
    cols = sorted({(d, r) for d, r in zip(head["dataset"], head["ratio"], strict=True)})
    archs = list(accuracy.groupby("arch")["vs_median_pct"].mean().sort_values(ascending=False).index)
    passes = {(r.dataset, r.arch): bool(r.passes) for r in accuracy.itertuples()}
    cell = head.set_index(["arch", "dataset", "ratio"])
    values = np.full((len(archs), len(cols)), np.nan)
    coloured = np.full_like(values, np.nan)  # gated cells only: a failing one stays grey
    for i, arch in enumerate(archs):
        for j, (key, ratio) in enumerate(cols):
            if (arch, key, ratio) in cell.index:
                values[i, j] = cell.loc[(arch, key, ratio), "improvement_pct"]
                if passes.get((key, arch), False):
                    coloured[i, j] = values[i, j]
    plt = pyplot()
    # Wide enough that the three-line cells stay legible once the page scales the figure down.
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.5 * len(cols) + 2.4), 0.7 * len(archs) + 1.6), layout="constrained"
    )
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.92")
    image = ax.imshow(coloured, cmap=cmap, vmin=-SCALE_PCT, vmax=SCALE_PCT, aspect="auto")
    for i, arch in enumerate(archs):
        for j, (key, ratio) in enumerate(cols):
            if not np.isfinite(values[i, j]):
                ax.text(j, i, "not run", ha="center", va="center", fontsize=FONT, color="0.3")
                continue
            c = cell.loc[(arch, key, ratio)]
            gated = np.isfinite(coloured[i, j])
            text = f"{signed(c['improvement_pct'])}{'*' if c['p_holm'] < ALPHA else ''}\n"
            text += (
                f"[{signed(c['ci_low'])}, {signed(c['ci_high'])}]"
                if np.isfinite(c["ci_low"])
                else f"({int(c['n'])} seed)"
            )
            if not gated:
                text += "\nfails a gate"
            dark = gated and abs(values[i, j]) > 0.6 * SCALE_PCT  # white text on saturated colours
            ax.text(j, i, text, ha="center", va="center", fontsize=FONT, color="white" if dark else "black",
                    style="normal" if gated else "italic")  # fmt: skip
    ax.set_xticks(range(len(cols)), [f"{key}\n{label(heads[key])}\n{100 * r:g} % removed" for key, r in cols],
                  fontsize=FONT)  # fmt: skip
    ax.set_yticks(range(len(archs)), archs, fontsize=FONT)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.set_label("improvement over random (%)", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT)
    return fig


def transfer_sentence(comparison: pd.DataFrame, accuracy: pd.DataFrame, heads: Mapping[str, str]) -> str:
    """The headline comparison over the gated architectures, in words, per dataset and ratio."""
    if comparison.empty or not heads:
        return "the transfer grid was not run"
    gated = headline_rows(comparison, heads, accuracy)
    said = []
    for key in sorted(set(comparison["dataset"])):
        if key not in set(gated["dataset"]):
            said.append(f"on {key} no architecture passes the gates")
            continue
        for ratio in sorted(set(comparison.loc[comparison["dataset"] == key, "ratio"])):
            part = gated[(gated["dataset"] == key) & (gated["ratio"] == ratio)]
            lower = int((part["improvement_pct"] > 0).sum())
            sig = int(((part["improvement_pct"] > 0) & (part["p_holm"] < ALPHA)).sum())
            worse = int(((part["improvement_pct"] < 0) & (part["p_holm"] < ALPHA)).sum())
            said.append(
                f"on {key} at {100 * ratio:g} % removed, {label(heads[key])} has a lower MAE than random for "
                f"{lower} of {count(len(part), 'gated architecture')} ({sig} Holm-significantly; {worse} "
                f"significantly higher; smallest Holm p {fmt_p(part['p_holm'].min())})"
            )
    return "; ".join(said)


def transfer_measured(
    accuracy: pd.DataFrame, comparison: pd.DataFrame, heads: Mapping[str, str], ratio: float
) -> str:
    """The grid in a few words for the Against-the-paper table: architectures, gated pairs, range at ``ratio``."""
    if accuracy.empty:
        return "not run"
    gated = {(r.dataset, r.arch) for r in accuracy.itertuples() if r.passes}
    head = headline_rows(comparison, heads, accuracy)
    head = head[head["ratio"] == ratio] if len(head) else head
    text = (
        f"{accuracy['arch'].nunique()} architectures, {len(gated)} of {len(accuracy)} "
        "(dataset, architecture) pairs gated"
    )
    if head.empty:
        return text
    lo, hi = head["improvement_pct"].min(), head["improvement_pct"].max()
    return (f"{text}; the better FUSION sign at {100 * ratio:g} % removed: from {describe_change(lo)} to "
            f"{describe_change(hi)} than random")  # fmt: skip
