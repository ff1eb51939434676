"""The core of data loading: the in-memory dataset, the record checks and the project's datasets.

Every loader returns a :class:`CrystalDataset`: ids, pymatgen structures, a float
target array and per-record metadata, plus ``skipped``, a table (id, reason) of
every input record that was not kept. Nothing is dropped silently: a record is
either in the dataset or in ``skipped`` with its reason, and
:meth:`CrystalDataset.save_skip_report` writes that table.

This module holds what every source shares: :class:`CrystalDataset`,
:class:`DataError`, the raw record (:class:`RawRecord`) and its checks
(:func:`check_record`, :func:`validate_records`), the registry of the project's
datasets (:data:`DATASETS`, :data:`TARGET_UNITS`, :func:`target_unit`) and their
reader (``data/<name>/<name>.json.gz``: :func:`read_records`,
:func:`load_dataset`). The other sources build on it: a user's data (CIF folder,
extended XYZ, JSON list) in :mod:`fusion.userdata`; Matbench and JARVIS-DFT,
downloaded, in :mod:`fusion.online`.

Checks applied to every record (:func:`validate_records`): the id is unique, the
target is present and finite, the structure parses, is ordered (no partial
occupancies), has at least one site, and every atom has a neighbour within the
graph cutoff. A failing record is skipped with its reason (``errors="skip"``,
the default) or raises :class:`DataError` naming it (``errors="raise"``).
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from tqdm.auto import tqdm

from fusion.cif import structure_from_cif
from fusion.paths import DATA, dataset_file

DEFAULT_CUTOFF = 8.0

#: The project's datasets and their targets (units in each SOURCE.md).
DATASETS: dict[str, tuple[str, ...]] = {
    "matbench_jdft2d": ("exfoliation_energy",),
    "matbench_phonons": ("last_phdos_peak",),
    "matbench_dielectric": ("n",),
    "matbench_perovskites": ("e_form",),
    "perov5_castelli": ("heat_all", "heat_ref", "dir_gap", "ind_gap"),
    "mp_mtcgcnn": (
        "formation_energy_per_atom",
        "band_gap",
        "efermi",
        "volume",
        "total_magnetization",
    ),
    "carbon24": ("energy_per_atom",),
    "c2db_2d_workfunction": ("work_function",),
}

#: Unit of each (dataset, target), as in the dataset's SOURCE.md.
TARGET_UNITS: dict[tuple[str, str], str] = {
    ("matbench_jdft2d", "exfoliation_energy"): "meV/atom",
    ("matbench_phonons", "last_phdos_peak"): "cm⁻¹",
    ("matbench_dielectric", "n"): "dimensionless",  # the refractive index n
    ("matbench_perovskites", "e_form"): "eV/cell",
    ("perov5_castelli", "heat_all"): "eV/cell",
    ("perov5_castelli", "heat_ref"): "eV/cell",
    ("perov5_castelli", "dir_gap"): "eV",
    ("perov5_castelli", "ind_gap"): "eV",
    ("mp_mtcgcnn", "formation_energy_per_atom"): "eV/atom",
    ("mp_mtcgcnn", "band_gap"): "eV",
    ("mp_mtcgcnn", "efermi"): "eV",
    ("mp_mtcgcnn", "volume"): "Å³",
    ("mp_mtcgcnn", "total_magnetization"): "μB/cell",
    ("carbon24", "energy_per_atom"): "eV/atom",
    ("c2db_2d_workfunction", "work_function"): "eV",
}


def target_unit(name: str, target: str) -> str:
    """Unit of ``target`` of dataset ``name`` (from its SOURCE.md).

    Raises:
        DataError: If the dataset or target is unknown.
    """
    if (name, target) not in TARGET_UNITS:
        raise DataError(f"no unit registered for target {target!r} of dataset {name!r}")
    return TARGET_UNITS[(name, target)]


SKIP_COLUMNS = ["id", "reason"]


class DataError(ValueError):
    """Bad input: an unknown dataset or target, or a record that fails a check."""


@dataclass
class CrystalDataset:
    """Crystals with one scalar target each.

    Attributes:
        name: Dataset name.
        target: Target name.
        ids: Record ids, unique.
        structures: One pymatgen structure per id (or a
            :class:`fusion.packed.PackedStructure`, see :func:`validate_records`).
        targets: Target values, float64, finite.
        metadata: One row per kept record (``id``, ``formula``, ``nsites`` and any
            source columns such as a published ``split``).
        skipped: One row per input record that was not kept: ``id``, ``reason``.
    """

    name: str
    target: str
    ids: list[str]
    structures: list[Structure]
    targets: np.ndarray
    metadata: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SKIP_COLUMNS))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: Sequence[str]) -> CrystalDataset:
        """Return the records with the given ids, in that order.

        Raises:
            DataError: If an id is not in the dataset.
        """
        pos = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DataError(f"{len(missing)} id(s) not in {self.name}, e.g. {missing[:3]}")
        idx = [pos[i] for i in ids]
        return CrystalDataset(
            name=self.name,
            target=self.target,
            ids=list(ids),
            structures=[self.structures[k] for k in idx],
            targets=self.targets[idx],
            metadata=self.metadata.iloc[idx].reset_index(drop=True),
            skipped=self.skipped,
        )

    def save_skip_report(self, path: str | Path) -> Path:
        """Write the skipped-records table (id, reason) as CSV and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.skipped.to_csv(path, index=False)
        return path


# ---------------------------------------------------------------- validation


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


def _as_float(value: Any) -> float | None:
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
    target = _as_float(rec.target)
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

    from fusion.parallel import map_ordered, resolve_workers, workers

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
        if client is not None:
            parts = map_ordered(_check_chunk, chunks, client, **run)
        else:
            with workers(n_jobs) as own:
                parts = map_ordered(_check_chunk, chunks, own, **run)
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


# ---------------------------------------------------------------- project data


def check_name(name: str, target: str) -> None:
    """Raise :class:`DataError` if ``name`` or ``target`` is not a project dataset/target."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    if target not in DATASETS[name]:
        raise DataError(f"unknown target {target!r} for {name}; available: {list(DATASETS[name])}")


def read_records(name: str, data_dir: str | Path = DATA) -> list[dict[str, Any]]:
    """Read the raw JSON records of a project dataset.

    Raises:
        DataError: If the dataset is unknown or its file is missing.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; available: {sorted(DATASETS)}")
    path = dataset_file(name, data_dir)
    if not path.exists():
        raise DataError(f"{path} not found: run `dvc pull` to restore data/")
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


def load_dataset(
    name: str,
    target: str,
    data_dir: str | Path = DATA,
    *,
    limit: int | None = None,
    cutoff: float = DEFAULT_CUTOFF,
    errors: str = "skip",
    n_jobs: int = 1,
    progress: bool = True,
    client: Any = None,
) -> CrystalDataset:
    """Load one of the project's datasets (``data/<name>/<name>.json.gz``).

    Args:
        name: Dataset name, one of :data:`DATASETS`.
        target: Target name, one of ``DATASETS[name]``.
        data_dir: Folder holding the datasets. Defaults to ``data/``.
        limit: Read only the first ``limit`` records (tests, smoke runs).
        cutoff: Graph cutoff for the isolated-atom check. Defaults to 8 Å.
        errors: ``"skip"`` (default) or ``"raise"``; see :func:`validate_records`.
        n_jobs: Local Dask workers for the checks (-1: one per core). Defaults to 1.
        progress: Show a progress bar. Defaults to True.
        client: A ``distributed.Client`` (:func:`fusion.parallel.workers`) to
            run the checks on instead. Defaults to None.

    Returns:
        The dataset.

    Raises:
        DataError: Unknown dataset or target, missing file, or (``errors="raise"``) a bad record.
    """
    check_name(name, target)
    raw = read_records(name, data_dir)
    if limit is not None:
        raw = raw[:limit]
    recs = [
        RawRecord(
            id=r["id"],
            structure=r.get("structure"),
            target=r.get(target),
            meta={k: r[k] for k in ("split",) if k in r},
        )
        for r in raw
    ]
    return validate_records(
        recs,
        name=name,
        target=target,
        cutoff=cutoff,
        errors=errors,
        n_jobs=n_jobs,
        progress=progress,
        client=client,
    )
