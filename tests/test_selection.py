"""Tests of the FUSION selector and its baselines (fusion.selection)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from conftest import assert_bitwise_equal, assert_same_integers
from scipy.spatial.distance import cdist

from fusion.selection import (
    METHODS,
    fusion_prune,
    importance,
    k_center_greedy,
    nearest_neighbor_distance,
    prefix_for_epsilon,
    redundancy_weight,
    select,
)

RATIOS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@pytest.fixture
def pool():
    rng = np.random.default_rng(42)
    n = 53  # odd, so that round(ratio * n) is not trivially exact
    X = rng.standard_normal((n, 12)).astype(np.float32)
    X[7] = X[3]  # an exact duplicate pair
    return {
        "ids": [f"r{k:03d}" for k in range(n)],
        "X": X,
        "U": rng.uniform(0.05, 0.95, n),
        "y": X[:, 0] * 2.0 + rng.normal(0, 0.1, n),
    }


def test_prefix_rule_is_optimal_by_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(2, 9))
        # Small integers create ties (exercising tie-breaking) with exact means.
        imp = rng.integers(0, 6, n).astype(float) if rng.random() < 0.5 else rng.random(n)
        # Brute force in exact arithmetic: for each k, the smallest mean of any k-subset.
        best = {
            k: min(sum(Fraction(imp[j]) for j in c) / k for c in itertools.combinations(range(n), k))
            for k in range(1, n + 1)
        }
        for eps in np.concatenate([imp, imp + 1e-9, [imp.min() - 1, imp.max() + 1], rng.random(5) * 5]):
            feasible = [k for k in range(1, n + 1) if best[k] <= Fraction(eps)]
            largest = max(feasible, default=0)
            removed = prefix_for_epsilon(imp, eps)
            assert len(removed) == largest
            if largest:
                assert sum(Fraction(x) for x in imp[removed]) / largest <= Fraction(eps)
        for k in range(1, n + 1):
            removed, eps = fusion_prune(imp, k / n)
            assert len(removed) == k
            assert np.isclose(eps, float(best[k]))  # the smallest epsilon allowing k removals
            assert np.isclose(imp[removed].mean(), float(best[k]))
            assert len(prefix_for_epsilon(imp, eps)) >= k
            assert len(prefix_for_epsilon(imp, np.nextafter(eps, -np.inf))) < k  # smallest such eps


def test_fusion_prune_epsilon_hits_ratio_and_ties_are_stable():
    imp = np.array([0.3, 0.1, 0.1, 0.2, 0.1, 0.9])
    removed, eps = fusion_prune(imp, 2 / 6)
    assert removed.tolist() == [1, 2]  # equal values: lower index first
    assert eps == pytest.approx(0.1)
    removed, eps = fusion_prune(imp, 4 / 6)
    assert removed.tolist() == [1, 2, 4, 3]
    assert eps == pytest.approx(0.125)
    assert fusion_prune(imp, 0.0) == (pytest.approx(np.zeros(0)), None)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", RATIOS)
def test_exact_sizes_every_method_every_ratio(pool, method, ratio):
    n = len(pool["ids"])
    sel = select(method, ratio, ids=pool["ids"], seed=1, U=pool["U"], X=pool["X"], y=pool["y"])
    n_remove = round(ratio * n)
    assert len(sel.removed_ids) == n_remove
    assert len(sel.kept_ids) == n - n_remove
    assert set(sel.kept_ids).isdisjoint(sel.removed_ids)
    assert set(sel.kept_ids) | set(sel.removed_ids) == set(pool["ids"])
    assert sel.kept_mask.sum() == n - n_remove
    assert (sel.epsilon is not None) == (method == "fusion" and n_remove > 0)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic(pool, method):
    kw = {"ids": pool["ids"], "U": pool["U"], "X": pool["X"], "y": pool["y"]}
    a = select(method, 0.4, seed=3, **kw)
    b = select(method, 0.4, seed=3, **kw)
    assert a.kept_ids == b.kept_ids
    assert a.removed_ids == b.removed_ids


def test_random_seeds_differ(pool):
    a = select("random", 0.5, ids=pool["ids"], seed=0)
    b = select("random", 0.5, ids=pool["ids"], seed=1)
    assert set(a.kept_ids) != set(b.kept_ids)


def test_rankings_follow_their_scores(pool):
    ids, U, X = pool["ids"], pool["U"], pool["X"]
    unc = select("uncertainty", 0.4, ids=ids, U=U)
    removed_u = U[[ids.index(i) for i in unc.removed_ids]]
    kept_u = U[[ids.index(i) for i in unc.kept_ids]]
    assert removed_u.max() <= kept_u.min()

    w = select("weight", 0.2, ids=ids, X=X)
    W = w.scores["W"]
    assert W[[ids.index(i) for i in w.removed_ids]].min() >= W[[ids.index(i) for i in w.kept_ids]].max()
    # The duplicate pair has W = 1, the largest possible: removed first.
    assert set(w.removed_ids[:2]) == {"r003", "r007"}

    fu = select("fusion", 0.4, ids=ids, U=U, X=X)
    imp = fu.scores["I"]
    assert np.allclose(imp, importance(U, redundancy_weight(nearest_neighbor_distance(X))))
    assert imp[[ids.index(i) for i in fu.removed_ids]].mean() <= fu.epsilon + 1e-12
    assert imp[[ids.index(i) for i in fu.removed_ids]].max() <= imp[[ids.index(i) for i in fu.kept_ids]].min()


def test_nearest_neighbor_distance_exact_matches_brute_force(pool):
    X = pool["X"]
    D = cdist(X.astype(np.float64), X.astype(np.float64))
    np.fill_diagonal(D, np.inf)
    d, idx = nearest_neighbor_distance(X, chunk=10, return_index=True)
    assert np.allclose(d, D.min(axis=1), rtol=0, atol=1e-9)
    assert np.allclose(D[np.arange(len(X)), idx], D.min(axis=1), rtol=0, atol=1e-9)
    assert d[3] == 0.0
    assert d[7] == 0.0


def test_nearest_neighbor_distance_approximate_path():
    rng = np.random.default_rng(5)
    # Clustered data (low intrinsic dimension, like fingerprints), forced onto HNSW.
    centres = rng.standard_normal((20, 16))
    X = (centres[rng.integers(20, size=600)] + 0.05 * rng.standard_normal((600, 16))).astype(np.float32)
    exact = nearest_neighbor_distance(X)
    approx = nearest_neighbor_distance(X, exact_threshold=100)
    assert (approx >= exact - 1e-9).all()  # a real other row: never below the truth
    assert np.mean(np.isclose(approx, exact, atol=1e-9)) > 0.95


def test_redundancy_weight_and_importance():
    W = redundancy_weight(np.array([0.0, 1.0, 10.0]), gamma=0.1)
    assert np.allclose(W, [1.0, np.exp(-0.1), np.exp(-1.0)])
    assert np.allclose(importance(np.array([0.5, 0.5]), np.array([1.0, 0.5])), [0.5, 1.0])


def _radius(X, centres):
    return cdist(X, X[centres]).min(axis=1).max()


def test_k_center_greedy_is_a_2_approximation():
    rng = np.random.default_rng(7)
    for trial in range(15):
        n = int(rng.integers(5, 10))
        X = rng.standard_normal((n, 3))
        for k in (1, 2, 3):
            opt = min(_radius(X, list(c)) for c in itertools.combinations(range(n), k))
            centres = k_center_greedy(X, k, seed=trial)
            assert len(set(centres.tolist())) == k
            assert _radius(X, centres) <= 2 * opt + 1e-6


def test_k_center_greedy_with_duplicates_picks_distinct_rows():
    X = np.zeros((6, 2))
    X[3:] = 1.0
    centres = k_center_greedy(X, 5, seed=0)
    assert len(set(centres.tolist())) == 5


def test_active_with_custom_ensemble(pool):
    calls = []

    def fit_predict(train_idx, query_idx):
        calls.append(len(train_idx))
        # Disagreement grows with the index: the learner must add the largest first.
        return np.stack([np.zeros(len(query_idx)), query_idx.astype(float)])

    n = len(pool["ids"])
    sel = select("active", 0.5, ids=pool["ids"], fit_predict=fit_predict, init_fraction=0.1, step=3)
    kept = sorted(pool["ids"].index(i) for i in sel.kept_ids)
    assert len(kept) == n - round(0.5 * n)
    assert calls == sorted(calls)
    assert calls[0] == round(0.1 * n)
    # Everything acquired after the initial random set comes from the top of the index range.
    init = set(np.random.default_rng(0).permutation(n)[: round(0.1 * n)].tolist())
    later = sorted(set(kept) - init)
    rest = sorted(set(range(n)) - set(kept))
    assert min(later) > max(rest)


def test_bad_inputs(pool):
    with pytest.raises(ValueError, match="unknown method"):
        select("magic", 0.2, ids=pool["ids"])
    with pytest.raises(ValueError, match="needs U"):
        select("fusion", 0.2, ids=pool["ids"], X=pool["X"])
    with pytest.raises(ValueError, match="ratio"):
        select("random", 1.5, ids=pool["ids"])
    with pytest.raises(ValueError, match="unique"):
        select("random", 0.5, ids=["a", "a"])


def test_exact_nn_resolves_a_tight_cluster_of_near_duplicates():
    # Hundreds of unit vectors within 1e-5 of each other (like element-agnostic
    # fingerprints of one structure type): below float32 resolution of |x|^2.
    rng = np.random.default_rng(11)
    centre = rng.standard_normal(64)
    X = centre + 1e-6 * rng.standard_normal((300, 64))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    D = cdist(X, X)
    np.fill_diagonal(D, np.inf)
    d = nearest_neighbor_distance(X)
    assert np.allclose(d, D.min(axis=1), rtol=1e-3, atol=0)


def test_exact_nn_in_blocks_when_the_float64_copy_would_not_fit(monkeypatch):
    import tracemalloc

    from fusion import neighbors

    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 2000)).astype(np.float32)
    X[17] = X[250]  # an exact duplicate: distance exactly 0 on both paths
    whole_d, whole_i = nearest_neighbor_distance(X, return_index=True)
    # 1 MB of working memory: the float64 copy of X alone would take 6.4 MB.
    monkeypatch.setattr(neighbors, "EXACT_MEMORY", 2**20)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    block_d, block_i = nearest_neighbor_distance(X, return_index=True)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MB"
    # Random data has no near-ties, so both paths choose the same neighbour; its
    # distance is re-measured from the same float64 differences: the same bits.
    assert_same_integers(block_i, whole_i)
    assert_bitwise_equal(block_d, whole_d)
    assert block_d[17] == block_d[250] == 0.0
