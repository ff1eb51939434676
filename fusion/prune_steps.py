"""The steps of a prune (:func:`fusion.prune_api.prune`), each computing one artefact once for all ratios.

:func:`load_dataset` (the checked ``structures``), :func:`compute_fingerprints`,
:func:`compute_graphs` (built only when the surrogate trains); the
surrogate's step is in :mod:`fusion.prune_surrogate`. Each runs on the run's
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
from fusion.prune_options import OptionError

T = TypeVar("T")


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
    from fusion import prune_cache, prune_files, userdata
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
        prune_files.save_pickle,
        prune_files.load_pickle,
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

    The first block of at most :data:`FINGERPRINT_BLOCK` bytes is computed
    dense. When it has fewer than :data:`SPARSE_BELOW` nonzero entries
    (``mu1nu1`` and ``off`` with many species: each crystal fills only the
    features of its own few elements), the rows are kept as a ``scipy.sparse``
    CSR matrix, and the workers return the rest as CSR chunks, so that only
    nonzero entries travel: on 10,000 Materials Project cells, 38,080 features
    with ~3 % nonzero, about 0.1 GB instead of 1.5 GB. Otherwise the rest
    follows in dense blocks of the same size. The values are the same as the
    dense rows'.

    Dense blocks never pile up: with a working folder each is appended to the
    artefact's ``.npy`` file as it comes (:func:`fusion.prune_files.write_rows`)
    and the result is a read-only memory map of that file, so this step holds
    one block in memory however large the dataset; without one, each is copied
    into the one preallocated result.

    Returns:
        A float32 ``[n, F]`` array (a ``numpy.memmap`` with a working folder),
        or a CSR matrix of the same values.
    """
    from scipy import sparse
    from tqdm.auto import tqdm

    from fusion import fingerprints, prune_files

    def compute(stem: Path | None) -> Any:
        """The fingerprints, or with ``stem`` the path of the file they were written to."""
        species = fingerprints.dataset_species(ds.structures)
        n = len(ds)
        per_block = max(MIN_BLOCK, FINGERPRINT_BLOCK // (4 * fingerprints.n_features(species, compression)))
        with tqdm(total=n, disable=not progress, desc=f"SOAP ({compression})", unit="struct") as bar:
            first = _dense_block(ds.structures[:per_block], species, compression, pool)
            bar.update(len(first))
            if np.count_nonzero(first) < SPARSE_BELOW * first.size:
                rest = _csr_rest(ds.structures[per_block:], species, compression, pool, per_block, bar)
                X = sparse.vstack([sparse.csr_matrix(first), *rest], format="csr")
                return X if stem is None else prune_files.save_sparse(X, stem.with_suffix(".npz"))

            def blocks() -> Any:
                yield first
                for a in range(per_block, n, per_block):
                    block = _dense_block(ds.structures[a : a + per_block], species, compression, pool)
                    bar.update(len(block))
                    yield block

            shape = (n, first.shape[1])
            if stem is not None:
                return prune_files.write_rows(stem.with_suffix(".npy"), shape, blocks())
            out = np.empty(shape, dtype=np.float32)
            a = 0
            for block in blocks():
                out[a : a + len(block)] = block
                a += len(block)
            return out

    if workdir is None:
        return compute(None)
    return workdir.fetch_written(
        "fingerprints",
        {"structures": digest.structures, "n": len(ds), "compression": compression},
        compute,
        prune_files.load_array,
    )


def _dense_block(structures: list[Any], species: list[int], compression: str, pool: Workers) -> np.ndarray:
    """SOAP fingerprints of one block, dense, on the workers when the block is large enough."""
    from fusion import fingerprints

    return fingerprints.soap_fingerprints(
        structures,
        species,
        compression,
        n_jobs=1,
        progress=False,
        chunk_size=pool.chunk_size(len(structures), 64),
        client=pool.client(len(structures)),
    )


def _csr_rest(
    structures: list[Any], species: list[int], compression: str, pool: Workers, per_block: int, bar: Any
) -> list[Any]:
    """SOAP fingerprints of ``structures`` as CSR chunks made on the workers, in order.

    Only the nonzero entries travel back, and this process never holds these
    rows dense. A sliding window of 4 tasks per worker keeps every worker busy
    without serialising every chunk's structures at once.
    """
    from fusion.parallel import map_ordered

    if not structures:
        return []
    client = pool.client(len(structures))
    size = pool.chunk_size(min(len(structures), per_block), 64)
    tasks = [(structures[b : b + size], species, compression) for b in range(0, len(structures), size)]
    window = None if client is None else 4 * max(1, len(client.scheduler_info()["workers"]))
    return map_ordered(
        _soap_csr, tasks, client, window=window, on_result=lambda k, _: bar.update(len(tasks[k][0]))
    )


def _soap_csr(args: tuple[list[Any], list[int], str]) -> Any:
    """Worker: SOAP fingerprints of a chunk as a CSR matrix (the same values as the dense rows)."""
    from scipy import sparse

    from fusion.fingerprints import soap_fingerprints

    structures, species, compression = args
    return sparse.csr_matrix(soap_fingerprints(structures, species, compression, n_jobs=1, progress=False))


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
    from fusion import featurize, graphs, prune_files

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
        lambda g, path: prune_files.save_graph_list(g, path, meta),
        lambda path: prune_files.load_graph_list(path, meta),
    )
