"""Building blocks shared by the architectures.

Activations, MLPs, radial bases, pooling, and the element and radial embeddings
of DeeperGATGNN, PotNet, ComFormer, SODNet and CrystalFramer. Everything here is
vectorised over atoms/edges; message passing uses
:func:`torch_geometric.utils.scatter` (pure torch, no compiled PyG extension).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

#: Largest atomic number the element embeddings accept (:class:`AtomEmbedding`
#: has ``MAX_Z + 1`` rows; index 0 is unused).
MAX_Z = 119
#: Rows of the plain learned element tables of CGCNN, MEGNet and SchNet
#: (``nn.Embedding``): atomic numbers up to 99, the datasets stop at 94. Kept
#: below ``MAX_Z + 1`` so that these models' parameter shapes and seeded
#: initialisation stay those of the runs and checkpoints already made.
PLAIN_TABLE_ROWS = 100


class ShiftedSoftplus(nn.Module):
    """``softplus(x) - log 2``: zero at zero, smooth (SchNet, MEGNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = math.log(2.0)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation elementwise."""
        return F.softplus(x) - self.shift


def mlp(
    sizes: Sequence[int],
    activation: type[nn.Module] = ShiftedSoftplus,
    last_activation: bool = True,
) -> nn.Sequential:
    """Stack of linear layers with an activation after each.

    Args:
        sizes: Layer widths including the input, e.g. ``[96, 64, 64, 32]``.
        activation: Activation class, instantiated once per layer. Defaults to
            :class:`ShiftedSoftplus`.
        last_activation: Whether the last linear layer is followed by the
            activation too. Defaults to True.

    Returns:
        The MLP.
    """
    layers: list[nn.Module] = []
    n = len(sizes) - 1
    for k in range(n):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < n - 1 or last_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


def gaussian_expansion(
    dist: Tensor, start: float = 0.0, stop: float = 8.0, num: int = 41, width: float | None = None
) -> Tensor:
    """Expand distances on a grid of Gaussians (CGCNN's edge features).

    Args:
        dist: Distances ``[E]``.
        start: First centre (Å). Defaults to 0.
        stop: Last centre (Å). Defaults to the 8 Å cutoff.
        num: Number of Gaussians. Defaults to 41 (0.2 Å steps over 8 Å).
        width: Gaussian width; defaults to the grid step.

    Returns:
        ``[E, num]`` features ``exp(-(d - mu_k)^2 / width^2)``.
    """
    mu = torch.linspace(start, stop, num, device=dist.device, dtype=dist.dtype)
    width = float(mu[1] - mu[0]) if width is None else width
    return torch.exp(-((dist.unsqueeze(-1) - mu) ** 2) / width**2)


class GaussianBasis(nn.Module):
    """Fixed grid of Gaussians ``exp(-(d - mu_k)^2 / width^2)`` over ``[start, stop]``.

    Args:
        start: First centre (Å). Defaults to 0.
        stop: Last centre (Å). Defaults to 8.
        num: Number of centres. Defaults to 41 (0.2 Å steps over 8 Å, CGCNN).
        width: Gaussian width (Å); defaults to the grid step.
    """

    def __init__(
        self, start: float = 0.0, stop: float = 8.0, num: int = 41, width: float | None = None
    ) -> None:
        super().__init__()
        centres = torch.linspace(start, stop, num)
        self.width = float(centres[1] - centres[0]) if width is None else float(width)
        # A buffer so that .to(device) moves it and state_dict records the grid.
        self.register_buffer("centres", centres, persistent=False)
        self.num = num

    def forward(self, dist: Tensor) -> Tensor:
        """Expand distances ``[E]`` to ``[E, num]``."""
        return torch.exp(-((dist.unsqueeze(-1) - self.centres) ** 2) / self.width**2)


def cosine_cutoff(dist: Tensor, cutoff: float) -> Tensor:
    """SchNet/Behler cosine cutoff ``0.5 (cos(pi d / rc) + 1)`` for ``d < rc``, else 0."""
    return 0.5 * (torch.cos(dist * (math.pi / cutoff)) + 1.0) * (dist < cutoff).to(dist.dtype)


def sum_to_nodes(messages: Tensor, target: Tensor, num_nodes: int) -> Tensor:
    """Sum edge messages ``[E, F]`` onto their target nodes, giving ``[N, F]``."""
    out = messages.new_zeros((num_nodes, messages.shape[-1]))
    return out.index_add_(0, target, messages)


def mean_pool(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Mean of node (or edge) features per crystal: ``[N, F] -> [B, F]``."""
    return scatter(x, batch, dim=0, dim_size=num_graphs, reduce="mean")


def sum_pool(x: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Sum of node features per crystal: ``[N, F] -> [B, F]``."""
    return scatter(x, batch, dim=0, dim_size=num_graphs, reduce="sum")


def graph_index(batch: Any) -> tuple[Tensor, int]:
    """Return the graph index of every atom and the number of graphs.

    Works for a PyG ``Batch`` and for a single ``Data`` (no ``batch`` field).

    Args:
        batch: Batch of periodic graphs (fields of :mod:`fusion.graphs`).

    Returns:
        ``(batch_vector [N] long, num_graphs)``.
    """
    num_graphs = int(batch.lattice.shape[0])
    vec = getattr(batch, "batch", None)
    if vec is None:
        vec = torch.repeat_interleave(
            torch.arange(num_graphs, device=batch.z.device), batch.natoms.to(batch.z.device)
        )
    return vec, num_graphs


@functools.cache
def element_descriptors() -> Tensor:
    """Fixed per-element descriptors in the spirit of CGCNN's atom features.

    For each atomic number ``0..MAX_Z`` (0 and elements pymatgen does not know are
    all zeros): one-hot group (18), period (7) and block (s/p/d/f), and Gaussian
    expansions (10 bins each) of the Pauling electronegativity, the atomic radius,
    the first ionisation energy and the Mendeleev number. Missing values give a
    zero expansion. Built once from pymatgen's periodic table (~0.5 s).

    Returns:
        ``[MAX_Z + 1, 69]`` float tensor.
    """
    from pymatgen.core.periodic_table import Element

    def bins(x: float | None, lo: float, hi: float, n: int = 10) -> np.ndarray:
        if x is None or not np.isfinite(x):
            return np.zeros(n)
        mu = np.linspace(lo, hi, n)
        return np.exp(-(((x - mu) / (mu[1] - mu[0])) ** 2))

    rows = [np.zeros(69)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about missing data for heavy elements
        for z in range(1, MAX_Z + 1):
            try:
                e = Element.from_Z(z)
            except ValueError:
                rows.append(np.zeros(69))
                continue
            one_hot = np.zeros(29)
            one_hot[e.group - 1] = 1.0
            one_hot[18 + min(e.row, 7) - 1] = 1.0
            one_hot[25 + "spdf".index(e.block)] = 1.0
            ion = e.ionization_energies[0] if e.ionization_energies else None
            rows.append(
                np.concatenate(
                    [
                        one_hot,
                        bins(e.X, 0.7, 4.0),
                        bins(e.atomic_radius, 0.3, 2.7),
                        bins(ion, 3.0, 25.0),
                        bins(e.mendeleev_no, 1.0, 103.0),
                    ]
                )
            )
    return torch.tensor(np.stack(rows), dtype=torch.float32)


class AtomEmbedding(nn.Module):
    """Atom embedding: a linear map of fixed element descriptors plus a learned table.

    The descriptors (:func:`element_descriptors`) let chemically similar elements
    share what is learned, which matters on small training sets; the learned
    per-element table adds what the descriptors miss.

    Args:
        hidden: Embedding width.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.register_buffer("desc", element_descriptors().clone(), persistent=False)
        self.lin = nn.Linear(self.desc.shape[1], hidden)
        self.table = nn.Embedding(MAX_Z + 1, hidden)
        nn.init.normal_(self.table.weight, std=0.1)

    def forward(self, z: Tensor) -> Tensor:
        """Embed atomic numbers ``[N]`` into ``[N, hidden]``."""
        return self.lin(self.desc[z]) + self.table(z)


class RBFEmbedding(nn.Module):
    """Gaussian expansion of a scalar followed by a linear map.

    Args:
        out_dim: Output width.
        start: First Gaussian centre. Defaults to 0.
        stop: Last Gaussian centre. Defaults to 8 (the graph cutoff in Å).
        num: Number of Gaussians. Defaults to 40.
        act: Whether to apply SiLU after the linear map. Defaults to True.
    """

    def __init__(
        self, out_dim: int, start: float = 0.0, stop: float = 8.0, num: int = 40, act: bool = True
    ) -> None:
        super().__init__()
        self.start, self.stop, self.num = start, stop, num
        self.lin = nn.Linear(num, out_dim)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Embed ``x`` of shape ``[...]`` into ``[..., out_dim]``."""
        return self.act(self.lin(gaussian_expansion(x, self.start, self.stop, self.num)))
