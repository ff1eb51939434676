"""Sparse fingerprints in fusion prune: the same values, neighbours, centres and map as dense ones, in less memory."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_bitwise_equal, assert_same_integers
from scipy import sparse
from test_prune_api import tiny_dataset

from fusion import prune_api, prune_steps
from fusion.baselines import k_center_greedy
from fusion.neighbors import nearest_neighbor_distance
from fusion.report.pca import pca


def _sparse_rows(n=300, d=3000, density=0.03, seed=0):
    """Unit rows with ~3 % nonzero entries, like mu1nu1 fingerprints, two exact duplicates among them."""
    rng = np.random.default_rng(seed)
    X = sparse.random(n, d, density=density, random_state=seed, dtype=np.float64).toarray()
    X[rng.random((n, d)) < 0.001] += 1.0  # no empty row
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X = X.astype(np.float32)
    X[7] = X[123]
    return X


def test_sparse_nearest_neighbours_equal_the_dense_search():
    X = _sparse_rows()
    d_dense, i_dense = nearest_neighbor_distance(X, return_index=True)
    d_sparse, i_sparse = nearest_neighbor_distance(sparse.csr_matrix(X), chunk=64, return_index=True)
    # Random rows have no near-ties: the same neighbour; its distance is a sum over
    # the nonzero entries in another order, so equal to float64 rounding (~1e-15).
    assert_same_integers(i_sparse, i_dense)
    np.testing.assert_allclose(d_sparse, d_dense, rtol=1e-12, atol=1e-15)
    assert d_sparse[7] == d_sparse[123] == 0.0  # an exact duplicate is exactly 0


def test_sparse_exact_search_on_threads_equals_one_thread():
    X = sparse.csr_matrix(_sparse_rows())
    d1, i1 = nearest_neighbor_distance(X, chunk=16, threads=1, return_index=True)
    d3, i3 = nearest_neighbor_distance(X, chunk=16, threads=3, return_index=True)
    assert_bitwise_equal(d3, d1)
    assert_same_integers(i3, i1)


def _clustered_sparse_rows(n=800, d=4000, n_clusters=25, seed=1):
    """Unit rows in clusters that share a sparse support (~3 % of the features), as fingerprints of similar crystals do."""
    rng = np.random.default_rng(seed)
    support = rng.random((n_clusters, d)) < 0.03
    centres = support * rng.random((n_clusters, d))
    label = rng.integers(n_clusters, size=n)
    X = centres[label] * (1 + 0.05 * rng.standard_normal((n, d)))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X = X.astype(np.float32)
    X[11] = X[500]
    return sparse.csr_matrix(X)


def test_sparse_approximate_search_above_the_threshold_finds_real_neighbours():
    X = _clustered_sparse_rows()
    exact = nearest_neighbor_distance(X)
    approx, i_approx = nearest_neighbor_distance(X, exact_threshold=100, return_index=True)
    rows = np.arange(X.shape[0])
    assert (i_approx != rows).all()
    # Each returned distance is the exact distance to the returned row (float64
    # sums over the nonzero entries: rounding only), so never below the truth.
    direct = np.sqrt(
        np.asarray((X[i_approx] - X).multiply(X[i_approx] - X).sum(axis=1), dtype=np.float64).ravel()
    )
    np.testing.assert_allclose(approx, direct, rtol=1e-6, atol=1e-7)  # float32 rows vs the float64 re-measure
    assert (approx >= exact - 1e-12).all()
    assert np.mean(np.isclose(approx, exact, rtol=0, atol=1e-12)) > 0.9
    assert approx[11] == approx[500] == 0.0  # the exact duplicate is found
    # Same seed, same path: bit for bit.
    again = nearest_neighbor_distance(X, exact_threshold=100)
    assert_bitwise_equal(again, approx)


def test_sparse_k_center_and_pca_equal_the_dense_ones():
    # Farthest-point picks among equidistant unit rows tie at float32 rounding, so
    # k-center is compared on rows whose distances differ widely (3 lognormal entries each).
    rng = np.random.default_rng(0)
    spread = np.zeros((200, 3000), dtype=np.float32)
    for row in spread:
        row[rng.choice(3000, 3, replace=False)] = rng.lognormal(0, 1.5, 3)
    assert_same_integers(
        k_center_greedy(sparse.csr_matrix(spread), 40, seed=3), k_center_greedy(spread, 40, seed=3)
    )
    X = _sparse_rows(n=200)
    coords_d, explained_d = pca(X, max_fit=150)
    coords_s, explained_s = pca(sparse.csr_matrix(X), max_fit=150)
    # The same float32 products summed in another order: equal to float32 rounding.
    np.testing.assert_allclose(coords_s, coords_d, rtol=0, atol=1e-5)
    np.testing.assert_allclose(explained_s, explained_d, rtol=1e-5)


@pytest.mark.parametrize("method", ["weight", "diversity"])  # d_NN and k-center, without a surrogate
def test_prune_holds_sparse_fingerprints_in_blocks_and_selects_the_same(monkeypatch, tmp_path, method):
    ds = tiny_dataset(12)
    kwargs = {"ratios": [0.25, 0.5], "method": method, "device": "cpu", "epochs": 1}
    monkeypatch.setattr(prune_steps, "SPARSE_BELOW", 0.0)  # never sparse
    dense = prune_api.prune(ds, **kwargs)
    monkeypatch.setattr(prune_steps, "SPARSE_BELOW", 1.01)  # always sparse
    monkeypatch.setattr(prune_steps, "FINGERPRINT_BLOCK", 1)
    monkeypatch.setattr(prune_steps, "MIN_BLOCK", 5)  # blocks of 5, 5 and 2 records
    held = prune_api.prune(ds, workdir=tmp_path / "wd", **kwargs)
    again = prune_api.prune(ds, workdir=tmp_path / "wd", **kwargs)  # read back from the working folder
    assert isinstance(dense.fingerprints, np.ndarray)
    for result in (held, again):
        assert sparse.issparse(result.fingerprints)
        assert_bitwise_equal(result.fingerprints.toarray(), dense.fingerprints)
        for r in (0.25, 0.5):
            assert result.kept_ids(r) == dense.kept_ids(r)
    assert again.artefacts["fingerprints"]["status"] == "reused"


def test_sparse_blocks_made_on_workers_equal_the_serial_ones(monkeypatch):
    from distributed import LocalCluster

    ds = tiny_dataset(12)
    kwargs = {"ratios": [0.5], "method": "weight"}
    monkeypatch.setattr(prune_steps, "SPARSE_BELOW", 1.01)  # always sparse
    serial = prune_api.prune(ds, n_jobs=1, **kwargs)
    monkeypatch.setattr(prune_steps, "FINGERPRINT_BLOCK", 1)
    monkeypatch.setattr(prune_steps, "MIN_BLOCK", 5)  # the first block dense, the rest as CSR chunks
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = prune_api.prune(ds, scheduler=cluster.scheduler_address, **kwargs)
    assert sparse.issparse(remote.fingerprints)
    assert_bitwise_equal(remote.fingerprints.toarray(), serial.fingerprints.toarray())
    assert remote.kept_ids(0.5) == serial.kept_ids(0.5)
