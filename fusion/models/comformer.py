"""iComFormer: SE(3)-invariant graph transformer with lattice-aware edge updates."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from fusion.models.base import CrystalModel, register
from fusion.models.layers import AtomEmbedding, RBFEmbedding, gaussian_expansion, graph_index, mean_pool


class NodeTransformer(nn.Module):
    """ComFormer node-wise transformer layer (edge-conditioned, sigmoid-gated attention).

    For edge ``j -> i``: ``q_i = W_q h_i``, ``k_ij = W_k [h_i, h_j, e_ij]``,
    ``v_ij = W_v [h_i, h_j, e_ij]`` (per head); the attention is the elementwise
    product ``q_i * k_ij / sqrt(d)``, layer-normalised and squashed by a sigmoid,
    so every channel gets its own weight; ``h_i += softplus(BN(W_o sum_j gate * v))``.

    Args:
        hidden: Node/edge width.
        heads: Attention heads. Defaults to 1.
    """

    def __init__(self, hidden: int, heads: int = 1) -> None:
        super().__init__()
        self.heads, self.hidden = heads, hidden
        self.q = nn.Linear(hidden, heads * hidden)
        # W [h_i, h_j, e_ij] split into per-atom parts (computed once, gathered) and an edge part.
        self.kv_dst = nn.Linear(hidden, 2 * heads * hidden)
        self.kv_src = nn.Linear(hidden, 2 * heads * hidden, bias=False)
        self.kv_edge = nn.Linear(hidden, 2 * heads * hidden, bias=False)
        self.ln = nn.LayerNorm(hidden)
        self.v_mix = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out = nn.Linear(heads * hidden, hidden)
        self.bn = nn.BatchNorm1d(hidden)

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
        """Return updated node features ``[N, hidden]``."""
        src, dst = edge_index
        q = self.q(h).index_select(0, dst).view(-1, self.heads, self.hidden)
        kv = self.kv_dst(h).index_select(0, dst) + self.kv_src(h).index_select(0, src) + self.kv_edge(e)
        k, v = kv.view(-1, self.heads, 2 * self.hidden).chunk(2, -1)
        gate = torch.sigmoid(self.ln(q * k / math.sqrt(self.hidden)))
        msg = (gate * self.v_mix(v)).flatten(1)
        agg = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return h + F.softplus(self.bn(self.out(agg)))


class EdgeTransformer(nn.Module):
    """iComFormer edge-wise layer: each edge attends to its three lattice tokens.

    The tokens describe the edge vector relative to the lattice vectors
    ``l_1, l_2, l_3`` of its crystal: ``t_k = MLP([RBF(cos(e_ij, l_k)), RBF(|l_k|)])``.
    Softmax attention of the edge over its three tokens gives the update
    ``e_ij += softplus(BN(W_o sum_k a_k (W_v t_k * W_e e_ij)))``.

    Args:
        hidden: Edge width.
        num_rbf: Gaussians for each angle cosine and each lattice length.
    """

    def __init__(self, hidden: int, num_rbf: int = 16) -> None:
        super().__init__()
        self.num_rbf, self.hidden = num_rbf, hidden
        self.token = nn.Sequential(nn.Linear(2 * num_rbf, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.e = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.bn = nn.BatchNorm1d(hidden)

    def forward(self, e: Tensor, edge_vec: Tensor, edge_lattice: Tensor) -> Tensor:
        """Update edge features.

        Args:
            e: ``[E, hidden]`` edge features.
            edge_vec: ``[E, 3]`` edge vectors.
            edge_lattice: ``[E, 3, 3]`` lattice (rows) of each edge's crystal.

        Returns:
            ``[E, hidden]`` updated edge features.
        """
        lengths = edge_lattice.norm(dim=-1)  # [E, 3]
        cos = (edge_lattice @ edge_vec.unsqueeze(-1)).squeeze(-1) / (
            lengths * edge_vec.norm(dim=-1, keepdim=True)
        )
        feats = torch.cat(
            [
                gaussian_expansion(cos, -1.0, 1.0, self.num_rbf),
                gaussian_expansion(lengths, 0.0, 16.0, self.num_rbf),
            ],
            dim=-1,
        )  # [E, 3, 2*num_rbf]
        t = self.token(feats)
        att = torch.softmax((self.q(e).unsqueeze(1) * self.k(t)).sum(-1) / math.sqrt(self.hidden), dim=-1)
        upd = (att.unsqueeze(-1) * self.v(t)).sum(1) * self.e(e)
        return e + F.softplus(self.bn(self.out(upd)))


@register("comformer")
class ComFormer(CrystalModel):
    """iComFormer (the invariant ComFormer) for periodic crystal graphs.

    Yan, Fu, Qian & Ji, "Complete and Efficient Graph Transformers for Crystal
    Material Property Prediction", ICLR 2024.

    Core mechanism kept: an SE(3)-invariant graph transformer whose node-wise
    layers use edge-conditioned, per-channel sigmoid attention
    (:class:`NodeTransformer`) and whose edge-wise layer makes edges aware of the
    lattice: each edge ``e_ij`` is updated from the angles between its vector and
    the three lattice vectors (and their lengths), which together with the
    distances pins down the geometry up to rotation (:class:`EdgeTransformer`).
    Initial edge features are RBFs of ``-0.75 / d`` as in the paper.

    Simplifications: the lattice vectors are used as stored (pymatgen's
    choice); iComFormer builds its lattice-aware edges from a canonical choice of
    the three self-connecting periodic edges of each node, so our model is
    invariant to rotations and atom permutations but not to a change of lattice
    basis. The edge-wise layer attends over the three lattice tokens instead of
    the paper's explicit angle/self-edge fusion. Atoms are embedded by :class:`~fusion.models.layers.AtomEmbedding` (a
    learned per-element table plus a linear map of fixed group/period/block,
    electronegativity, radius and ionisation descriptors) instead of CGCNN's
    92-dimensional atom features.
    The ``paper`` preset follows the published configuration: width 256, four
    node-wise layers, one edge-wise layer after the first one.

    Args:
        hidden: Width. Defaults to 256.
        layers: Node-wise layers. Defaults to 4.
        edge_layers: Edge-wise layers, interleaved after the first node layers. Defaults to 1.
        heads: Attention heads. Defaults to 1.
        num_rbf: Gaussians of the distance expansion. Defaults to 48.
        head: ``"scalar"`` or ``"evidential"``. Defaults to ``"scalar"``.
    """

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"hidden": 64, "layers": 3, "edge_layers": 1, "num_rbf": 32},
        "paper": {"hidden": 256, "layers": 4, "edge_layers": 1, "num_rbf": 48},
    }

    def __init__(
        self,
        hidden: int = 256,
        layers: int = 4,
        edge_layers: int = 1,
        heads: int = 1,
        num_rbf: int = 48,
        head: str = "scalar",
    ) -> None:
        super().__init__(hidden, head)
        if edge_layers > layers:
            raise ValueError("edge_layers must not exceed layers")
        self.embed_atom = AtomEmbedding(hidden)
        # -0.75/d for d in (0.5, 8] Å lies in [-1.5, -0.09]; RBF grid spans [-4, 0].
        self.embed_edge = nn.Sequential(RBFEmbedding(hidden, -4.0, 0.0, num_rbf), nn.Linear(hidden, hidden))
        self.node_layers = nn.ModuleList(NodeTransformer(hidden, heads) for _ in range(layers))
        self.edge_layers = nn.ModuleList(EdgeTransformer(hidden) for _ in range(edge_layers))
        self.out = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU())

    def embed(self, batch: Any) -> Tensor:
        """Return crystal embeddings ``[B, hidden]``."""
        bvec, num_graphs = graph_index(batch)
        h = self.embed_atom(batch.z)
        e = self.embed_edge(-0.75 / batch.edge_dist)
        edge_lattice = batch.lattice[bvec[batch.edge_index[1]]]
        for k, layer in enumerate(self.node_layers):
            h = layer(h, batch.edge_index, e)
            if k < len(self.edge_layers):
                e = self.edge_layers[k](e, batch.edge_vec, edge_lattice)
        return mean_pool(self.out(h), bvec, num_graphs)
