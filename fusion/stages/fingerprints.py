"""Stage ``fingerprints``: the SOAP fingerprint of every kept record, cached."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fusion import paths
from fusion.stages.common import cif_strings


def run(
    key: str,
    name: str,
    compression: str = "mu1nu1",
    workers: int | None = 1,
    scheduler: str | None = None,
    data_dir: str | Path = "data",
) -> dict[str, Any]:
    """Compute and cache the SOAP fingerprints of every kept record of ``key`` (dataset ``name``).

    Args:
        key: Dataset key.
        name: Project dataset name.
        compression: dscribe compression (``off``, ``mu1nu1``, ``mu2``). Defaults to ``mu1nu1``.
        workers: Local Dask workers (``None``: one per core). Defaults to 1
            (no cluster). The output does not depend on it.
        scheduler: Address of an existing Dask scheduler (or the
            ``DASK_SCHEDULER_ADDRESS`` environment variable). Defaults to None.
        data_dir: Folder holding the datasets. Defaults to ``"data"``.

    Returns:
        A summary: shape, species count, compression, seconds, and the share of
        exact duplicate fingerprints (nearest-neighbour distance 0).
    """
    from pymatgen.core import Structure

    from fusion.fingerprints import dataset_species, save_fingerprints, soap_fingerprints
    from fusion.parallel import workers as dask_workers
    from fusion.selection import nearest_neighbor_distance

    t0 = time.perf_counter()
    ids, cifs, _ = cif_strings(key, name, data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(c, fmt="cif") for c in cifs]
    species = dataset_species(structures)
    with dask_workers(workers, scheduler, n_items=len(structures)) as client:
        X = soap_fingerprints(structures, species, compression, progress=False, client=client)
    save_fingerprints(paths.fingerprints_path(key), ids, X, {"species": species, "compression": compression})
    d_nn = nearest_neighbor_distance(X)
    return {
        "structures": int(X.shape[0]),
        "features": int(X.shape[1]),
        "species": len(species),
        "compression": compression,
        "duplicate_share": float(np.mean(d_nn == 0)),
        "d_nn_median": float(np.median(d_nn)),
        "seconds": round(time.perf_counter() - t0, 1),
    }
