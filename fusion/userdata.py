"""Load a user's own crystal data: a CIF folder, an extended-XYZ file or a JSON list.

Three layouts are read (:func:`read_user_records` chooses from the path):

* a folder of ``<id>.cif`` files listed in ``id_prop.csv`` (CGCNN convention:
  ``id,value`` rows, or a header naming the target column);
* an extended-XYZ file, read through ASE, the target in each frame's info;
* a JSON (or ``.json.gz``) list of ``{"id", "structure", <target>}`` records whose
  structure is a CIF string or a pymatgen dict.

Two ways to load them, both through :func:`fusion.data.validate_records`:
:func:`load_user_data` (and the per-layout :func:`load_cif_folder`,
:func:`load_extxyz`, :func:`load_json_records`) stops at the first bad record
with ``errors="raise"`` and warns when it skips; :func:`collect_user_data`
checks every record first and lists all bad ones, with the precise reasons
found while reading (:class:`UserRecords`), in one :class:`BadRecordsError`.
"""

from __future__ import annotations

import csv
import gzip
import json
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.data import (
    DEFAULT_CUTOFF,
    SKIP_COLUMNS,
    CrystalDataset,
    DataError,
    RawRecord,
    _as_float,
    validate_records,
)


@dataclass
class UserRecords:
    """A user's input as read, before the per-record checks.

    Attributes:
        name: Dataset name (the folder or file stem).
        records: Raw records in input order (ids may repeat; checks come later).
        problems: Reasons known from reading alone, by record id (first
            occurrence): ``no such file``, ``empty file``, ``no value for target``
            with the keys or columns available. Records listed here fail
            :func:`fusion.data.check_record` too; these reasons only say more precisely why.
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
        **kwargs: Passed to :func:`fusion.data.validate_records`.

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
        **kwargs: Passed to :func:`fusion.data.validate_records`.

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
    client: Any = None,
    packed: bool = False,
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
        n_jobs: Local Dask workers for parsing and checks when no ``client`` is
            given. Defaults to 1.
        progress: Show a progress bar. Defaults to True.
        client: A ``distributed.Client`` from :func:`fusion.parallel.workers`
            to check the records on (:func:`fusion.data.validate_records`).
            Defaults to None.
        packed: Hold the structures as :class:`fusion.packed.PackedStructure`
            (what ``fusion prune`` does). Defaults to False.

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
            client=client,
            packed=packed,
        )
    rows = [{"id": label, "reason": reason} for label, reason in user.unreadable]
    for rid, found in zip(ds.skipped["id"], ds.skipped["reason"], strict=True):
        precise = rid in user.problems and not found.startswith("duplicate id")
        rows.append({"id": rid, "reason": "; ".join(user.problems[rid]) if precise else found})
    ds.skipped = pd.DataFrame(rows, columns=SKIP_COLUMNS)
    if errors == "raise" and len(ds.skipped):
        raise BadRecordsError(str(path), ds.skipped, total)
    return ds
