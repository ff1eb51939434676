"""Figures of the method page (matplotlib; glue them with :func:`fusion.report.glue.glue_figure`).

Each ``plot_*`` function takes the tables it shows and returns a figure; methods
are drawn in their colour and marker of :mod:`fusion.report.palette`. The
results page's figures are in :mod:`fusion.report.study`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.report import palette


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the Agg backend unless a notebook's inline backend is active.

    The inline backend is kept because the book glues these figures; anywhere
    else nothing is displayed.
    """
    import matplotlib as mpl

    if mpl.get_backend().lower() not in {"agg", "module://matplotlib_inline.backend_inline"}:
        mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def removal_curve(importance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running mean of the sorted importances: the smallest epsilon that removes each fraction.

    Removing the k least important samples is the largest removal whose mean
    importance is at most the k-prefix mean, so this curve is the
    epsilon-to-ratio map of FUSION's discrete optimisation (METHOD.md step 6).

    Args:
        importance: ``I`` of the pool, any order.

    Returns:
        ``(fraction_removed, epsilon)``, both of length ``len(importance)``.
    """
    s = np.sort(np.asarray(importance, dtype=np.float64))
    k = np.arange(1, len(s) + 1)
    return k / len(s), np.cumsum(s) / k


SIGN_TEXT = {"neg": "s = −1", "pos": "s = +1"}


def plot_u_vs_w(scores: pd.DataFrame, ratio: float) -> Any:
    """Uncertainty score ``U`` against redundancy weight ``W`` for both signs, coloured by ``I = U / W``.

    Args:
        scores: :func:`~fusion.report.inputs.pool_scores` output (``W``, ``U_neg``, ``U_pos``,
            ``I_neg``, ``I_pos``, ``fusion_<s>@<ratio>`` keep columns).
        ratio: The records removed by FUSION at this ratio get a red edge.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, s in zip(axes, SIGN_TEXT, strict=True):
        sc = ax.scatter(scores["W"], scores[f"U_{s}"], c=scores[f"I_{s}"], s=14, cmap="viridis")
        col = f"fusion_{s}@{ratio:g}"
        if col in scores:
            removed = ~scores[col].astype(bool)
            ax.scatter(scores.loc[removed, "W"], scores.loc[removed, f"U_{s}"], s=30, facecolors="none",
                       edgecolors="C3", linewidths=0.7, label=f"removed at r = {ratio:g} ({int(removed.sum())})")  # fmt: skip
            ax.legend(fontsize=8)
        fig.colorbar(sc, ax=ax, label=f"importance I = U / W ({SIGN_TEXT[s]})")
        ax.set(xlabel="redundancy weight W = exp(−γ d_NN) (unitless)", ylabel=f"U ({SIGN_TEXT[s]}, unitless)",
               title=f"FUSION, {SIGN_TEXT[s]}")  # fmt: skip
    return fig


def plot_signs(scores: pd.DataFrame, uncertainty: pd.DataFrame, ratio: float, unit: str) -> Any:
    """The target against the aleatoric uncertainty, with what each sign removes at ``ratio``.

    Args:
        scores: :func:`~fusion.report.inputs.pool_scores` output (``id``, ``y``, keep columns).
        uncertainty: The uncertainty stage's table of the same seed (``id``, ``u_ale``).
        ratio: The pruning ratio shown.
        unit: The target's unit.
    """
    plt = pyplot()
    merged = scores.merge(uncertainty[["id", "u_ale"]], on="id")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharey=True)
    for ax, s in zip(axes, SIGN_TEXT, strict=True):
        col = f"fusion_{s}@{ratio:g}"
        keep = merged[col].astype(bool) if col in merged else pd.Series(True, index=merged.index)
        ax.scatter(merged.loc[keep, "y"], merged.loc[keep, "u_ale"], s=10, color="C0", alpha=0.6,
                   label=f"kept ({int(keep.sum())})")  # fmt: skip
        ax.scatter(merged.loc[~keep, "y"], merged.loc[~keep, "u_ale"], s=12, color="C3", alpha=0.8,
                   label=f"removed ({int((~keep).sum())})")  # fmt: skip
        ax.set(xlabel=f"target ({unit})", title=f"FUSION, {SIGN_TEXT[s]}, r = {ratio:g}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("U_ale = β / (α − 1) (surrogate's scale)")
    return fig


def plot_ranking_and_epsilon(
    scores: pd.DataFrame, summary: pd.DataFrame, seed: int, sign: str = "neg"
) -> Any:
    """Two panels: the sorted importances with the removed prefix, and the epsilon-ratio curve.

    Args:
        scores: :func:`~fusion.report.inputs.pool_scores` output of ``seed``.
        summary: :func:`~fusion.report.inputs.prune_summary` output (the epsilon found per ratio).
        seed: Split seed (selects the rows of ``summary``).
        sign: ``"neg"`` (s = −1, the paper's) or ``"pos"``. Defaults to ``"neg"``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    rows = summary[
        (summary["seed"] == seed) & (summary["method"] == f"fusion_{sign}") & (summary["ratio"] > 0)
    ]
    rows = rows.sort_values("ratio")
    s = np.sort(scores[f"I_{sign}"].to_numpy())
    axes[0].plot(np.arange(len(s)), s, color="k", lw=1)
    for k, (_, row) in enumerate(rows.iterrows()):
        n = int(row["n_pool"] - row["n_kept"])
        axes[0].axvspan(0, n, color=f"C{k}", alpha=0.15, label=f"removed at r = {row['ratio']:g} ({n})")
    axes[0].set(xlabel="rank (ascending I)", ylabel=f"importance I ({SIGN_TEXT[sign]}, unitless)",
                title=f"the I ranking, {SIGN_TEXT[sign]}")  # fmt: skip
    axes[0].legend(fontsize=8)
    frac, eps = removal_curve(s)
    axes[1].plot(frac, eps, color="k", lw=1, label="mean I of the removed prefix")
    for k, (_, row) in enumerate(rows.iterrows()):
        axes[1].plot(1 - row["n_kept"] / row["n_pool"], row["epsilon"], "o", color=f"C{k}",
                     label=f"r = {row['ratio']:g}: ε = {row['epsilon']:.4g}")  # fmt: skip
    axes[1].set(xlabel="fraction of the pool removed", ylabel="ε (bound on the mean I removed)",
                title="ε against the fraction removed")  # fmt: skip
    axes[1].legend(fontsize=8)
    return fig


def pca_2d(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``X`` on their first two principal components.

    Returns:
        ``(coords [n, 2], explained_variance_ratio [2])``.
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    _, sv, vt = np.linalg.svd(Xc, full_matrices=False)
    var = sv**2
    return Xc @ vt[:2].T, var[:2] / max(var.sum(), np.finfo(float).tiny)


def pool_projection(key: str, scores: pd.DataFrame, root: str | Path = ".") -> tuple[np.ndarray, np.ndarray]:
    """PCA of the SOAP fingerprints of the pool rows of ``scores`` (same order)."""
    from fusion.fingerprints import load_fingerprints

    ids, X, _ = load_fingerprints(Path(root, "cache", "fingerprints", f"{key}.npz"))
    pos = {str(i): k for k, i in enumerate(ids)}
    return pca_2d(X[[pos[i] for i in scores["id"]]])


def plot_projection(
    scores: pd.DataFrame,
    coords: np.ndarray,
    methods: Sequence[str],
    ratio: float,
    explained: np.ndarray | None = None,
    ncols: int = 3,
) -> Any:
    """Kept vs removed samples of each method at ``ratio`` in the 2-D fingerprint projection.

    Args:
        scores: :func:`pool_scores` output (``<method>@<ratio>`` keep columns).
        coords: ``[n_pool, 2]`` projection in the row order of ``scores``.
        methods: Methods shown, one panel each (missing columns are skipped).
        ratio: Pruning ratio shown.
        explained: Explained variance ratios of the two axes, for the labels.
        ncols: Panels per row. Defaults to 3.
    """
    plt = pyplot()
    cols = [(m, f"{m}@{ratio:g}") for m in methods if f"{m}@{ratio:g}" in scores]
    n = max(1, len(cols))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(cols) :]:
        ax.set_visible(False)
    ev = explained if explained is not None else np.full(2, np.nan)
    for ax, (method, col) in zip(axes.flat, cols, strict=False):
        keep = scores[col].astype(bool).to_numpy()
        ax.scatter(*coords[~keep].T, s=8, color="C3", alpha=0.6, label=f"removed ({(~keep).sum()})")
        ax.scatter(*coords[keep].T, s=8, color="C0", alpha=0.8, label=f"kept ({keep.sum()})")
        ax.set(
            title=f"{palette.label(method)}, r = {ratio:g}",
            xlabel=f"PC1 ({100 * ev[0]:.0f} %)",
            ylabel=f"PC2 ({100 * ev[1]:.0f} %)",
        )
        ax.legend(fontsize=6, markerscale=1.5)
    fig.tight_layout()
    return fig
