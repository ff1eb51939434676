"""Stage ``graphs``: the periodic crystal graph of every kept record, cached."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fusion import paths
from fusion.stages.common import cif_strings


def run(
    key: str,
    name: str,
    cutoff: float = 8.0,
    max_neighbors: int = 12,
    workers: int | None = 1,
    scheduler: str | None = None,
    data_dir: str | Path = "data",
) -> dict[str, Any]:
    """Build the graphs of every kept record of ``key`` (dataset ``name``) and cache them.

    Args:
        key: Dataset key.
        name: Project dataset name.
        cutoff: Neighbour cutoff (Å). Defaults to 8.
        max_neighbors: Neighbours kept per atom. Defaults to 12.
        workers: Local Dask workers (``None``: one per core). Defaults to 1
            (no cluster). The output does not depend on it.
        scheduler: Address of an existing Dask scheduler (or the
            ``DASK_SCHEDULER_ADDRESS`` environment variable). Defaults to None.
        data_dir: Folder holding the datasets. Defaults to ``"data"``.

    Returns:
        A summary: number of graphs, mean atoms and edges per graph, seconds.
    """
    from fusion import featurize
    from fusion.graph_cache import save_graphs
    from fusion.parallel import workers as dask_workers

    t0 = time.perf_counter()
    ids, cifs, y = cif_strings(key, name, data_dir)
    # About 1 ms a graph: a cluster pays off only for tens of thousands.
    with dask_workers(workers, scheduler, n_items=len(cifs), min_items=20_000) as client:
        graphs = featurize.graphs(cifs, y, ids, cutoff, max_neighbors, client=client)
    meta = {"cutoff": float(cutoff), "max_neighbors": int(max_neighbors)}
    save_graphs(paths.graphs_path(key), ids, graphs, meta)
    return {
        "graphs": len(graphs),
        "atoms_mean": float(np.mean([int(g.natoms) for g in graphs])),
        "edges_mean": float(np.mean([g.edge_index.shape[1] for g in graphs])),
        "seconds": round(time.perf_counter() - t0, 1),
    }
