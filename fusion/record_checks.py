"""The checks every input record passes before it enters a :class:`fusion.data.CrystalDataset`.

:func:`validate_records` checks raw records (:class:`RawRecord`, from any
source: the project's datasets, a user's files, Matbench or JARVIS-DFT): the id
is unique, the target is present and finite, the structure parses, is ordered
(no partial occupancies), has at least one site, and every atom has a neighbour
within the graph cutoff (:func:`check_record`). A failing record is skipped with
its reason (``errors="skip"``, the default) or raises
:class:`fusion.data.DataError` naming it (``errors="raise"``); nothing is
dropped silently. Large inputs are checked on Dask workers, in input order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from tqdm.auto import tqdm

from fusion.cif import structure_from_cif
from fusion.data import DEFAULT_CUTOFF, SKIP_COLUMNS, CrystalDataset, DataError


@dataclass
class RawRecord:
    """One input record before checks.

    Attributes:
        id: Record id.
        structure: A pymatgen ``Structure``, a CIF string, a pymatgen dict, or a
            zero-argument callable returning one of those (lazy file reads).
        target: The target value as found (may be missing or malformed).
        meta: Extra columns to carry into ``metadata``.
    """

    id: str
    structure: Any
    target: Any
    meta: dict[str, Any] = field(default_factory=dict)


def _to_structure(obj: Any) -> Structure:
    if callable(obj) and not isinstance(obj, Structure):
        obj = obj()
    if isinstance(obj, Structure):
        return obj
    if isinstance(obj, dict):
        return Structure.from_dict(obj)
    if isinstance(obj, str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Exact fast reader for P1 CIFs; anything else falls back to pymatgen.
            return structure_from_cif(obj)
    raise TypeError(f"cannot read a structure from {type(obj).__name__}")


def as_float(value: Any) -> float | None:
    """Return the target as a float, or None when missing or not a number."""
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "na", "nan", "none"}):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_record(
    rec: RawRecord, cutoff: float = DEFAULT_CUTOFF
) -> tuple[Structure | None, float | None, str | None]:
    """Run every per-record check.

    Args:
        rec: The record.
        cutoff: Graph cutoff in Å: each atom needs a neighbour within it.

    Returns:
        ``(structure, target, None)`` when the record passes, else
        ``(None, None, reason)``.
    """
    target = as_float(rec.target)
    if rec.target is None or (isinstance(rec.target, float) and math.isnan(rec.target)):
        return None, None, "missing target"
    if target is None:
        return None, None, f"target is not a number: {rec.target!r}"
    if not math.isfinite(target):
        return None, None, f"non-finite target: {target}"
    try:
        structure = _to_structure(rec.structure)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, None, f"unparsable structure: {msg}"
    if len(structure) == 0:
        return None, None, "structure has no sites"
    if not structure.is_ordered:
        return None, None, "partial occupancies (disordered structure)"
    centre = structure.get_neighbor_list(r=cutoff, exclude_self=True)[0]
    lonely = np.setdiff1d(np.arange(len(structure)), centre)
    if lonely.size:
        return None, None, f"atom(s) {lonely.tolist()} have no neighbour within {cutoff} Å"
    return structure, target, None


def _check_chunk(
    args: tuple[list[RawRecord], float, bool],
) -> list[tuple[Any, float | None, str | None]]:
    """Worker: check a chunk of records; with ``packed``, return each good structure packed."""
    recs, cutoff, packed = args
    out = [check_record(r, cutoff) for r in recs]
    if packed:
        from fusion.packed import PackedStructure

        out = [(None if s is None else PackedStructure.of(s), v, why) for s, v, why in out]
    return out


def validate_records(
    records: Iterable[RawRecord],
    *,
    name: str,
    target: str,
    cutoff: float = DEFAULT_CUTOFF,
    errors: str = "skip",
    n_jobs: int = 1,
    progress: bool = True,
    client: Any = None,
    packed: bool = False,
) -> CrystalDataset:
    """Check records and assemble a dataset; failures are skipped and reported.

    Args:
        records: Raw records in input order.
        name: Dataset name.
        target: Target name.
        cutoff: Graph cutoff (Å) for the isolated-atom check. Defaults to 8.
        errors: ``"skip"`` (default) records each failure in ``skipped``;
            ``"raise"`` raises :class:`DataError` at the first one.
        n_jobs: Local Dask workers for parsing and checks when no ``client`` is
            given (-1: one per core). Defaults to 1 (no cluster).
        progress: Show a progress bar. Defaults to True.
        client: A ``distributed.Client`` from :func:`fusion.parallel.workers`.
            Defaults to None.
        packed: Hold each structure as a :class:`fusion.packed.PackedStructure`
            (packed where it is checked; about 100x less memory) instead of a
            pymatgen structure. Defaults to False.

    Returns:
        The dataset of the records that passed, in input order (independent of
        the number of workers).

    Raises:
        DataError: With ``errors="raise"``, naming the first failing record.
    """
    if errors not in {"skip", "raise"}:
        raise ValueError(f"errors must be 'skip' or 'raise', not {errors!r}")
    records = list(records)
    skipped: list[dict[str, str]] = []
    first_seen: dict[str, int] = {}
    unique: list[RawRecord] = []
    for k, rec in enumerate(records):
        rid = str(rec.id)
        if rid in first_seen:
            reason = f"duplicate id (first seen at record {first_seen[rid]})"
            if errors == "raise":
                raise DataError(f"{name}: record {rid!r}: {reason}")
            skipped.append({"id": rid, "reason": reason})
            continue
        first_seen[rid] = k
        unique.append(rec)

    from fusion.parallel import map_on_workers, resolve_workers

    if client is not None or (resolve_workers(n_jobs) > 1 and len(unique) > 200):
        n = len(client.scheduler_info()["workers"]) if client is not None else resolve_workers(n_jobs)
        size = math.ceil(len(unique) / (max(n, 1) * 8)) or 1
        chunks = [(unique[i : i + size], cutoff, packed) for i in range(0, len(unique), size)]
        run: dict[str, Any] = {
            "progress": progress,
            "desc": f"check {name}",
            "weights": [len(c[0]) for c in chunks],
            "unit": "record",
        }
        parts = map_on_workers(_check_chunk, chunks, client, n_jobs, **run)
        results = [r for part in parts for r in part]
    else:
        bar = tqdm(unique, disable=not progress, desc=f"check {name}")
        results = [r for rec in bar for r in _check_chunk(([rec], cutoff, packed))]

    ids, structures, values, meta = [], [], [], []
    for rec, (structure, value, reason) in zip(unique, results, strict=True):
        if reason is not None:
            if errors == "raise":
                raise DataError(f"{name}: record {rec.id!r}: {reason}")
            skipped.append({"id": str(rec.id), "reason": reason})
            continue
        ids.append(str(rec.id))
        structures.append(structure)
        values.append(value)
        meta.append(
            {
                "id": str(rec.id),
                "formula": structure.composition.reduced_formula,
                "nsites": len(structure),
                **rec.meta,
            }
        )
    if skipped:
        warnings.warn(
            f"{name}: skipped {len(skipped)} of {len(records)} records (see .skipped)", stacklevel=2
        )
    return CrystalDataset(
        name=name,
        target=target,
        ids=ids,
        structures=structures,
        targets=np.asarray(values, dtype=np.float64),
        metadata=pd.DataFrame(meta),
        skipped=pd.DataFrame(skipped, columns=SKIP_COLUMNS),
    )
