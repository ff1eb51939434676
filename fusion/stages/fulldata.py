"""Stage ``fulldata``: one long run of the main architecture on a subsampled dataset in full.

Where the study trains on a subsample (``limit`` in ``datasets``), Matbench's
full-data MAE cannot be compared with the subsample's. This stage validates the
whole dataset, splits it 70/15/15 with one seed, trains the main architecture
once (the ``tune`` stage's learning rate and epochs for that dataset key unless
given) and scores it, beside the median predictor of the same split.

The run takes hours on a CPU, so it writes a checkpoint after every epoch
(:func:`fusion.paths.checkpoint_path`) and a stage killed midway resumes where
it stopped; a resumed run computes what an uninterrupted one does
(``tests/test_train.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths
from fusion.stages.common import fit_and_score, graphs_hash, train_config, write_csv
from fusion.stages.train import key_of
from fusion.stages.uncertainty import resolve


def run(
    key: str,
    name: str,
    target: str,
    arch: str = "cgcnn",
    size: str = "cpu",
    seed: int = 0,
    epochs: int | str = "tuned",
    lr: float | str = "tuned",
    batch_size: int = 64,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    cutoff: float = 8.0,
    max_neighbors: int = 12,
    n_jobs: int = 1,
    num_threads: int | None = 1,
) -> pd.DataFrame:
    """Train ``arch`` once on all of dataset ``name`` and score it on its test part.

    Args:
        key: Dataset key of the study (its ``tune`` choice supplies ``"tuned"`` values).
        name: Project dataset name.
        target: Target column.
        arch: Architecture. Defaults to ``"cgcnn"``.
        size: Model size preset. Defaults to ``"cpu"``.
        seed: Split and initialisation seed. Defaults to 0.
        epochs: Epochs, or ``"tuned"``.
        lr: Peak learning rate, or ``"tuned"``.
        batch_size: Batch size. Defaults to 64.
        fractions: Train/val/test fractions. Defaults to 70/15/15.
        cutoff: Graph cutoff (Å). Defaults to 8.
        max_neighbors: Neighbours per atom. Defaults to 12.
        n_jobs: Processes building the graphs. Defaults to 1.
        num_threads: Torch threads. Defaults to 1.

    Returns:
        One row (also written to ``results/fulldata/<key>.csv``).
    """
    from fusion.data import load_dataset, read_records
    from fusion.graphs import graphs_from_cif
    from fusion.splits import random_split
    from fusion.stats import median_predictor_mae

    t0 = time.perf_counter()
    n_epochs, peak_lr = resolve(key, epochs, lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_dataset(name, target, cutoff=cutoff, progress=False)
    raw = {str(r["id"]): r["structure"] for r in read_records(name)}
    ids = [str(i) for i in ds.ids]
    graphs = graphs_from_cif([raw[i] for i in ids], ds.targets, cutoff, max_neighbors, n_jobs=n_jobs,
                             progress=False, ids=ids)  # fmt: skip
    by_id = dict(zip(ids, graphs, strict=True))
    split = random_split(ids, int(seed), tuple(fractions))
    cfg = train_config(n_epochs, batch_size, peak_lr, n_epochs, seed, num_threads)
    ckpt = checkpoint_file(key, arch, size, (split["train"], split["val"], split["test"]), cfg, by_id)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, checkpoint_path=ckpt)
    earlier = _earlier_seconds(ckpt)
    res = fit_and_score(arch, size, by_id, split["train"], split["val"], split["test"], cfg)
    res["seconds"] = round(earlier + res["seconds"], 2)  # every invocation's training, not only this one's
    y = pd.Series(np.asarray(ds.targets, dtype=float), index=ids)
    row = {
        "dataset": key,
        "name": name,
        "arch": arch,
        "seed": int(seed),
        "n_records": len(ids),
        "n_skipped": len(ds.skipped),
        "lr": peak_lr,
        **res,
        "median_predictor_mae": median_predictor_mae(
            y.loc[split["train"]].to_numpy(), y.loc[split["test"]].to_numpy()
        ),
        "wall_seconds": round(earlier + time.perf_counter() - t0, 1),
    }
    out = pd.DataFrame([row])
    write_csv(out, paths.fulldata_path(key))
    ckpt.unlink(missing_ok=True)  # the run is recorded; its checkpoint is no longer needed
    ckpt.with_suffix(".json").unlink(missing_ok=True)
    return out


def _earlier_seconds(ckpt: Path) -> float:
    """Seconds the interrupted invocations of this run trained for, and note this one's start.

    An invocation that is killed cannot record its own time, so each one writes
    its start time beside the checkpoint (``<checkpoint>.json``); the next one
    counts the previous invocation as lasting from that start to the
    checkpoint's last write (its last finished epoch).
    """
    log = ckpt.with_suffix(".json")
    earlier = 0.0
    if ckpt.exists() and log.exists():
        prev = json.loads(log.read_text())
        earlier = prev["earlier_seconds"] + max(0.0, ckpt.stat().st_mtime - prev["started"])
    log.write_text(json.dumps({"earlier_seconds": earlier, "started": time.time()}))
    return earlier


def checkpoint_file(
    key: str, arch: str, size: str, ids: tuple[list[str], list[str], list[str]], config: Any, graphs: dict
) -> Path:
    """Where the full-data run of ``key`` keeps its checkpoint.

    The name carries a digest of the run's identity (:func:`fusion.stages.train.key_of`:
    settings, train/val/test ids, graphs and training code), so a changed
    parameter starts afresh instead of meeting a checkpoint it cannot resume.

    Args:
        key: Dataset key.
        arch: Architecture.
        size: Model size preset.
        ids: ``(train, val, test)`` ids.
        config: The :class:`fusion.train.TrainConfig`.
        graphs: Graph of every id.

    Returns:
        The checkpoint path (:func:`fusion.paths.checkpoint_path`).
    """
    run = key_of(arch, size, ids, config, graphs_hash(graphs))
    return paths.checkpoint_path("fulldata", key, hashlib.sha1(run.encode()).hexdigest()[:12])
