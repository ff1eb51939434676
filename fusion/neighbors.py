"""Nearest-neighbour distances between fingerprints: the ``d_NN`` of FUSION's redundancy weight.

:func:`nearest_neighbor_distance` is exact up to 100,000 rows (20,000 for sparse
fingerprints, whose exact search costs more; chunked float64
Gram products whose shortlist is re-measured from direct differences, so an
exact duplicate has distance exactly 0) and approximate above (a faiss
inverted-file index, distances recomputed in float64; for sparse fingerprints
the index works on a seeded random projection and shortlists candidates that
are re-measured in the sparse space). The exact search's
working memory is bounded by :data:`EXACT_MEMORY`: 10,000 fingerprints of the
default ``mu1nu1`` compression (38,080 features) would otherwise need a 3 GB
float64 copy and a 2 GB block of candidate differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fusion.parallel import available_cores

#: Working memory of the exact search in bytes (float64 blocks). Inputs whose
#: float64 copy fits are searched exactly as before (one copy, one Gram product
#: per row block); larger ones block by block.
EXACT_MEMORY = 512 * 2**20

# Approximate nearest-neighbour search (n above the exact threshold): faiss
# IndexIVFFlat with 2 sqrt(n) k-means lists (trained on 40 points per list, 10
# iterations), 8 lists probed per query. HNSW was measured and rejected: its
# graph construction took 355 s for 10^5 random 252-d points on 2 busy cores.
IVF_LISTS_PER_SQRT_N = 2.0
IVF_TRAIN_PER_LIST = 40
IVF_KMEANS_ITER = 10
IVF_NPROBE = 8
# Sparse fingerprints above the exact threshold: the index works on a seeded
# Gaussian projection to this many dimensions, and shortlists this many
# candidates per row, re-measured in the full sparse space.
SPARSE_PROJECTION = 256
SPARSE_CANDIDATES = 8
# Sparse fingerprints are searched exactly up to this many rows only: the
# sparse Gram products cost ~n^2 times the overlap of their supports. On the
# 77,779 real structures of benchmarks/bench_scale.py (mu1nu1, 3 % nonzero), the
# exact search took 1,340 s on 2 cores and the approximate one 62 s, finding
# the true nearest neighbour for 99.3 % of them and removing the same records.
SPARSE_EXACT_THRESHOLD = 20_000
# Rows re-measured at once by the approximate sparse search.
REMEASURE_ROWS = 4096


def _exact_nn(X: np.ndarray, chunk: int | None, n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact NN by chunked float64 Gram products, winners re-measured directly.

    When a float64 copy of ``X`` fits :data:`EXACT_MEMORY`, it is made once and
    each row block takes one Gram product with it. Otherwise rows and columns
    are converted block by block, so that the search's working memory stays
    about :data:`EXACT_MEMORY` whatever ``n`` and ``d``; the re-measured
    distances are the same, and the chosen neighbour differs only between
    candidates tied to within the Gram's ~1e-8 rounding.
    """
    X = np.asarray(X)
    n, d = X.shape
    k = min(n_candidates, n - 1)
    whole = n * d * 8 <= EXACT_MEMORY
    if chunk is None:  # a Gram block of at most 2^25 float64 (256 MB)
        chunk = int(np.clip(2**25 // n, 1, 4096))
        if not whole:  # and the block's rows with their k candidates, in float64
            chunk = max(1, min(chunk, EXACT_MEMORY // (8 * d * (k + 1))))
    X64 = np.ascontiguousarray(X, dtype=np.float64) if whole else None
    cols = max(1, EXACT_MEMORY // (4 * 8 * d))  # column block of the blockwise Gram

    def rows64(idx: Any) -> np.ndarray:
        return X64[idx] if X64 is not None else np.asarray(X[idx], dtype=np.float64)

    if X64 is not None:
        sq = np.einsum("ij,ij->i", X64, X64)
    else:
        sq = np.concatenate([np.einsum("ij,ij->i", r, r) for r in map(rows64, _blocks(n, cols))])
    dist = np.empty(n, dtype=np.float64)
    idx = np.empty(n, dtype=np.int64)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        Xa = rows64(slice(a, b))
        if X64 is not None:
            d2 = Xa @ X64.T
        else:
            d2 = np.empty((b - a, n))
            for block in _blocks(n, cols):
                d2[:, block] = Xa @ rows64(block).T
        cand = _shortlist(d2, sq, a, k)
        # Re-measure the shortlist from direct differences: the Gram formula
        # leaves ~1e-8 of cancellation noise, so exact duplicates get exactly 0.
        diff = rows64(cand) - Xa[:, None, :]
        dist[a:b], idx[a:b] = _closest(cand, np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)))
    return dist, idx


def _exact_nn_sparse(
    X: Any, chunk: int | None, n_candidates: int, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact NN of CSR rows: sparse Gram blocks for the shortlist, winners re-measured from sparse differences.

    The same algorithm as :func:`_exact_nn` without ever making the rows dense
    (an exact duplicate still gets distance exactly 0); the distances agree
    with the dense search's to rounding (the sums run over the nonzero entries
    only, in another order). Row blocks are independent, so they run on
    ``threads`` threads (scipy's sparse products release the GIL; the dense
    search gets its threads from BLAS instead); the result does not depend on
    their number.
    """
    X64 = X.astype(np.float64)
    n = X64.shape[0]
    k = min(n_candidates, n - 1)
    threads = available_cores() if threads is None else max(1, threads)
    if chunk is None:  # dense Gram blocks of at most 2^25 float64 (256 MB) in all
        chunk = int(np.clip(2**25 // (n * threads), 1, 4096))
    sq = np.asarray(X64.multiply(X64).sum(axis=1)).ravel()
    XT = X64.T.tocsr()
    dist = np.empty(n, dtype=np.float64)
    idx = np.empty(n, dtype=np.int64)

    def block(a: int) -> None:
        b = min(a + chunk, n)
        Xa = X64[a:b]
        cand = _shortlist((Xa @ XT).toarray(), sq, a, k)
        cd = np.empty((b - a, k))
        for j in range(k):
            cd[:, j] = _sparse_row_distances(X64[cand[:, j]], Xa)
        dist[a:b], idx[a:b] = _closest(cand, cd)

    starts = range(0, n, chunk)
    if threads > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(block, starts))  # list(): a block's exception is raised here
    else:
        for a in starts:
            block(a)
    return dist, idx


def _sparse_row_distances(A: Any, B: Any) -> np.ndarray:
    """Euclidean distance between row ``i`` of ``A`` and row ``i`` of ``B`` (sparse, same shape).

    The sums run over the nonzero entries of the difference only, so an exact
    duplicate gets distance exactly 0.
    """
    diff = A - B
    return np.sqrt(np.asarray(diff.multiply(diff).sum(axis=1)).ravel())


def _shortlist(gram: np.ndarray, sq: np.ndarray, a: int, k: int) -> np.ndarray:
    """The ``k`` nearest candidates of rows ``a, a+1, ...`` from their Gram block ``x_i.x_j`` (overwritten).

    Squared distances up to a constant per row, ``|x_j|^2 - 2 x_i.x_j``, self
    excluded; the shortlist by repeated argmin (much cheaper than argpartition
    for small ``k``).
    """
    gram *= -2.0
    gram += sq[None, :]
    rows = np.arange(gram.shape[0])
    gram[rows, rows + a] = np.inf  # exclude self
    cand = np.empty((len(rows), k), dtype=np.int64)
    for j in range(k):
        cand[:, j] = gram.argmin(axis=1)
        gram[rows, cand[:, j]] = np.inf
    return cand


def _closest(cand: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the shortlisted neighbour at the smallest re-measured distance (ties: the lower index)."""
    rows = np.arange(len(cand))
    order = np.lexsort((cand, dist), axis=1)[:, 0]
    return dist[rows, order], cand[rows, order]


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _ivf_candidates(Y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The ``k`` approximate nearest other rows of ``Y`` from a faiss inverted-file index (``-1``: none found)."""
    import faiss

    Y32 = np.ascontiguousarray(Y, dtype=np.float32)
    n, d = Y32.shape
    nlist = max(1, round(IVF_LISTS_PER_SQRT_N * np.sqrt(n)))
    nprobe = min(IVF_NPROBE, nlist)
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    index.cp.niter = IVF_KMEANS_ITER
    index.cp.seed = seed
    sample = np.random.default_rng(seed).choice(n, size=min(n, IVF_TRAIN_PER_LIST * nlist), replace=False)
    index.train(Y32[np.sort(sample)])
    # The queries are the indexed points: one coarse search serves both the
    # list assignment (column 0) and the probes, instead of two.
    coarse_d, coarse_i = quantizer.search(Y32, nprobe)
    assign = np.ascontiguousarray(coarse_i[:, 0], dtype=np.int64)
    index.add_core(n, faiss.swig_ptr(Y32), None, faiss.swig_ptr(assign))
    index.nprobe = nprobe
    _, nbrs = index.search_preassigned(Y32, k + 1, coarse_i, coarse_d)
    # Drop self: move it to the end (stable, so an exact duplicate found first
    # keeps its place) and keep the first k.
    is_self = nbrs == np.arange(n)[:, None]
    return np.take_along_axis(nbrs, np.argsort(is_self, axis=1, kind="stable"), axis=1)[:, :k].astype(
        np.int64
    )


def _fill_missing(cand: np.ndarray) -> np.ndarray:
    """A row whose probed lists held no other point gets the next row as its one candidate (a real other row)."""
    rows = np.arange(len(cand))
    lone = cand[:, 0] < 0
    cand[lone, 0] = (rows[lone] + 1) % len(cand)
    return cand


def _approx_nn(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Approximate NN with a faiss inverted-file index; distances recomputed in float64."""
    X = np.asarray(X)
    n, d = X.shape
    idx = _fill_missing(_ivf_candidates(X, 1, seed))[:, 0]
    dist = np.empty(n, dtype=np.float64)
    for block in _blocks(n, max(1, EXACT_MEMORY // (2 * 8 * d))):  # row by row: the same values in blocks
        diff = np.asarray(X[idx[block]], dtype=np.float64) - np.asarray(X[block], dtype=np.float64)
        dist[block] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return dist, idx


def _approx_nn_sparse(X: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Approximate NN of CSR rows: a shortlist from a random projection, re-measured in the full space.

    The rows are projected to :data:`SPARSE_PROJECTION` dimensions by a seeded
    Gaussian matrix (Johnson-Lindenstrauss: distances kept to about
    ``sqrt(2 / 256)``, 9 %, relative spread), the inverted-file index of
    :func:`_ivf_candidates` shortlists :data:`SPARSE_CANDIDATES` rows there,
    and the nearest of them is chosen by its exact distance in the sparse
    space. As in the dense search, a missed true neighbour can only
    overestimate ``d_NN``. Cost ``O(nnz x 256)`` for the projection plus the
    index's ``O(n^1.5)``, instead of the exact search's ``O(n^2)``.
    """
    from scipy import sparse

    X = sparse.csr_matrix(X)
    n, width = X.shape
    rng = np.random.default_rng(seed)
    R = rng.standard_normal((width, SPARSE_PROJECTION), dtype=np.float32) / np.float32(
        np.sqrt(SPARSE_PROJECTION)
    )
    Y = np.asarray(X.astype(np.float32) @ R, dtype=np.float32)
    cand = _fill_missing(_ivf_candidates(Y, min(SPARSE_CANDIDATES, n - 1), seed))
    del Y
    dist = np.full(cand.shape, np.inf)
    for block in _blocks(n, REMEASURE_ROWS):  # bounded memory: a block's rows and their candidates
        rows = X[block].astype(np.float64)
        for j in range(cand.shape[1]):
            ok = cand[block, j] >= 0
            dist[block, j][ok] = _sparse_row_distances(X[cand[block, j][ok]].astype(np.float64), rows[ok])
    return _closest(np.where(cand >= 0, cand, n), dist)


def nearest_neighbor_distance(
    X: np.ndarray,
    exact_threshold: int | None = None,
    chunk: int | None = None,
    n_candidates: int = 2,
    seed: int = 0,
    return_index: bool = False,
    threads: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each row of ``X`` to its nearest other row.

    For ``n <= exact_threshold`` the search is exact: chunked float64 Gram
    products (BLAS) give a shortlist of ``n_candidates`` neighbours per row,
    whose distances are then recomputed from direct float64 differences, so
    an exact duplicate has distance exactly 0. (A float32 Gram was tried and
    rejected: on perov5_castelli ``mu2`` fingerprints, hundreds of structures
    lie within float32 resolution of each other and the shortlist missed the
    true neighbour.) Cost ``O(n^2 d)``.

    Above the threshold the search is approximate: a faiss ``IndexIVFFlat``
    (``2 sqrt(n)`` k-means lists trained on a seeded sample of 40 points per
    list, 10 iterations; each point searched in its 8 nearest lists), self
    dropped, distance recomputed in float64. Cost ``O(n^1.5 d)``. A missed true
    neighbour can only overestimate ``d_NN`` (the returned one is a real row).
    ``benchmarks/bench_selection.py`` measures its recall against the exact
    search.

    A ``scipy.sparse`` matrix (the sparse fingerprints of ``fusion prune``) is
    searched without making its rows dense: exactly up to its threshold (lower:
    the sparse products cost more), above it through a shortlist of :data:`SPARSE_CANDIDATES` rows found by the same
    index on a seeded random projection to :data:`SPARSE_PROJECTION`
    dimensions, each re-measured exactly in the sparse space.

    Args:
        X: ``[n, d]`` fingerprints, ``n >= 2``: an array or a sparse matrix.
        exact_threshold: Largest ``n`` searched exactly. Defaults to None:
            100,000 for an array, :data:`SPARSE_EXACT_THRESHOLD` (20,000) for a
            sparse matrix.
        chunk: Rows per Gram block in the exact search (memory ``chunk * n``
            float64). Defaults to ``2^25 / n`` (256 MB), at most 4096.
        n_candidates: Shortlist size of the exact search. Defaults to 2.
        seed: Seed of the approximate index's k-means. Defaults to 0.
        return_index: Also return the neighbour indices. Defaults to False.
        threads: Threads of the exact search of a sparse matrix (the dense one
            uses BLAS's). Defaults to None: every core this process may use.

    Returns:
        ``d_nn`` ``[n]`` float64, and the neighbour indices ``[n]`` if
        ``return_index``.

    Raises:
        ValueError: If ``X`` has fewer than 2 rows.
    """
    from scipy import sparse

    if sparse.issparse(X):
        if X.shape[0] < 2:
            raise ValueError(f"need at least 2 fingerprints, got shape {X.shape}")
        if X.shape[0] <= (SPARSE_EXACT_THRESHOLD if exact_threshold is None else exact_threshold):
            dist, idx = _exact_nn_sparse(sparse.csr_matrix(X), chunk, n_candidates, threads)
        else:
            dist, idx = _approx_nn_sparse(X, seed)
        return (dist, idx) if return_index else dist
    X = np.asarray(X)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"need at least 2 fingerprints, got shape {X.shape}")
    if len(X) <= (100_000 if exact_threshold is None else exact_threshold):
        dist, idx = _exact_nn(X, chunk, n_candidates)
    else:
        dist, idx = _approx_nn(X, seed)
    return (dist, idx) if return_index else dist
