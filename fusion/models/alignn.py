"""ALIGNN: atomistic line graph neural network on periodic crystal graphs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from fusion.graphs import DEFAULT_CUTOFF
from fusion.models.base import CrystalModel, register
from fusion.models.geometry import line_graph, rbf_expansion


def mlp_layer(in_dim: int, out_dim: int) -> nn.Sequential:
    """ALIGNN's ``MLPLayer``: linear, batch norm, SiLU.

    Args:
        in_dim: Input size.
        out_dim: Output size.

    Returns:
        The layer.
    """
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.SiLU())


class EdgeGatedGraphConv(nn.Module):
    """Edge-gated graph convolution (ALIGNN's variant of the residual gated GCN).

    For an edge ``s -> t`` with features ``e_st``::

        m_st   = A h_s + B h_t + C e_st                 (new edge features)
        sigma  = sigmoid(m_st)
        h_t'   = h_t + SiLU(BN(U h_t + sum_s sigma * V h_s / (sum_s sigma + eps)))
        e_st'  = e_st + SiLU(BN(m_st))

    Used on the atom graph (nodes atoms, edges bonds) and on the line graph
    (nodes bonds, edges bond pairs).

    Args:
        dim: Node and edge feature size.
        eps: Floor of the gate normaliser. Defaults to 1e-6.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.src_gate, self.dst_gate = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.edge_gate = nn.Linear(dim, dim)
        self.src_update, self.dst_update = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.bn_nodes, self.bn_edges = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        """Return updated ``(node, edge)`` features.

        Args:
            h: ``[N, dim]`` node features.
            e: ``[E, dim]`` edge features.
            edge_index: ``[2, E]``, row 0 source, row 1 target.
        """
        src, dst = edge_index
        m = self.src_gate(h).index_select(0, src) + self.dst_gate(h).index_select(0, dst) + self.edge_gate(e)
        sigma = torch.sigmoid(m)
        num = scatter(
            sigma * self.dst_update(h).index_select(0, src), dst, dim=0, dim_size=h.size(0), reduce="sum"
        )
        den = scatter(sigma, dst, dim=0, dim_size=h.size(0), reduce="sum")
        x = self.src_update(h) + num / (den + self.eps)
        h = h + self.act(self.bn_nodes(x))
        e = e + self.act(self.bn_edges(m))
        return h, e


class ALIGNNLayer(nn.Module):
    """One ALIGNN layer: line-graph convolution (bonds, angles), then atom-graph convolution.

    Args:
        dim: Feature size.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.edge_update = EdgeGatedGraphConv(dim)
        self.node_update = EdgeGatedGraphConv(dim)

    def forward(
        self, x: Tensor, y: Tensor, z: Tensor, edge_index: Tensor, lg_index: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Update atom ``x``, bond ``y`` and angle ``z`` features."""
        y, z = self.edge_update(y, z, lg_index)
        x, y = self.node_update(x, y, edge_index)
        return x, y, z


@register("alignn")
class ALIGNN(CrystalModel):
    """Atomistic Line Graph Neural Network.

    Choudhary & DeCost, "Atomistic Line Graph Neural Network for improved
    materials property predictions", npj Computational Materials 7, 185 (2021).

    Atoms, bonds and bond angles carry features. Bond lengths are expanded on 80
    Gaussians over 0-8 Å and angle cosines on 40 Gaussians over [-1, 1], each
    passed through two MLP layers (to ``embedding``, then ``hidden``). ALIGNN
    layers alternate an edge-gated convolution on the line graph (updating bond
    and angle features) with one on the atom graph (updating atom and bond
    features); plain edge-gated (GCN) layers on the atom graph follow; atom
    features are averaged per crystal.

    Adaptations and simplifications:

    * Atoms start from a learned embedding of the atomic number (through the
      same two-layer input MLP) instead of the 92 CGCNN atom attributes.
    * The line graph is built on the fly from the periodic k-NN graph
      (:func:`geometry.line_graph`) and excludes back-tracking bond pairs
      (a bond followed by its own reverse image, whose cosine is always 1);
      DGL's default line graph used by the reference code keeps them.
    * The final fully connected layer is the shared head of
      :class:`CrystalModel`.

    Args:
        hidden: Hidden size (and crystal embedding size). Defaults to 256.
        embedding: Size of the input embeddings. Defaults to 64.
        alignn_layers: ALIGNN layers. Defaults to 4.
        gcn_layers: Edge-gated layers on the atom graph afterwards. Defaults to 4.
        edge_bins: Gaussians for bond lengths. Defaults to 80.
        angle_bins: Gaussians for angle cosines. Defaults to 40.
        cutoff: Upper end of the bond-length grid (Å). Defaults to 8.
        head: ``"scalar"`` or ``"evidential"``. Defaults to ``"scalar"``.
    """

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {"hidden": 64, "embedding": 32, "alignn_layers": 2, "gcn_layers": 2},
        "paper": {"hidden": 256, "embedding": 64, "alignn_layers": 4, "gcn_layers": 4},
    }

    def __init__(
        self,
        hidden: int = 256,
        embedding: int = 64,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        edge_bins: int = 80,
        angle_bins: int = 40,
        cutoff: float = DEFAULT_CUTOFF,
        head: str = "scalar",
    ) -> None:
        super().__init__(hidden, head)
        self.edge_bins, self.angle_bins, self.cutoff = edge_bins, angle_bins, cutoff
        self.atom_embedding = nn.Sequential(nn.Embedding(119, embedding), mlp_layer(embedding, hidden))
        self.edge_embedding = nn.Sequential(mlp_layer(edge_bins, embedding), mlp_layer(embedding, hidden))
        self.angle_embedding = nn.Sequential(mlp_layer(angle_bins, embedding), mlp_layer(embedding, hidden))
        self.alignn = nn.ModuleList(ALIGNNLayer(hidden) for _ in range(alignn_layers))
        self.gcn = nn.ModuleList(EdgeGatedGraphConv(hidden) for _ in range(gcn_layers))

    def embed(self, batch: Any) -> Tensor:
        """Return ``[B, hidden]`` crystal embeddings (mean of atom features)."""
        edge_index = batch.edge_index
        lg_index, cos = line_graph(edge_index, batch.edge_vec, batch.z.size(0))
        x = self.atom_embedding(batch.z)
        y = self.edge_embedding(rbf_expansion(batch.edge_dist, 0.0, self.cutoff, self.edge_bins))
        z = self.angle_embedding(rbf_expansion(cos, -1.0, 1.0, self.angle_bins))
        for layer in self.alignn:
            x, y, z = layer(x, y, z, edge_index, lg_index)
        for layer in self.gcn:
            x, y = layer(x, y, edge_index)
        return scatter(x, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean")
