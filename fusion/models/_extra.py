"""Building blocks shared by DeeperGATGNN, PotNet, ComFormer, SODNet and CrystalFramer.

Private module (leading underscore): :mod:`fusion.models` does not import it on
its own; the architectures import what they need from here.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from fusion.graphs import gaussian_expansion

#: Largest atomic number the embeddings accept (index 0 is unused).
MAX_Z = 119


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


def symlog(x: Tensor) -> Tensor:
    """Signed logarithm ``sign(x) log(1 + |x|)``: compresses quantities spanning decades."""
    return torch.sign(x) * torch.log1p(x.abs())


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
