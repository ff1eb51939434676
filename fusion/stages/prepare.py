"""Stage ``prepare``: load and validate a dataset, write its records, skip report and splits."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion import paths
from fusion.stages.common import write_csv, write_json


def run(
    key: str,
    name: str,
    target: str,
    seeds: Sequence[int],
    limit: int | None = None,
    sample_seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    cutoff: float = 8.0,
    workers: int | None = 1,
    scheduler: str | None = None,
    data_dir: str | Path = "data",
) -> dict[str, Any]:
    """Load and validate a dataset, write its records, skip report and one split per seed.

    Args:
        key: Dataset key (names the output folder).
        name: Project dataset name, e.g. ``"matbench_jdft2d"``.
        target: Target column.
        seeds: One random split is written per seed.
        limit: Keep a random subsample of ``limit`` valid records (drawn with
            ``sample_seed``, kept in file order). Defaults to None (all).
        sample_seed: Seed of the subsample. Defaults to 0.
        fractions: Train/val/test fractions. Defaults to 70/15/15.
        cutoff: Graph cutoff (Å) for the isolated-atom check. Defaults to 8.
        workers: Local Dask workers for parsing and checks (``None``: one per
            core). Defaults to 1 (no cluster). The output does not depend on it.
        scheduler: Address of an existing Dask scheduler (or the
            ``DASK_SCHEDULER_ADDRESS`` environment variable). Defaults to None.
        data_dir: Folder holding the datasets. Defaults to ``"data"``.

    Returns:
        The dataset summary (also written to ``summary.json``).
    """
    from fusion.data import load_dataset, read_records, target_unit
    from fusion.parallel import workers as dask_workers
    from fusion.splits import random_split, save_split

    n_raw = len(read_records(name, data_dir))
    # About 5-10 ms a record (CIF parsing and checks): a cluster pays off from a few thousand.
    with (
        warnings.catch_warnings(),
        dask_workers(workers, scheduler, n_items=n_raw, min_items=2_000) as client,
    ):
        warnings.simplefilter("ignore")
        ds = load_dataset(name, target, data_dir, cutoff=cutoff, progress=False, client=client)
    n_valid = len(ds)
    records = ds.metadata[["id", "formula", "nsites"]].copy()
    records.insert(1, "target", ds.targets)
    if limit is not None and limit < n_valid:
        pick = np.sort(np.random.default_rng(sample_seed).choice(n_valid, size=int(limit), replace=False))
        records = records.iloc[pick].reset_index(drop=True)
    out = paths.prepare_dir(key)
    write_csv(records, paths.records_path(key))
    ds.save_skip_report(out / "skipped.csv")
    ids = records["id"].tolist()
    for seed in seeds:
        save_split(random_split(ids, int(seed), tuple(fractions)), paths.split_path(key, int(seed)))
    kept = set(ids)
    elements = sorted(
        {
            el.symbol
            for i, s in zip(ds.ids, ds.structures, strict=True)
            if i in kept
            for el in s.composition.elements
        }
    )
    y = records["target"].to_numpy(dtype=np.float64)
    summary = {
        "key": key,
        "dataset": name,
        "target": target,
        "unit": target_unit(name, target),
        "limit": limit,
        "n_read": n_valid + len(ds.skipped),
        "n_valid": n_valid,
        "n_kept": len(records),
        "n_skipped": len(ds.skipped),
        "n_elements": len(elements),
        "nsites_mean": float(records["nsites"].mean()),
        "nsites_max": int(records["nsites"].max()),
        "target_mean": float(y.mean()),
        "target_median": float(np.median(y)),
        "target_std": float(y.std()),
        "target_min": float(y.min()),
        "target_max": float(y.max()),
        "seeds": [int(s) for s in seeds],
        "fractions": [float(f) for f in fractions],
    }
    summary["loco_folds"] = write_loco(name, ids, data_dir, paths.loco_path(key))
    write_json(out / "summary.json", summary)
    return summary


def write_loco(name: str, kept: Sequence[str], data_dir: str | Path, out: Path) -> int:
    """Write the paper's LOCO folds restricted to the kept records (empty when it has none).

    Args:
        name: Project dataset name.
        kept: Kept record ids.
        data_dir: Folder holding the datasets.
        out: Output JSON (:func:`fusion.paths.loco_path`).

    Returns:
        The number of folds written.
    """
    import gzip
    import json

    from fusion.ood import restrict_folds

    source = paths.loco_source(name, data_dir)
    loco = {"clusters": 0, "folds": {}, "dropped": 0}
    if source.exists():
        with gzip.open(source, "rt") as fh:
            loco = restrict_folds(json.load(fh), kept)
    write_json(out, {"source": source.name if source.exists() else None, **loco})
    return len(loco["folds"])
