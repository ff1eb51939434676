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

This module holds that computation (:func:`prune`, the surrogate's hold-out
:func:`surrogate_split`); the options and their checks are in
:mod:`fusion.prune_options`, the result, its files and its warnings in
:mod:`fusion.prune_result`, the working folder in :mod:`fusion.prune_cache` and
``report.html`` in :mod:`fusion.prune_report`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from fusion.data import CrystalDataset, DataError
from fusion.prune_cache import WorkDir
from fusion.prune_options import (
    NEEDS_U,
    NEEDS_X,
    OptionError,
    check_options,
    check_scheduler,
    resolve_device,
)
from fusion.prune_result import PruneResult, ratio_shift, shift_warning, spread_warnings

T = TypeVar("T")

#: Held-out fraction of the pool for the surrogate's early stopping.
VAL_FRACTION = 0.1
#: Steps on fewer records run in this process: starting local workers would cost
#: more than it saves (an external ``scheduler`` is used whatever the size).
MIN_PARALLEL = 200


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


class _Workers:
    """The run's one Dask client: opened on first need, closed when the run ends.

    Args:
        n: Local worker processes (resolved from ``n_jobs``).
        address: An external scheduler's address, or None for a local cluster.
        stack: The run's exit stack, which closes the client.
    """

    def __init__(self, n: int, address: str | None, stack: contextlib.ExitStack) -> None:
        self.n = n
        self.address = address
        self._stack = stack
        self._client: Any = None
        self.opened = False

    def open(self) -> Any:
        """The client, opened (or connected) the first time."""
        if not self.opened:
            from fusion.parallel import workers

            try:
                self._client = self._stack.enter_context(workers(self.n, self.address))
            except (OSError, TimeoutError) as exc:
                raise OptionError(f"--scheduler {self.address}: cannot connect ({exc})") from exc
            self.opened = True
        return self._client

    def client(self, n_items: int) -> Any:
        """The client for a step over ``n_items`` records, or None to run it in this process."""
        if self.address is None and (self.n == 1 or n_items < MIN_PARALLEL):
            return None
        return self.open()

    def chunk_size(self, n_items: int, default: int) -> int:
        """Records per task: a few tasks per worker when the step runs on the client, else ``default``."""
        client = self.client(n_items)
        if client is None:
            return default
        n_workers = self.n if self.address is None else len(client.scheduler_info()["workers"])
        return max(1, min(default, math.ceil(n_items / (4 * max(1, n_workers)))))


def _cached(
    workdir: WorkDir | None,
    kind: str,
    parts: Callable[[], dict[str, Any]],
    compute: Callable[[], T],
    save: Callable[[T, Path], None],
    load: Callable[[Path], T],
) -> T:
    """``compute()``, through the working folder when there is one (``parts`` only evaluated then)."""
    if workdir is None:
        return compute()
    return workdir.fetch(kind, parts(), compute, save, load)


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
    from fusion.fingerprints import COMPRESSIONS, DEFAULT_COMPRESSION
    from fusion.parallel import resolve_workers, scheduler_address

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
    wd = None if workdir is None else WorkDir(Path(workdir))

    with contextlib.ExitStack() as stack:
        pool = _Workers(resolve_workers(n_jobs), address, stack)
        if address is not None:
            pool.open()  # an unreachable scheduler fails before any work
        ds, source = _load(data, target, pool, wd, skip_bad=skip_bad, progress=progress)
        target = ds.target if target is None else target
        n = len(ds)
        if n < 2:
            raise DataError(f"{source}: need at least 2 valid records, got {n}")
        y = np.asarray(ds.targets, dtype=np.float64)
        digest = _Digest(ds)

        nan = np.full(n, np.nan)
        X, d_nn, W = None, nan.copy(), nan.copy()
        if method in NEEDS_X:
            from fusion.selection import nearest_neighbor_distance, redundancy_weight

            X = _fingerprints(ds, compression, pool, wd, digest, progress)
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
                pool=pool,
                workdir=wd,
                digest=digest,
                progress=progress,
            )
        workers_used = None if not pool.opened else ("scheduler" if address else pool.n)

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
        "n_jobs": n_jobs,
        "workers": workers_used,
        "scheduler": address,
        "workdir": None if workdir is None else str(workdir),
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
        artefacts={} if wd is None else dict(wd.record),
        fingerprints=X,
    )


class _Digest:
    """Content digests of a dataset, computed on first use (keys of the working folder's artefacts)."""

    def __init__(self, ds: CrystalDataset) -> None:
        self.ds = ds
        self._structures: str | None = None

    @property
    def structures(self) -> str:
        """:func:`fusion.prune_cache.structures_digest` of the dataset."""
        if self._structures is None:
            from fusion.prune_cache import structures_digest

            self._structures = structures_digest(self.ds.ids, self.ds.structures)
        return self._structures

    @property
    def targets(self) -> str:
        """:func:`fusion.prune_cache.targets_digest` of the dataset."""
        from fusion.prune_cache import targets_digest

        return targets_digest(np.asarray(self.ds.targets, dtype=np.float64))


def _load(
    data: str | Path | CrystalDataset,
    target: str | None,
    pool: _Workers,
    workdir: WorkDir | None,
    *,
    skip_bad: bool,
    progress: bool,
) -> tuple[CrystalDataset, str]:
    """The checked dataset and a name for it; bad records raise unless ``skip_bad``.

    Every record is checked once, bad ones kept in ``skipped``, and that is what
    the working folder holds, so that a run with ``skip_bad`` after one without
    reuses it.
    """
    if isinstance(data, CrystalDataset):
        return data, data.name
    from fusion import prune_cache, userdata
    from fusion.data import DEFAULT_CUTOFF

    def collect() -> CrystalDataset:
        client = pool.client(_estimated_records(Path(data)))
        return userdata.collect_user_data(
            data, target, errors="skip", n_jobs=1, progress=progress, client=client
        )

    ds = _cached(
        workdir,
        "structures",
        lambda: {"input": prune_cache.input_signature(data), "target": target, "cutoff": DEFAULT_CUTOFF},
        collect,
        prune_cache.save_pickle,
        prune_cache.load_pickle,
    )
    if len(ds.skipped) and not skip_bad:
        raise userdata.BadRecordsError(str(data), ds.skipped, len(ds) + len(ds.skipped))
    return ds, str(data)


def _estimated_records(path: Path) -> int:
    """About how many records an input holds, before reading it (decides whether to start workers).

    A CIF folder: its ``.cif`` files; a file: one record per kB (a small
    crystal's CIF, JSON or extended-XYZ text), five per kB when gzipped.
    """
    if path.is_dir():
        with os.scandir(path) as entries:
            return sum(1 for e in entries if e.name.lower().endswith(".cif"))
    if path.is_file():
        per_kb = 5 if path.name.lower().endswith(".gz") else 1
        return per_kb * path.stat().st_size // 1000
    return 0


def _fingerprints(
    ds: CrystalDataset,
    compression: str,
    pool: _Workers,
    workdir: WorkDir | None,
    digest: _Digest,
    progress: bool,
) -> np.ndarray:
    """SOAP fingerprints of the dataset, through the working folder."""
    from fusion import fingerprints, prune_cache

    def compute() -> np.ndarray:
        return fingerprints.soap_fingerprints(
            ds.structures,
            fingerprints.dataset_species(ds.structures),
            compression,
            n_jobs=1,
            progress=progress,
            chunk_size=pool.chunk_size(len(ds), 64),
            client=pool.client(len(ds)),
        )

    return _cached(
        workdir,
        "fingerprints",
        lambda: {"structures": digest.structures, "n": len(ds), "compression": compression},
        compute,
        prune_cache.save_array,
        prune_cache.load_array,
    )


def _graph_parts(digest: _Digest) -> dict[str, Any]:
    from fusion.graphs import DEFAULT_CUTOFF, DEFAULT_MAX_NEIGHBORS

    return {
        "structures": digest.structures,
        "targets": digest.targets,
        "n": len(digest.ds),
        "cutoff": DEFAULT_CUTOFF,
        "max_neighbors": DEFAULT_MAX_NEIGHBORS,
    }


def _graphs(
    ds: CrystalDataset, pool: _Workers, workdir: WorkDir | None, digest: _Digest, progress: bool
) -> list[Any]:
    """Graphs of the dataset (targets in ``y``), through the working folder."""
    from fusion import featurize, graphs, prune_cache

    meta = {"cutoff": graphs.DEFAULT_CUTOFF, "max_neighbors": graphs.DEFAULT_MAX_NEIGHBORS}

    def compute() -> list[Any]:
        return featurize.graphs(
            ds.structures,
            ds.targets,
            ds.ids,
            meta["cutoff"],
            meta["max_neighbors"],
            kind="structure",
            n_workers=1,
            client=pool.client(len(ds)),
            progress=progress,
            chunk_size=pool.chunk_size(len(ds), featurize.CHUNK),
        )

    return _cached(
        workdir,
        "graphs",
        lambda: _graph_parts(digest),
        compute,
        lambda g, path: prune_cache.save_graph_list(g, path, meta),
        lambda path: prune_cache.load_graph_list(path, meta),
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
    pool: _Workers,
    workdir: WorkDir | None,
    digest: _Digest,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Train the evidential surrogate once and score the pool: ``(U, u_ale, u_epi, quality)``.

    The working folder holds the raw uncertainties ``u_ale`` and ``u_epi``
    (independent of Lambda and s), the trainer's numbers and the weights; the
    graphs are only built (or loaded) when the surrogate has to be trained.
    """
    from fusion import prune_cache, uncertainty
    from fusion.stats import median_predictor_mae
    from fusion.train import TrainConfig

    dev = resolve_device(device)
    fresh: dict[str, np.ndarray] = {}

    def train() -> dict[str, Any]:
        graphs = _graphs(ds, pool, workdir, digest, progress)
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
        fresh["U"] = np.asarray(U)
        state = net.state_dict() if hasattr(net, "state_dict") else None
        return {
            "u_ale": np.asarray(u_ale, dtype=np.float64),
            "u_epi": np.asarray(u_epi, dtype=np.float64),
            "train": {
                "val_mae": float(result.val_mae),
                "epochs_run": int(result.epochs_run),
                "best_epoch": int(result.best_epoch),
                "seconds": float(result.seconds),
                "target_mean": float(getattr(result, "target_mean", 0.0)),
                "target_std": float(getattr(result, "target_std", 1.0)),
            },
            "state_dict": None if state is None else {k: v.detach().cpu() for k, v in state.items()},
        }

    art = _cached(
        workdir,
        "surrogate",
        lambda: {
            "graphs": prune_cache.cache_key("graphs", _graph_parts(digest)),
            "model": model,
            "size": size,
            "epochs": epochs,
            "patience": patience,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "val_fraction": VAL_FRACTION,
            "device": dev,
        },
        train,
        prune_cache.save_surrogate,
        prune_cache.load_surrogate,
    )
    u_ale, u_epi = art["u_ale"], art["u_epi"]
    reused = "U" not in fresh
    if reused and workdir is not None:
        workdir.record.setdefault(
            "graphs", {"status": "not needed (surrogate reused)", "path": None, "key": None}
        )
    U = uncertainty.uncertainty_score(u_ale, u_epi, lam, aleatoric_sign) if reused else fresh["U"]
    t = art["train"]
    tr, val = surrogate_split(len(ds), seed, VAL_FRACTION)
    quality = {
        "model": model,
        "size": size,
        "val_mae": float(t["val_mae"]),
        "median_val_mae": median_predictor_mae(y[tr], y[val]),
        "n_train": len(tr),
        "n_val": len(val),
        "epochs_run": int(t["epochs_run"]),
        "max_epochs": epochs,
        "best_epoch": int(t["best_epoch"]),
        "stopped_early": int(t["epochs_run"]) < epochs,
        "patience": patience,
        "device": dev,
        "seconds": round(float(t["seconds"]), 2),
        "reused": reused,
    }
    return np.asarray(U), np.asarray(u_ale), np.asarray(u_epi), quality
