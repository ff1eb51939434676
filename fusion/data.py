"""The core of data loading: the in-memory dataset, the record checks and the project's datasets.

Every loader returns a :class:`CrystalDataset`: ids, pymatgen structures, a float
target array and per-record metadata, plus ``skipped``, a table (id, reason) of
every input record that was not kept. Nothing is dropped silently: a record is
either in the dataset or in ``skipped`` with its reason, and
:meth:`CrystalDataset.save_skip_report` writes that table.

This module holds what every source shares: :class:`CrystalDataset`,
:class:`DataError`, the registry of the project's datasets (:data:`DATASETS`,
:data:`TARGET_UNITS`, :func:`target_unit`) and their reader
(``data/<name>/<name>.json.gz``: :func:`read_records`, :func:`load_dataset`).
Every record of every source passes the checks of :mod:`fusion.record_checks`
(:func:`~fusion.record_checks.validate_records`). The other sources build on
both: a user's data (CIF folder, extended XYZ, JSON list) in
:mod:`fusion.userdata`; Matbench and JARVIS-DFT, downloaded, in :mod:`fusion.online`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

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
        errors: ``"skip"`` (default) or ``"raise"``; see :func:`fusion.record_checks.validate_records`.
        n_jobs: Local Dask workers for the checks (-1: one per core). Defaults to 1.
        progress: Show a progress bar. Defaults to True.
        client: A ``distributed.Client`` (:func:`fusion.parallel.workers`) to
            run the checks on instead. Defaults to None.

    Returns:
        The dataset.

    Raises:
        DataError: Unknown dataset or target, missing file, or (``errors="raise"``) a bad record.
    """
    from fusion.record_checks import RawRecord, validate_records  # it imports this module

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
