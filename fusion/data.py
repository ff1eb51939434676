"""Load crystal datasets into one in-memory form, with a report of what was skipped.

Every loader returns a :class:`CrystalDataset`: ids, pymatgen structures, a float
target array and per-record metadata, plus ``skipped``, a table (id, reason) of
every input record that was not kept. Nothing is dropped silently: a record is
either in the dataset or in ``skipped`` with its reason, and
:meth:`CrystalDataset.save_skip_report` writes that table.

Sources:
    * the project's datasets (``data/<name>/<name>.json.gz``): :func:`load_dataset`;
    * a user's data (:func:`load_user_data`): a folder of CIF files with an
      ``id_prop.csv`` (CGCNN convention), an extended-XYZ file (through ASE), or a
      JSON list of records whose structure is a CIF string or a pymatgen dict;
    * the original online sources: Matbench through matminer
      (:func:`load_matbench`) and JARVIS-DFT through jarvis-tools
      (:func:`load_jarvis`).

Checks applied to every record (:func:`validate_records`): the id is unique, the
target is present and finite, the structure parses, is ordered (no partial
occupancies), has at least one site, and every atom has a neighbour within the
graph cutoff. A failing record is skipped with its reason (``errors="skip"``,
the default) or raises :class:`DataError` naming it (``errors="raise"``).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
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
    ("matbench_dielectric", "n"): "refractive index (dimensionless)",
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
        structures: One pymatgen structure per id.
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
    args: tuple[list[RawRecord], float],
) -> list[tuple[Structure | None, float | None, str | None]]:
    recs, cutoff = args
    return [check_record(r, cutoff) for r in recs]


def validate_records(
    records: Iterable[RawRecord],
    *,
    name: str,
    target: str,
    cutoff: float = DEFAULT_CUTOFF,
    errors: str = "skip",
    n_jobs: int = 1,
    progress: bool = True,
) -> CrystalDataset:
    """Check records and assemble a dataset; failures are skipped and reported.

    Args:
        records: Raw records in input order.
        name: Dataset name.
        target: Target name.
        cutoff: Graph cutoff (Å) for the isolated-atom check. Defaults to 8.
        errors: ``"skip"`` (default) records each failure in ``skipped``;
            ``"raise"`` raises :class:`DataError` at the first one.
        n_jobs: Worker processes for parsing and checks. Defaults to 1.
        progress: Show a progress bar. Defaults to True.

    Returns:
        The dataset of the records that passed, in input order.

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

    if n_jobs > 1 and len(unique) > 200:
        size = math.ceil(len(unique) / (n_jobs * 8))
        chunks = [(unique[i : i + size], cutoff) for i in range(0, len(unique), size)]
        with ProcessPoolExecutor(n_jobs) as pool:
            results = [
                r
                for part in tqdm(
                    pool.map(_check_chunk, chunks),
                    total=len(chunks),
                    disable=not progress,
                    desc=f"check {name}",
                )
                for r in part
            ]
    else:
        results = [check_record(r, cutoff) for r in tqdm(unique, disable=not progress, desc=f"check {name}")]

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
) -> CrystalDataset:
    """Load one of the project's datasets (``data/<name>/<name>.json.gz``).

    Args:
        name: Dataset name, one of :data:`DATASETS`.
        target: Target name, one of ``DATASETS[name]``.
        data_dir: Folder holding the datasets. Defaults to ``data/``.
        limit: Read only the first ``limit`` records (tests, smoke runs).
        cutoff: Graph cutoff for the isolated-atom check. Defaults to 8 Å.
        errors: ``"skip"`` (default) or ``"raise"``; see :func:`validate_records`.
        n_jobs: Worker processes. Defaults to 1.
        progress: Show a progress bar. Defaults to True.

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
    )


# ---------------------------------------------------------------- users' data


@dataclass
class UserRecords:
    """A user's input as read, before the per-record checks.

    Attributes:
        name: Dataset name (the folder or file stem).
        records: Raw records in input order (ids may repeat; checks come later).
        problems: Reasons known from reading alone, by record id (first
            occurrence): ``no such file``, ``empty file``, ``no value for target``
            with the keys or columns available. Records listed here fail
            :func:`check_record` too; these reasons only say more precisely why.
        unreadable: ``(label, reason)`` of input rows that have no usable id
            (an empty id in ``id_prop.csv``, a JSON item without ``"id"``).
    """

    name: str
    records: list[RawRecord]
    problems: dict[str, list[str]] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _empty_file(path: Path) -> bool:
    """True when ``path`` holds nothing but whitespace (read up to 4 kB)."""
    with path.open("rb") as fh:
        return not fh.read(4096).strip() and path.stat().st_size < 4096


def _parse_id_prop(path: Path, target: str) -> tuple[list[tuple[int, str, str]], list[str] | None]:
    """Parse ``id_prop.csv`` into ``(row number, id, value)`` and its header (None without one).

    A first row whose second cell is neither a number nor a missing-value marker
    (empty, ``na``, ``nan``, ``none``) is a header; the target must then be one
    of its columns (also for two columns: a misspelt ``--target`` is an error,
    not a silent relabelling). Without a header the second column is the target.

    Raises:
        DataError: If the file is empty or its header has no column ``target``.
    """
    if _empty_file(path):
        raise DataError(f"{path}: empty file (expected rows 'id,{target}')")
    with path.open(newline="") as fh:
        rows = [(k + 1, r) for k, r in enumerate(csv.reader(fh)) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{path}: empty file (expected rows 'id,{target}')")
    head = [c.strip() for c in rows[0][1]]
    second = head[1] if len(head) > 1 else ""
    columns = None
    col = 1
    if second and second.lower() not in {"na", "nan", "none"} and _as_float(second) is None:
        columns = head
        if target not in head[1:]:
            raise DataError(
                f"{path}: no column {target!r} in the header; columns are {head} "
                f"(pass one of {head[1:]} as the target)"
            )
        col = head.index(target, 1)
        rows = rows[1:]
    out = []
    for rowno, r in rows:
        value = r[col].strip() if len(r) > col else ""
        out.append((rowno, r[0].strip(), value))
    return out, columns


def _read_id_prop(path: Path, target: str) -> list[tuple[str, str]]:
    """Read ``id_prop.csv``: ``id,value`` rows (CGCNN) or a header naming the target column.

    Raises:
        DataError: If the file is empty, its header lacks ``target``, or a row has an empty id.
    """
    rows, _ = _parse_id_prop(path, target)
    for rowno, rid, _value in rows:
        if not rid:
            raise DataError(f"{path}: row {rowno} has an empty id")
    return [(rid, value) for _, rid, value in rows]


def _file_problem(path: Path) -> str | None:
    """``"no such file: <name>"``, ``"empty file: <name>"`` or None."""
    if not path.is_file():
        return f"no such file: {path.name}"
    if _empty_file(path):
        return f"empty file: {path.name}"
    return None


def _missing_target(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _cif_folder_records(folder: Path, target: str) -> UserRecords:
    """Read a CIF folder's ``id_prop.csv`` into records (CIF files read lazily)."""
    id_prop = folder / "id_prop.csv"
    if not id_prop.exists():
        raise DataError(f"{folder}: no id_prop.csv (expected rows 'id,target')")
    rows, columns = _parse_id_prop(id_prop, target)
    where = (
        f"its cell in column {target!r} of id_prop.csv is empty"
        if columns is not None
        else "id_prop.csv has no header, so its second column is the target, and that cell is empty"
    )
    out = UserRecords(folder.name, [])
    seen: set[str] = set()
    for rowno, rid, value in rows:
        if not rid:
            out.unreadable.append((f"(id_prop.csv row {rowno})", "empty id"))
            continue
        path = folder / f"{rid}.cif"
        out.records.append(RawRecord(rid, partial(_read_text, path), value))
        if rid in seen:
            continue
        seen.add(rid)
        found = []
        if _missing_target(value):
            found.append(f"no value for target {target!r}: {where} (row {rowno})")
        if (problem := _file_problem(path)) is not None:
            found.append(problem)
        if found:
            out.problems[rid] = found
    return out


def _extxyz_records(path: Path, target: str) -> UserRecords:
    """Read the frames of an extended-XYZ file into records."""
    from ase.io import read
    from pymatgen.io.ase import AseAtomsAdaptor

    if not path.exists():
        raise DataError(f"{path}: no such file")
    if _empty_file(path):
        raise DataError(f"{path}: empty file")
    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as exc:
        raise DataError(f"{path}: not a readable extended-XYZ file: {exc}") from exc
    out = UserRecords(path.stem, [])
    seen: set[str] = set()
    for k, atoms in enumerate(frames):
        rid = str(atoms.info.get("id", f"{path.stem}-{k}"))
        value = atoms.info.get(target)
        results = atoms.calc.results if atoms.calc is not None else {}
        if value is None:
            # ASE moves standard keys (energy, free_energy, ...) into a calculator.
            value = results.get(target)
        first = rid not in seen
        seen.add(rid)
        if value is None and first:
            keys = sorted({*atoms.info, *results} - {"id"})
            out.problems[rid] = [f"no value for target {target!r}: frame {k} has keys {keys}"]
        if not all(atoms.pbc):
            out.records.append(RawRecord(rid, partial(_fail, "frame is not periodic in 3 dimensions"), value))
            continue
        out.records.append(RawRecord(rid, AseAtomsAdaptor.get_structure(atoms), value))
    return out


def _json_records(path: Path, target: str) -> UserRecords:
    """Read a JSON (or .json.gz) list of records."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh:
            text = fh.read()
    except OSError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc
    if not text.strip():
        raise DataError(f"{path}: empty file (expected a JSON list of records)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of records, got a {type(raw).__name__}")
    out = UserRecords(path.name.split(".")[0], [])
    seen: set[str] = set()
    for k, r in enumerate(raw):
        if not isinstance(r, dict) or "id" not in r:
            out.unreadable.append((f"(record {k})", "no 'id'"))
            continue
        rid = str(r["id"])
        out.records.append(RawRecord(rid, r.get("structure"), r.get(target)))
        first = rid not in seen
        seen.add(rid)
        if r.get(target) is None and first:
            keys = sorted(set(r) - {"id", "structure"})
            out.problems[rid] = [f"no value for target {target!r}: the record has keys {keys}"]
    return out


def read_user_records(path: str | Path, target: str) -> UserRecords:
    """Read a user's dataset without checking its records.

    Args:
        path: A folder with ``id_prop.csv`` and CIF files, a ``.extxyz``/``.xyz``
            file, or a ``.json``/``.json.gz`` list of records.
        target: Target name.

    Returns:
        The records as read, with the problems found while reading.

    Raises:
        DataError: If the path does not exist, its kind is not recognised, or
            the file as a whole is unreadable (empty, not JSON, a header without
            the target column, ...).
    """
    path = Path(path)
    if path.is_dir():
        return _cif_folder_records(path, target)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith((".extxyz", ".xyz")):
        return _extxyz_records(path, target)
    if name.endswith((".json", ".json.gz")):
        return _json_records(path, target)
    raise DataError(f"{path}: expected a CIF folder with id_prop.csv, an .extxyz file or a .json list")


def _strict(user: UserRecords, path: Path) -> list[RawRecord]:
    """The records of ``user``, raising at its first unreadable row (the loaders' historical behaviour)."""
    if user.unreadable:
        label, reason = user.unreadable[0]
        raise DataError(f"{path}: {label}: {reason}")
    return user.records


def load_cif_folder(folder: str | Path, target: str = "target", **kwargs: Any) -> CrystalDataset:
    """Load a folder of ``<id>.cif`` files listed in ``id_prop.csv`` (CGCNN convention).

    Args:
        folder: The folder.
        target: Target name: a column of ``id_prop.csv`` if it has a header,
            else only a label for the single value column.
        **kwargs: Passed to :func:`validate_records`.

    Raises:
        DataError: If ``id_prop.csv`` is missing or malformed.
    """
    folder = Path(folder)
    user = _cif_folder_records(folder, target)
    return validate_records(_strict(user, folder / "id_prop.csv"), name=user.name, target=target, **kwargs)


def load_extxyz(path: str | Path, target: str, **kwargs: Any) -> CrystalDataset:
    """Load an extended-XYZ file through ASE; the target is read from each frame's info.

    The target is read from the frame's ``info`` or, for keys that ASE stores as
    calculator results (``energy``, ``free_energy``, ...), from those. The id is
    ``info["id"]`` when present, else ``<file stem>-<frame index>``.
    Frames must be periodic in three dimensions.
    """
    user = _extxyz_records(Path(path), target)
    return validate_records(user.records, name=user.name, target=target, **kwargs)


def _read_text(path: Path) -> str:
    # Module-level (not a closure) so records stay picklable for worker processes.
    if not path.exists():
        raise FileNotFoundError(f"file {path.name} not found")
    return path.read_text()


def _fail(msg: str) -> Any:
    raise ValueError(msg)


def _jarvis_structure(atoms: dict[str, Any]) -> Structure:
    from jarvis.core.atoms import Atoms

    return Atoms.from_dict(atoms).pymatgen_converter()


def load_json_records(path: str | Path, target: str, **kwargs: Any) -> CrystalDataset:
    """Load a JSON (or .json.gz) list of ``{"id", "structure", <target>}`` records.

    ``structure`` may be a CIF string or a pymatgen ``Structure.as_dict()``.
    """
    path = Path(path)
    user = _json_records(path, target)
    return validate_records(_strict(user, path), name=user.name, target=target, **kwargs)


def load_user_data(path: str | Path, target: str, **kwargs: Any) -> CrystalDataset:
    """Load a user's dataset, choosing the reader from the path.

    Args:
        path: A folder with ``id_prop.csv`` and CIF files, a ``.extxyz``/``.xyz``
            file, or a ``.json``/``.json.gz`` list of records.
        target: Target name.
        **kwargs: Passed to :func:`validate_records`.

    Raises:
        DataError: If the path does not exist or its kind is not recognised.
    """
    path = Path(path)
    if path.is_dir():
        return load_cif_folder(path, target, **kwargs)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith((".extxyz", ".xyz")):
        return load_extxyz(path, target, **kwargs)
    if name.endswith((".json", ".json.gz")):
        return load_json_records(path, target, **kwargs)
    raise DataError(f"{path}: expected a CIF folder with id_prop.csv, an .extxyz file or a .json list")


class BadRecordsError(DataError):
    """Some records of a user's dataset failed their checks; all of them are listed.

    Attributes:
        skipped: One row per failing record: ``id``, ``reason``.
    """

    def __init__(self, source: str, skipped: pd.DataFrame, total: int) -> None:
        self.skipped = skipped
        lines = [f"  {rid}: {reason}" for rid, reason in zip(skipped["id"], skipped["reason"], strict=True)]
        super().__init__(f"{source}: {len(skipped)} of {total} records are bad:\n" + "\n".join(lines))


def collect_user_data(
    path: str | Path,
    target: str,
    *,
    errors: str = "raise",
    cutoff: float = DEFAULT_CUTOFF,
    n_jobs: int = 1,
    progress: bool = True,
) -> CrystalDataset:
    """Load a user's dataset, checking every record before deciding, and issuing no warning.

    Unlike :func:`load_user_data` (which, with ``errors="raise"``, stops at the
    first bad record, and warns when it skips), one pass collects every bad
    record with a precise reason (``no such file: x.cif``, ``empty file:
    x.cif``, ``no value for target 'gap': the record has keys [...]``, a parse
    error, a duplicate id, ...).

    Args:
        path: A folder with ``id_prop.csv`` and CIF files, a ``.extxyz``/``.xyz``
            file, or a ``.json``/``.json.gz`` list of records.
        target: Target name.
        errors: ``"raise"`` (default): raise :class:`BadRecordsError` listing
            every bad record; ``"skip"``: return the good ones, the bad ones in
            ``skipped``.
        cutoff: Graph cutoff in Å for the isolated-atom check. Defaults to 8.
        n_jobs: Worker processes for parsing and checks. Defaults to 1.
        progress: Show a progress bar. Defaults to True.

    Returns:
        The dataset of the good records, in input order.

    Raises:
        DataError: If the input as a whole is unreadable, or has no record.
        BadRecordsError: With ``errors="raise"``, if any record is bad.
    """
    if errors not in {"skip", "raise"}:
        raise ValueError(f"errors must be 'skip' or 'raise', not {errors!r}")
    path = Path(path)
    user = read_user_records(path, target)
    total = len(user.records) + len(user.unreadable)
    if total == 0:
        raise DataError(f"{path}: no records")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = validate_records(
            user.records,
            name=user.name,
            target=target,
            cutoff=cutoff,
            errors="skip",
            n_jobs=n_jobs,
            progress=progress,
        )
    rows = [{"id": label, "reason": reason} for label, reason in user.unreadable]
    for rid, found in zip(ds.skipped["id"], ds.skipped["reason"], strict=True):
        precise = rid in user.problems and not found.startswith("duplicate id")
        rows.append({"id": rid, "reason": "; ".join(user.problems[rid]) if precise else found})
    ds.skipped = pd.DataFrame(rows, columns=SKIP_COLUMNS)
    if errors == "raise" and len(ds.skipped):
        raise BadRecordsError(str(path), ds.skipped, total)
    return ds


# ---------------------------------------------------------------- online sources


def load_matbench(task: str, data_home: str | Path | None = None, **kwargs: Any) -> CrystalDataset:
    """Load a Matbench task through matminer's ``load_dataset``.

    matminer downloads the task into ``data_home`` when it is not there yet (this
    needs the network), then decodes it into a DataFrame with a ``structure``
    column and one target column.

    Args:
        task: Matbench task, e.g. ``"matbench_jdft2d"``.
        data_home: matminer's dataset folder. Defaults to matminer's own.
        **kwargs: Passed to :func:`validate_records`.
    """
    from matminer.datasets import load_dataset as mm_load

    try:
        df = mm_load(task, data_home=None if data_home is None else str(data_home))
    except ValueError as exc:
        raise DataError(f"unknown Matbench task {task!r}: {exc}") from exc
    targets = [c for c in df.columns if c != "structure"]
    if "structure" not in df.columns or len(targets) != 1:
        raise DataError(f"{task}: expected a 'structure' column and one target, got {list(df.columns)}")
    short = task.removeprefix("matbench_")
    recs = [
        RawRecord(f"mb-{short}-{k + 1:05d}", s, y)
        for k, (s, y) in enumerate(zip(df["structure"], df[targets[0]], strict=True))
    ]
    return validate_records(recs, name=task, target=targets[0], **kwargs)


def load_jarvis(
    dataset: str = "dft_2d",
    target: str = "exfoliation_energy",
    store_dir: str | Path | None = None,
    **kwargs: Any,
) -> CrystalDataset:
    """Load a JARVIS-DFT dataset through jarvis-tools' ``figshare.data``.

    jarvis-tools downloads the zipped JSON into ``store_dir`` when missing (this
    needs the network). Missing JARVIS values (``"na"``) are reported as skipped.

    Args:
        dataset: JARVIS database name, e.g. ``"dft_2d"`` or ``"dft_3d"``.
        target: Property key, e.g. ``"exfoliation_energy"``.
        store_dir: Download folder. Defaults to jarvis-tools' cache.
        **kwargs: Passed to :func:`validate_records`.
    """
    from jarvis.db.figshare import data as jarvis_data

    try:
        raw = jarvis_data(dataset, store_dir=None if store_dir is None else str(store_dir))
    except ValueError as exc:
        raise DataError(f"unknown JARVIS dataset {dataset!r}: {exc}") from exc
    if raw and target not in raw[0]:
        raise DataError(f"unknown target {target!r} for JARVIS {dataset}; keys: {sorted(raw[0])}")
    recs = [
        RawRecord(str(r.get("jid", k)), partial(_jarvis_structure, r.get("atoms")), r.get(target))
        for k, r in enumerate(raw)
    ]
    return validate_records(recs, name=f"jarvis_{dataset}", target=target, **kwargs)
