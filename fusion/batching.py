"""Batches of crystal graphs for training and prediction.

:class:`GraphStore` concatenates all graphs once and gathers each batch with
index arithmetic instead of PyG's per-graph ``Batch.from_data_list`` (the latter
dominates the step time for 5-atom crystals). Graphs carrying fields other than
the :mod:`fusion.graphs` contract (:data:`CONTRACT_FIELDS`) fall back to PyG
collation in :class:`GraphLoader`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

#: The fields of a graph of :mod:`fusion.graphs`.
CONTRACT_FIELDS = ("z", "pos", "lattice", "edge_index", "edge_vec", "edge_dist", "y", "natoms")


class FastBatch:
    """A batch of crystal graphs with the fields of a PyG ``Batch``.

    Attributes:
        z: ``[N]`` atomic numbers.
        pos: ``[N, 3]`` positions.
        lattice: ``[B, 3, 3]`` lattices.
        edge_index: ``[2, E]`` with batch-wide node indices.
        edge_vec: ``[E, 3]``.
        edge_dist: ``[E]``.
        y: ``[B]`` targets.
        natoms: ``[B]`` atoms per crystal.
        batch: ``[N]`` crystal index of each atom.
        ptr: ``[B + 1]`` node offsets of the crystals.
        num_graphs: ``B``.
    """

    __slots__ = (*CONTRACT_FIELDS, "batch", "num_graphs", "ptr")

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields[name])

    @property
    def num_nodes(self) -> int:
        """Number of atoms in the batch."""
        return int(self.z.shape[0])

    @property
    def num_edges(self) -> int:
        """Number of edges in the batch."""
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FastBatch:
        """Return a copy with every tensor on ``device``."""
        out = {
            name: (
                getattr(self, name).to(device, non_blocking=non_blocking)
                if isinstance(getattr(self, name), Tensor)
                else getattr(self, name)
            )
            for name in self.__slots__
        }
        return FastBatch(**out)


def _ranges(starts: Tensor, counts: Tensor, total: int) -> Tensor:
    """Concatenation of ``arange(s, s + c)`` for each ``(s, c)``, without a Python loop."""
    out_starts = torch.cumsum(counts, 0) - counts
    shift = torch.repeat_interleave(starts - out_starts, counts, output_size=total)
    return torch.arange(total, device=starts.device) + shift


class GraphStore:
    """All graphs of a set concatenated once; batches are gathered by index.

    Args:
        graphs: Graphs following the :mod:`fusion.graphs` contract.
        device: Where the concatenated tensors (and so every batch) live.
            Defaults to CPU.

    Raises:
        ValueError: If ``graphs`` is empty.
    """

    def __init__(self, graphs: Sequence[Data], device: torch.device | str = "cpu") -> None:
        if len(graphs) == 0:
            raise ValueError("no graphs")
        dev = torch.device(device)
        self.device = dev
        self.n_nodes = torch.tensor([g.z.shape[0] for g in graphs], dtype=torch.long, device=dev)
        self.n_edges = torch.tensor([g.edge_index.shape[1] for g in graphs], dtype=torch.long, device=dev)
        self.node_ptr = torch.cumsum(self.n_nodes, 0) - self.n_nodes
        self.edge_ptr = torch.cumsum(self.n_edges, 0) - self.n_edges

        def cat(name: str, dim: int = 0) -> Tensor:
            return torch.cat([getattr(g, name) for g in graphs], dim=dim).to(dev)

        self.z = cat("z")
        self.pos = cat("pos")
        self.lattice = cat("lattice")
        self.edge_index = cat("edge_index", dim=1)  # node indices local to each graph
        self.edge_vec = cat("edge_vec")
        self.edge_dist = cat("edge_dist")
        self.y = torch.cat(
            [
                g.y.reshape(-1) if getattr(g, "y", None) is not None else torch.tensor([math.nan])
                for g in graphs
            ]
        ).to(dev, torch.float32)
        self.natoms = self.n_nodes.clone()

    def __len__(self) -> int:
        return int(self.n_nodes.shape[0])

    def batch(self, index: Tensor) -> FastBatch:
        """Gather the graphs ``index`` (``[B]`` long, any order) into one batch."""
        index = index.to(self.device)
        n_nodes, n_edges = self.n_nodes[index], self.n_edges[index]
        counts = torch.stack([n_nodes.sum(), n_edges.sum()]).tolist()  # one sync
        n_total, e_total = int(counts[0]), int(counts[1])
        node_idx = _ranges(self.node_ptr[index], n_nodes, n_total)
        edge_idx = _ranges(self.edge_ptr[index], n_edges, e_total)
        ptr = torch.zeros(len(index) + 1, dtype=torch.long, device=self.device)
        torch.cumsum(n_nodes, 0, out=ptr[1:])
        offset = torch.repeat_interleave(ptr[:-1], n_edges, output_size=e_total)
        graph_of_node = torch.repeat_interleave(
            torch.arange(len(index), device=self.device), n_nodes, output_size=n_total
        )
        return FastBatch(
            z=self.z.index_select(0, node_idx),
            pos=self.pos.index_select(0, node_idx),
            lattice=self.lattice.index_select(0, index),
            edge_index=self.edge_index.index_select(1, edge_idx) + offset,
            edge_vec=self.edge_vec.index_select(0, edge_idx),
            edge_dist=self.edge_dist.index_select(0, edge_idx),
            y=self.y.index_select(0, index),
            natoms=self.natoms.index_select(0, index),
            batch=graph_of_node,
            ptr=ptr,
            num_graphs=len(index),
        )


def fast_batchable(graphs: Sequence[Data]) -> bool:
    """Whether the graphs carry only contract fields (so :class:`GraphStore` is exact)."""
    allowed = set(CONTRACT_FIELDS)
    return all(set(g.keys()) <= allowed for g in graphs)


class GraphLoader:
    """Iterate over batches of graphs, fast-gathered when possible.

    Args:
        graphs: The graphs.
        batch_size: Graphs per batch (the last batch may be smaller).
        shuffle: Draw a new order each epoch from ``generator``. Defaults to False.
        generator: CPU generator used for shuffling (seeded by the caller).
        device: Device of the yielded batches. Defaults to CPU.
        fast: Use :class:`GraphStore`; defaults to :func:`fast_batchable`.
    """

    def __init__(
        self,
        graphs: Sequence[Data],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        fast: bool | None = None,
    ) -> None:
        self.graphs = list(graphs)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        self.fast = fast_batchable(self.graphs) if fast is None else fast
        self.store = GraphStore(self.graphs, self.device) if self.fast else None

    def __len__(self) -> int:
        return math.ceil(len(self.graphs) / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.graphs)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for chunk in order.split(self.batch_size):
            if self.store is not None:
                yield self.store.batch(chunk)
            else:
                yield Batch.from_data_list([self.graphs[k] for k in chunk.tolist()]).to(self.device)
