"""How the study's pages write numbers: signs, p-values, MAEs with units, intervals, method labels.

Shared by :mod:`fusion.report.study_tables`, :mod:`fusion.report.study_checks`
and :mod:`fusion.report.transfer`, so that a number reads the same on every
page; :func:`by_ratio` is the one layout of a per-method table by fraction removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fusion.report import palette

MINUS = "\u2212"


def signed(x: float, digits: int = 1) -> str:
    """``+3.9`` / ``−3.9`` (a true minus sign); a dash for NaN."""
    if x is None or not np.isfinite(x):
        return "–"
    s = f"{x:+.{digits}f}"
    return s.replace("-", MINUS)


def fmt_p(p: float) -> str:
    """A p-value to two significant digits (``< 0.001`` below that); a dash for NaN."""
    if p is None or not np.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def fmt_mae(x: float, unit: str | None = None) -> str:
    """An MAE to four significant digits, with its unit if given; a dash for NaN."""
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.4g} {unit}" if unit else f"{x:.4g}"


def ci(low: float, high: float, digits: int = 1) -> str:
    """``−3.1 to +4.2`` (a 95 % interval in %; no decimals once an end reaches 100)."""
    if np.isfinite(low) and np.isfinite(high) and max(abs(low), abs(high)) >= 100:
        digits = 0
    return f"{signed(low, digits)} to {signed(high, digits)}"


def ci_cell(x: float, low: float, high: float, digits: int = 1) -> str:
    """``−3.9 (−8.1 to +0.3)``: an improvement in % with its 95 % interval."""
    return f"{signed(x, digits)} ({ci(low, high, digits)})"


def span(lo: str, lo_at: str, hi: str, hi_at: str) -> str:
    """``from 0.50× (a) to 1.04× (b)``, or one value when both ends read the same."""
    if lo == hi:
        return f"{lo} ({lo_at})" if lo_at == hi_at else f"{lo} ({lo_at}; {hi_at})"
    return f"from {lo} ({lo_at}) to {hi} ({hi_at})"


def label(method: str) -> str:
    """The method's display label (:func:`fusion.report.palette.label`), or its key when it has none."""
    try:
        return palette.label(method)
    except KeyError:
        return method


def unit_of(units: Mapping[str, str], key: str) -> str:
    """The unit of dataset ``key`` ("?" if unknown)."""
    u = units.get(key)
    return u if isinstance(u, str) and u else "?"


def by_ratio(part: pd.DataFrame, cell: Sequence[str]) -> pd.DataFrame:
    """A display table: one row per dataset and method (palette order), one column per fraction removed.

    Args:
        part: Rows with ``dataset``, ``method`` and ``ratio``.
        cell: The text shown for each row of ``part``, in its order.

    Returns:
        Columns ``dataset``, ``method`` (its label) and ``<r> % removed`` per
        ratio; a missing cell reads "–".
    """
    order = {m: k for k, m in enumerate(palette.ordered(part["method"]))}
    wide = part.assign(cell=list(cell), label=[label(m) for m in part["method"]])
    wide = wide.assign(rank=[order[m] for m in wide["method"]])
    out = wide.pivot_table(
        index=["dataset", "rank", "label"], columns="ratio", values="cell", aggfunc="first"
    )
    out.columns = [f"{100 * c:.0f} % removed" for c in out.columns]
    out = out.reset_index().drop(columns="rank").rename(columns={"label": "method"}).fillna("–")
    out.columns.name = None
    return out
