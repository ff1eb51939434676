"""DeeperGATGNN: deep global-attention GNN with differentiable group normalisation."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from fusion.models.base import CrystalModel, register
from fusion.models.layers import AtomEmbedding, RBFEmbedding, graph_index


class AGATConv(nn.Module):
    """GATGNN's augmented graph-attention convolution (edge-aware, multi-head).

    For edge ``j -> i`` with features ``e_ij``: ``z_ij = W [h_j || e_ij]``,
    ``a_ij = softmax_j(LeakyReLU(<att, [W [h_i || e_ij] || z_ij]>))`` per head,
    and ``h_i' = mean_heads sum_j a_ij z_ij``.

    Args:
        hidden: Node and edge feature width.
        heads: Attention heads. Defaults to 4.
        dropout: Dropout on attention coefficients. Defaults to 0.
    """

    def __init__(self, hidden: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.hidden, self.dropout = heads, hidden, dropout
        # W [h || e] = W_h h + W_e e: the node part is computed per atom, then gathered.
        self.lin_node = nn.Linear(hidden, heads * hidden)
        self.lin_edge = nn.Linear(hidden, heads * hidden, bias=False)
        self.att = nn.Parameter(torch.empty(1, heads, 2 * hidden))
        nn.init.xavier_uniform_(self.att)
        self.bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
        """Return updated node features ``[N, hidden]``."""
        src, dst = edge_index
        node, edge = self.lin_node(h), self.lin_edge(e)
        z_i = (node.index_select(0, dst) + edge).view(-1, self.heads, self.hidden)
        z_j = (node.index_select(0, src) + edge).view(-1, self.heads, self.hidden)
        logit = F.leaky_relu((torch.cat([z_i, z_j], dim=-1) * self.att).sum(-1), 0.2)
        alpha = softmax(logit, dst, num_nodes=h.shape[0])  # [E, heads]
        alpha = F.dropout(alpha, self.dropout, self.training)
        out = scatter(alpha.unsqueeze(-1) * z_j, dst, dim=0, dim_size=h.shape[0], reduce="sum")
        return out.mean(dim=1) + self.bias


class DiffGroupNorm(nn.Module):
    """Differentiable group normalisation (Zhou et al., NeurIPS 2020).

    Nodes are softly assigned to ``groups`` clusters (``S = softmax(h W)``); each
    cluster's share of the features is batch-normalised separately and the sum is
    added back with a small weight: ``h + lam * sum_g BN_g(S_g * h)``. This keeps
    node embeddings of different clusters apart as depth grows (anti over-smoothing).

    Args:
        hidden: Feature width.
        groups: Number of soft clusters. Defaults to 10.
        lam: Weight of the normalised term. Defaults to 0.01.
    """

    def __init__(self, hidden: int, groups: int = 10, lam: float = 0.01) -> None:
        super().__init__()
        self.groups, self.lam = groups, lam
        self.assign = nn.Linear(hidden, groups)
        self.bn = nn.BatchNorm1d(groups * hidden)

    def forward(self, h: Tensor) -> Tensor:
        """Return normalised features ``[N, hidden]``."""
        s = torch.softmax(self.assign(h), dim=-1)  # [N, G]
        grouped = (s.unsqueeze(-1) * h.unsqueeze(1)).flatten(1)  # [N, G*hidden]
        normed = self.bn(grouped).view(h.shape[0], self.groups, -1).sum(dim=1)
        return h + self.lam * normed


@register("deepergatgnn")
class DeeperGATGNN(CrystalModel):
    """DeeperGATGNN for periodic crystal graphs.

    Omee, Louis, Fu, Wei, Dey, Dong, Xu & Hu, "Scalable deeper graph neural networks
    for high-performance materials property prediction", Patterns 3, 100491 (2022).

    Core mechanism kept: a stack of GATGNN augmented graph-attention layers
    (:class:`AGATConv`, attention over edges conditioned on neighbour and edge
    features), each followed by differentiable group normalisation
    (:class:`DiffGroupNorm`) and a residual skip connection, so that many layers
    can be stacked; a global attention pooling makes the crystal embedding.

    Simplifications: atoms are embedded by :class:`~fusion.models.layers.AtomEmbedding` (a
    learned per-element table plus a linear map of fixed group/period/block,
    electronegativity, radius and ionisation descriptors) instead of CGCNN's
    92-dimensional atom features; edges carry a Gaussian
    expansion of the distance only; the global attention pooling scores atoms from
    their embedding alone (GATGNN also feeds a composition vector); no dropout by
    default. The ``paper`` preset uses 20 AGAT layers of width 64 with 4 heads and
    10 DGN groups (the publication studies depths up to 30 and reports its best
    Matbench results with deep stacks of this width).

    Args:
        hidden: Node/edge width. Defaults to 64.
        layers: Number of AGAT layers. Defaults to 20.
        heads: Attention heads. Defaults to 4.
        groups: DGN soft clusters. Defaults to 10.
        dgn_weight: DGN skip weight. Defaults to 0.01.
        cutoff: Largest edge length of the distance expansion (Å). Defaults to 8.
        num_rbf: Gaussians of the distance expansion. Defaults to 50.
        dropout: Attention dropout. Defaults to 0.
        head: ``"scalar"`` or ``"evidential"``. Defaults to ``"scalar"``.
    """

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"hidden": 48, "layers": 5, "heads": 2, "groups": 4},
        "paper": {"hidden": 64, "layers": 20, "heads": 4, "groups": 10},
    }

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 20,
        heads: int = 4,
        groups: int = 10,
        dgn_weight: float = 0.01,
        cutoff: float = 8.0,
        num_rbf: int = 50,
        dropout: float = 0.0,
        head: str = "scalar",
    ) -> None:
        super().__init__(hidden, head)
        self.embed_atom = AtomEmbedding(hidden)
        self.embed_edge = RBFEmbedding(hidden, 0.0, cutoff, num_rbf)
        self.convs = nn.ModuleList(AGATConv(hidden, heads, dropout) for _ in range(layers))
        self.norms = nn.ModuleList(DiffGroupNorm(hidden, groups, dgn_weight) for _ in range(layers))
        self.pool_score = nn.Sequential(nn.Linear(hidden, hidden), nn.Softplus(), nn.Linear(hidden, 1))

    def embed(self, batch: Any) -> Tensor:
        """Return crystal embeddings ``[B, hidden]``."""
        bvec, num_graphs = graph_index(batch)
        h = self.embed_atom(batch.z)
        e = self.embed_edge(batch.edge_dist)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = h + F.softplus(norm(conv(h, batch.edge_index, e)))  # residual skip
        weight = softmax(self.pool_score(h).squeeze(-1), bvec, num_nodes=num_graphs)
        return scatter(weight.unsqueeze(-1) * h, bvec, dim=0, dim_size=num_graphs, reduce="sum")
