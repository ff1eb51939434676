"""Tests of the comparison statistics (fusion.stats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fusion.stats import (
    combine_relative,
    effective_size,
    fit_power_law,
    holm,
    mean_predictor_mae,
    median_predictor_mae,
    paired_improvement,
    target_shift,
)

# ---------------------------------------------------------------- holm


def test_holm_textbook_example():
    # m = 4; sorted p: 0.005, 0.01, 0.03, 0.04, multiplied by 4, 3, 2, 1:
    # 0.02, 0.03, 0.06, 0.04 -> running max: 0.02, 0.03, 0.06, 0.06.
    # Back in input order [0.01, 0.04, 0.03, 0.005]: [0.03, 0.06, 0.06, 0.02].
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


def test_holm_nan_stays_nan_and_is_not_counted():
    # m = 2 (NaN excluded): 0.01 * 2 = 0.02, 0.04 * 1 = 0.04.
    out = holm(pd.Series([0.01, np.nan, 0.04]))
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04], rtol=1e-12)
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([]).shape == (0,)


def test_holm_capped_monotone_and_not_below_raw():
    assert holm([0.6, 0.7, 0.8]).tolist() == [1.0, 1.0, 1.0]  # capped at exactly 1
    p = np.random.default_rng(0).uniform(0, 0.2, 50)
    adj = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p)
    assert np.all(adj <= 1)


def test_holm_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


# ---------------------------------------------------------------- paired_improvement


def test_paired_improvement_ci_matches_textbook_t_interval():
    # Reference 100 everywhere, so the per-seed improvements are exactly 1..5 %:
    # mean 3, s = sqrt(2.5) = 1.5811, s / sqrt(5) = 0.70711, and with the table
    # value t_{0.975,4} = 2.776 the half-width is 1.963: CI [1.037, 4.963].
    # Tolerance 1e-3: the table's 3-decimal rounding of t (|2.776 - 2.77645| < 5e-4)
    # moves the half-width by at most 5e-4 * 0.707 = 3.5e-4.
    res = paired_improvement([100.0] * 5, [99.0, 98.0, 97.0, 96.0, 95.0])
    assert res["n"] == 5
    assert res["improvement_pct"] == pytest.approx(3.0, abs=1e-12)
    half = 2.776 * np.sqrt(2.5) / np.sqrt(5)
    np.testing.assert_allclose(res["ci95"], [3.0 - half, 3.0 + half], atol=1e-3)
    assert res["mae_ref_mean"] == pytest.approx(100.0)
    assert res["mae_mean"] == pytest.approx(97.0)


def test_paired_improvement_pvalues():
    ref = np.array([0.50, 0.42, 0.61, 0.55, 0.47])
    oth = np.array([0.45, 0.43, 0.52, 0.50, 0.44])
    res = paired_improvement(ref, oth)
    d = ref - oth
    # Paired t by hand: t = mean(d) / (s_d / sqrt(n)), two-sided with n - 1 df.
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert res["p"] == pytest.approx(2 * stats.t.sf(abs(t), 4), rel=1e-10)
    assert res["p"] == pytest.approx(stats.ttest_rel(ref, oth).pvalue, rel=1e-12)
    np.testing.assert_allclose(res["improvement_pct"], np.mean(100 * d / ref), rtol=1e-12)
    assert np.isnan(res["p_wilcoxon"])  # n = 5 < 6


def test_paired_improvement_wilcoxon_from_six_seeds():
    ref = np.array([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    oth = ref - np.array([0.01, 0.03, 0.02, 0.05, 0.04, 0.06])
    res = paired_improvement(ref, oth)
    # All six differences positive: exact two-sided p = 2 / 2**6 = 0.03125.
    assert res["p_wilcoxon"] == pytest.approx(2 / 2**6, rel=1e-12)
    assert res["p_wilcoxon"] == pytest.approx(stats.wilcoxon(ref, oth).pvalue, rel=1e-12)
    assert np.isnan(paired_improvement(ref, oth, min_n_wilcoxon=7)["p_wilcoxon"])


def test_paired_improvement_degenerate_cases():
    one = paired_improvement([2.0], [1.0])
    assert one["improvement_pct"] == pytest.approx(50.0)
    assert np.isnan(one["ci95"]).all()
    assert np.isnan(one["p"])
    same = paired_improvement([1.0] * 6, [1.0] * 6)
    assert same["improvement_pct"] == 0.0
    assert np.isnan(same["p"])
    assert np.isnan(same["p_wilcoxon"])


@pytest.mark.parametrize(
    ("ref", "oth", "match"),
    [
        ([1.0, 2.0], [1.0], "lengths 2 and 1"),
        ([1.0, 0.0], [1.0, 1.0], "reference MAE must be > 0"),
        ([1.0, np.nan], [1.0, 1.0], "finite"),
        ([1.0, 1.0], [np.nan, 1.0], "finite"),
        ([], [], "empty"),
    ],
)
def test_paired_improvement_rejects_bad_input(ref, oth, match):
    with pytest.raises(ValueError, match=match):
        paired_improvement(ref, oth)


# ---------------------------------------------------------------- combine_relative


def test_combine_relative_uses_independent_standard_errors():
    a = paired_improvement([100.0] * 5, [99.0, 98.0, 97.0, 96.0, 95.0])  # mean 3, s^2 = 2.5, n = 5
    b = paired_improvement([10.0] * 4, [9.0, 9.5, 9.0, 10.0])  # 10, 5, 10, 0 %: mean 6.25
    res = combine_relative([a, b])
    assert res["k"] == 2
    assert res["improvement_pct"] == pytest.approx((3.0 + 6.25) / 2)
    # SE_i = s_i / sqrt(n_i); SE = sqrt(SE_a^2 + SE_b^2) / 2; normal 97.5 % quantile.
    s2_b = np.var([10.0, 5.0, 10.0, 0.0], ddof=1)
    se = np.sqrt(2.5 / 5 + s2_b / 4) / 2
    half = stats.norm.ppf(0.975) * se
    np.testing.assert_allclose(res["ci95"], [4.625 - half, 4.625 + half], rtol=1e-10)


def test_combine_relative_nan_ci_without_spread_and_empty():
    res = combine_relative([paired_improvement([2.0], [1.0]), paired_improvement([1.0, 1.0], [0.9, 0.8])])
    assert res["improvement_pct"] == pytest.approx((50.0 + 15.0) / 2)
    assert np.isnan(res["ci95"]).all()
    with pytest.raises(ValueError, match="empty"):
        combine_relative([])


# ---------------------------------------------------------------- learning curve


def test_power_law_recovers_noiseless_and_inverts():
    n = np.array([100, 200, 400, 800, 1600, 3200])
    a, b = fit_power_law(n, 5.0 * n**-0.3)
    assert a == pytest.approx(5.0, rel=1e-10)
    assert b == pytest.approx(-0.3, rel=1e-10)
    assert effective_size(5.0 * 1000.0**-0.3, a, b) == pytest.approx(1000.0, rel=1e-9)
    assert isinstance(effective_size(0.5, a, b), float)
    np.testing.assert_allclose(effective_size(5.0 * n**-0.3, a, b), n, rtol=1e-9)


def test_power_law_noisy_within_tolerance():
    # 20 sizes log-spaced over 10^2..10^5, 2 % multiplicative noise: the OLS
    # standard errors are ~0.002 on b and ~0.018 on log(a); the tolerances
    # (0.01 on b, 10 % on a) are about 5 of them.
    rng = np.random.default_rng(1)
    n = np.logspace(2, 5, 20)
    mae = 5.0 * n**-0.3 * np.exp(rng.normal(0, 0.02, n.size))
    a, b = fit_power_law(n, mae)
    assert b == pytest.approx(-0.3, abs=0.01)
    assert a == pytest.approx(5.0, rel=0.1)


@pytest.mark.parametrize(
    ("n", "mae", "match"),
    [
        ([100, 100], [1.0, 0.9], "2 distinct n"),
        ([100, 200], [1.0, 0.0], "> 0"),
        ([0, 200], [1.0, 0.9], "> 0"),
        ([100, 200], [0.9, 1.0], "does not decrease"),
        ([100, 200, 300], [1.0, 0.9], "same length"),
    ],
)
def test_power_law_rejects_bad_input(n, mae, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(n, mae)


def test_effective_size_rejects_increasing_curve():
    with pytest.raises(ValueError, match="b must be < 0"):
        effective_size(0.5, 1.0, 0.2)


# ---------------------------------------------------------------- target_shift


def test_target_shift_random_vs_top_decile_dropped():
    rng = np.random.default_rng(0)
    n = 100_000
    y = rng.standard_normal(n)
    rand = target_shift(y, rng.random(n) < 0.5)
    # ~50 000 kept: SE of the share is sqrt(0.09 / 5e4) = 0.0013; 0.01 is ~7 SE.
    assert rand["top_decile_share"] == pytest.approx(0.1, abs=0.01)
    assert rand["ks"] < 0.02
    assert rand["pool_mean"] == pytest.approx(y.mean())
    low = target_shift(y, y < np.quantile(y, 0.9))
    assert low["top_decile_share"] == 0.0
    # The kept CDF reaches 1 at the 90th percentile, where the pool's is 0.9.
    assert low["ks"] == pytest.approx(0.1, abs=2 / n)
    assert low["kept_mean"] < low["pool_mean"]


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.array([1, 0, 1]), "boolean"),
        (np.array([True, False]), "shape"),
        (np.zeros(3, dtype=bool), "no records"),
    ],
)
def test_target_shift_rejects_bad_mask(mask, match):
    with pytest.raises(ValueError, match=match):
        target_shift([1.0, 2.0, 3.0], mask)


# ---------------------------------------------------------------- constant predictors


def test_constant_predictor_maes():
    y_train = [1.0, 2.0, 3.0, 10.0]  # median 2.5, mean 4
    y_test = [3.0, 5.0]
    assert median_predictor_mae(y_train, y_test) == pytest.approx((0.5 + 2.5) / 2)
    assert mean_predictor_mae(y_train, y_test) == pytest.approx((1.0 + 1.0) / 2)
    with pytest.raises(ValueError, match="non-empty"):
        mean_predictor_mae([], y_test)
