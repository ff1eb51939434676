"""The file formats of a prune's working folder (:mod:`fusion.prune_cache`): one writer and reader per artefact.

``structures``: a pickle (:func:`save_pickle`); ``fingerprints``: a float32
``.npy`` file written block by block (:func:`write_rows`, read back as a memory
map) or a CSR ``.npz`` (:func:`save_sparse`), both read by :func:`load_array`;
``graphs``: :func:`fusion.graph_cache.save_graphs`'s file; ``surrogate``: a
``torch.save`` of tensors and plain values (:func:`save_surrogate`, read with
``weights_only``). A change of format bumps :data:`fusion.prune_cache.CACHE_VERSION`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def save_pickle(obj: Any, path: Path) -> None:
    """Pickle ``obj`` to ``path`` (highest protocol)."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` (only for files this package wrote)."""
    with open(path, "rb") as f:
        return pickle.load(f)  # the working folder's own artefacts


def write_rows(path: Path, shape: tuple[int, int], blocks: Iterable[np.ndarray]) -> Path:
    """Write a float32 ``.npy`` file of ``shape`` from row blocks, one block in memory at a time.

    The header goes first and each block is appended as it comes, so the whole
    array never exists in memory (a written file's pages are the OS's page
    cache, not this process's memory).

    Args:
        path: The file (``.npy``).
        shape: ``(rows, columns)`` of the whole array.
        blocks: Row blocks in order, ``columns`` wide, ``rows`` rows together.

    Returns:
        ``path``.

    Raises:
        ValueError: If the blocks do not fill ``shape`` exactly.
    """
    dtype = np.dtype("<f4")
    rows = 0
    with open(path, "wb") as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(f, header)
        for block in blocks:
            if block.ndim != 2 or block.shape[1] != shape[1]:
                raise ValueError(f"{path.name}: a block of shape {block.shape} in an array of shape {shape}")
            f.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
            rows += len(block)
    if rows != shape[0]:
        raise ValueError(f"{path.name}: {rows} rows written for an array of shape {shape}")
    return path


def save_sparse(X: Any, path: Path) -> Path:
    """Save a CSR matrix to ``path`` (``.npz``, scipy's format, uncompressed)."""
    from scipy import sparse

    with open(path, "wb") as f:
        sparse.save_npz(f, X.tocsr(), compressed=False)
    return path


def load_array(path: Path) -> Any:
    """Read fingerprints: a ``.npy`` file as a read-only memory map, an ``.npz`` one as a CSR matrix.

    The memory map reads rows from disk as they are used, so the fingerprints
    of a large dataset need not fit in memory: the exact nearest-neighbour
    search reads them block by block.
    """
    from scipy import sparse

    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return sparse.load_npz(path).tocsr()


def save_graph_list(graphs: Sequence[Any], path: Path, meta: dict[str, Any]) -> None:
    """Save graphs with :func:`fusion.graph_cache.save_graphs` (ids ``0..n-1``)."""
    from fusion.graph_cache import save_graphs

    save_graphs(path, [str(k) for k in range(len(graphs))], list(graphs), meta)


def load_graph_list(path: Path, meta: dict[str, Any]) -> list[Any]:
    """Read graphs saved by :func:`save_graph_list`, checking their ``meta``."""
    from fusion.graph_cache import load_graphs

    return load_graphs(path, expect=meta)[1]


def save_surrogate(art: dict[str, Any], path: Path) -> None:
    """Save a surrogate artefact: ``u_ale``, ``u_epi`` (arrays), ``train`` (plain dict), ``state_dict``."""
    import torch

    torch.save(
        {
            "u_ale": torch.as_tensor(np.asarray(art["u_ale"], dtype=np.float64)),
            "u_epi": torch.as_tensor(np.asarray(art["u_epi"], dtype=np.float64)),
            "train": dict(art["train"]),
            "state_dict": art.get("state_dict"),
        },
        path,
    )


def load_surrogate(path: Path) -> dict[str, Any]:
    """Read a surrogate artefact saved by :func:`save_surrogate` (tensors only, ``weights_only``)."""
    import torch

    raw = torch.load(path, weights_only=True)
    return {
        "u_ale": raw["u_ale"].numpy(),
        "u_epi": raw["u_epi"].numpy(),
        "train": dict(raw["train"]),
        "state_dict": raw.get("state_dict"),
    }
