"""Angle geometry on periodic crystal graphs: triplets, bond angles, line graphs.

Conventions (see :mod:`fusion.graphs`): an edge ``e`` carries a message from
``edge_index[0, e]`` (neighbour, source) to ``edge_index[1, e]`` (centre,
target), and ``edge_vec[e]`` points from the centre to the neighbour's periodic
image.

A *triplet* is a pair of edges ``(k -> j, j -> i)`` that meet at atom ``j``: the
first edge's target is the second edge's source. It is the unit of
directional message passing (DimeNet's ``m_kj -> m_ji``) and an edge of the
line graph (ALIGNN). The bond angle of the triplet sits at ``j``, between the
bonds ``j -> i`` and ``j -> k``; with the conventions above these are the
vectors ``-edge_vec[ji]`` and ``edge_vec[kj]``.

Back-tracking pairs (``k`` is the very periodic image of ``i`` that ``j -> i``
came from) are excluded. With periodic images ``k == i`` is not enough to tell
them: atom ``i`` may appear around ``j`` through several images. The test is
geometric: the pair back-tracks iff ``edge_vec[kj] == -edge_vec[ji]`` (within
``tol``) and ``k == i``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def triplets(
    edge_index: Tensor,
    num_nodes: int,
    edge_vec: Tensor | None = None,
    tol: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Enumerate all pairs of edges ``(k -> j, j -> i)`` sharing atom ``j``.

    Vectorised: edges are sorted by target, and each edge ``j -> i`` is repeated
    once per edge entering ``j``.

    Args:
        edge_index: ``[2, E]`` edges, row 0 the source, row 1 the target.
        num_nodes: Number of atoms ``N``.
        edge_vec: ``[E, 3]`` centre-to-neighbour vectors. When given, the
            back-tracking pair (same atom and same periodic image) is removed;
            when ``None`` only the node test ``k == i`` is applied, which is
            exact for non-periodic graphs but drops genuine triplets through
            other images in crystals. Defaults to ``None``.
        tol: Absolute tolerance (Å) on ``edge_vec[kj] + edge_vec[ji]`` for the
            back-tracking test. Defaults to 1e-4.

    Returns:
        ``(idx_kj, idx_ji)``: two ``[T]`` long tensors of edge indices, ordered by
        ``idx_ji`` (then by the position of ``k -> j`` in the target-sorted
        edge list).
    """
    src, dst = edge_index[0], edge_index[1]
    device = edge_index.device
    # Edges entering each atom, grouped by target.
    order = torch.argsort(dst, stable=True)
    indeg = torch.bincount(dst, minlength=num_nodes)
    ptr = torch.cumsum(indeg, 0) - indeg
    # For each edge j -> i, the edges k -> j are those entering its source j.
    reps = indeg[src]
    idx_ji = torch.repeat_interleave(torch.arange(src.numel(), device=device), reps)
    start = torch.repeat_interleave(ptr[src], reps)
    offset = torch.arange(idx_ji.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(reps, 0) - reps, reps
    )
    idx_kj = order[start + offset]
    back = src[idx_kj] == dst[idx_ji]
    if edge_vec is not None:
        same_image = (edge_vec[idx_kj] + edge_vec[idx_ji]).abs().amax(dim=-1) <= tol
        back = back & same_image
    keep = ~back
    return idx_kj[keep], idx_ji[keep]


def angles(edge_vec: Tensor, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
    """Bond angle at ``j`` between ``j -> i`` and ``j -> k``, in radians.

    Uses ``atan2(|a x b|, a . b)``, accurate near 0 and pi where ``arccos`` of a
    cosine is not.

    Args:
        edge_vec: ``[E, 3]`` centre-to-neighbour vectors.
        idx_kj: ``[T]`` indices of the edges ``k -> j``.
        idx_ji: ``[T]`` indices of the edges ``j -> i``.

    Returns:
        ``[T]`` angles in ``[0, pi]``.
    """
    a = -edge_vec[idx_ji]  # from j to i
    b = edge_vec[idx_kj]  # from j to k
    cross = torch.linalg.cross(a, b).norm(dim=-1)
    dot = (a * b).sum(dim=-1)
    return torch.atan2(cross, dot)


def bond_cosines(edge_vec: Tensor, idx_kj: Tensor, idx_ji: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine of the bond angle at ``j`` (see :func:`angles`), clamped to ``[-1, 1]``.

    Args:
        edge_vec: ``[E, 3]`` centre-to-neighbour vectors.
        idx_kj: ``[T]`` indices of the edges ``k -> j``.
        idx_ji: ``[T]`` indices of the edges ``j -> i``.
        eps: Floor on the norms. Defaults to 1e-8.

    Returns:
        ``[T]`` cosines.
    """
    a = -edge_vec[idx_ji]
    b = edge_vec[idx_kj]
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps)
    return cos.clamp(-1.0, 1.0)


def line_graph(edge_index: Tensor, edge_vec: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Line graph of a periodic crystal graph (ALIGNN).

    The nodes of the line graph are the edges of the atom graph; a line-graph edge
    ``kj -> ji`` joins two bonds that meet at atom ``j`` (a triplet, back-tracking
    pairs excluded) and carries the cosine of their bond angle.

    Args:
        edge_index: ``[2, E]`` atom-graph edges.
        edge_vec: ``[E, 3]`` centre-to-neighbour vectors.
        num_nodes: Number of atoms.

    Returns:
        ``(lg_edge_index, cos)``: ``[2, T]`` line-graph edges (row 0 the source
        bond ``k -> j``, row 1 the target bond ``j -> i``, same convention as the
        atom graph) and ``[T]`` bond-angle cosines.
    """
    idx_kj, idx_ji = triplets(edge_index, num_nodes, edge_vec)
    return torch.stack([idx_kj, idx_ji]), bond_cosines(edge_vec, idx_kj, idx_ji)


def rbf_expansion(x: Tensor, start: float, stop: float, num: int) -> Tensor:
    """Gaussian expansion ``exp(-(x - mu_k)^2 / step)`` on an even grid (ALIGNN, Matformer).

    Note the denominator is the grid step, not its square (the width convention
    of ALIGNN's and Matformer's RBF layers, unlike
    :func:`fusion.models.layers.gaussian_expansion`).

    Args:
        x: ``[...]`` values.
        start: First centre.
        stop: Last centre.
        num: Number of centres.

    Returns:
        ``[..., num]`` features.
    """
    mu = torch.linspace(start, stop, num, device=x.device, dtype=x.dtype)
    step = (stop - start) / (num - 1)
    return torch.exp(-((x.unsqueeze(-1) - mu) ** 2) / step)
