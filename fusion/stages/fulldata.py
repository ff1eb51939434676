"""Stage ``fulldata``: one long run of the main architecture on a subsampled dataset in full.

Where the study trains on a subsample (``limit`` in ``datasets``), Matbench's
full-data MAE cannot be compared with the subsample's. This stage validates the
whole dataset, splits it 70/15/15 with one seed, trains the main architecture
once (the ``tune`` stage's learning rate and epochs for that dataset key unless
given) and scores it, beside the median predictor of the same split.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fusion import paths
from fusion.stages.common import fit_and_score, train_config, write_csv
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
    res = fit_and_score(arch, size, by_id, split["train"], split["val"], split["test"], cfg)
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
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    out = pd.DataFrame([row])
    write_csv(out, paths.fulldata_path(key))
    return out
