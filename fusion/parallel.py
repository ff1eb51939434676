"""One Dask layer for every parallel step: featurisation chunks and training runs.

Everything that runs in parallel goes through :func:`workers` and
:func:`map_ordered` (or :func:`map_on_workers`, which picks the caller's
client or starts workers for one call):

* By default, :func:`workers` starts a ``dask.distributed.LocalCluster`` with one
  single-threaded worker process per core (``OMP_NUM_THREADS=1`` and friends set
  before each worker starts, so torch, numpy and dscribe use one thread each:
  with two threads per process our trainer collapses when the other core is
  busy). With one worker it starts nothing and runs in this process.
* With a scheduler address it connects to an existing cluster instead. The
  address comes from the ``scheduler`` argument (the ``--scheduler`` option of
  ``fusion prune``, the ``dask.scheduler`` key of ``params.yaml``) or else from
  Dask's own configuration, i.e. the ``DASK_SCHEDULER_ADDRESS`` environment
  variable.
* :func:`map_ordered` gathers results in input order, whatever worker finished
  first, so an output never depends on the number of workers: same seed, same
  bits.

Starting a cluster elsewhere (the README has the full recipe)::

    # plain machines: one scheduler, any number of workers
    dask scheduler --port 8786                       # on the head node
    dask worker tcp://HEAD:8786 --nworkers 16 --nthreads 1   # on each node
    DASK_SCHEDULER_ADDRESS=tcp://HEAD:8786 dvc repro

    # SLURM, with dask-jobqueue (pip install dask-jobqueue)
    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=16, processes=16, memory="64GB", walltime="04:00:00")
    cluster.scale(jobs=4); print(cluster.scheduler_address)

Workers of an external cluster must have this package installed at the same
version (the tasks are functions of :mod:`fusion`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
"""Set in every local worker before it starts. Only thread counts: the
machine's ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are inherited untouched."""


def _spawn_environ() -> dict[str, Any]:
    """Dask's pre-spawn environment for local workers, without ``MALLOC_TRIM_THRESHOLD_``.

    Why: Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so glibc
    hands freed memory back to the operating system at once. A SOAP call
    allocates and frees a per-site array of hundreds of MB (``mu1nu1`` with many
    species), which then has to be faulted in and zeroed again on every call:
    measured on 640 structures of 81 species, 16.1 s with Dask's setting
    against 9.8 s with glibc's default (43x the page faults, 5.1 s of kernel
    time). This was most of the poor 1 -> 2 worker speed-up of the scale
    benchmark. glibc's default threshold adapts to the sizes freed, so workers
    keep that memory for the next call.
    """
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def available_cores() -> int:
    """Return the cores this process may use (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(n_workers: int | None) -> int:
    """Turn a worker count option into a number of local workers.

    Args:
        n_workers: ``None`` or ``-1`` for one per core, else a positive count.

    Returns:
        The number of worker processes to start.

    Raises:
        ValueError: If ``n_workers`` is 0 or below -1.
    """
    if n_workers is None or n_workers == -1:
        return available_cores()
    if n_workers < 1:
        raise ValueError(f"workers must be a positive integer, or -1/None for every core; got {n_workers}")
    return int(n_workers)


def scheduler_address(scheduler: str | None = None) -> str | None:
    """Return the address of the Dask scheduler to use, or ``None`` for a local cluster.

    Args:
        scheduler: An explicit address such as ``"tcp://10.0.0.1:8786"``. When
            ``None`` or empty, Dask's configuration key ``scheduler-address``
            (environment variable ``DASK_SCHEDULER_ADDRESS``) is used.

    Returns:
        The address, or ``None`` when neither is set.
    """
    if scheduler:
        return str(scheduler)
    import dask

    return dask.config.get("scheduler-address", None) or None


MIN_ITEMS = 200
"""Below this many records a local cluster costs more to start (seconds) than it saves."""


@contextlib.contextmanager
def workers(
    n_workers: int | None = None,
    scheduler: str | None = None,
    n_items: int | None = None,
    min_items: int = MIN_ITEMS,
) -> Iterator[Any]:
    """Provide a Dask client for the duration of a ``with`` block.

    Args:
        n_workers: Local worker processes (1 thread each); ``None`` or -1 for
            one per core. Ignored when a scheduler address is set. Defaults to
            ``None``.
        scheduler: Address of an existing scheduler; see :func:`scheduler_address`.
            Defaults to ``None``.
        n_items: Records the block will process, if known: below
            ``min_items`` no local cluster is started. Defaults to None.
        min_items: The smallest job worth a local cluster (a start costs a
            few seconds): :data:`MIN_ITEMS` for SOAP, more for cheaper
            steps. Defaults to :data:`MIN_ITEMS`.

    Yields:
        A ``distributed.Client``, or ``None`` when one local worker is asked
        for (or too few items): the work then runs serially in this process,
        and no cluster is started.
    """
    address = scheduler_address(scheduler)
    if address:
        from distributed import Client

        with Client(address) as client:
            yield client
        return
    n = resolve_workers(n_workers)
    if n == 1 or (n_items is not None and n_items < min_items):
        yield None
        return
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": _spawn_environ()}):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # The scheduler serves HTTP routes even without a dashboard, on 8787 by
            # default: a second cluster on the machine would warn into the notebook.
            scheduler_kwargs={"dashboard_address": ":0"},
            silence_logs=logging.ERROR,
            env=ONE_THREAD_ENV,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Split ``items`` into consecutive slices of at most ``size`` (order kept)."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    return [items[a : a + size] for a in range(0, len(items), size)]


def map_ordered(
    fn: Callable[..., R],
    tasks: Sequence[Any],
    client: Any = None,
    *,
    progress: bool = False,
    desc: str | None = None,
    weights: Sequence[int] | None = None,
    unit: str = "task",
    on_result: Callable[[int, R], None] | None = None,
    window: int | None = None,
) -> list[R]:
    """Apply ``fn`` to every task, on the client's workers or serially, results in input order.

    Args:
        fn: A module-level function (it travels to the workers by reference).
        tasks: One argument per call.
        client: A ``distributed.Client`` from :func:`workers`, or ``None`` to run
            in this process. Defaults to ``None``.
        progress: Show a tqdm bar as tasks finish. Defaults to False.
        desc: The bar's label. Defaults to none.
        weights: Progress units per task (e.g. structures per chunk). Defaults
            to one per task.
        unit: The bar's unit. Defaults to ``"task"``.
        on_result: Called as ``on_result(index, result)`` in this process as
            each task finishes (in completion order), e.g. to save a finished
            training run at once. Defaults to none.
        window: At most this many tasks submitted and not yet finished; the
            next is sent as one finishes, so the workers never wait between
            blocks and the tasks' arguments are not all serialised at once.
            Defaults to None: every task at once.

    Returns:
        ``[fn(t) for t in tasks]``, in the order of ``tasks``.

    Raises:
        Exception: The first task's exception, re-raised here, when a task fails.
    """
    weights = list(weights) if weights is not None else [1] * len(tasks)
    bar = tqdm(total=sum(weights), desc=desc, unit=unit, disable=not progress)
    try:
        if client is None:
            out = []
            for k, (t, w) in enumerate(zip(tasks, weights, strict=True)):
                out.append(fn(t))
                if on_result is not None:
                    on_result(k, out[-1])
                bar.update(w)
            return out
        from distributed import as_completed

        tasks = list(tasks)
        ahead = len(tasks) if window is None else max(1, window)
        # pure=False: equal tasks still run (and are counted) once each.
        live = {f.key: (k, f) for k, f in enumerate(client.map(fn, tasks[:ahead], pure=False))}
        sent = len(live)
        results: list[Any] = [None] * len(tasks)
        try:
            pending = as_completed([f for _, f in live.values()])
            for f in pending:
                if f.status == "error":
                    f.result()  # re-raises the worker's exception here
                k, _ = live.pop(f.key)
                results[k] = f.result()
                # Dropping the last reference lets the worker free the result now,
                # not when the whole map returns.
                f.release()
                if on_result is not None:
                    on_result(k, results[k])
                bar.update(weights[k])
                if sent < len(tasks):
                    nxt = client.submit(fn, tasks[sent], pure=False)
                    live[nxt.key] = (sent, nxt)
                    sent += 1
                    pending.add(nxt)
            return results
        except BaseException:
            client.cancel([f for _, f in live.values()])
            raise
    finally:
        bar.close()


def map_on_workers(
    fn: Callable[..., R],
    tasks: Sequence[Any],
    client: Any = None,
    n_workers: int | None = None,
    **options: Any,
) -> list[R]:
    """:func:`map_ordered` on the given client, else on workers started for this call.

    The featurisation steps (record checks, graphs, SOAP) take either a client
    that the caller already holds or a number of local workers; this is that
    choice, written once.

    Args:
        fn: A module-level function (it travels to the workers by reference).
        tasks: One argument per call.
        client: A ``distributed.Client`` from :func:`workers`. Defaults to
            ``None``: :func:`workers` provides one for ``n_workers`` (none, i.e.
            this process, when there is a single task).
        n_workers: Local workers when no ``client`` is given; ``None`` or -1
            for one per core. Defaults to ``None``.
        **options: Passed to :func:`map_ordered` (``progress``, ``desc``,
            ``weights``, ``unit``, ...).

    Returns:
        ``[fn(t) for t in tasks]``, in the order of ``tasks``.
    """
    if client is not None:
        return map_ordered(fn, tasks, client, **options)
    with workers(n_workers if len(tasks) > 1 else 1) as own:
        return map_ordered(fn, tasks, own, **options)
