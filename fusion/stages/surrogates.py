"""Surrogates that a stage trains itself, beside the ``uncertainty`` stage's.

The ``optimal`` stage needs scores for seeds the study does not run, and the
``ood`` stage for every leave-one-cluster-out fold. Both train the same
evidential surrogate with the same settings as the ``uncertainty`` stage
(:func:`fusion.stages.uncertainty.surrogate_frame`) and keep its scores in a
persisted folder of their own, so that a killed stage does not retrain the
surrogates it already has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion import paths
from fusion.stages.common import TRAINING_CODE, code_version, graphs_hash, ids_hash, run_key, write_csv
from fusion.stages.uncertainty import resolve, surrogate_frame

#: Files whose content decides a surrogate's scores (part of :func:`cached_scores`'s key).
SURROGATE_CODE = (*TRAINING_CODE, "fusion/uncertainty.py", "fusion/stages/uncertainty.py")


def settings_of(key: str, surrogate: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`~fusion.stages.uncertainty.surrogate_frame`'s keyword arguments from the ``uncertainty`` group.

    ``"tuned"`` epochs and learning rate become the ``tune`` stage's choice for
    ``key``; ``val_protocol`` (the study's, not the surrogate's) is dropped.
    """
    settings = {k: v for k, v in (surrogate or {}).items() if k != "val_protocol"}
    settings["epochs"], settings["lr"] = resolve(
        key, settings.get("epochs", "tuned"), settings.get("lr", "tuned")
    )
    return settings


def cached_scores(
    cache: Path, graphs: dict[str, Any], pool: Sequence[str], seed: int, **settings: Any
) -> pd.DataFrame:
    """The surrogate scores of ``pool``, reused from ``cache`` when the same surrogate was trained before.

    A file is reused only when its name matches the seed and a hash of the
    settings, of the pool's ids, of the pool's graphs and of :data:`SURROGATE_CODE`.

    Args:
        cache: Folder of the stored scores (a persisted DVC output of the stage).
        graphs: Graph of every id.
        pool: Ids the surrogate trains on and scores, in order.
        seed: Seed of the surrogate (its hold-out and initialisation).
        **settings: :func:`~fusion.stages.uncertainty.surrogate_frame`'s keyword
            arguments (model, size, epochs, batch_size, lr, patience, lam,
            val_fraction, num_threads).

    Returns:
        :func:`~fusion.stages.uncertainty.surrogate_frame`'s frame (ids as strings).
    """
    pool_graphs = {i: graphs[i] for i in pool}
    text = run_key(seed=int(seed), ids=ids_hash(pool), graphs=graphs_hash(pool_graphs),
                   code=code_version(SURROGATE_CODE), **settings)  # fmt: skip
    path = Path(cache) / f"seed-{int(seed)}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.csv"
    if path.exists():
        return pd.read_csv(path, dtype={"id": str})
    frame, _ = surrogate_frame(list(pool_graphs.values()), pool, int(seed), **settings)
    write_csv(frame, path)
    return frame


def scores_of(
    key: str, seed: int, pool: Sequence[str], graphs: dict[str, Any], cache: Path, **settings: Any
) -> pd.DataFrame:
    """The scores of ``pool``: the ``uncertainty`` stage's when it scored this pool, else :func:`cached_scores`.

    Returns:
        One row per id of ``pool``, in its order (index ``id``).
    """
    path = paths.uncertainty_path(key, int(seed))
    if path.exists():
        frame = pd.read_csv(path, dtype={"id": str})
        if sorted(frame["id"]) == sorted(pool):
            return frame.set_index("id").loc[list(pool)]
    return cached_scores(cache, graphs, pool, seed, **settings).set_index("id").loc[list(pool)]
