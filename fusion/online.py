"""Load the original online sources: Matbench through matminer, JARVIS-DFT through jarvis-tools.

Both download their data when it is not cached yet (this needs the network) and
check every record with :func:`fusion.record_checks.validate_records`, so they return a
:class:`fusion.data.CrystalDataset` with its ``skipped`` table like every
other loader.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from fusion.data import CrystalDataset, DataError
from fusion.record_checks import RawRecord, validate_records


def _jarvis_structure(atoms: dict[str, Any]) -> Structure:
    from jarvis.core.atoms import Atoms

    return Atoms.from_dict(atoms).pymatgen_converter()


def load_matbench(task: str, data_home: str | Path | None = None, **kwargs: Any) -> CrystalDataset:
    """Load a Matbench task through matminer's ``load_dataset``.

    matminer downloads the task into ``data_home`` when it is not there yet (this
    needs the network), then decodes it into a DataFrame with a ``structure``
    column and one target column.

    Args:
        task: Matbench task, e.g. ``"matbench_jdft2d"``.
        data_home: matminer's dataset folder. Defaults to matminer's own.
        **kwargs: Passed to :func:`fusion.record_checks.validate_records`.
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
        **kwargs: Passed to :func:`fusion.record_checks.validate_records`.
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
