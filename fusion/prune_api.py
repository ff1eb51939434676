"""Prune a user's crystal dataset from Python: the engine behind ``fusion prune``.

Example::

    from fusion.prune_api import prune

    result = prune("my_cifs/", "band_gap", ratios=[0.2, 0.4], method="fusion", epochs=50)
    result.scores                 # DataFrame by id: target, U, W, I, d_nn, u_ale, u_epi
    result.kept_ids(0.4)          # ids kept when 40 % are removed
    result.removed_ids(0.4)       # the removed ids, first removed first
    result.surrogate              # validation MAE against the median predictor's, epochs, device
    result.warnings               # what deserves a look before trusting the selection
    result.write("pruned/")       # kept.csv, removed.csv, scores.csv, summary.json (+ skipped.csv)

Steps, each done once for all ratios: load and check every record
(:func:`fusion.userdata.collect_user_data`), SOAP fingerprints and nearest-neighbour
distances (methods that use them), graphs and an evidential surrogate (methods
that use ``U``), then one selection per ratio.

This module holds that computation (:func:`prune`, the surrogate's hold-out
:func:`surrogate_split`); the options and their checks are in
:mod:`fusion.prune_options`, the result, its files and its warnings in
:mod:`fusion.prune_result`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.data import CrystalDataset, DataError
from fusion.prune_options import NEEDS_U, NEEDS_X, OptionError, check_options, resolve_device
from fusion.prune_result import PruneResult, ratio_shift, shift_warning, spread_warnings

#: Held-out fraction of the pool for the surrogate's early stopping.
VAL_FRACTION = 0.1


def surrogate_split(n: int, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation positions of :func:`fusion.uncertainty.train_surrogate`'s hold-out.

    Mirrors that function's split (a test checks that they agree), so that the
    median predictor is scored on the very records the surrogate is validated on.

    Args:
        n: Pool size, at least 2.
        seed: The surrogate's seed.
        val_fraction: Held-out fraction. Defaults to 0.1.

    Returns:
        ``(train, val)``: sorted positions in the pool.
    """
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def prune(
    data: str | Path | CrystalDataset,
    target: str | None = None,
    ratios: float | Sequence[float] = 0.4,
    method: str = "fusion",
    *,
    model: str = "cgcnn",
    size: str = "cpu",
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int = 20,
    device: str = "auto",
    lam: float = 0.0,
    aleatoric_sign: int = -1,
    gamma: float = 0.1,
    compression: str | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    skip_bad: bool = False,
    progress: bool = False,
) -> PruneResult:
    """Prune a crystal dataset at one or several ratios.

    Fingerprints, nearest-neighbour distances and the surrogate are computed
    once and shared by every ratio.

    Args:
        data: A folder of ``<id>.cif`` files with ``id_prop.csv``, an
            ``.extxyz`` file, a ``.json``/``.json.gz`` list of records, or a
            loaded :class:`fusion.data.CrystalDataset`.
        target: Target name (``id_prop.csv`` header column, JSON key or extxyz
            info key). Defaults to the dataset's own when ``data`` is a
            ``CrystalDataset``; required for a path.
        ratios: Fraction(s) of the records to REMOVE, each in ``[0, 1)``.
            Defaults to 0.4.
        method: One of :data:`fusion.prune_options.METHODS` (see
            :data:`fusion.prune_options.METHOD_HELP`). Defaults to ``"fusion"``.
        model: Surrogate architecture, one of ``fusion.models.available()``.
            Defaults to ``"cgcnn"``.
        size: Surrogate size preset, ``"cpu"`` (small, fast) or ``"paper"``
            (the published hyper-parameters). Defaults to ``"cpu"``.
        epochs: Maximum surrogate epochs. Defaults to 100.
        batch_size: Surrogate batch size (graphs). Defaults to 64.
        lr: Surrogate peak learning rate. Defaults to 1e-3.
        patience: Stop the surrogate after this many epochs without a better
            validation MAE. Defaults to 20.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. Defaults to ``"auto"``.
        lam: Weight Lambda of the epistemic term in
            ``U = sigmoid(Lambda U_epi + s U_ale)``. Defaults to 0.
        aleatoric_sign: Sign ``s`` of the aleatoric term (-1: the paper's). Defaults to -1.
        gamma: Decay of ``W = exp(-gamma d_NN)``, in 1 / (SOAP distance);
            ``d_NN`` lies in [0, 2]. Defaults to 0.1 (the paper's).
        compression: SOAP compression (``fusion.fingerprints.COMPRESSIONS``).
            Defaults to ``fusion.fingerprints.DEFAULT_COMPRESSION``.
        seed: Seed of the surrogate and of the random, diversity and active
            choices. Defaults to 0.
        n_jobs: Worker processes for loading, fingerprints and graphs (-1: every
            core). Defaults to 1.
        skip_bad: Leave bad records out (listed in ``skipped``) instead of
            raising. Defaults to False.
        progress: Show progress bars. Defaults to False.

    Returns:
        The :class:`fusion.prune_result.PruneResult`.

    Raises:
        fusion.prune_options.OptionError: A bad option (checked before any data are read).
        fusion.userdata.BadRecordsError: Without ``skip_bad``, listing every bad record.
        fusion.data.DataError: Unreadable input, or fewer than 2 valid records.
    """
    import time

    from fusion.fingerprints import COMPRESSIONS, DEFAULT_COMPRESSION

    t0 = time.perf_counter()
    ratio_list = [float(r) for r in ([ratios] if isinstance(ratios, int | float) else ratios)]
    compression = DEFAULT_COMPRESSION if compression is None else compression
    check_options(
        ratios=ratio_list,
        method=method,
        model=model,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        gamma=gamma,
        n_jobs=n_jobs,
        device=device,
        aleatoric_sign=aleatoric_sign,
    )
    if compression not in COMPRESSIONS:
        raise OptionError(
            f"--compression: unknown mode {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        )
    jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs

    if isinstance(data, CrystalDataset):
        ds = data
        target = ds.target if target is None else target
        source = ds.name
    else:
        if target is None:
            raise OptionError("--target is required")
        from fusion.userdata import collect_user_data

        source = str(data)
        ds = collect_user_data(
            data, target, errors="skip" if skip_bad else "raise", n_jobs=jobs, progress=progress
        )
    n = len(ds)
    if n < 2:
        raise DataError(f"{source}: need at least 2 valid records, got {n}")
    y = np.asarray(ds.targets, dtype=np.float64)

    nan = np.full(n, np.nan)
    X, d_nn, W = None, nan.copy(), nan.copy()
    if method in NEEDS_X:
        from fusion import fingerprints
        from fusion.selection import nearest_neighbor_distance, redundancy_weight

        X = fingerprints.soap_fingerprints(
            ds.structures,
            fingerprints.dataset_species(ds.structures),
            compression,
            n_jobs=jobs,
            progress=progress,
        )
        d_nn = nearest_neighbor_distance(X)
        W = redundancy_weight(d_nn, gamma)

    U, u_ale, u_epi = nan.copy(), nan.copy(), nan.copy()
    surrogate = None
    if method in NEEDS_U:
        U, u_ale, u_epi, surrogate = _surrogate_scores(
            ds,
            y,
            model=model,
            size=size,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            device=device,
            lam=lam,
            aleatoric_sign=aleatoric_sign,
            seed=seed,
            n_jobs=jobs,
            progress=progress,
        )

    from fusion.selection import importance, select

    selections = {}
    for r in ratio_list:
        selections[r] = select(
            method,
            r,
            ids=ds.ids,
            seed=seed,
            U=U if method in NEEDS_U else None,
            X=X,
            gamma=gamma,
            **({"d_nn": d_nn} if method in {"fusion", "weight"} else {}),
            **({"y": y} if method == "active" else {}),
        )
    scores = pd.DataFrame(
        {
            "id": ds.ids,
            "target": y,
            "U": U,
            "W": W,
            "I": importance(U, W),
            "d_nn": d_nn,
            "u_ale": u_ale,
            "u_epi": u_epi,
        }
    ).set_index("id")

    warns = spread_warnings(U, W, d_nn, method, gamma)
    if surrogate is not None and surrogate["val_mae"] >= surrogate["median_val_mae"]:
        warns.append(
            f"the surrogate is no better than predicting the median: validation MAE "
            f"{surrogate['val_mae']:.4g} vs {surrogate['median_val_mae']:.4g} (its U may not mean much; "
            "try more --epochs or another --model)"
        )
    shift = {r: ratio_shift(y, sel) for r, sel in selections.items()}
    warns += [w for r in ratio_list if (w := shift_warning(r, shift[r])) is not None]
    options = {
        "model": model if method in NEEDS_U else None,
        "size": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "device": device,
        "lambda": lam,
        "aleatoric_sign": aleatoric_sign,
        "gamma": gamma,
        "compression": compression if method in NEEDS_X else None,
        "seed": seed,
        "skip_bad": skip_bad,
    }
    return PruneResult(
        data=source,
        target=str(target),
        method=method,
        ids=list(ds.ids),
        scores=scores,
        selections=selections,
        skipped=ds.skipped.reset_index(drop=True),
        surrogate=surrogate,
        shift=shift,
        warnings=warns,
        options=options,
        seconds=time.perf_counter() - t0,
    )


def _surrogate_scores(
    ds: CrystalDataset,
    y: np.ndarray,
    *,
    model: str,
    size: str,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    device: str,
    lam: float,
    aleatoric_sign: int,
    seed: int,
    n_jobs: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Train the evidential surrogate once and score the pool: ``(U, u_ale, u_epi, quality)``."""
    from fusion import uncertainty
    from fusion.graphs import build_graphs
    from fusion.stats import median_predictor_mae
    from fusion.train import TrainConfig

    graphs = build_graphs(ds.structures, ds.targets, n_jobs=n_jobs, progress=progress, ids=ds.ids)
    dev = resolve_device(device)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        seed=seed,
        device=dev,
        progress=progress,
    )
    net, result = uncertainty.train_surrogate(
        graphs, model, size, config=config, val_fraction=VAL_FRACTION, seed=seed
    )
    u_ale, u_epi, U = uncertainty.score_pool(net, result, graphs, lam, aleatoric_sign)
    tr, val = surrogate_split(len(graphs), seed, VAL_FRACTION)
    quality = {
        "model": model,
        "size": size,
        "val_mae": float(result.val_mae),
        "median_val_mae": median_predictor_mae(y[tr], y[val]),
        "n_train": len(tr),
        "n_val": len(val),
        "epochs_run": int(result.epochs_run),
        "max_epochs": epochs,
        "best_epoch": int(result.best_epoch),
        "stopped_early": int(result.epochs_run) < epochs,
        "patience": patience,
        "device": dev,
        "seconds": round(float(result.seconds), 2),
    }
    return np.asarray(U), np.asarray(u_ale), np.asarray(u_epi), quality
