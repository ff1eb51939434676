"""Checkpoints of a training run: everything a resumed run needs to continue bit for bit.

:func:`fusion.train.train` calls :func:`save` after every epoch when given a
checkpoint path, and :func:`resume` when that file exists: model, optimiser,
learning-rate schedule, every random generator and the run's progress, so a
resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Config fields that change the optimisation trajectory: a checkpoint written
#: under other values cannot be resumed.
RESUME_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "loss", "evidential_coeff")


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random generator a training run draws from, as a picklable dict."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`_rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["shuffle"])


def _save_atomic(obj: Any, path: Path) -> None:
    """Write then rename, so an interruption never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    state: dict[str, Any],
    resume_keys: dict[str, Any],
    n_train: int,
    target_mean: float,
    target_std: float,
) -> None:
    """Write everything a resumed run needs to continue bit-for-bit.

    Args:
        path: Checkpoint file (written atomically).
        model: The model.
        optimizer: The optimiser.
        scheduler: The learning-rate schedule.
        generator: The shuffling generator.
        state: Run progress (``fusion.train``'s ``state``: epoch, best weights, history, ...).
        resume_keys: Config fields a resumed run must share (``RESUME_KEYS``).
        n_train: Number of training graphs.
        target_mean: Training-target mean.
        target_std: Training-target standard deviation.
    """
    _save_atomic(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(generator),
            "state": state,
            "config": resume_keys,
            "n_train": n_train,
            "target_mean": target_mean,
            "target_std": target_std,
        },
        path,
    )


def resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    resume_keys: dict[str, Any],
    n_train: int,
) -> dict[str, Any]:
    """Restore model, optimiser, schedule and random generators from a checkpoint.

    Args:
        path: An existing checkpoint written by :func:`save`.
        model: The model, loaded in place.
        optimizer: The optimiser, loaded in place.
        scheduler: The learning-rate schedule, loaded in place.
        generator: The shuffling generator, loaded in place.
        resume_keys: Config fields of this run (``RESUME_KEYS``).
        n_train: Number of training graphs of this run.

    Returns:
        The saved run progress (``fusion.train``'s ``state``: epoch, best weights, history, ...).

    Raises:
        ValueError: If the checkpoint was written with another configuration or
            training-set size.
    """
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest.
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved["config"] != resume_keys or saved["n_train"] != n_train:
        raise ValueError(
            f"checkpoint {path} was written with another configuration or training set: "
            f"{saved['config']} (n_train={saved['n_train']}) vs {resume_keys} "
            f"(n_train={n_train})"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"], generator)
    return saved["state"]
