"""Read a user's crystal data, per format, into raw records (no per-record check yet).

:func:`read_user_records` chooses the reader from the path:

* a folder of ``<id>.cif`` files listed in ``id_prop.csv`` (CGCNN convention:
  ``id,value`` rows, or a header naming the target column; the CIF files are
  read lazily, on the workers that check them);
* an extended-XYZ file, read through ASE, the target in each frame's info;
* a JSON (or ``.json.gz``) list of ``{"id", "structure", <target>}`` records whose
  structure is a CIF string or a pymatgen dict.

Each returns a :class:`UserRecords`: the records in input order, with the
precise reasons already known from reading (a missing or empty file, no value
for the target). Checking the records, and listing the bad ones, is
:mod:`fusion.userdata`'s.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from fusion.data import DataError
from fusion.record_checks import RawRecord, as_float


@dataclass
class UserRecords:
    """A user's input as read, before the per-record checks.

    Attributes:
        name: Dataset name (the folder or file stem).
        records: Raw records in input order (ids may repeat; checks come later).
        problems: Reasons known from reading alone, by record id (first
            occurrence): ``no such file``, ``empty file``, ``no value for target``
            with the keys or columns available. Records listed here fail
            :func:`fusion.record_checks.check_record` too; these reasons only say more precisely why.
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
    if second and second.lower() not in {"na", "nan", "none"} and as_float(second) is None:
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
    """True when an ``id_prop.csv`` cell gives no target (None, empty or blank)."""
    return value is None or (isinstance(value, str) and not value.strip())


def cif_folder_records(folder: Path, target: str) -> UserRecords:
    """Read a CIF folder's ``id_prop.csv`` into records; each CIF file is read when its record is checked.

    Args:
        folder: A folder with ``id_prop.csv`` and ``<id>.cif`` files.
        target: Target name: a column of ``id_prop.csv`` if it has a header,
            else only a label for the single value column.

    Returns:
        One record per row; rows without an id in :attr:`UserRecords.unreadable`.

    Raises:
        DataError: If ``id_prop.csv`` is missing, empty, or has a header
            without the column ``target``.
    """
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


def extxyz_records(path: Path, target: str) -> UserRecords:
    """Read the frames of an extended-XYZ file into records, through ASE.

    The target is read from the frame's ``info`` or, for keys that ASE stores
    as calculator results (``energy``, ``free_energy``, ...), from those. The id
    is ``info["id"]`` when present, else ``<file stem>-<frame index>``. A frame
    not periodic in three dimensions becomes a record that fails its check.

    Args:
        path: The ``.extxyz`` or ``.xyz`` file.
        target: Target name.

    Returns:
        One record per frame, in file order.

    Raises:
        DataError: If the file is missing, empty or not readable as extended XYZ.
    """
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


def json_records(path: Path, target: str) -> UserRecords:
    """Read a JSON (or ``.json.gz``) list of ``{"id", "structure", <target>}`` records.

    Args:
        path: The file; ``structure`` may be a CIF string or a pymatgen
            ``Structure.as_dict()``.
        target: Target name (a key of each record).

    Returns:
        One record per item; items without ``"id"`` in :attr:`UserRecords.unreadable`.

    Raises:
        DataError: If the file is missing, empty, not JSON or not a list.
    """
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
    return READERS[user_format(path)](path, target)


def user_format(path: Path) -> str:
    """The layout of a user's dataset, from its path alone.

    Args:
        path: A folder (a CIF folder), an ``.extxyz``/``.xyz`` file or a
            ``.json``/``.json.gz`` file (suffixes in any case).

    Returns:
        ``"cif"``, ``"extxyz"`` or ``"json"``: a key of :data:`READERS`.

    Raises:
        DataError: If the path does not exist or its kind is not recognised.
    """
    if path.is_dir():
        return "cif"
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if name.endswith((".json", ".json.gz")):
        return "json"
    raise DataError(f"{path}: expected a CIF folder with id_prop.csv, an .extxyz file or a .json list")


#: The reader of each layout of :func:`user_format`.
READERS = {"cif": cif_folder_records, "extxyz": extxyz_records, "json": json_records}


def _read_text(path: Path) -> str:
    """The text of a CIF file, read when its record is checked (on a worker, for a cluster)."""
    # Module-level (not a closure) so records stay picklable for worker processes.
    if not path.exists():
        raise FileNotFoundError(f"file {path.name} not found")
    return path.read_text()


def _fail(msg: str) -> Any:
    """Raise ``ValueError(msg)``: the structure of a record known to be bad (module-level, picklable)."""
    raise ValueError(msg)
