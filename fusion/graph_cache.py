"""The graph cache: many crystal graphs in one file, with the parameters they were built with.

:func:`save_graphs` concatenates every field over the graphs (one
:func:`torch.save`, integers stored as int32 where they fit, written under a
temporary name and renamed); :func:`load_graphs` splits them back into
:class:`torch_geometric.data.Data` objects that own their tensors and refuses a file whose format or
graph parameters differ from the caller's (:class:`StaleCacheError`). Graphs
themselves are made by :mod:`fusion.graphs`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

#: Version of the :func:`save_graphs` file layout.
CACHE_FORMAT = 1


class StaleCacheError(ValueError):
    """A graph cache was built with other parameters than the ones asked for."""


def save_graphs(
    path: str | os.PathLike[str], ids: Sequence[str], graphs: Sequence[Data], meta: dict[str, Any]
) -> None:
    """Write graphs to one compact file.

    Every field is concatenated over the graphs along its PyG concatenation
    dimension (``edge_index`` keeps its per-graph node numbering) with the
    per-graph sizes beside it, and the lot goes through a single
    :func:`torch.save`. Integer fields whose values fit are stored as int32
    and restored to their dtype on load. The file is written to a temporary name and renamed,
    so an interrupted run never leaves a truncated cache.

    Args:
        path: Output file (conventionally ``*.pt``).
        ids: One id per graph.
        graphs: Graphs with the same tensor fields.
        meta: Parameters the graphs were built with; must hold ``cutoff`` and
            ``max_neighbors`` (compared by :func:`load_graphs` to detect a stale
            cache). Plain Python values only.

    Raises:
        ValueError: On a length mismatch, missing meta keys, or graphs whose
            fields differ.
        TypeError: If a graph holds a non-tensor field.
    """
    if len(ids) != len(graphs):
        raise ValueError(f"{len(ids)} ids for {len(graphs)} graphs")
    missing = {"cutoff", "max_neighbors"} - set(meta)
    if missing:
        raise ValueError(f"meta lacks {sorted(missing)}")
    keys = sorted(graphs[0].keys()) if graphs else []
    fields: dict[str, Tensor] = {}
    sizes: dict[str, Tensor] = {}
    dims: dict[str, int] = {}
    dtypes: dict[str, str] = {}
    for key in keys:
        values = []
        for k, graph in enumerate(graphs):
            value = getattr(graph, key, None)
            if not isinstance(value, Tensor):
                raise TypeError(f"graph {k}: field {key!r} is {type(value).__name__}, not a tensor")
            values.append(value)
        dim = graphs[0].__cat_dim__(key, values[0])
        dims[key] = dim % values[0].dim()
        sizes[key] = torch.tensor([v.shape[dim] for v in values], dtype=torch.long)
        fields[key] = torch.cat(values, dim=dim)
        dtypes[key] = str(fields[key].dtype).removeprefix("torch.")
        # Local node indices and atomic numbers fit in int32: stored so (a
        # quarter of the file for edge_index alone), restored on load.
        if fields[key].dtype == torch.long and fields[key].numel():
            lo, hi = fields[key].aminmax()
            if lo >= torch.iinfo(torch.int32).min and hi <= torch.iinfo(torch.int32).max:
                fields[key] = fields[key].to(torch.int32)
    if any(sorted(g.keys()) != keys for g in graphs):
        raise ValueError("graphs have different fields")
    payload = {
        "format": CACHE_FORMAT,
        "ids": [str(i) for i in ids],
        "meta": dict(meta),
        "fields": fields,
        "sizes": sizes,
        "dims": dims,
        "dtypes": dtypes,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_graphs(
    path: str | os.PathLike[str], expect: dict[str, Any] | None = None
) -> tuple[list[str], list[Data], dict[str, Any]]:
    """Read graphs written by :func:`save_graphs`.

    Each graph's tensors are compact copies, not views into the file's
    concatenated tensors: pickling a view writes its whole storage, so views
    sent to Dask workers cost the whole cache per graph (1,265 phonons graphs
    pickled to 3.9 MB each, 5 GB together; a worker unpickling them passed
    11 GB and was killed). The copies take well under a second for 4,764
    dielectric graphs and pickle as their own bytes.

    Args:
        path: Cache file.
        expect: Meta values the caller needs (e.g. ``{"cutoff": 8.0,
            "max_neighbors": 12}``). Defaults to None (no check).

    Returns:
        ``(ids, graphs, meta)``.

    Raises:
        StaleCacheError: If the file's format or a value in ``expect``
            differs from the file's meta.
    """
    payload = torch.load(Path(path), weights_only=True)
    if payload.get("format") != CACHE_FORMAT:
        raise StaleCacheError(f"{path}: cache format {payload.get('format')}, need {CACHE_FORMAT}")
    meta = payload["meta"]
    stale = {k: (meta.get(k), v) for k, v in (expect or {}).items() if meta.get(k) != v}
    if stale:
        detail = ", ".join(f"{k}: cached {c!r}, wanted {w!r}" for k, (c, w) in stale.items())
        raise StaleCacheError(f"{path}: stale graph cache ({detail})")
    ids = payload["ids"]
    parts = {
        key: torch.split(
            value.to(getattr(torch, payload["dtypes"][key])),
            payload["sizes"][key].tolist(),
            dim=payload["dims"][key],
        )
        for key, value in payload["fields"].items()
    }
    graphs = [
        Data(**{key: part[k].clone(memory_format=torch.contiguous_format) for key, part in parts.items()})
        for k in range(len(ids))
    ]
    return ids, graphs, meta
