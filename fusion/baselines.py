"""The two baselines that are algorithms of their own: k-center greedy coresets and active learning.

:func:`fusion.selection.select` calls them for ``diversity`` and ``active``;
the other baselines (``random``, ``uncertainty``, ``weight``) are one sort
each and live there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def k_center_greedy(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Greedy k-center (farthest-point) selection of ``k`` rows of ``X``.

    Gonzalez's 2-approximation of the k-center problem (Gonzalez, "Clustering
    to minimize the maximum intercluster distance", Theor. Comput. Sci. 38,
    1985; used for coresets by Sener & Savarese, ICLR 2018): start from a seeded
    random row, then repeatedly add the row farthest from the chosen set. One
    ``O(n d)`` vectorised distance update per added centre.

    Args:
        X: ``[n, d]`` fingerprints (an array or a sparse matrix).
        k: Number of centres, ``0 <= k <= n``.
        seed: Seed of the first centre. Defaults to 0.

    Returns:
        The ``k`` centre indices in selection order.
    """
    from scipy import sparse

    if sparse.issparse(X):  # rows stay sparse; one dense row per added centre
        X = sparse.csr_matrix(X, dtype=np.float32)
        sq = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()

        def row(c: int) -> np.ndarray:
            return X[c].toarray().ravel()
    else:
        X = np.ascontiguousarray(X, dtype=np.float32)
        sq = np.einsum("ij,ij->i", X, X).astype(np.float64)

        def row(c: int) -> np.ndarray:
            return X[c]

    n = X.shape[0]
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = np.random.default_rng(seed).integers(n)
    mind = np.full(n, np.inf)
    for t in range(k):
        c = chosen[t] if t == 0 else int(np.argmax(mind))
        chosen[t] = c
        d2 = np.maximum(sq - 2.0 * (X @ row(c)) + sq[c], 0.0)
        np.minimum(mind, d2, out=mind)
        # Never re-pick a centre (duplicates sit at distance 0); -1 survives
        # every later minimum.
        mind[c] = -1.0
    return chosen


def _bootstrap_tree_ensemble(
    X: np.ndarray, y: np.ndarray, n_models: int, seed: int
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Default ``fit_predict`` of the active learner: bagged regression trees.

    Each tree considers ``sqrt(d)`` random features per split (random-forest
    style): SOAP fingerprints have 10^4-10^5 dimensions, and trees that scan
    every feature make the baseline two orders of magnitude slower.
    """
    from sklearn.tree import DecisionTreeRegressor

    def fit_predict(train_idx: np.ndarray, query_idx: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([seed, len(train_idx)])
        out = np.empty((n_models, len(query_idx)))
        for m in range(n_models):
            boot = train_idx[rng.integers(len(train_idx), size=len(train_idx))]
            tree = DecisionTreeRegressor(
                min_samples_leaf=2, max_features="sqrt", random_state=int(rng.integers(2**31))
            )
            tree.fit(X[boot], y[boot])
            out[m] = tree.predict(X[query_idx])
        return out

    return fit_predict


def active_learning_select(
    n: int,
    k: int,
    *,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    seed: int = 0,
    n_models: int = 5,
    init_fraction: float = 0.1,
    step: int | None = None,
    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble-disagreement active learning until ``k`` samples are acquired.

    Start from a seeded random ``init_fraction`` of the pool (at least
    ``n_models`` samples, at most ``k``); each round fits the ensemble on the
    acquired samples, predicts the rest and acquires the ``step`` samples with
    the largest ensemble standard deviation (ties by index).

    Args:
        n: Pool size.
        k: Samples to keep (acquire).
        X: ``[n, d]`` fingerprints; needed by the default ensemble.
        y: ``[n]`` targets; needed by the default ensemble.
        seed: Seed of the initial set and of the ensemble. Defaults to 0.
        n_models: Ensemble size of the default ensemble. Defaults to 5.
        init_fraction: Initial random fraction of the pool. Defaults to 0.1.
        step: Samples acquired per round. Defaults to ``ceil(0.05 n)``.
        fit_predict: ``fit_predict(train_idx, query_idx) -> [n_models, n_query]``
            predictions of any ensemble (e.g. GNNs); defaults to ``n_models``
            bootstrap regression trees on ``X``.

    Returns:
        ``(acquired, std_at_acquisition)``: indices in acquisition order, and
        the disagreement each had when acquired (NaN for the initial set).

    Raises:
        ValueError: If neither ``fit_predict`` nor both ``X`` and ``y`` are given.
    """
    if fit_predict is None:
        if X is None or y is None:
            raise ValueError("active learning needs X and y (or a fit_predict callable)")
        from scipy import sparse

        rows = X if sparse.issparse(X) else np.asarray(X)  # the trees read CSR rows as they are
        fit_predict = _bootstrap_tree_ensemble(rows, np.asarray(y, dtype=np.float64), n_models, seed)
    step = max(1, int(np.ceil(0.05 * n))) if step is None else max(1, int(step))
    n_init = min(k, max(n_models, round(init_fraction * n)))
    rng = np.random.default_rng(seed)
    acquired = list(rng.permutation(n)[:n_init])
    std_at = [np.nan] * n_init
    taken = np.zeros(n, dtype=bool)
    taken[acquired] = True
    while len(acquired) < k:
        query = np.flatnonzero(~taken)
        pred = np.asarray(fit_predict(np.asarray(acquired, dtype=np.int64), query))
        std = pred.std(axis=0)
        m = min(step, k - len(acquired))
        pick = np.lexsort((query, -std))[:m]
        acquired.extend(query[pick].tolist())
        std_at.extend(std[pick].tolist())
        taken[query[pick]] = True
    return np.asarray(acquired, dtype=np.int64), np.asarray(std_at)
