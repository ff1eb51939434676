"""Crystal graphs of many records through the Dask layer (:mod:`fusion.parallel`).

:func:`fusion.graphs.graphs_from_cif` and :func:`fusion.graphs.build_graphs`
build one graph per record; this module cuts the records into chunks, builds
each chunk on a Dask worker (or in this process) and gathers the graphs in
input order, so the result is the same for any number of workers and equals
the serial call graph for graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion.parallel import chunks, map_on_workers

if TYPE_CHECKING:
    from pymatgen.core import Structure
    from torch_geometric.data import Data

CHUNK = 128
"""Records per task: large enough to amortise the task overhead (~1 ms), small
enough to balance the load and keep the bar moving."""


def _graph_chunk(task: tuple[str, Sequence[Any], np.ndarray, Sequence[str], float, int]) -> list[Data]:
    """Worker: the graphs of one chunk, built serially."""
    from fusion.graphs import build_graphs, graphs_from_cif

    kind, items, y, ids, cutoff, max_neighbors = task
    build = graphs_from_cif if kind == "cif" else build_graphs
    return build(list(items), y, cutoff, max_neighbors, n_jobs=1, progress=False, ids=list(ids))


def graphs(
    items: Sequence[str] | Sequence[Structure],
    targets: Sequence[float] | np.ndarray | None,
    ids: Sequence[str],
    cutoff: float = 8.0,
    max_neighbors: int = 12,
    *,
    kind: str = "cif",
    n_workers: int | None = 1,
    client: Any = None,
    progress: bool = False,
    chunk_size: int = CHUNK,
) -> list[Data]:
    """Build the graph of every record, chunk by chunk on Dask workers.

    Args:
        items: CIF texts (``kind="cif"``) or pymatgen structures (``kind="structure"``).
        targets: One target per record, stored as ``y``; None stores NaN.
        ids: Record ids (named in error messages).
        cutoff: Neighbour search radius (Å). Defaults to 8.
        max_neighbors: Neighbours kept per atom. Defaults to 12.
        kind: ``"cif"`` or ``"structure"``. Defaults to ``"cif"``.
        n_workers: Local workers when no ``client`` is given (``None``/-1: one
            per core). Defaults to 1 (serial, no cluster).
        client: A ``distributed.Client`` from :func:`fusion.parallel.workers`.
            Defaults to None.
        progress: Show a progress bar. Defaults to False.
        chunk_size: Records per task. Defaults to :data:`CHUNK`.

    Returns:
        One graph per record, in input order.

    Raises:
        ValueError: If ``kind`` is unknown or the lengths disagree.
        fusion.graphs.IsolatedAtomError: Naming the record id with an isolated atom.
    """
    if kind not in {"cif", "structure"}:
        raise ValueError(f"kind must be 'cif' or 'structure', not {kind!r}")
    n = len(items)
    if len(ids) != n or (targets is not None and len(targets) != n):
        raise ValueError(f"{n} records, {len(ids)} ids and {n if targets is None else len(targets)} targets")
    y = np.full(n, np.nan) if targets is None else np.asarray(targets, dtype=np.float64)
    tasks = [
        (kind, part, y[a : a + len(part)], list(ids[a : a + len(part)]), float(cutoff), int(max_neighbors))
        for a, part in zip(range(0, n, chunk_size), chunks(items, chunk_size), strict=True)
    ]
    run: dict[str, Any] = {
        "progress": progress,
        "desc": "graphs",
        "weights": [len(t[1]) for t in tasks],
        "unit": "graph",
    }
    parts = map_on_workers(_graph_chunk, tasks, client, n_workers, **run)
    return [g for part in parts for g in part]
