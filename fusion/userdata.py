"""Load a user's own crystal data (a CIF folder, an extended-XYZ file or a JSON list), checked.

The files are read by :func:`fusion.user_records.read_user_records` (one reader
per layout); every record is then checked by :func:`fusion.record_checks.validate_records`.
Two ways to load them: :func:`load_user_data` (and the per-layout
:func:`load_cif_folder`, :func:`load_extxyz`, :func:`load_json_records`) stops
at the first bad record with ``errors="raise"`` and warns when it skips;
:func:`collect_user_data` checks every record first and lists all bad ones, with
the precise reasons found while reading
(:class:`fusion.user_records.UserRecords`), in one :class:`BadRecordsError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.data import DEFAULT_CUTOFF, SKIP_COLUMNS, CrystalDataset, DataError
from fusion.record_checks import RawRecord, validate_records
from fusion.user_records import (
    UserRecords,
    cif_folder_records,
    extxyz_records,
    json_records,
    read_user_records,
    user_format,
)


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
        **kwargs: Passed to :func:`fusion.record_checks.validate_records`.

    Raises:
        DataError: If ``id_prop.csv`` is missing or malformed.
    """
    folder = Path(folder)
    user = cif_folder_records(folder, target)
    return validate_records(_strict(user, folder / "id_prop.csv"), name=user.name, target=target, **kwargs)


def load_extxyz(path: str | Path, target: str, **kwargs: Any) -> CrystalDataset:
    """Load an extended-XYZ file through ASE; the target is read from each frame's info.

    The target is read from the frame's ``info`` or, for keys that ASE stores as
    calculator results (``energy``, ``free_energy``, ...), from those. The id is
    ``info["id"]`` when present, else ``<file stem>-<frame index>``.
    Frames must be periodic in three dimensions
    (:func:`fusion.user_records.extxyz_records`).
    """
    user = extxyz_records(Path(path), target)
    return validate_records(user.records, name=user.name, target=target, **kwargs)


def load_json_records(path: str | Path, target: str, **kwargs: Any) -> CrystalDataset:
    """Load a JSON (or .json.gz) list of ``{"id", "structure", <target>}`` records.

    ``structure`` may be a CIF string or a pymatgen ``Structure.as_dict()``.
    """
    path = Path(path)
    user = json_records(path, target)
    return validate_records(_strict(user, path), name=user.name, target=target, **kwargs)


def load_user_data(path: str | Path, target: str, **kwargs: Any) -> CrystalDataset:
    """Load a user's dataset, choosing the reader from the path.

    Args:
        path: A folder with ``id_prop.csv`` and CIF files, a ``.extxyz``/``.xyz``
            file, or a ``.json``/``.json.gz`` list of records.
        target: Target name.
        **kwargs: Passed to :func:`fusion.record_checks.validate_records`.

    Raises:
        DataError: If the path does not exist or its kind is not recognised.
    """
    path = Path(path)
    loader = {"cif": load_cif_folder, "extxyz": load_extxyz, "json": load_json_records}[user_format(path)]
    return loader(path, target, **kwargs)


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
            to check the records on (:func:`fusion.record_checks.validate_records`).
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
