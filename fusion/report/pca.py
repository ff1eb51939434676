"""Principal components of fingerprints, for 2-D maps: exact up to a fitted sample, bounded beyond.

:func:`pca` serves both places that draw fingerprints on a plane: the book's
interactive map (:mod:`fusion.report.explore`) and the ``report.html`` of
``fusion prune`` (:mod:`fusion.prune_report`). It needs only numpy and scipy,
so the command line's report does not import the book's plotting code.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pca"]


def pca(X: np.ndarray, k: int = 2, max_fit: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` principal components of the rows of ``X``, with a deterministic sign.

    The axes are fitted on at most ``max_fit`` rows (a seeded sample; all rows
    when there are fewer), through the centred Gram matrix of those rows
    (``m x m``: cheap for tens of thousands of features), and every row is then
    projected on them, in chunks. So memory and time stay bounded for 10^4-10^5
    fingerprints, and up to ``max_fit`` rows this is exact PCA. Each axis is
    oriented so that its coordinate of largest magnitude is positive: the same
    rows give the same picture, mirrored or shifted (an eigensolver may return
    either sign).

    Args:
        X: ``[n, d]`` rows (any float dtype; an array or a sparse matrix).
        k: Components. Defaults to 2.
        max_fit: Rows the axes are fitted on. Defaults to 2,000.
        seed: Seed of that sample. Defaults to 0.

    Returns:
        ``(coords [n, k], explained_variance_ratio [k])`` (of the fitted rows);
        zeros past the rank, and for fewer than two rows.
    """
    from scipy import sparse

    is_sparse = sparse.issparse(X)
    X = sparse.csr_matrix(X) if is_sparse else np.asarray(X)
    n = X.shape[0]
    coords, explained = np.zeros((n, k)), np.zeros(k)
    if n < 2:
        return coords, explained
    fit = (
        np.sort(np.random.default_rng(seed).choice(n, max_fit, replace=False))
        if n > max_fit
        else np.arange(n)
    )
    S = X[fit]
    gram = (S @ S.T).toarray() if is_sparse else S @ S.T
    gram = np.asarray(gram, dtype=np.float64)
    row = gram.mean(axis=0)
    centred = gram - row[None, :] - row[:, None] + row.mean()
    vals, vecs = np.linalg.eigh((centred + centred.T) / 2)
    order = np.argsort(vals)[::-1][:k]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    keep = vals > vals.max(initial=0.0) * 1e-12
    if not keep.any():
        return coords, explained
    vals, vecs = vals[keep], vecs[:, keep]
    mean = np.asarray(S.mean(axis=0, dtype=np.float64)).ravel()
    # Axes in feature space: (S - mean)^T v / sqrt(lambda), without copying S.
    axes = (S.T @ vecs - np.outer(mean, vecs.sum(axis=0))) / np.sqrt(vals)[None, :]
    m = len(vals)
    for a in range(0, n, 4096):
        coords[a : a + 4096, :m] = X[a : a + 4096] @ axes - mean @ axes
    for j in range(m):
        if coords[np.argmax(np.abs(coords[:, j])), j] < 0:
            coords[:, j] *= -1
    total = float(np.trace(centred))
    if total > 0:
        explained[:m] = vals / total
    return coords, explained
