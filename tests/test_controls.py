"""Tests of the target-matched random control (fusion.selection.target_matched_random)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same_integers

from fusion.selection import decile_edges, decile_index, target_matched_random


def _counts(y, mask):
    return np.bincount(decile_index(y[mask], decile_edges(y)), minlength=10)


@pytest.fixture
def pool():
    rng = np.random.default_rng(7)
    y = rng.lognormal(0.0, 1.0, 1003)
    # A reference that favours high targets, as an uncertainty-driven keep might.
    ref = rng.random(y.size) < np.clip(y / np.quantile(y, 0.95), 0.05, 0.95)
    return y, ref


def test_decile_edges_and_tie_rule():
    y = np.arange(101, dtype=float)  # deciles at 10, 20, ..., 90 exactly
    edges = decile_edges(y)
    np.testing.assert_allclose(edges, np.arange(10, 100, 10))
    idx = decile_index(y, edges)
    assert idx.min() == 0
    assert idx.max() == 9
    assert idx[10] == 1  # a value on an edge goes to the upper bin
    assert_same_integers(idx == 9, y >= np.quantile(y, 0.9))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_matches_reference_per_decile_counts(pool, seed):
    y, ref = pool
    keep = target_matched_random(y, ref, seed)
    assert keep.dtype == bool
    assert keep.sum() == ref.sum()
    assert_same_integers(_counts(y, keep), _counts(y, ref))


def test_deterministic_per_seed_and_differs_between_seeds(pool):
    y, ref = pool
    assert_same_integers(target_matched_random(y, ref, 3), target_matched_random(y, ref, 3))
    assert not np.array_equal(target_matched_random(y, ref, 3), target_matched_random(y, ref, 4))


def test_full_bin_is_kept_whole_and_never_exceeded(pool):
    y, _ = pool
    top = y >= np.quantile(y, 0.9)  # the reference keeps the whole top decile, nothing else
    keep = target_matched_random(y, top, 0)
    assert_same_integers(keep, top)
    every = target_matched_random(y, np.ones(y.size, dtype=bool), 0)
    assert every.all()


def test_heavy_ties_keep_counts_and_size():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500).astype(float)  # only 4 distinct targets: most bins empty
    ref = rng.random(500) < 0.3
    for seed in range(3):
        keep = target_matched_random(y, ref, seed)
        assert_same_integers(_counts(y, keep), _counts(y, ref))
        # Each distinct value is an edge here, so each has a bin of its own.
        for v in range(4):
            assert keep[y == v].sum() == ref[y == v].sum()


@pytest.mark.parametrize(
    ("ref", "match"),
    [(np.ones(5, dtype=int), "boolean"), (np.ones(4, dtype=bool), "shape")],
)
def test_rejects_bad_reference(ref, match):
    with pytest.raises(ValueError, match=match):
        target_matched_random(np.arange(5.0), ref, 0)
