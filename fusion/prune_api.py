"""Prune a user's crystal dataset from Python: the engine behind ``fusion prune``.

Example::

    from fusion.prune_api import prune

    result = prune("my_cifs/", "band_gap", ratios=[0.2, 0.4], method="fusion", epochs=50)
    result.scores                 # DataFrame by id: target, U, W, I, d_nn, u_ale, u_epi
    result.kept_ids(0.4)          # ids kept when 40 % are removed
    result.removed_ids(0.4)       # the removed ids, first removed first
    result.surrogate              # validation MAE against the median predictor's, epochs, device
    result.warnings               # what deserves a look before trusting the selection
    result.write("pruned/")       # kept.csv, removed.csv, scores.csv, summary.json, report.html
                                  # (+ skipped.csv)

    # a working folder: a second run (another ratio, method, gamma or lambda) reuses
    # the structures, fingerprints, graphs and surrogate of the first
    prune("my_cifs/", "band_gap", ratios=0.6, workdir="work/")

Steps, each done once for all ratios: load and check every record
(:func:`fusion.userdata.collect_user_data`), SOAP fingerprints and nearest-neighbour
distances (methods that use them), graphs and an evidential surrogate (methods
that use ``U``), then one selection per ratio. With ``workdir``, the four
artefacts are cached there under keys of what they depend on
(:mod:`fusion.prune_cache`).

Parallel parts (checking records, fingerprints, graphs) run on ONE Dask client
per run (:func:`fusion.parallel.workers`): a local cluster of ``n_jobs``
single-threaded workers, opened only when a step has at least
:data:`MIN_PARALLEL` records, or an existing cluster at ``scheduler`` (or
``DASK_SCHEDULER_ADDRESS``), connected to at the start. Results are gathered in
input order: the kept ids never depend on the number of workers. Without the
run's client a step runs in this process; it never starts a cluster of its own.

This module holds the run (:func:`prune`); the steps that compute the
structures, fingerprints and graphs, and the run's Dask client, are in
:mod:`fusion.prune_steps`; the surrogate and its hold-out (:func:`surrogate_split`,
re-exported here) in :mod:`fusion.prune_surrogate`; the options and their checks in :mod:`fusion.prune_options`, the result, its
files and its warnings in :mod:`fusion.prune_result`, the working folder in
:mod:`fusion.prune_cache` and ``report.html`` in :mod:`fusion.prune_report`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.data import CrystalDataset, DataError
from fusion.parallel import MIN_ITEMS
from fusion.prune_cache import WorkDir
from fusion.prune_options import (
    MAX_ATOM_STEPS,
    MAX_STEPS,
    NEEDS_U,
    NEEDS_X,
    checked_options,
)
from fusion.prune_result import PruneResult, ratio_shift, run_warnings
from fusion.prune_steps import Digest, Workers, compute_fingerprints, load_dataset
from fusion.prune_surrogate import VAL_FRACTION, surrogate_scores, surrogate_split

__all__ = ["MIN_PARALLEL", "VAL_FRACTION", "prune", "surrogate_split"]

#: Steps on fewer records run in this process: starting local workers would cost
#: more than it saves (an external ``scheduler`` is used whatever the size). The
#: pipeline's threshold for SOAP, :data:`fusion.parallel.MIN_ITEMS`.
MIN_PARALLEL = MIN_ITEMS


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
    max_steps: int | None = MAX_STEPS,
    max_atom_steps: int | None = MAX_ATOM_STEPS,
    lam: float = 0.0,
    aleatoric_sign: int = -1,
    gamma: float = 0.1,
    compression: str | None = None,
    seed: int = 0,
    n_jobs: int = -1,
    scheduler: str | None = None,
    workdir: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = False,
) -> PruneResult:
    """Prune a crystal dataset at one or several ratios.

    Fingerprints, nearest-neighbour distances and the surrogate are computed
    once and shared by every ratio; with ``workdir``, also by later runs.

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
        max_steps: At most this many surrogate optimiser steps: a large pool
            trains fewer than ``epochs`` epochs
            (:func:`fusion.prune_surrogate.surrogate_epochs`). None or 0: no cap.
            Defaults to :data:`MAX_STEPS` (3,000; pools below about 2,000
            records keep ``epochs``).
        max_atom_steps: At most this many atoms through the surrogate in
            training, summed over its steps: pools of large cells train fewer
            steps (:func:`fusion.prune_surrogate.step_cap`). None or 0: no cap.
            Defaults to :data:`MAX_ATOM_STEPS` (2.5 million: cells of up to
            ~13 atoms keep ``max_steps``; cells of 94 atoms train 415 steps).
        lam: Weight Lambda of the epistemic term in
            ``U = sigmoid(Lambda U_epi + s U_ale)``. Defaults to 0.
        aleatoric_sign: Sign ``s`` of the aleatoric term (-1: the paper's). Defaults to -1.
        gamma: Decay of ``W = exp(-gamma d_NN)``, in 1 / (SOAP distance);
            ``d_NN`` lies in [0, 2]. Defaults to 0.1 (the paper's).
        compression: SOAP compression (``fusion.fingerprints.COMPRESSIONS``).
            Defaults to ``fusion.fingerprints.DEFAULT_COMPRESSION``.
        seed: Seed of the surrogate and of the random, diversity and active
            choices. Defaults to 0.
        n_jobs: Local single-threaded Dask workers for checking records,
            fingerprints and graphs (-1: one per core); steps on fewer than
            :data:`MIN_PARALLEL` records run in this process. Ignored with a
            scheduler. The result does not depend on it. Defaults to -1.
        scheduler: Address of an existing Dask scheduler (e.g.
            ``"tcp://10.0.0.1:8786"``) to run the parallel parts on. Defaults
            to None: Dask's ``DASK_SCHEDULER_ADDRESS`` when set, else a local
            cluster.
        workdir: Working folder caching the checked structures, graphs,
            fingerprints and trained surrogate (:mod:`fusion.prune_cache`), so
            that another run on the same data reuses them and an interrupted
            run resumes. Defaults to None (nothing cached).
        skip_bad: Leave bad records out (listed in ``skipped``) instead of
            raising. Defaults to False.
        progress: Show progress bars. Defaults to False.

    Returns:
        The :class:`fusion.prune_result.PruneResult`.

    Raises:
        fusion.prune_options.OptionError: A bad option (checked before any data
            are read), or a scheduler that cannot be reached.
        fusion.userdata.BadRecordsError: Without ``skip_bad``, listing every bad record.
        fusion.data.DataError: Unreadable input, or fewer than 2 valid records.
    """
    from fusion.parallel import resolve_workers

    t0 = time.perf_counter()
    ratio_list = [float(r) for r in ([ratios] if isinstance(ratios, int | float) else ratios)]
    train = {
        "model": model,
        "size": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "device": device,
        "max_steps": max_steps,
        "max_atom_steps": max_atom_steps,
    }
    compression, address = checked_options(
        data,
        target,
        ratio_list,
        method,
        compression,
        scheduler,
        train,
        gamma=gamma,
        n_jobs=n_jobs,
        aleatoric_sign=aleatoric_sign,
        workdir=workdir,
    )
    wd = None if workdir is None else WorkDir(Path(workdir))

    with contextlib.ExitStack() as stack:
        pool = Workers(resolve_workers(n_jobs), address, stack, MIN_PARALLEL)
        if address is not None:
            pool.open()  # an unreachable scheduler fails before any work
        ds, source = load_dataset(data, target, pool, wd, skip_bad=skip_bad, progress=progress)
        if len(ds) < 2:
            raise DataError(f"{source}: need at least 2 valid records, got {len(ds)}")
        scores = _score(
            ds,
            method,
            compression,
            gamma,
            train,
            lam=lam,
            aleatoric_sign=aleatoric_sign,
            seed=seed,
            pool=pool,
            workdir=wd,
            progress=progress,
        )
        workers_used = None if not pool.used else ("scheduler" if address else pool.n)

    selections = _select_per_ratio(method, ratio_list, ds.ids, scores, seed=seed, gamma=gamma)
    shift = {r: ratio_shift(scores.y, sel) for r, sel in selections.items()}
    options = {
        **train,
        "model": model if method in NEEDS_U else None,
        "lambda": lam,
        "aleatoric_sign": aleatoric_sign,
        "gamma": gamma,
        "compression": compression if method in NEEDS_X else None,
        "seed": seed,
        "skip_bad": skip_bad,
        "n_jobs": n_jobs,
        "workers": workers_used,
        "scheduler": address,
        "workdir": None if workdir is None else str(workdir),
    }
    return PruneResult(
        data=source,
        target=str(ds.target if target is None else target),
        method=method,
        ids=list(ds.ids),
        scores=scores.frame(ds.ids),
        selections=selections,
        skipped=ds.skipped.reset_index(drop=True),
        surrogate=scores.surrogate,
        shift=shift,
        warnings=run_warnings(
            scores.U, scores.W, scores.d_nn, scores.surrogate, scores.X, method, gamma, shift
        ),
        options=options,
        seconds=time.perf_counter() - t0,
        artefacts={} if wd is None else dict(wd.record),
        fingerprints=scores.X,
    )


@dataclass
class _Scores:
    """The pool's per-record scores (NaN where the method does not use them) and the surrogate's quality."""

    y: np.ndarray
    X: Any  # float32 array, a scipy.sparse CSR matrix, or None
    d_nn: np.ndarray
    W: np.ndarray
    U: np.ndarray
    u_ale: np.ndarray
    u_epi: np.ndarray
    surrogate: dict[str, Any] | None

    def frame(self, ids: Sequence[str]) -> pd.DataFrame:
        """The scores by id (:attr:`fusion.prune_result.PruneResult.scores`), with ``I = U / W``."""
        from fusion.selection import importance

        return pd.DataFrame(
            {
                "id": ids,
                "target": self.y,
                "U": self.U,
                "W": self.W,
                "I": importance(self.U, self.W),
                "d_nn": self.d_nn,
                "u_ale": self.u_ale,
                "u_epi": self.u_epi,
            }
        ).set_index("id")


def _score(
    ds: CrystalDataset,
    method: str,
    compression: str,
    gamma: float,
    train: dict[str, Any],
    *,
    lam: float,
    aleatoric_sign: int,
    seed: int,
    pool: Workers,
    workdir: WorkDir | None,
    progress: bool,
) -> _Scores:
    """Score the pool once for all ratios: fingerprints, ``d_nn`` and ``W``, then ``U``, where the method uses them.

    ``train`` holds the surrogate's options (:func:`fusion.prune_surrogate.surrogate_scores`).
    """
    y = np.asarray(ds.targets, dtype=np.float64)
    digest = Digest(ds)

    nan = np.full(len(ds), np.nan)
    X, d_nn, W = None, nan.copy(), nan.copy()
    if method in NEEDS_X:
        from fusion.selection import nearest_neighbor_distance, redundancy_weight

        X = compute_fingerprints(ds, compression, pool, workdir, digest, progress)
        d_nn = nearest_neighbor_distance(X)
        W = redundancy_weight(d_nn, gamma)

    U, u_ale, u_epi = nan.copy(), nan.copy(), nan.copy()
    surrogate = None
    if method in NEEDS_U:
        U, u_ale, u_epi, surrogate = surrogate_scores(
            ds,
            y,
            **train,
            lam=lam,
            aleatoric_sign=aleatoric_sign,
            seed=seed,
            pool=pool,
            workdir=workdir,
            digest=digest,
            progress=progress,
        )
    return _Scores(y=y, X=X, d_nn=d_nn, W=W, U=U, u_ale=u_ale, u_epi=u_epi, surrogate=surrogate)


def _select_per_ratio(
    method: str, ratios: list[float], ids: Sequence[str], scores: _Scores, *, seed: int, gamma: float
) -> dict[float, Any]:
    """One :func:`fusion.selection.select` per ratio, on the same scores."""
    from fusion.selection import select

    return {
        r: select(
            method,
            r,
            ids=ids,
            seed=seed,
            U=scores.U if method in NEEDS_U else None,
            X=scores.X,
            gamma=gamma,
            **({"d_nn": scores.d_nn} if method in {"fusion", "weight"} else {}),
            **({"y": scores.y} if method == "active" else {}),
        )
        for r in ratios
    }
