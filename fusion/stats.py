"""Statistics for comparing pruning methods: paired improvement, Holm, learning curves.

Methods are compared by the test MAE of a model trained on each kept set, over
several split seeds, paired by seed against a reference (random pruning). The
relative improvement of a method over the reference is, per seed,
``100 * (MAE_ref - MAE) / MAE_ref`` in percent: positive means lower error than
the reference. Relative improvements are unitless, so they, and never raw MAEs,
are what :func:`combine_relative` averages across datasets.

All confidence intervals here are 95 % two-sided intervals (key ``ci95``).

Everything is a pure function of arrays: no I/O, no global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
_Q = 0.5 + CONFIDENCE / 2  # upper quantile of a two-sided interval: 0.975


def _finite_1d(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array, or ValueError if it is not 1-D or holds NaN/inf."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite: it holds {int((~np.isfinite(a)).sum())} NaN/inf value(s)")
    return a


def holm(pvalues: Any) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values.

    With the m non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the
    adjusted value of ``p_(i)`` is ``max_{j <= i} min(1, (m - j + 1) p_(j))``:
    monotone in the raw p-value and capped at 1. Rejecting where the adjusted
    value is ``<= alpha`` controls the family-wise error rate at ``alpha``.

    Args:
        pvalues (array-like of float): Raw p-values in [0, 1] (list, ndarray,
            Series, ...). NaN marks a test that did not run: it stays NaN and
            does not count in the family size m.

    Returns:
        np.ndarray: Adjusted p-values, float64, same length and order as the input.

    Raises:
        ValueError: If the input is not 1-D or a non-NaN value lies outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("pvalues must lie in [0, 1] (NaN allowed for tests that did not run)")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(ok)
    m = len(idx)
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]  # (m - j + 1) p_(j), j from 1
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def paired_improvement(reference: Any, other: Any, min_n_wilcoxon: int = 6) -> dict[str, Any]:
    """Relative improvement of ``other`` over ``reference``, paired by seed.

    The confidence level is fixed at 95 % (:data:`CONFIDENCE`), so the interval
    key ``ci95`` is always truthful and :func:`combine_relative` can recover each
    standard error from it.

    Args:
        reference (array-like of float): Reference test MAEs, one per seed
            (e.g. random pruning); must be > 0.
        other (array-like of float): Test MAEs of the method compared, same
            seeds in the same order.
        min_n_wilcoxon (int): Fewest seeds for the Wilcoxon signed-rank test.
            Defaults to 6, the smallest n whose exact two-sided p-value can go
            below 0.05 (its floor is ``2 / 2**n``).

    Returns:
        dict: ``n`` (int, seeds); ``improvement_pct`` (float, %, mean over seeds
        of ``100 * (reference - other) / reference``; positive = ``other`` has
        lower MAE); ``ci95`` ([low, high], %, Student-t interval on the per-seed
        improvements with n - 1 degrees of freedom; NaN when n < 2);
        ``p`` (two-sided paired t-test on the MAEs, ``scipy.stats.ttest_rel``;
        NaN when n < 2 or every difference is zero); ``p_wilcoxon`` (two-sided
        ``scipy.stats.wilcoxon`` on the MAEs; NaN when n < ``min_n_wilcoxon`` or
        every difference is zero); ``mae_ref_mean`` and ``mae_mean`` (mean MAEs,
        in the target's units).

    Raises:
        ValueError: On a length mismatch, an empty input, NaN/inf values, or a
            non-positive reference MAE.
    """
    ref = _finite_1d(reference, "reference")
    oth = _finite_1d(other, "other")
    if len(ref) != len(oth):
        raise ValueError(f"reference and other must be paired: lengths {len(ref)} and {len(oth)} differ")
    n = len(ref)
    if n == 0:
        raise ValueError("reference and other are empty")
    if np.any(ref <= 0):
        raise ValueError("reference MAE must be > 0 (it divides the relative improvement)")
    imp = 100.0 * (ref - oth) / ref
    mean = float(imp.mean())
    ci = [np.nan, np.nan]
    p = p_w = np.nan
    all_zero = bool(np.all(ref == oth))
    if n >= 2:
        half = stats.t.ppf(_Q, n - 1) * imp.std(ddof=1) / np.sqrt(n)
        ci = [mean - half, mean + half]
        if not all_zero:
            # Constant non-zero differences give t = inf, p = 0: the exact limit.
            p = float(stats.ttest_rel(ref, oth).pvalue)
    if n >= min_n_wilcoxon and not all_zero:
        p_w = float(stats.wilcoxon(ref, oth).pvalue)
    return {
        "n": n,
        "improvement_pct": mean,
        "ci95": [float(ci[0]), float(ci[1])],
        "p": p,
        "p_wilcoxon": p_w,
        "mae_ref_mean": float(ref.mean()),
        "mae_mean": float(oth.mean()),
    }


def combine_relative(improvements: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cross-dataset mean of per-dataset relative improvements, with a 95 % CI.

    Each dataset contributes its mean relative improvement (%), so datasets
    whose targets have different units are never averaged in raw MAE. The
    datasets are treated as independent: each standard error is recovered from
    its t-interval as ``SE_i = half_width_i / t_{0.975, n_i - 1}``, the mean's is
    ``SE = sqrt(sum SE_i^2) / k``, and the interval is ``mean ± z_{0.975} SE``
    with the normal quantile (a fixed-effect combination: it describes these k
    datasets, not a population of datasets).

    Args:
        improvements (Sequence[dict]): Outputs of :func:`paired_improvement`, one
            per dataset (keys ``n``, ``improvement_pct``, ``ci95`` are used).

    Returns:
        dict: ``k`` (int, datasets), ``improvement_pct`` (float, %, unweighted
        mean over datasets) and ``ci95`` ([low, high], %; NaN if any dataset has
        n < 2, whose standard error is unknown).

    Raises:
        ValueError: If ``improvements`` is empty.
    """
    k = len(improvements)
    if k == 0:
        raise ValueError("improvements is empty: nothing to combine")
    means = np.array([d["improvement_pct"] for d in improvements], dtype=np.float64)
    se = np.empty(k)
    for i, d in enumerate(improvements):
        n = int(d["n"])
        lo, hi = (float(v) for v in d["ci95"])
        se[i] = (hi - lo) / 2 / stats.t.ppf(_Q, n - 1) if n >= 2 else np.nan
    mean = float(means.mean())
    half = float(stats.norm.ppf(_Q) * np.sqrt(np.sum(se**2)) / k)
    return {"k": k, "improvement_pct": mean, "ci95": [mean - half, mean + half]}


def fit_power_law(n: Any, mae: Any) -> tuple[float, float]:
    """Least-squares fit of a learning curve ``mae = a * n**b``.

    Fits ``log(mae) = log(a) + b log(n)`` by ordinary least squares in log-log
    space (equal weight per point).

    Args:
        n (array-like of float): Training-set sizes (records), > 0.
        mae (array-like of float): Test MAE at each size (target units), > 0.

    Returns:
        tuple[float, float]: ``(a, b)``; ``a`` in the MAE's units, ``b``
        (dimensionless) negative.

    Raises:
        ValueError: On a length mismatch, NaN/inf or non-positive values, fewer
            than 2 distinct sizes, or a fitted ``b >= 0`` (a learning curve that
            does not decrease cannot convert an MAE into an effective size).
    """
    x = _finite_1d(n, "n")
    y = _finite_1d(mae, "mae")
    if len(x) != len(y):
        raise ValueError(f"n and mae must have the same length: {len(x)} and {len(y)}")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("n and mae must be > 0 (the fit is in log-log space)")
    if len(np.unique(x)) < 2:
        raise ValueError(f"need at least 2 distinct n to fit a power law, got {len(np.unique(x))}")
    b, log_a = np.polyfit(np.log(x), np.log(y), 1)
    if b >= 0:
        raise ValueError(
            f"fitted exponent b = {b:.4g} >= 0: the learning curve does not decrease with n, "
            "so it cannot convert an MAE into an effective size"
        )
    return float(np.exp(log_a)), float(b)


def effective_size(mae: Any, a: float, b: float) -> np.ndarray | float:
    """Training-set size at which the learning curve ``a * n**b`` reaches ``mae``.

    Args:
        mae (float or array-like of float): Test MAE(s), > 0, in the units of ``a``.
        a (float): Power-law prefactor from :func:`fit_power_law`, > 0.
        b (float): Power-law exponent from :func:`fit_power_law`, < 0.

    Returns:
        np.ndarray | float: ``n_eff = (mae / a) ** (1 / b)`` (records); a float for
        a scalar ``mae``, else an array of its shape.

    Raises:
        ValueError: If ``a <= 0``, ``b >= 0`` or any ``mae <= 0``.
    """
    if not a > 0:
        raise ValueError(f"a must be > 0, got {a}")
    if not b < 0:
        raise ValueError(f"b must be < 0 (a decreasing learning curve), got {b}")
    m = np.asarray(mae, dtype=np.float64)
    if not np.all(m > 0):
        raise ValueError("mae must be > 0")
    out = (m / a) ** (1.0 / b)
    return float(out) if out.ndim == 0 else out


def target_shift(y_pool: Any, kept_mask: Any) -> dict[str, float]:
    """How a kept set's target distribution differs from its pool's.

    Args:
        y_pool (array-like of float): Targets of the whole pool (target units).
        kept_mask (array-like of bool): True where a pool record is kept; same
            length as ``y_pool``.

    Returns:
        dict: ``ks`` (two-sample Kolmogorov–Smirnov statistic between kept and
        pool targets, in [0, 1]); ``top_decile_share`` (fraction of KEPT records
        with ``y >= `` the pool's 90th percentile, ``np.quantile`` default
        method; about 0.10 for a random keep, a little more with ties at the
        percentile); ``kept_mean`` and ``pool_mean`` (target units).

    Raises:
        ValueError: If ``y_pool`` is not 1-D and finite, ``kept_mask`` is not a
            boolean array of the same length, or nothing is kept.
    """
    y = _finite_1d(y_pool, "y_pool")
    mask = np.asarray(kept_mask)
    if mask.dtype != bool:
        raise ValueError(f"kept_mask must be a boolean array, got dtype {mask.dtype}")
    if mask.shape != y.shape:
        raise ValueError(f"kept_mask shape {mask.shape} differs from y_pool shape {y.shape}")
    if not mask.any():
        raise ValueError("kept_mask keeps no records")
    kept = y[mask]
    q90 = np.quantile(y, 0.9)
    return {
        "ks": float(stats.ks_2samp(kept, y).statistic),
        "top_decile_share": float(np.mean(kept >= q90)),
        "kept_mean": float(kept.mean()),
        "pool_mean": float(y.mean()),
    }


def _constant_predictor_mae(y_train: Any, y_test: Any, centre: Any) -> float:
    """Test MAE of the constant ``centre(y_train)``."""
    tr = _finite_1d(y_train, "y_train")
    te = _finite_1d(y_test, "y_test")
    if len(tr) == 0 or len(te) == 0:
        raise ValueError("y_train and y_test must be non-empty")
    return float(np.mean(np.abs(te - centre(tr))))


def median_predictor_mae(y_train: Any, y_test: Any) -> float:
    """Test MAE of a constant predictor equal to the training targets' median.

    The median is the constant that minimises the training MAE, so this is the
    natural floor a model must beat.

    Args:
        y_train (array-like of float): Training targets (target units).
        y_test (array-like of float): Test targets (target units).

    Returns:
        float: ``mean(|y_test - median(y_train)|)``, in target units.

    Raises:
        ValueError: If either input is empty, not 1-D, or holds NaN/inf.
    """
    return _constant_predictor_mae(y_train, y_test, np.median)


def mean_predictor_mae(y_train: Any, y_test: Any) -> float:
    """Test MAE of a constant predictor equal to the training targets' mean.

    Args:
        y_train (array-like of float): Training targets (target units).
        y_test (array-like of float): Test targets (target units).

    Returns:
        float: ``mean(|y_test - mean(y_train)|)``, in target units.

    Raises:
        ValueError: If either input is empty, not 1-D, or holds NaN/inf.
    """
    return _constant_predictor_mae(y_train, y_test, np.mean)
