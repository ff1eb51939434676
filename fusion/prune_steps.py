"""The steps of a prune (:func:`fusion.prune_api.prune`), each computing one artefact once for all ratios.

:func:`load_dataset` (the checked ``structures``), :func:`compute_fingerprints`,
:func:`compute_graphs` (built only when the surrogate trains) and
:func:`surrogate_scores` (the trained ``surrogate``, the pool's uncertainties and
its quality on the hold-out of :func:`surrogate_split`). Each runs on the run's
one Dask client (:class:`Workers`) when it has enough records, and goes through
the working folder (:func:`cached`) when there is one, under a key of the
dataset's content (:class:`Digest`) and the options it depends on.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from fusion.data import CrystalDataset
from fusion.prune_cache import WorkDir
from fusion.prune_options import OptionError, resolve_device

T = TypeVar("T")

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


class Workers:
    """The run's one Dask client: opened on first need, closed when the run ends.

    Args:
        n: Local worker processes (resolved from ``n_jobs``).
        address: An external scheduler's address, or None for a local cluster.
        stack: The run's exit stack, which closes the client.
        min_items: Steps on fewer records run in this process when there is
            no external scheduler.
    """

    def __init__(self, n: int, address: str | None, stack: contextlib.ExitStack, min_items: int) -> None:
        self.n = n
        self.address = address
        self.min_items = min_items
        self._own = contextlib.ExitStack()
        stack.callback(self._own.close)
        self._client: Any = None
        self.opened = False
        self.used = False  # opened at some point of the run

    def open(self) -> Any:
        """The client, opened (or connected) the first time."""
        if not self.opened:
            from fusion.parallel import workers

            try:
                self._client = self._own.enter_context(workers(self.n, self.address))
            except (OSError, TimeoutError) as exc:
                raise OptionError(f"--scheduler {self.address}: cannot connect ({exc})") from exc
            self.opened = self.used = True
        return self._client

    def release(self) -> None:
        """Stop a local cluster, freeing its workers' memory before a step that runs here only.

        An external scheduler stays connected (its workers are not ours to stop).
        A later step that needs workers starts a new cluster.
        """
        if self.opened and self.address is None:
            self._own.close()
            self._client = None
            self.opened = False

    def client(self, n_items: int) -> Any:
        """The client for a step over ``n_items`` records, or None to run it in this process."""
        if self.address is None and (self.n == 1 or n_items < self.min_items):
            return None
        return self.open()

    def chunk_size(self, n_items: int, default: int) -> int:
        """Records per task: a few tasks per worker when the step runs on the client, else ``default``."""
        client = self.client(n_items)
        if client is None:
            return default
        n_workers = self.n if self.address is None else len(client.scheduler_info()["workers"])
        return max(1, min(default, math.ceil(n_items / (4 * max(1, n_workers)))))


def cached(
    workdir: WorkDir | None,
    kind: str,
    parts: Callable[[], dict[str, Any]],
    compute: Callable[[], T],
    save: Callable[[T, Path], None],
    load: Callable[[Path], T],
) -> T:
    """``compute()``, or :meth:`fusion.prune_cache.WorkDir.fetch` with ``parts()`` when there is a ``workdir``."""
    if workdir is None:
        return compute()
    return workdir.fetch(kind, parts(), compute, save, load)


class Digest:
    """Content digests of the dataset ``ds``, computed on first use (keys of the working folder's artefacts)."""

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


def load_dataset(
    data: str | Path | CrystalDataset,
    target: str | None,
    pool: Workers,
    workdir: WorkDir | None,
    *,
    skip_bad: bool,
    progress: bool,
) -> tuple[CrystalDataset, str]:
    """The checked dataset and a name for it; bad records raise unless ``skip_bad``.

    Every record is checked once, bad ones kept in ``skipped``, and that is what
    the working folder holds, so that a run with ``skip_bad`` after one without
    reuses it.

    Args:
        data: A path :func:`fusion.userdata.collect_user_data` reads, or a
            loaded dataset (returned as it is).
        target: Target name.
        pool: The run's workers.
        workdir: The working folder, or None.
        skip_bad: Leave bad records out instead of raising.
        progress: Show progress bars.

    Returns:
        ``(dataset, name)``.

    Raises:
        fusion.userdata.BadRecordsError: Bad records without ``skip_bad``.
    """
    if isinstance(data, CrystalDataset):
        return data, data.name
    from fusion import prune_cache, userdata
    from fusion.data import DEFAULT_CUTOFF

    def collect() -> CrystalDataset:
        client = pool.client(estimated_records(Path(data)))
        return userdata.collect_user_data(
            data, target, errors="skip", n_jobs=1, progress=progress, client=client, packed=True
        )

    ds = cached(
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


def estimated_records(path: Path) -> int:
    """About how many records an input holds, before reading it (decides whether to start workers).

    A CIF folder: its ``.cif`` files; a file: one record per kB (a small
    crystal's CIF, JSON or extended-XYZ text), five per kB when gzipped; 0 when
    ``path`` is missing.
    """
    if path.is_dir():
        with os.scandir(path) as entries:
            return sum(1 for e in entries if e.name.lower().endswith(".cif"))
    if path.is_file():
        per_kb = 5 if path.name.lower().endswith(".gz") else 1
        return per_kb * path.stat().st_size // 1000
    return 0


#: Largest dense block of fingerprints computed at once (bytes of float32).
FINGERPRINT_BLOCK = 2**28
#: Records per block of the graphs step (one round of tasks for the workers).
GRAPH_BLOCK = 1000
#: Fewest records per block (a block is one round of tasks for the workers).
MIN_BLOCK = 64
#: Fingerprints whose share of nonzero entries is below this are held sparse (CSR).
SPARSE_BELOW = 0.3


def compute_fingerprints(
    ds: CrystalDataset,
    compression: str,
    pool: Workers,
    workdir: WorkDir | None,
    digest: Digest,
    progress: bool,
) -> Any:
    """SOAP fingerprints of the dataset (one row per record, ``compression`` mode), through the working folder.

    Computed in blocks of at most :data:`FINGERPRINT_BLOCK` bytes. When the
    first block has fewer than :data:`SPARSE_BELOW` nonzero entries (``mu1nu1``
    and ``off`` with many species: each crystal fills only the features of its
    own few elements), the rows are kept as a ``scipy.sparse`` CSR matrix: on
    10,000 Materials Project cells, 38,080 features with ~3 % nonzero, about
    0.1 GB instead of 1.5 GB. The values are the same as the dense rows'.

    Returns:
        A float32 ``[n, F]`` array, or a CSR matrix of the same values.
    """
    from scipy import sparse
    from tqdm.auto import tqdm

    from fusion import fingerprints, prune_cache

    def compute() -> Any:
        species = fingerprints.dataset_species(ds.structures)
        n = len(ds)
        per_block = max(MIN_BLOCK, FINGERPRINT_BLOCK // (4 * fingerprints.n_features(species, compression)))
        parts: list[Any] = []
        keep_sparse = False
        with tqdm(total=n, disable=not progress, desc=f"SOAP ({compression})", unit="struct") as bar:
            for a in range(0, n, per_block):
                block = ds.structures[a : a + per_block]
                dense = fingerprints.soap_fingerprints(
                    block,
                    species,
                    compression,
                    n_jobs=1,
                    progress=False,
                    chunk_size=pool.chunk_size(len(block), 64),
                    client=pool.client(len(block)),
                )
                if a == 0:
                    keep_sparse = np.count_nonzero(dense) < SPARSE_BELOW * dense.size
                parts.append(sparse.csr_matrix(dense) if keep_sparse else dense)
                bar.update(len(block))
        return sparse.vstack(parts, format="csr") if keep_sparse else np.concatenate(parts, axis=0)

    return cached(
        workdir,
        "fingerprints",
        lambda: {"structures": digest.structures, "n": len(ds), "compression": compression},
        compute,
        prune_cache.save_array,
        prune_cache.load_array,
    )


def graph_parts(digest: Digest) -> dict[str, Any]:
    """What the graphs' key is made of (the surrogate's key holds that key): content, size, graph options."""
    from fusion.graphs import DEFAULT_CUTOFF, DEFAULT_MAX_NEIGHBORS

    return {
        "structures": digest.structures,
        "targets": digest.targets,
        "n": len(digest.ds),
        "cutoff": DEFAULT_CUTOFF,
        "max_neighbors": DEFAULT_MAX_NEIGHBORS,
    }


def compute_graphs(
    ds: CrystalDataset, pool: Workers, workdir: WorkDir | None, digest: Digest, progress: bool
) -> list[Any]:
    """Graphs of the dataset (one per record, in order, targets in ``y``), through the working folder."""
    from fusion import featurize, graphs, prune_cache

    meta = {"cutoff": graphs.DEFAULT_CUTOFF, "max_neighbors": graphs.DEFAULT_MAX_NEIGHBORS}

    def compute() -> list[Any]:
        from tqdm.auto import tqdm

        out: list[Any] = []
        # Block by block: the workers hand over (and drop) each block's graphs
        # before the next, instead of holding all of them until the end.
        with tqdm(total=len(ds), disable=not progress, desc="graphs", unit="graph") as bar:
            for a in range(0, len(ds), GRAPH_BLOCK):
                b = min(a + GRAPH_BLOCK, len(ds))
                out += featurize.graphs(
                    ds.structures[a:b],
                    ds.targets[a:b],
                    ds.ids[a:b],
                    meta["cutoff"],
                    meta["max_neighbors"],
                    kind="structure",
                    n_workers=1,
                    client=pool.client(b - a),
                    progress=False,
                    chunk_size=pool.chunk_size(b - a, featurize.CHUNK),
                )
                bar.update(b - a)
        return out

    return cached(
        workdir,
        "graphs",
        lambda: graph_parts(digest),
        compute,
        lambda g, path: prune_cache.save_graph_list(g, path, meta),
        lambda path: prune_cache.load_graph_list(path, meta),
    )


def surrogate_epochs(n: int, epochs: int, batch_size: int, max_steps: int | None, seed: int = 0) -> int:
    """The surrogate's epoch limit: ``epochs``, or fewer so that it takes at most ``max_steps`` optimiser steps.

    A large pool has many steps per epoch and needs fewer epochs; capping the
    steps keeps the surrogate's cost from growing with the pool beyond
    ``max_steps`` batches (plus its validation passes). At least one epoch.

    Args:
        n: Records of the pool (the surrogate trains on its training part, :func:`surrogate_split`).
        epochs: Maximum epochs (``--epochs``).
        batch_size: Batch size (graphs).
        max_steps: Maximum optimiser steps (``--max-steps``); None or 0: no cap.
        seed: The surrogate's seed (it fixes the split, hence the size of the training part).

    Example:
        >>> surrogate_epochs(2_000, 100, 64, 3_000)  # 1,800 training records: 29 steps an epoch
        100
        >>> surrogate_epochs(10_000, 100, 64, 3_000)  # 9,000: 141 steps an epoch
        21
    """
    if not max_steps:
        return int(epochs)
    per_epoch = math.ceil(len(surrogate_split(n, seed)[0]) / batch_size)
    return max(1, min(int(epochs), int(max_steps) // per_epoch))


def surrogate_scores(
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
    max_steps: int | None,
    lam: float,
    aleatoric_sign: int,
    seed: int,
    pool: Workers,
    workdir: WorkDir | None,
    digest: Digest,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Train the evidential surrogate once and score the pool: ``(U, u_ale, u_epi, quality)``.

    The working folder holds the raw uncertainties ``u_ale`` and ``u_epi``
    (independent of Lambda and s), the trainer's numbers and the weights; the
    graphs are only built (or loaded) when the surrogate has to be trained.

    Args:
        ds: The checked dataset.
        y: Its targets (float64).
        model: Surrogate architecture.
        size: Surrogate size preset.
        epochs: Maximum epochs.
        batch_size: Batch size (graphs).
        lr: Peak learning rate.
        patience: Early-stopping patience (epochs).
        device: Device option (resolved with :func:`fusion.prune_options.resolve_device`).
        max_steps: Maximum optimiser steps (:func:`surrogate_epochs`); None or 0: no cap.
        lam: Weight Lambda of the epistemic term of ``U``.
        aleatoric_sign: Sign s of the aleatoric term of ``U``.
        seed: The surrogate's seed.
        pool: The run's workers.
        workdir: The working folder, or None.
        digest: The dataset's digests.
        progress: Show progress bars.

    Returns:
        ``U``, ``u_ale``, ``u_epi`` (one per record) and the surrogate's
        quality (:attr:`fusion.prune_result.PruneResult.surrogate`).
    """
    from fusion import prune_cache, uncertainty
    from fusion.stats import median_predictor_mae
    from fusion.train import TrainConfig

    dev = resolve_device(device)
    requested, epochs = epochs, surrogate_epochs(len(ds), epochs, batch_size, max_steps, seed)
    fresh: dict[str, np.ndarray] = {}

    def train() -> dict[str, Any]:
        graphs = compute_graphs(ds, pool, workdir, digest, progress)
        pool.release()  # the surrogate trains in this process: the workers' memory is free
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

    art = cached(
        workdir,
        "surrogate",
        lambda: {
            "graphs": prune_cache.cache_key("graphs", graph_parts(digest)),
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
        "max_steps": max_steps or None,
        "capped": epochs < requested,
        "best_epoch": int(t["best_epoch"]),
        "stopped_early": int(t["epochs_run"]) < epochs,
        "patience": patience,
        "device": dev,
        "seconds": round(float(t["seconds"]), 2),
        "reused": reused,
    }
    return np.asarray(U), np.asarray(u_ale), np.asarray(u_epi), quality
