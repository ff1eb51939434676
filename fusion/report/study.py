"""Figures of the converged study, drawn from the ``analyze`` stage's tables.

Each function takes small tables and returns a matplotlib figure; the
``figures`` stage saves them as PNG and the book glues the same figures, so a
figure exists once. Methods keep their colour and marker of
:mod:`fusion.report.palette`; every panel names its dataset and unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from fusion.report import palette
from fusion.report.figures import pyplot

FONT = 9  # pt: the smallest text of any figure at its rendered size


def _grid(n: int, ncols: int = 2, width: float = 4.6, height: float = 3.4) -> tuple[Any, list[Any]]:
    plt = pyplot()
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows + 0.8), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _legend(fig: Any, axes: Sequence[Any]) -> None:
    """One legend for the figure, below the panels, with every method drawn in any panel."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    ncol = 3 if len(axes) > 1 else 2  # a one-panel figure is narrow
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(ncol, len(handles)),
               fontsize=FONT, frameon=False)  # fmt: skip


def _ci(values: np.ndarray) -> float:
    """Half-width of the 95 % t-interval of a mean (0 for a single value)."""
    n = len(values)
    if n < 2:
        return 0.0
    return float(st.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n))


def units_of(datasets: pd.DataFrame) -> dict[str, str]:
    """Dataset key -> unit, from the ``datasets`` analysis table."""
    return dict(zip(datasets["key"], datasets["unit"], strict=True))


def mae_curves(runs: pd.DataFrame, units: dict[str, str], methods: Sequence[str] | None = None) -> Any:
    """Test MAE against the fraction removed, mean over seeds with a 95 % CI, one panel per dataset.

    Args:
        runs: Train-stage rows of one architecture (``dataset``, ``seed``, ``method``, ``ratio``, ``test_mae``).
        units: Dataset key -> unit.
        methods: Methods drawn (default: all). Random at ratio 0 starts every curve.
    """
    if runs.empty:
        return placeholder("no training runs analysed yet")
    keys = sorted(runs["dataset"].unique())
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys, strict=False):
        part = runs[runs["dataset"] == key]
        zero = part[part["ratio"] == 0]["test_mae"].to_numpy()
        for method in palette.ordered(part["method"].unique()):
            if methods is not None and method not in methods:
                continue
            m = part[(part["method"] == method) & (part["ratio"] > 0)]
            g = m.groupby("ratio")["test_mae"]
            x = np.r_[0.0, g.mean().index.to_numpy()]
            y = np.r_[zero.mean(), g.mean().to_numpy()]
            e = np.r_[_ci(zero), [_ci(v.to_numpy()) for _, v in g]]
            ax.errorbar(x, y, yerr=e, color=palette.color(method), marker=palette.marker(method), ms=5,
                        capsize=3, lw=1.4, label=palette.label(method))  # fmt: skip
        ax.set_title(key, fontsize=FONT + 1)
        ax.set_xlabel("fraction of the training part removed", fontsize=FONT)
        ax.set_ylabel(f"test MAE ({units.get(key, '?')})", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    _legend(fig, axes[: len(keys)])
    return fig


def effective_size(effective: pd.DataFrame, methods: Sequence[str] | None = None) -> Any:
    """The headline figure: what each kept set is worth in random-pruning training records.

    x: the share of the training part kept; y: ``n_eff`` over the unpruned size,
    the share random pruning would need to reach the same MAE (the diagonal is
    random itself). Above the diagonal, a method's kept set is worth more than
    a random set of its size.
    """
    if effective.empty:
        return placeholder("no effective sizes: no dataset's random-pruning MAE falls with the training size")
    keys = sorted(effective["dataset"].unique())
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys, strict=False):
        part = effective[effective["dataset"] == key]
        full = part.loc[part["ratio"] == 0, "n_kept"].iloc[0] if (part["ratio"] == 0).any() else np.nan
        ax.plot([0, 1.05], [0, 1.05], color="0.6", lw=0.8, ls="--")
        for method in palette.ordered(part["method"].unique()):
            if (methods is not None and method not in methods) or method == "random":
                continue
            m = part[part["method"] == method].sort_values("ratio")
            ax.plot(m["n_kept"] / full, m["n_eff_share"], color=palette.color(method),
                    marker=palette.marker(method), ms=6, lw=1.4, label=palette.label(method))  # fmt: skip
        r = part[part["method"] == "random"]
        ax.plot(r["n_kept"] / full, r["n_eff_share"], color=palette.color("random"), marker=palette.marker("random"),
                ls="none", ms=5, label=palette.label("random") + " (fit points)")  # fmt: skip
        ax.set_xlim(0, 1.05)
        ax.set_ylim(0, None)
        ax.set_title(key, fontsize=FONT + 1)
        ax.set_xlabel("share of the training part kept", fontsize=FONT)
        ax.set_ylabel("worth random's share (n_eff / n_full)", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    _legend(fig, axes[: len(keys)])
    return fig


def target_shift(shift: pd.DataFrame, methods: Sequence[str] | None = None) -> Any:
    """Share of each kept set in the pool's top target decile (random keeps about 10 %)."""
    if shift.empty:
        return placeholder("no kept sets analysed yet")
    keys = sorted(shift["dataset"].unique())
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys, strict=False):
        part = shift[(shift["dataset"] == key) & (shift["ratio"] > 0)]
        for method in palette.ordered(part["method"].unique()):
            if methods is not None and method not in methods:
                continue
            m = part[part["method"] == method].sort_values("ratio")
            ax.plot(m["ratio"], 100 * m["top_decile_share"], color=palette.color(method),
                    marker=palette.marker(method), ms=5, lw=1.2, label=palette.label(method))  # fmt: skip
        ax.axhline(10, color="0.6", lw=0.8, ls="--")
        ax.set_title(key, fontsize=FONT + 1)
        ax.set_xlabel("fraction of the training part removed", fontsize=FONT)
        ax.set_ylabel("kept set in the top target decile (%)", fontsize=FONT)
        ax.tick_params(labelsize=FONT)
    _legend(fig, axes[: len(keys)])
    return fig


def placeholder(text: str) -> Any:
    """A small figure that says why there is nothing to draw (keeps a page's figure reference valid)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=FONT + 1, wrap=True)
    ax.set_axis_off()
    return fig


def save(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG without a timestamp (identical tables give identical files) and close it."""
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return path
