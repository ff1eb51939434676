"""Helpers shared by the stages: artefact readers/writers and one training run.

All paths come from :mod:`fusion.paths`; every reader here returns what a
stage wrote, in the order it was written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for DVC)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    return path


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` without index, floats as ``%.10g`` (identical runs give identical bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.10g")
    return path


def load_summary(key: str) -> dict[str, Any]:
    """The ``prepare`` summary of dataset ``key``."""
    return json.loads((paths.prepare_dir(key) / "summary.json").read_text())


def load_records(key: str) -> pd.DataFrame:
    """The kept records (id, target, formula, nsites) of dataset ``key``."""
    return pd.read_csv(paths.records_path(key), dtype={"id": str})


def load_split(key: str, seed: int) -> dict[str, list[str]]:
    """The train/val/test split of dataset ``key`` for ``seed``."""
    from fusion.splits import load_split as _load

    return _load(paths.split_path(key, seed))


def prunable_ids(split: dict[str, list[str]], val_protocol: str) -> list[str]:
    """The ids a pruning method may remove under ``val_protocol``.

    Args:
        split: A train/val/test split.
        val_protocol: ``"fixed"`` (default of the study: only the training part
            is pruned, validation and test never change) or ``"pruned"``
            (METHOD.md step 1: train and val are pruned together).

    Raises:
        ValueError: For another protocol name.
    """
    if val_protocol == "fixed":
        return list(split["train"])
    if val_protocol == "pruned":
        return list(split["train"]) + list(split["val"])
    raise ValueError(f"val_protocol must be 'fixed' or 'pruned', got {val_protocol!r}")


def cif_strings(
    key: str, name: str, data_dir: str | Path = "data"
) -> tuple[list[str], list[str], np.ndarray]:
    """CIF text of the kept records of ``key`` (dataset ``name``), in ``records.csv`` order.

    Returns:
        ``(ids, cifs, targets)``.
    """
    from fusion.data import read_records

    records = load_records(key)
    raw = {str(r["id"]): r["structure"] for r in read_records(name, data_dir)}
    ids = records["id"].tolist()
    return ids, [raw[i] for i in ids], records["target"].to_numpy(dtype=np.float64)


def load_graph_cache(key: str) -> dict[str, Any]:
    """The cached graphs of ``key`` as an ``{id: graph}`` dict (insertion order = records order)."""
    from fusion.graph_cache import load_graphs

    ids, graphs, _ = load_graphs(paths.graphs_path(key))
    return dict(zip(ids, graphs, strict=True))


def load_fingerprint_rows(key: str, ids: Sequence[str]) -> np.ndarray:
    """Fingerprint rows of ``ids`` (in that order) from the cache of ``key``."""
    from fusion.fingerprints import load_fingerprints

    all_ids, X, _ = load_fingerprints(paths.fingerprints_path(key))
    pos = {i: k for k, i in enumerate(all_ids)}
    return X[[pos[i] for i in ids]]


def load_tuned(key: str) -> dict[str, Any]:
    """The learning rate and epochs chosen by the ``tune`` stage for dataset ``key``."""
    return json.loads(paths.tune_choice_path(key).read_text())


def budget_epochs(epochs: int, n_train: int, n_full: int, rule: str) -> int:
    """Epochs of a run on ``n_train`` of ``n_full`` training records under a budget rule.

    Args:
        epochs: Epochs of the unpruned run.
        n_train: Training records of this run.
        n_full: Training records of the unpruned run.
        rule: ``"epochs"`` (every run trains ``epochs`` epochs, so a pruned run
            takes fewer optimiser steps) or ``"steps"`` (every run takes about
            the unpruned run's optimiser steps: ``ceil(epochs * n_full / n_train)``).

    Raises:
        ValueError: Unknown rule or empty training set.
    """
    if n_train <= 0:
        raise ValueError("empty training set")
    if rule == "epochs":
        return int(epochs)
    if rule == "steps":
        return math.ceil(epochs * n_full / n_train)
    raise ValueError(f"budget rule must be 'epochs' or 'steps', got {rule!r}")


def train_config(
    epochs: int, batch_size: int, lr: float, patience: int, seed: int, num_threads: int | None = None
) -> Any:
    """A quiet, CPU :class:`fusion.train.TrainConfig` from stage parameters."""
    from fusion.train import TrainConfig

    return TrainConfig(
        epochs=int(epochs),
        batch_size=int(batch_size),
        lr=float(lr),
        patience=int(patience),
        seed=int(seed),
        device="cpu",
        progress=False,
        num_threads=num_threads,
    )


def fit_and_score(
    arch: str,
    size: str,
    graphs: dict[str, Any],
    train_ids: Sequence[str],
    val_ids: Sequence[str],
    test_ids: Sequence[str],
    config: Any,
) -> dict[str, Any]:
    """Train ``arch`` from scratch (initialisation seeded by ``config.seed``) and score it.

    The checkpoint with the best validation MAE is the one scored on test.

    Returns:
        ``n_train``, ``n_val``, ``epochs``, ``val_mae``, ``test_mae``, ``epochs_run``, ``seconds``.

    Raises:
        ValueError: If the training or validation set is empty.
    """
    from fusion.models import build_model
    from fusion.train import seed_everything, train

    if not train_ids or not val_ids:
        raise ValueError(f"{arch}: empty training ({len(train_ids)}) or validation ({len(val_ids)}) set")
    seed_everything(config.seed)
    model = build_model(arch, size=size)
    result = train(
        model,
        [graphs[i] for i in train_ids],
        [graphs[i] for i in val_ids],
        [graphs[i] for i in test_ids],
        config=config,
    )
    return {
        "n_train": len(train_ids),
        "n_val": len(val_ids),
        "epochs": int(config.epochs),
        "val_mae": float(result.val_mae),
        "test_mae": float(result.test_mae),
        "epochs_run": int(result.epochs_run),
        "seconds": round(float(result.seconds), 2),
    }


# ----------------------------------------------------------------------------- resuming a stage run by run

#: Files whose content decides what a training run computes.
TRAINING_CODE = (
    "fusion/train.py",
    "fusion/batching.py",
    "fusion/checkpoint.py",
    "fusion/models",
    "fusion/stages/common.py",
    "fusion/graphs.py",
    "fusion/graph_cache.py",
)


def code_version(files: Sequence[str] = TRAINING_CODE) -> str:
    """Short SHA-1 of the training code (every ``.py`` under ``files``, in sorted order).

    A stored run is reused only when this matches, so a code change can never
    leave a stale result in a resumed stage.
    """
    import hashlib

    digest = hashlib.sha1()
    for entry in files:
        path = paths.ROOT / entry
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(f.relative_to(paths.ROOT).as_posix().encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def ids_hash(*groups: Sequence[str]) -> str:
    """Short SHA-1 of id lists (order-sensitive): identifies a training/validation set."""
    import hashlib

    digest = hashlib.sha1()
    for group in groups:
        digest.update("\n".join(group).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:12]


def graphs_hash(graphs: Mapping[str, Any]) -> str:
    """Short SHA-1 of a set of graphs: ids, then every field's name, dtype, shape and values, in order.

    Part of every run key, so that a stored run is reused only for the very
    graphs it was trained on: a graph cache rebuilt with another cutoff, or
    from a corrected record, retrains the runs it touches.

    Args:
        graphs: Graph of every id (``torch_geometric.data.Data`` or anything with
            ``keys()`` and item access to tensors).

    Returns:
        12 hexadecimal digits.
    """
    import hashlib

    digest = hashlib.sha1()
    for gid, graph in graphs.items():
        digest.update(str(gid).encode() + b"\x00")
        for name in sorted(graph.keys()):
            value = graph[name].detach().cpu().contiguous()
            digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
            digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:12]


class RunLog:
    """The rows of a stage's output CSV, written after every run, reusable by a rerun.

    DVC keeps the file between runs (``persist: true``), so a stage killed
    midway resumes at its first missing run. A stored row is reused only if its
    ``run_key`` (the caller's description of the run: settings, the hash of its
    training/validation ids, :func:`graphs_hash` of its graphs, :func:`code_version`)
    is the same.

    Args:
        path: The stage's output CSV.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.reused = 0
        self._old: dict[str, dict[str, Any]] = {}
        if path.exists() and path.stat().st_size > 0:
            old = pd.read_csv(path, dtype={"run_key": str})
            if "run_key" in old:
                self._old = {str(r["run_key"]): r for r in old.to_dict("records")}

    def get(self, run_key: str) -> dict[str, Any] | None:
        """The stored row of ``run_key`` (counted as reused), or None."""
        row = self._old.get(run_key)
        if row is not None:
            self.reused += 1
        return row

    def add(self, row: dict[str, Any]) -> None:
        """Append a row and rewrite the file."""
        self.rows.append(row)
        write_csv(pd.DataFrame(self.rows), self.path)

    def frame(self) -> pd.DataFrame:
        """All rows of this run (also on disk)."""
        out = pd.DataFrame(self.rows)
        write_csv(out, self.path)
        return out


def run_key(**parts: Any) -> str:
    """A stable text key for :class:`RunLog` from keyword parts (sorted by name)."""
    return "|".join(f"{k}={parts[k]}" for k in sorted(parts))
