"""CrystalFramer: Crystalformer-style attention with dynamic, attention-built local frames."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from fusion.models.base import CrystalModel, register
from fusion.models.layers import AtomEmbedding, gaussian_expansion, graph_index, mean_pool, mlp

#: Edges whose direction is within this |cosine| of the first axis cannot give the second.
_COLINEAR = 0.99
#: Relative weight of the direction-aware tie-break in the max-frame selection key:
#: far above float32 noise, far below meaningful attention differences.
_TIE_BREAK = 1e-3


def scatter_first_argmax(values: Tensor, index: Tensor, dim_size: int, mask: Tensor | None = None) -> Tensor:
    """Per group, the position of the largest value (lowest position on ties).

    Args:
        values: ``[E]`` scores.
        index: ``[E]`` group of each entry (e.g. the centre atom of each edge).
        dim_size: Number of groups.
        mask: Optional ``[E]`` bool; entries with False are ignored.

    Returns:
        ``[dim_size]`` long positions into ``values``; ``len(values)`` for groups
        with no (unmasked) entry.
    """
    vals = values if mask is None else values.masked_fill(~mask, float("-inf"))
    best = scatter(vals, index, dim=0, dim_size=dim_size, reduce="max")
    is_best = (vals == best[index]) & torch.isfinite(vals)
    pos = torch.arange(len(values), device=values.device)
    pos = torch.where(is_best, pos, torch.full_like(pos, len(values)))
    out = torch.full((dim_size,), len(values), dtype=torch.long, device=values.device)
    return out.scatter_reduce(0, index, pos, reduce="amin", include_self=True)


def max_frames(weight: Tensor, edge_vec: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """Per-atom "max frames" built from attention weights (CrystalFramer).

    The first axis points along the edge of largest weight; the second along the
    edge of largest weight among those not (nearly) parallel to the first,
    orthogonalised (Gram-Schmidt); the third is their cross product (right-handed,
    so the frame rotates with the crystal). To choose between edges of equal
    weight, such as the two opposite images ``+L`` and ``-L`` of an atom itself,
    the selection key is ``w (1 + 1e-3 r.mu / (|mu| + 1))`` with ``mu`` the
    weighted mean edge vector of the atom: still a rotation-invariant scalar, it
    separates ``r`` from ``-r`` whenever ``mu != 0``. Exactly symmetric ties that
    remain (e.g. ideal cubic sites) are broken by edge order.

    Args:
        weight: ``[E]`` non-negative attention weights (edge ``j -> i``).
        edge_vec: ``[E, 3]`` edge vectors (centre to neighbour).
        dst: ``[E]`` centre atom of each edge.
        num_nodes: Number of atoms.

    Returns:
        ``[N, 3, 3]`` frames, rows are the axes.
    """
    unit = F.normalize(edge_vec, dim=-1)
    mu = scatter(weight.unsqueeze(-1) * edge_vec, dst, dim=0, dim_size=num_nodes, reduce="sum")
    tilt = (unit * mu.index_select(0, dst)).sum(-1) / (mu.norm(dim=-1).index_select(0, dst) + 1.0)
    key = weight * (1.0 + _TIE_BREAK * tilt)
    n_edges = len(weight)
    pad = torch.cat([unit, unit.new_tensor([[1.0, 0.0, 0.0]])])  # entry E = fallback direction
    first = pad[scatter_first_argmax(key, dst, num_nodes)]
    cos = (unit * first.index_select(0, dst)).sum(-1)
    second_idx = scatter_first_argmax(key, dst, num_nodes, mask=cos.abs() < _COLINEAR)
    second = pad[second_idx]
    # Fallback (all neighbours colinear, e.g. a 1-D chain): any axis orthogonal to the first.
    lonely = second_idx == n_edges
    alt = torch.where(
        first[:, :1].abs() < 0.9, first.new_tensor([1.0, 0.0, 0.0]), first.new_tensor([0.0, 1.0, 0.0])
    )
    second = torch.where(lonely.unsqueeze(-1), alt, second)
    second = F.normalize(second - (second * first).sum(-1, keepdim=True) * first, dim=-1)
    third = torch.cross(first, second, dim=-1)
    return torch.stack([first, second, third], dim=1)


class FramedAttention(nn.Module):
    """One CrystalFramer block: distance-biased attention, dynamic frame, framed values.

    Scores ``q_i . k_j / sqrt(d) - d_ij^2 / (2 sigma_i^2)`` (Crystalformer's Gaussian
    distance decay, ``sigma`` predicted per head from the centre) are softmaxed
    over the neighbours; the head-averaged weights build each atom's max frame
    (:func:`max_frames`); the edge vectors written in that frame, Gaussian-
    expanded, give a per-edge value encoding ``psi_ij`` so that
    ``h_i += W_o sum_j a_ij (v_j + psi_ij)``. A pre-norm feed-forward follows.

    Args:
        hidden: Width.
        heads: Attention heads (must divide ``hidden``).
        num_rbf: Gaussians per frame coordinate and for the distance.
        cutoff: Range of the coordinate expansion (Å).
    """

    def __init__(self, hidden: int, heads: int, num_rbf: int, cutoff: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError("heads must divide hidden")
        self.hidden, self.heads, self.d = hidden, heads, hidden // heads
        self.num_rbf, self.cutoff = num_rbf, cutoff
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.sigma = nn.Linear(hidden, heads)
        self.psi = mlp([4 * num_rbf, hidden, hidden], nn.SiLU, last_activation=False)
        self.out = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.ff = mlp([hidden, 2 * hidden, hidden], nn.SiLU, last_activation=False)

    def forward(self, h: Tensor, edge_index: Tensor, edge_vec: Tensor, edge_dist: Tensor) -> Tensor:
        """Return updated atom features ``[N, hidden]``."""
        src, dst = edge_index
        n = h.shape[0]
        x = self.ln1(h)
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.d).unbind(1)
        sigma = 0.5 + F.softplus(self.sigma(x))  # [N, H] Å; lower bound keeps decay finite
        score = (q.index_select(0, dst) * k.index_select(0, src)).sum(-1) / math.sqrt(
            self.d
        ) - edge_dist.unsqueeze(-1) ** 2 / (2.0 * sigma.index_select(0, dst) ** 2)
        alpha = softmax(score, dst, num_nodes=n)  # [E, H]
        frames = max_frames(alpha.mean(-1).detach(), edge_vec, dst, n)
        coords = torch.einsum(
            "eab,eb->ea", frames.index_select(0, dst), edge_vec
        )  # [E, 3] in the centre's frame
        feats = torch.cat(
            [
                gaussian_expansion(coords, -self.cutoff, self.cutoff, self.num_rbf).flatten(1),
                gaussian_expansion(edge_dist, 0.0, self.cutoff, self.num_rbf),
            ],
            dim=-1,
        )
        psi = self.psi(feats).view(-1, self.heads, self.d)
        msg = alpha.unsqueeze(-1) * (v.index_select(0, src) + psi)
        h = h + self.out(scatter(msg, dst, dim=0, dim_size=n, reduce="sum").flatten(1))
        return h + self.ff(self.ln2(h))


@register("crystalframer")
class CrystalFramer(CrystalModel):
    """CrystalFramer for periodic crystal graphs.

    Ito, Nakamura, Suzuki & Tanaka (CrystalFramer), "Rethinking the role of frames
    for SE(3)-invariant crystal structure modeling", ICLR 2025.

    Core mechanism kept: Crystalformer-style self-attention with a Gaussian
    distance decay, in which each layer builds a dynamic local frame per atom from
    that layer's attention weights over its neighbour edges (the "max frame":
    axes along the most-attended edges, Gram-Schmidt orthogonalised); edge
    vectors are projected into the centre atom's frame, expanded with Gaussians
    and turned into per-edge value encodings. Frames rotate with the crystal, so
    the projected coordinates, and the model, are SE(3)-invariant while seeing
    directional information that distance-only Crystalformer cannot.

    Simplifications: attention runs over our finite periodic neighbour graph
    (12 nearest images within 8 Å) instead of Crystalformer's infinitely
    connected attention over all periodic images (its Gaussian-decay lattice
    sums); one frame per atom per layer from head-averaged weights, with
    gradients not flowing through the frame selection (weights detached, as in
    the argmax); the max-frame variant only (the paper also studies weighted-PCA
    and static frames); pre-LayerNorm blocks (Crystalformer uses no
    normalisation); no frame averaging at sites whose most-attended edges are
    exactly symmetry-equivalent: there the max frame is chosen by edge order and
    invariance holds only approximately (on ideal cubic perovskites a random
    rotation moved untrained cpu-size outputs by ~1e-3, 3 % of their spread;
    generic low-symmetry crystals are invariant to float precision); atoms are embedded by
    :class:`~fusion.models.layers.AtomEmbedding` (learned table plus fixed element
    descriptors) instead of Crystalformer's learned atom-type embedding alone.
    The ``paper`` preset follows Crystalformer's size: width 128, 4 blocks,
    8 heads.

    Args:
        hidden: Width. Defaults to 128.
        layers: Attention blocks. Defaults to 4.
        heads: Attention heads. Defaults to 8.
        num_rbf: Gaussians per frame coordinate. Defaults to 32.
        cutoff: Range of the coordinate expansion (Å). Defaults to 8.
        head: ``"scalar"`` or ``"evidential"``. Defaults to ``"scalar"``.
    """

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"hidden": 64, "layers": 3, "heads": 4, "num_rbf": 16},
        "paper": {"hidden": 128, "layers": 4, "heads": 8, "num_rbf": 32},
    }

    def __init__(
        self,
        hidden: int = 128,
        layers: int = 4,
        heads: int = 8,
        num_rbf: int = 32,
        cutoff: float = 8.0,
        head: str = "scalar",
    ) -> None:
        super().__init__(hidden, head)
        self.embed_atom = AtomEmbedding(hidden)
        self.blocks = nn.ModuleList(FramedAttention(hidden, heads, num_rbf, cutoff) for _ in range(layers))
        self.ln = nn.LayerNorm(hidden)

    def embed(self, batch: Any) -> Tensor:
        """Return crystal embeddings ``[B, hidden]``."""
        bvec, num_graphs = graph_index(batch)
        h = self.embed_atom(batch.z)
        for block in self.blocks:
            h = block(h, batch.edge_index, batch.edge_vec, batch.edge_dist)
        return mean_pool(self.ln(h), bvec, num_graphs)
