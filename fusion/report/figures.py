"""Figures of the method and results pages (matplotlib; glue them with :func:`fusion.report.glue.glue_figure`).

Each ``plot_*`` function takes the tables it shows and returns a figure; methods
are drawn in their colour and marker of :mod:`fusion.report.palette`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.report import palette
from fusion.report.tables import improvement_matrix


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


def plot_u_vs_w(scores: pd.DataFrame, column: str | None = None) -> Any:
    """Uncertainty ``U`` against redundancy weight ``W``, coloured by importance ``I``.

    Args:
        scores: :func:`pool_scores` output.
        column: Optional keep/remove column (``fusion@0.4``); removed samples get a red edge.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    sc = ax.scatter(scores["W"], scores["U"], c=scores["I"], s=14, cmap="viridis")
    if column is not None and column in scores:
        removed = ~scores[column].astype(bool)
        ax.scatter(
            scores.loc[removed, "W"],
            scores.loc[removed, "U"],
            s=30,
            facecolors="none",
            edgecolors="C3",
            linewidths=0.7,
            label=f"removed by {column}",
        )
        ax.legend(fontsize=7)
    fig.colorbar(sc, ax=ax, label="importance I = U / W")
    ax.set(xlabel="redundancy weight W = exp(-γ d_NN)", ylabel="uncertainty score U")
    fig.tight_layout()
    return fig


def plot_ranking_and_epsilon(
    scores: pd.DataFrame, summary: pd.DataFrame, seed: int, method: str = "fusion"
) -> Any:
    """Two panels: the sorted importances with the removed prefix, and the epsilon-ratio curve.

    Args:
        scores: :func:`pool_scores` output of ``seed``.
        summary: :func:`prune_summary` output (the epsilon found per ratio).
        seed: Split seed (selects the rows of ``summary``).
        method: The method whose epsilons are marked. Defaults to ``"fusion"``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = summary[(summary["seed"] == seed) & (summary["method"] == method) & (summary["ratio"] > 0)]
    s = np.sort(scores["I"].to_numpy())
    axes[0].plot(np.arange(len(s)), s, color="k", lw=1)
    for k, (_, row) in enumerate(rows.sort_values("ratio").iterrows()):
        n = int(row["n_removed"])
        axes[0].axvspan(0, n, color=f"C{k}", alpha=0.15, label=f"removed at r={row['ratio']:g} ({n})")
    axes[0].set(xlabel="rank (ascending I)", ylabel="importance I", title="the I ranking")
    axes[0].legend(fontsize=7)
    frac, eps = removal_curve(s)
    axes[1].plot(frac, eps, color="k", lw=1, label="mean I of the removed prefix")
    for k, (_, row) in enumerate(rows.sort_values("ratio").iterrows()):
        axes[1].plot(
            row["n_removed"] / row["n_pool"],
            row["epsilon"],
            "o",
            color=f"C{k}",
            label=f"r={row['ratio']:g}: ε={row['epsilon']:.4g}",
        )
    axes[1].set(xlabel="fraction removed", ylabel="ε (bound on mean I of removed)", title="ε against ratio")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
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
            title=f"{method}, r={ratio:g}",
            xlabel=f"PC1 ({100 * ev[0]:.0f} %)",
            ylabel=f"PC2 ({100 * ev[1]:.0f} %)",
        )
        ax.legend(fontsize=6, markerscale=1.5)
    fig.tight_layout()
    return fig


def plot_improvement_heatmap(improvement: pd.DataFrame) -> Any:
    """Heatmaps of the improvement over random (%), architectures × datasets, one panel per method.

    The surrogate is one architecture; the other rows show how far its pruning
    transfers (the paper's cross-model setting).
    """
    plt = pyplot()
    methods = sorted(improvement["method"].unique(), key=lambda m: (m != "fusion", m))
    n = max(1, len(methods))
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    mats = [improvement_matrix(improvement, m) for m in methods]
    lim = max([np.nanmax(np.abs(m.to_numpy())) for m in mats if m.size] + [1.0])
    height = 1.2 + 0.45 * max(3, *(len(m) for m in mats))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.8 * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    im = None
    for ax, method, mat in zip(axes.flat, methods, mats, strict=False):
        im = ax.imshow(mat.to_numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(mat.shape[1]), mat.columns, fontsize=8)
        ax.set_yticks(range(mat.shape[0]), mat.index, fontsize=8)
        for (i, j), v in np.ndenumerate(mat.to_numpy()):
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7)
        ax.set_title(method, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat[: len(methods)]), label="improvement over random (%)", shrink=0.8)
    return fig


def plot_optimal(optimal: pd.DataFrame) -> Any:
    """MAE improvement (%) against the fraction FUSION removes, per dataset (mean ± std over seeds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for k, (ds, part) in enumerate(optimal.groupby("dataset", sort=True)):
        g = part.groupby("ratio")["improvement_pct"]
        ax.errorbar(
            100 * g.mean().index,
            g.mean(),
            yerr=g.std().fillna(0),
            marker="o",
            ms=3,
            capsize=2,
            label=str(ds),
            color=f"C{k}",
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="% of the pool removed by FUSION", ylabel="MAE improvement vs no pruning (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_ood(ood: pd.DataFrame) -> Any:
    """Leave-one-cluster-out test MAE, bars per held-out cluster and method, one panel per dataset."""
    plt = pyplot()
    panels = list(ood.groupby("dataset", sort=True))
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.3), squeeze=False)
    for ax, (ds, part) in zip(axes.flat, panels, strict=False):
        wide = part.pivot_table(index="cluster", columns="method", values="test_mae")
        width = 0.8 / max(1, wide.shape[1])
        for k, method in enumerate(palette.ordered(wide.columns)):
            ax.bar(
                wide.index + k * width,
                wide[method],
                width=width,
                label=palette.label(method),
                color=palette.color(method),
            )
        ax.set(title=str(ds), xlabel="held-out cluster", ylabel="test MAE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
