"""The figures of ``fusion prune``'s report, drawn from a :class:`fusion.prune_result.PruneResult`.

Each function returns a :class:`matplotlib.figure.Figure` (built without
pyplot, so nothing is shown or left open), or None when the method does not
compute the quantity drawn (``random`` has neither U nor W);
:mod:`fusion.prune_report` embeds them in ``report.html``:

* :func:`figure_uw`: uncertainty U against redundancy weight W, one panel per ratio;
* :func:`figure_importance`: importance ``I = U / W`` in ascending order, the
  running mean of the lowest ``k`` and each ratio's threshold epsilon;
* :func:`figure_targets`: histograms of the kept and removed targets, one panel per ratio;
* :func:`figure_map`: the first two principal components of the SOAP
  fingerprints (:func:`fusion.report.pca.pca`), one panel per ratio.

Kept records take the method's colour from :mod:`fusion.report.palette`,
removed ones its grey.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion.report.pca import pca

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fusion.prune_result import PruneResult

#: Panels per row when a figure shows one panel per ratio.
PANELS_PER_ROW = 3


def _colors(method: str) -> tuple[str, str]:
    """``(kept, removed)`` colours: the method's palette colour and the palette's grey."""
    from fusion.report import palette

    kept = palette.STYLES[method].color if method in palette.STYLES else palette.OKABE_ITO["vermillion"]
    return kept, palette.OKABE_ITO["grey"]


def _ratio_colors(n: int) -> list[str]:
    """One distinguishable colour per ratio (Okabe-Ito, cycled)."""
    from fusion.report import palette

    names = ["blue", "orange", "bluish_green", "reddish_purple", "sky_blue", "vermillion", "black"]
    return [palette.OKABE_ITO[names[k % len(names)]] for k in range(n)]


def _panels(n: int) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels, :data:`PANELS_PER_ROW` per row (the spare ones hidden)."""
    from matplotlib.figure import Figure

    cols = min(n, PANELS_PER_ROW)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.3 * cols, 3.6 * rows), layout="constrained")
    axes = list(np.ravel(fig.subplots(rows, cols, squeeze=False)))
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _masks(result: PruneResult) -> dict[float, np.ndarray]:
    """Per ratio, the kept mask over :attr:`PruneResult.ids`."""
    return {r: np.asarray(sel.kept_mask, dtype=bool) for r, sel in result.selections.items()}


def _kept_removed_scatter(
    result: PruneResult, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str
) -> Figure:
    """One scatter per ratio of ``(x, y)``, removed records in grey under the kept ones."""
    kept_c, removed_c = _colors(result.method)
    masks = _masks(result)
    fig, axes = _panels(len(masks))
    size = 14 if len(x) <= 500 else 5
    for ax, (r, kept) in zip(axes, masks.items(), strict=True):
        ax.scatter(
            x[~kept], y[~kept], s=size, c=removed_c, alpha=0.7, lw=0, label=f"removed ({(~kept).sum()})"
        )
        ax.scatter(x[kept], y[kept], s=size, c=kept_c, alpha=0.8, lw=0, label=f"kept ({kept.sum()})")
        ax.set_title(f"ratio {r:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, loc="best")
    return fig


def figure_uw(result: PruneResult) -> Figure | None:
    """U against W per ratio, or None when the method lacks U or W.

    Args:
        result: The prune's result (its ``U`` and ``W`` scores and selections).

    Returns:
        One scatter panel per ratio, kept records over the removed ones; None
        when every U or every W is NaN (``random``, ``weight``, ...).
    """
    U, W = result.scores["U"].to_numpy(float), result.scores["W"].to_numpy(float)
    if np.isnan(U).all() or np.isnan(W).all():
        return None
    return _kept_removed_scatter(
        result, W, U, "redundancy weight W = exp(-gamma d_NN)", "uncertainty score U"
    )


def figure_importance(result: PruneResult) -> Figure | None:
    """Sorted importance with its running mean and each ratio's epsilon, or None without I.

    Args:
        result: The prune's result (its ``I`` scores and selections).

    Returns:
        One panel: the finite ``I`` in ascending order, the mean of the lowest
        ``k``, and per ratio with records removed a dotted line at epsilon and
        a vertical line at its removal count; None when every I is NaN.
    """
    from matplotlib.figure import Figure

    I = result.scores["I"].to_numpy(float)
    if np.isnan(I).all():
        return None
    I = np.sort(I[np.isfinite(I)])
    k = np.arange(1, len(I) + 1)
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(k, I, color="#222222", lw=1.5, label="I, ascending")
    ax.plot(k, np.cumsum(I) / k, color="#666666", lw=1.2, ls="--", label="mean of the lowest k")
    for color, (r, sel) in zip(_ratio_colors(len(result.selections)), result.selections.items(), strict=True):
        n_removed = len(sel.removed_ids)
        if sel.epsilon is None or n_removed == 0:
            continue
        ax.axhline(
            sel.epsilon, color=color, ls=":", lw=1.3, label=f"ratio {r:g}: epsilon = {sel.epsilon:.4g}"
        )
        ax.axvline(n_removed, color=color, ls="-", lw=0.8, alpha=0.6)
    ax.set_xlabel("k (records in ascending order of I)")
    ax.set_ylabel("importance I = U / W")
    ax.legend(fontsize=8, loc="best")
    return fig


def figure_targets(result: PruneResult) -> Figure:
    """Histograms of kept and removed targets, one panel per ratio, shared bins.

    Args:
        result: The prune's result (its ``target`` scores and selections).

    Returns:
        One panel per ratio: the kept targets filled, the removed ones as a
        step outline, on ``sqrt(n)`` bins clipped to [5, 40] shared by all panels.
    """
    y = result.scores["target"].to_numpy(float)
    kept_c, removed_c = _colors(result.method)
    bins = np.histogram_bin_edges(y, bins=min(40, max(5, int(np.sqrt(len(y))))))
    masks = _masks(result)
    fig, axes = _panels(len(masks))
    for ax, (r, kept) in zip(axes, masks.items(), strict=True):
        ax.hist(y[kept], bins=bins, color=kept_c, alpha=0.65, label=f"kept ({kept.sum()})")
        if (~kept).any():
            ax.hist(
                y[~kept],
                bins=bins,
                color=removed_c,
                histtype="step",
                lw=1.8,
                label=f"removed ({(~kept).sum()})",
            )
        ax.set_title(f"ratio {r:g}")
        ax.set_xlabel(f"target: {result.target}")
        ax.set_ylabel("records")
        ax.legend(fontsize=8, loc="best")
    return fig


def figure_map(result: PruneResult) -> tuple[Figure, np.ndarray] | None:
    """The fingerprint map per ratio and the explained variance, or None without fingerprints.

    Args:
        result: The prune's result (its ``fingerprints`` and selections).

    Returns:
        ``(figure, explained)``: one scatter panel per ratio of the first two
        principal components, and the fraction of the variance each component
        explains (:func:`fusion.report.pca.pca`); None when the method uses
        no fingerprints.
    """
    if result.fingerprints is None:
        return None
    coords, explained = pca(result.fingerprints)
    fig = _kept_removed_scatter(
        result,
        coords[:, 0],
        coords[:, 1],
        f"PC 1 ({100 * explained[0]:.1f} % of the variance)",
        f"PC 2 ({100 * explained[1]:.1f} % of the variance)",
    )
    return fig, explained
