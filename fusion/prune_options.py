"""The options of a prune (:func:`fusion.prune_api.prune`, ``fusion prune``) and their checks.

What may be chosen (:data:`METHODS`, :data:`SIZES`, with :data:`METHOD_HELP`
for ``--help``), which methods need the surrogate or the fingerprints
(:data:`NEEDS_U`, :data:`NEEDS_X`), and :func:`check_options`, which rejects a
bad option with :class:`OptionError` before any data are read. Light to import:
``fusion --help`` reads it without torch or pymatgen.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Selection methods (mirrors :data:`fusion.selection.METHODS`, checked by a test).
METHODS = ("fusion", "random", "uncertainty", "weight", "diversity", "active")
#: Methods that need the surrogate's uncertainty score U.
NEEDS_U = frozenset({"fusion", "uncertainty"})
#: Methods that need SOAP fingerprints.
NEEDS_X = frozenset({"fusion", "weight", "diversity", "active"})
#: Surrogate size presets.
SIZES = ("cpu", "paper")
#: What each method removes first (for ``--help`` and the README).
METHOD_HELP = {
    "fusion": "FUSION: the records of lowest importance I = U / W (low uncertainty, high redundancy)",
    "random": "a seeded random subset (no fingerprints, no surrogate)",
    "uncertainty": "the lowest surrogate uncertainty U (no fingerprints)",
    "weight": "the most redundant: highest W = exp(-gamma d_NN) (no surrogate)",
    "diversity": "all but the k-center-greedy (farthest-point) centres in SOAP space (no surrogate)",
    "active": "all that an ensemble-disagreement active learner never acquired (no surrogate)",
}
#: A Dask scheduler address: ``tcp://host:port`` (also tls, ucx, ws, wss; the
#: port may be left out with a scheme), ``host:port``, or ``inproc://...``.
_ADDRESS = re.compile(
    r"^(?:(?:tcp|tls|ucx|ws|wss)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?/?"
    r"|(?P<host2>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port2>\d{1,5})"
    r"|inproc://\S+)$"
)


class OptionError(ValueError):
    """An option of :func:`fusion.prune_api.prune` (or ``fusion prune``) is out of range or unknown."""


#: Default cap of the surrogate's optimiser steps (``--max-steps``): pools below about
#: 2,000 records keep ``--epochs``; a larger one trains fewer epochs, so that the
#: surrogate's cost stops growing with the pool.
MAX_STEPS = 3_000
#: Default cap of the atoms the surrogate's training passes through the model,
#: summed over its optimiser steps (``--max-atom-steps``). A step costs about
#: the atoms of its batch: 64 cells of ~94 atoms take ~1.2 s on 2 CPU cores, 64
#: of 5 atoms a few hundredths. Cells of up to ~13 atoms keep the 3,000 steps;
#: pools of larger cells train fewer, so that the surrogate's training stays
#: near 10 minutes on 2 CPU cores whatever the cell size (on 10,000 cells of 94
#: atoms: 413 steps, 495 s, validation MAE 24 % of the median predictor's;
#: ``benchmarks/bench_prune_scale.py``).
MAX_ATOM_STEPS = 2_500_000


def capped_text(quality: dict[str, Any], before: str = "", after: str = "") -> str:
    """Which cap set the surrogate's epoch limit below ``--epochs``, for the summary; ``""`` when none did.

    Args:
        quality: The surrogate's quality (:attr:`fusion.prune_result.PruneResult.surrogate`).
        before: Text put before a non-empty answer. Defaults to ``""``.
        after: Text put after it. Defaults to ``""``.

    Example:
        >>> q = {"capped": True, "capped_by": "--max-atom-steps", "max_atom_steps": 2_500_000, "step_cap": 415}
        >>> capped_text(q, " (", ")")
        ' (capped by --max-atom-steps 2,500,000: at most 415 steps)'
    """
    if not quality.get("capped"):
        return ""
    by = quality.get("capped_by") or "--max-steps"
    value = quality.get("max_atom_steps" if by == "--max-atom-steps" else "max_steps")
    steps = quality.get("step_cap") or quality.get("max_steps")
    return f"{before}capped by {by} {value:,}: at most {steps:,} steps{after}"


def check_options(
    *,
    ratios: Sequence[float],
    method: str,
    model: str,
    size: str,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    gamma: float,
    n_jobs: int,
    device: str,
    aleatoric_sign: int,
    max_steps: int | None = None,
    max_atom_steps: int | None = None,
    workdir: str | Path | None = None,
) -> None:
    """Check every option before any data are read.

    The scheduler address is checked apart, by :func:`check_scheduler`, once
    the environment has been consulted.

    Raises:
        OptionError: Naming the first bad option, its value and what is allowed.
    """
    if not ratios:
        raise OptionError("--ratios: give at least one ratio")
    for r in ratios:
        if not (isinstance(r, int | float) and 0.0 <= float(r) < 1.0):
            raise OptionError(f"--ratio must be in [0, 1) (the fraction of records REMOVED), got {r}")
    if len(set(ratios)) != len(ratios):
        raise OptionError(f"--ratios: a ratio is repeated in {list(ratios)}")
    if method not in METHODS:
        raise OptionError(f"--method: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if size not in SIZES:
        raise OptionError(f"--size: unknown preset {size!r}; choose one of {', '.join(SIZES)}")
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--patience", patience)):
        if not isinstance(value, int) or value < 1:
            raise OptionError(f"{name} must be a positive integer, got {value}")
    for name, value in (("--max-steps", max_steps), ("--max-atom-steps", max_atom_steps)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise OptionError(f"{name} must be a positive integer (0: no cap), got {value}")
    if not lr > 0:
        raise OptionError(f"--lr must be positive, got {lr}")
    if not (gamma > 0 and np.isfinite(gamma)):
        raise OptionError(f"--gamma must be positive and finite, got {gamma}")
    if not isinstance(n_jobs, int) or (n_jobs < 1 and n_jobs != -1):
        raise OptionError(f"--n-jobs must be a positive integer (or -1 for every core), got {n_jobs}")
    if aleatoric_sign not in (-1, 1):
        raise OptionError(f"--aleatoric-sign must be -1 or 1, got {aleatoric_sign}")
    if workdir is not None and Path(workdir).exists() and not Path(workdir).is_dir():
        raise OptionError(f"--workdir: {workdir} exists and is not a folder")
    if method in NEEDS_U:
        from fusion.models import available

        if model not in available():
            raise OptionError(f"--model: unknown model {model!r}; choose one of {', '.join(available())}")
        resolve_device(device)


def check_scheduler(address: str | None, source: str = "--scheduler") -> None:
    """Check that a Dask scheduler address looks like one, before any work.

    Args:
        address: The address, e.g. ``tcp://10.0.0.1:8786`` or ``10.0.0.1:8786``;
            None (no scheduler: a local cluster) passes.
        source: Where it came from, for the message (``--scheduler`` or
            ``DASK_SCHEDULER_ADDRESS``). Defaults to ``"--scheduler"``.

    Raises:
        OptionError: If it does not look like an address, or its port is above 65535.
    """
    if address is None:
        return
    m = _ADDRESS.match(address)
    port = None if m is None else (m.group("port") or m.group("port2"))
    if m is None or (port is not None and not 0 < int(port) < 65536):
        raise OptionError(
            f"{source}: {address!r} does not look like a Dask scheduler address "
            "(expected e.g. tcp://10.0.0.1:8786 or 10.0.0.1:8786)"
        )


def resolve_device(device: str) -> str:
    """The torch device the surrogate will train on.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.

    Returns:
        The device's name, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        OptionError: For an unknown name or CUDA requested where none is available.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
        return device
    raise OptionError(f"--device: unknown device {device!r}; choose auto, cpu, cuda or cuda:N")


def checked_options(
    data: Any,
    target: str | None,
    ratios: list[float],
    method: str,
    compression: str | None,
    scheduler: str | None,
    train: dict[str, Any],
    *,
    gamma: float,
    n_jobs: int,
    aleatoric_sign: int,
    workdir: str | Path | None,
) -> tuple[str, str | None]:
    """Check every option of :func:`fusion.prune_api.prune` before any data are read.

    Args:
        data: The input (a path, or a :class:`fusion.data.CrystalDataset`, which needs no target).
        target: The target's name.
        ratios: Fractions to remove.
        method: Selection method.
        compression: SOAP compression, None for the default.
        scheduler: A Dask scheduler address, or None (then ``DASK_SCHEDULER_ADDRESS``, if set).
        train: The surrogate's options (model, size, epochs, batch_size, lr, patience, device).
        gamma: Redundancy-weight decay.
        n_jobs: Local workers.
        aleatoric_sign: Sign of the aleatoric term.
        workdir: The working folder, or None.

    Returns:
        ``(compression in use, scheduler address or None)``.

    Raises:
        OptionError: The first bad option, in one line.
    """
    from fusion.data import CrystalDataset
    from fusion.fingerprints import COMPRESSIONS, DEFAULT_COMPRESSION
    from fusion.parallel import scheduler_address

    compression = DEFAULT_COMPRESSION if compression is None else compression
    check_options(
        ratios=ratios,
        method=method,
        **train,
        gamma=gamma,
        n_jobs=n_jobs,
        aleatoric_sign=aleatoric_sign,
        workdir=workdir,
    )
    if compression not in COMPRESSIONS:
        raise OptionError(
            f"--compression: unknown mode {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        )
    address = scheduler_address(scheduler)
    check_scheduler(address, "--scheduler" if scheduler else "DASK_SCHEDULER_ADDRESS")
    if not isinstance(data, CrystalDataset) and target is None:
        raise OptionError("--target is required")
    return compression, address
