"""The FUSION selector and its five baselines (METHOD.md steps 4-6 and baselines).

Everything here is pure and deterministic: arrays in, indices out, no I/O. One
entry point, :func:`select`, prunes a pool to an exact size with any method:

==============  ==================================================================
method          removes first
==============  ==================================================================
``fusion``      the longest prefix of ``I = U / W`` (ascending) whose mean is
                ``<= epsilon``, epsilon set to hit the ratio (METHOD.md 6)
``random``      a seeded random subset
``uncertainty`` the lowest ``U``
``weight``      the most redundant: highest ``W = exp(-gamma d_NN)``
``diversity``   everything but the ``k`` k-center-greedy (farthest-point) centres
``active``      everything an ensemble-disagreement active learner never acquired
==============  ==================================================================

``ratio`` is the fraction of the pool REMOVED; ``n_remove = round(ratio * n)``
for every method, so all methods prune the same pool to the same size. Ties are
broken by pool index (stable sorts), so equal inputs give equal outputs.

The nearest-neighbour search behind ``W`` is in :mod:`fusion.neighbors`, the
k-center and active-learning baselines in :mod:`fusion.baselines` (both
re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Re-exported: the nearest-neighbour search and the two algorithmic baselines
# live in their own modules; callers keep importing them from here.
from fusion.baselines import active_learning_select, k_center_greedy
from fusion.neighbors import nearest_neighbor_distance

__all__ = [
    "METHODS", "NEEDS_U", "NEEDS_X", "Selection", "active_learning_select", "decile_edges",
    "decile_index", "fusion_prune", "importance", "k_center_greedy", "nearest_neighbor_distance",
    "prefix_for_epsilon", "redundancy_weight", "select", "target_matched_random",
]  # fmt: skip

METHODS = ("fusion", "random", "uncertainty", "weight", "diversity", "active")
NEEDS_U = frozenset({"fusion", "uncertainty"})
NEEDS_X = frozenset({"fusion", "weight", "diversity", "active"})


@dataclass
class Selection:
    """The outcome of pruning a pool.

    Attributes:
        method: Selection method (one of :data:`METHODS`).
        ratio: Fraction of the pool removed.
        kept_ids: Ids kept, in pool order.
        removed_ids: Ids removed: first removed first for the ranking methods
            (fusion, uncertainty, weight, random); in pool order for diversity
            and active, which choose what to keep.
        epsilon: FUSION's threshold on the mean importance of the removed set
            (the smallest epsilon whose optimal removal set has the target size);
            None for baselines and for an empty removal set.
        scores: Per-record arrays aligned with ``ids`` (e.g. ``U``, ``W``, ``I``,
            ``d_nn``), whichever the method used.
        ids: The pool's ids, in input order.
    """

    method: str
    ratio: float
    kept_ids: list[str]
    removed_ids: list[str]
    epsilon: float | None
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    @property
    def kept_mask(self) -> np.ndarray:
        """Boolean mask over ``ids``: True where kept."""
        kept = set(self.kept_ids)
        return np.array([i in kept for i in self.ids], dtype=bool)


# ---------------------------------------------------------------- steps 4-5


def redundancy_weight(d_nn: np.ndarray, gamma: float = 0.1) -> np.ndarray:
    """Redundancy weight ``W = exp(-gamma * d_NN)`` (METHOD.md step 4).

    Args:
        d_nn: Nearest-neighbour distances.
        gamma: Decay rate. Defaults to 0.1 (the paper's).

    Returns:
        ``W`` in ``(0, 1]``; 1 for an exact duplicate.
    """
    return np.exp(-gamma * np.asarray(d_nn, dtype=np.float64))


def importance(U: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Importance ``I = U / W`` (METHOD.md step 5): low U and high W give low I."""
    return np.asarray(U, dtype=np.float64) / np.asarray(W, dtype=np.float64)


# ---------------------------------------------------------------- step 6


def _stable_order(values: np.ndarray) -> np.ndarray:
    """Indices sorting ``values`` ascending, ties by index."""
    return np.argsort(np.asarray(values, dtype=np.float64), kind="stable")


def _prefix_means(sorted_values: np.ndarray) -> np.ndarray:
    return np.cumsum(sorted_values) / np.arange(1, len(sorted_values) + 1)


def _prefix_length(sorted_values: np.ndarray, epsilon: float) -> int:
    """Longest prefix of ascending values with mean ``<= epsilon``.

    ``mean(a[:k]) <= eps`` iff ``sum(a[:k] - eps) <= 0``; the differences form
    a convex sequence of partial sums starting at 0, so the feasible ``k`` are
    ``0..K`` and ``K`` is the last non-positive partial sum. Summing
    differences keeps ties exact (a run of values equal to ``eps`` adds 0).
    """
    feasible = np.flatnonzero(np.cumsum(sorted_values - epsilon) <= 0.0)
    return int(feasible[-1]) + 1 if len(feasible) else 0


def prefix_for_epsilon(I: np.ndarray, epsilon: float) -> np.ndarray:
    """The largest set whose mean importance is ``<= epsilon``.

    Any ``k``-subset has a mean at least that of the ``k`` smallest values, so
    the optimum is the longest prefix of ``I`` sorted ascending (ties by index)
    whose running mean stays ``<= epsilon``.

    Args:
        I: Importances ``[n]``.
        epsilon: Threshold on the mean importance of the removed set.

    Returns:
        Indices of the removal set, in ascending order of ``I``.
    """
    imp = np.asarray(I, dtype=np.float64)
    order = _stable_order(imp)
    return order[: _prefix_length(imp[order], epsilon)]


def fusion_prune(I: np.ndarray, ratio: float) -> tuple[np.ndarray, float | None]:
    """FUSION's removal set for a target ratio, and the epsilon that gives it.

    METHOD.md searches epsilon (binary search) until the optimal removal set
    has ``n_remove = round(ratio * n)`` members. That search has a closed-form
    answer, used here: the optimal set size ``k(epsilon)``
    (:func:`prefix_for_epsilon`) is a non-decreasing step function that
    reaches ``n_remove`` exactly at ``m = mean of the n_remove smallest
    importances`` (no ``n_remove``-set has a smaller mean). ``m`` is summed
    exactly (:func:`math.fsum`) and raised by a few ulps if rounding left
    ``k(m) < n_remove``, so the reported epsilon is the smallest float that
    yields the target size. If equal importances make ``k(epsilon)`` jump past
    ``n_remove``, the first ``n_remove`` of the stable order (ties by index) are
    taken: still a largest set of that size with mean ``<= epsilon``.

    Args:
        I: Importances ``[n]``.
        ratio: Fraction to remove, in ``[0, 1]``.

    Returns:
        ``(removed_idx, epsilon)``: indices in removal order, and epsilon
        (None when nothing is removed).
    """
    imp = np.asarray(I, dtype=np.float64)
    n_remove = _n_remove(ratio, len(imp))
    if n_remove == 0:
        return np.zeros(0, dtype=np.int64), None
    order = _stable_order(imp)
    a = imp[order]
    epsilon = math.fsum(a[:n_remove]) / n_remove
    while _prefix_length(a, epsilon) < n_remove:
        epsilon = float(np.nextafter(epsilon, np.inf))
    return order[:n_remove], epsilon


# ---------------------------------------------------------------- baselines


def _n_remove(ratio: float, n: int) -> int:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return round(ratio * n)


# ---------------------------------------------------------------- entry point


def select(
    method: str,
    ratio: float,
    *,
    ids: Sequence[str],
    seed: int = 0,
    U: np.ndarray | None = None,
    X: np.ndarray | None = None,
    gamma: float = 0.1,
    **method_kwargs: Any,
) -> Selection:
    """Prune a pool with one method to exactly ``n - round(ratio * n)`` records.

    Args:
        method: One of :data:`METHODS`.
        ratio: Fraction of the pool to remove, in ``[0, 1]``.
        ids: Pool record ids (unique), aligned with ``U``, ``X`` and ``y``.
        seed: Seed for ``random``, the first ``diversity`` centre and the
            ``active`` learner. Defaults to 0.
        U: Uncertainty scores ``[n]`` (``fusion``, ``uncertainty``).
        X: Fingerprints ``[n, d]`` (``fusion``, ``weight``, ``diversity``, ``active``).
        gamma: Decay of the redundancy weight. Defaults to 0.1.
        **method_kwargs: ``d_nn`` (precomputed NN distances for ``fusion`` and
            ``weight``, skipping the search), ``exact_threshold`` (NN search),
            and for ``active``: ``y`` (required with the default ensemble),
            ``n_models``, ``init_fraction``, ``step``, ``fit_predict``.

    Returns:
        The :class:`Selection`.

    Raises:
        ValueError: Unknown method, bad ratio, missing or misaligned inputs.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    ids = [str(i) for i in ids]
    n = len(ids)
    if len(set(ids)) != n:
        raise ValueError("ids must be unique")
    n_remove = _n_remove(ratio, n)
    if method in NEEDS_U:
        if U is None:
            raise ValueError(f"method {method!r} needs U")
        U = np.asarray(U, dtype=np.float64)
        if U.shape != (n,):
            raise ValueError(f"U has shape {U.shape}, expected ({n},)")
    d_nn = method_kwargs.pop("d_nn", None)
    x_optional = (method in {"fusion", "weight"} and d_nn is not None) or (
        method == "active" and method_kwargs.get("fit_predict") is not None
    )
    if method in NEEDS_X and X is None and not x_optional:
        raise ValueError(f"method {method!r} needs X")
    if X is not None and X.shape[0] != n:
        raise ValueError(f"X has {X.shape[0]} rows, expected {n}")

    scores: dict[str, np.ndarray] = {}
    epsilon: float | None = None
    if method in {"fusion", "weight"}:
        if d_nn is None:
            d_nn = nearest_neighbor_distance(X, exact_threshold=method_kwargs.pop("exact_threshold", 100_000))
        d_nn = np.asarray(d_nn, dtype=np.float64)
        W = redundancy_weight(d_nn, gamma)
        scores.update(d_nn=d_nn, W=W)
        if method == "fusion":
            imp = importance(U, W)
            scores.update(U=U, I=imp)
            removed, epsilon = fusion_prune(imp, ratio)
        else:
            removed = _stable_order(-W)[:n_remove]
    elif method == "uncertainty":
        scores["U"] = U
        removed = _stable_order(U)[:n_remove]
    elif method == "random":
        removed = np.random.default_rng(seed).permutation(n)[:n_remove]
    elif method == "diversity":
        centres = k_center_greedy(X, n - n_remove, seed=seed)
        removed = np.setdiff1d(np.arange(n), centres)
        rank = np.full(n, -1, dtype=np.int64)
        rank[centres] = np.arange(len(centres))
        scores["center_rank"] = rank
    else:  # active
        acquired, std_at = active_learning_select(n, n - n_remove, X=X, seed=seed, **method_kwargs)
        removed = np.setdiff1d(np.arange(n), acquired)
        std = np.full(n, np.nan)
        std[acquired] = std_at
        scores["std_at_acquisition"] = std

    removed = np.asarray(removed, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[removed] = False
    assert len(removed) == n_remove
    return Selection(
        method=method,
        ratio=float(ratio),
        kept_ids=[ids[i] for i in np.flatnonzero(mask)],
        removed_ids=[ids[i] for i in removed],
        epsilon=epsilon,
        scores=scores,
        ids=ids,
    )


# ---------------------------------------------------------------- target-matched control


def _quantile_edges(y: np.ndarray, n_bins: int) -> np.ndarray:
    """The ``n_bins - 1`` inner quantile edges of ``y`` (np.quantile default method)."""
    return np.quantile(y, np.arange(1, n_bins) / n_bins)


def decile_edges(y: Sequence[float] | np.ndarray) -> np.ndarray:
    """The 9 inner decile edges of a pool's targets.

    Args:
        y (array-like of float): The pool's targets (target units), 1-D, finite,
            non-empty.

    Returns:
        np.ndarray: ``np.quantile(y, [0.1, 0.2, ..., 0.9])`` (default linear
        method), ascending, shape (9,), target units.

    Raises:
        ValueError: If ``y`` is empty, not 1-D or holds NaN/inf.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0 or not np.all(np.isfinite(y)):
        raise ValueError("y must be a non-empty 1-D array of finite values")
    return _quantile_edges(y, 10)


def decile_index(y: Sequence[float] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Decile (bin) of each target given ascending inner edges.

    A value equal to an edge goes to the upper bin (``np.searchsorted`` with
    ``side="right"``), so with :func:`decile_edges` bin 9 is exactly
    ``y >= 90th percentile``, the top decile of :func:`fusion.stats.target_shift`.
    Tied edges (many equal targets) leave the bins between them empty.

    Args:
        y (array-like of float): Targets to bin (target units).
        edges (np.ndarray): Ascending inner edges, e.g. from :func:`decile_edges`.

    Returns:
        np.ndarray: int64 bin index per target, in ``0..len(edges)`` (0..9 for deciles).
    """
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(y, dtype=np.float64), side="right")


def target_matched_random(
    y: Sequence[float] | np.ndarray, reference_kept: np.ndarray, seed: int, n_bins: int = 10
) -> np.ndarray:
    """Random keep mask with the same per-quantile-bin counts as a reference keep.

    The target-matched random control: it separates "which target range a
    method keeps" from "which records within a range it keeps". The pool is
    binned by its own target quantiles (deciles by default, tie rule of
    :func:`decile_index`); in each bin, exactly as many records as
    ``reference_kept`` keeps there are drawn uniformly without replacement.
    Bins are visited in ascending order with one ``np.random.default_rng(seed)``,
    so a seed fixes the subset. The kept set has the reference's size and
    per-bin counts but is otherwise random.

    Args:
        y (array-like of float): The pool's targets (target units), 1-D, finite.
        reference_kept (np.ndarray): Boolean keep mask of the reference selection
            (e.g. FUSION's), aligned with ``y``.
        seed (int): Seed for ``np.random.default_rng``.
        n_bins (int): Number of equal-count quantile bins. Defaults to 10
            (the bins of :func:`decile_edges`).

    Returns:
        np.ndarray: Boolean keep mask aligned with ``y``.

    Raises:
        ValueError: If ``y`` is not 1-D and finite, ``reference_kept`` is not a
            boolean array of the same length, or ``n_bins < 1``.
    """
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(reference_kept)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise ValueError("y must be a 1-D array of finite values")
    if ref.dtype != bool:
        raise ValueError(f"reference_kept must be a boolean mask, got dtype {ref.dtype}")
    if ref.shape != y.shape:
        raise ValueError(f"reference_kept shape {ref.shape} differs from y shape {y.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    keep = np.zeros(len(y), dtype=bool)
    if len(y) == 0:
        return keep
    bins = decile_index(y, _quantile_edges(y, n_bins))
    rng = np.random.default_rng(seed)
    for b in range(n_bins):
        members = np.flatnonzero(bins == b)
        # The reference keeps these from the same bin, so the count never exceeds it.
        k = int(ref[members].sum())
        keep[rng.permutation(members)[:k]] = True
    return keep
