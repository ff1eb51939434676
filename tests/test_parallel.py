"""The Dask layer: local clusters, an existing scheduler, ordered results independent of workers."""

from __future__ import annotations

import math
import os
import warnings

import dask
import numpy as np
import pytest
from conftest import assert_bitwise_equal, assert_same_integers, cscl, rocksalt
from distributed import LocalCluster

from fusion import featurize
from fusion.graphs import graphs_from_cif
from fusion.parallel import chunks, map_ordered, resolve_workers, scheduler_address, workers


def _slow_square(x: int) -> int:
    # Later tasks finish first, so gathering in completion order would scramble the output.
    import time

    time.sleep(0.02 * (5 - x % 5))
    return x * x


def _threads(_: int) -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("record 3 is bad")
    return x


@pytest.fixture(scope="module")
def cluster():
    # An "existing" cluster, as a user would start with `dask scheduler` + `dask worker`.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_resolve_workers():
    assert resolve_workers(3) == 3
    assert resolve_workers(None) == resolve_workers(-1) >= 1
    for bad in (0, -2):
        with pytest.raises(ValueError, match="positive integer"):
            resolve_workers(bad)


def test_chunks_keep_order_and_reject_zero():
    assert chunks(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError, match="chunk size"):
        chunks([1], 0)


def test_one_worker_starts_no_cluster():
    with dask.config.set({"scheduler-address": None}), workers(1) as client:
        assert client is None
        assert map_ordered(_slow_square, [3, 1, 2], client) == [9, 1, 4]


def test_local_cluster_is_ordered_and_single_threaded():
    with workers(2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        assert map_ordered(_slow_square, list(range(12)), client) == [x * x for x in range(12)]
        assert set(client.run(_threads, 0).values()) == {"1"}
        # Dask's MALLOC_TRIM_THRESHOLD_=65536 made SOAP 1.6x slower on workers (fusion.parallel._spawn_environ).
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}


def test_two_clusters_on_one_machine_print_no_port_warning():
    """A stage run beside the study must not warn "Port 8787 is already in use" into its notebook."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with workers(2) as first, workers(2) as second:
            assert (
                map_ordered(_slow_square, [2, 3], first)
                == map_ordered(_slow_square, [2, 3], second)
                == [4, 9]
            )


def test_a_window_of_tasks_gives_the_same_ordered_results(cluster):
    """``window`` sends at most that many tasks ahead; every result still arrives once, in input order.

    A finished task's future is released at once, so the client holds about
    ``window`` futures at any time, not every finished one until the map returns.
    """
    seen, held = [], []
    with workers(scheduler=cluster.scheduler_address) as client:

        def done(k: int, _: int) -> None:
            seen.append(k)
            held.append(len(client.futures))

        out = map_ordered(_slow_square, list(range(10)), client, window=3, on_result=done)
    assert out == [x * x for x in range(10)]
    assert sorted(seen) == list(range(10))
    # window 3, plus at most two releases still in flight on the client's loop
    assert max(held) <= 5, held


def test_worker_error_reaches_the_caller(cluster):
    with workers(scheduler=cluster.scheduler_address) as client, pytest.raises(ValueError, match="record 3"):
        map_ordered(_fail_on_three, list(range(6)), client)


def test_scheduler_address_argument_and_environment(cluster, monkeypatch):
    address = cluster.scheduler_address
    with workers(scheduler=address) as client:
        assert client.scheduler.address == address
        assert map_ordered(math.isqrt, [16, 81, 4], client) == [4, 9, 2]
    # The usual Dask environment variable, read through dask's configuration.
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    dask.config.refresh()
    try:
        assert scheduler_address() == address
        with workers(1) as client:  # the address wins over the local worker count
            assert client is not None
            assert client.scheduler.address == address
    finally:
        monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
        dask.config.refresh()
    assert scheduler_address() is None


def _cifs() -> tuple[list[str], list[float], list[str]]:
    structures = [rocksalt(5.4 + 0.03 * k) if k % 3 else cscl(4.0 + 0.02 * k) for k in range(11)]
    return [s.to(fmt="cif") for s in structures], [0.1 * k for k in range(11)], [f"r{k}" for k in range(11)]


def _same_graphs(a: list, b: list) -> None:
    assert len(a) == len(b)
    for ga, gb in zip(a, b, strict=True):
        assert set(ga.keys()) == set(gb.keys())
        for key in ("edge_index", "z", "natoms"):
            assert_same_integers(ga[key], gb[key])
        # The same function on the same input, in a worker or here: bit for bit.
        for key in ("pos", "lattice", "edge_vec", "edge_dist", "y"):
            assert_bitwise_equal(ga[key], gb[key])


def test_graphs_equal_serial_for_any_worker_count(cluster):
    cifs, y, ids = _cifs()
    serial = graphs_from_cif(cifs, y, progress=False, ids=ids)
    _same_graphs(serial, featurize.graphs(cifs, y, ids, chunk_size=4))
    with workers(scheduler=cluster.scheduler_address) as client:
        _same_graphs(serial, featurize.graphs(cifs, y, ids, client=client, chunk_size=3))


def test_graphs_reject_bad_arguments():
    cifs, y, ids = _cifs()
    with pytest.raises(ValueError, match="kind"):
        featurize.graphs(cifs, y, ids, kind="xyz")
    with pytest.raises(ValueError, match="11 records, 10 ids"):
        featurize.graphs(cifs, y, ids[:-1])


def test_fingerprints_and_checks_equal_serial_on_a_cluster(cluster):
    import fusion.record_checks as rc
    from fusion.fingerprints import dataset_species, soap_fingerprints

    cifs, y, ids = _cifs()
    recs = [rc.RawRecord(i, c, v) for i, c, v in zip(ids, cifs, y, strict=True)]
    serial = rc.validate_records(recs, name="t", target="y", progress=False)
    species = dataset_species(serial.structures)
    X = soap_fingerprints(serial.structures, species, "mu2", progress=False)
    with workers(scheduler=cluster.scheduler_address) as client:
        parallel = rc.validate_records(recs, name="t", target="y", progress=False, client=client)
        Xp = soap_fingerprints(
            parallel.structures, species, "mu2", progress=False, chunk_size=2, client=client
        )
    assert serial.ids == parallel.ids
    assert_bitwise_equal(np.asarray(serial.targets), np.asarray(parallel.targets))
    assert_bitwise_equal(X, Xp)


def test_training_runs_on_workers_equal_serial_rows_in_order(tmp_path):
    from fusion.graphs import build_graphs
    from fusion.stages.common import RunLog, train_config
    from fusion.stages.train import fit_all

    structures = [rocksalt(5.3 + 0.02 * k) if k % 2 else cscl(3.9 + 0.02 * k) for k in range(20)]
    built = build_graphs(structures, [0.05 * k for k in range(20)], progress=False)
    graphs = {f"r{k}": g for k, g in enumerate(built)}
    ids = list(graphs)
    # Runs of different lengths, so the workers finish them out of order.
    runs = [
        ((ids[: 12 - 4 * j], ids[12:15], ids[15:]), train_config(3 - j, 4, 1e-3, 3 - j, j, 1))
        for j in range(3)
    ]

    def row(k: int, result: dict) -> dict:
        return {"run": k, **result}

    serial = fit_all(RunLog(tmp_path / "serial.csv"), "cgcnn", "cpu", graphs, runs, row, workers=1)
    log = RunLog(tmp_path / "dask.csv")
    parallel = fit_all(log, "cgcnn", "cpu", graphs, runs, row, workers=2)
    assert [r["run"] for r in serial] == [r["run"] for r in parallel] == [0, 1, 2]
    for a, b in zip(serial, parallel, strict=True):
        # The same training code, seed and one torch thread, in a worker or here: bit for bit.
        assert (a["val_mae"], a["test_mae"], a["n_train"]) == (b["val_mae"], b["test_mae"], b["n_train"])
        assert a["run_key"] == b["run_key"]
    # Every finished run was saved as it finished; a rerun trains nothing.
    rerun = RunLog(tmp_path / "dask.csv")
    again = fit_all(rerun, "cgcnn", "cpu", graphs, runs, row, workers=2)
    assert rerun.reused == 3
    # Reused rows come from the CSV, which stores 10 significant digits.
    assert [r["test_mae"] for r in again] == pytest.approx([r["test_mae"] for r in parallel], rel=1e-9)


def test_too_few_items_start_no_cluster():
    with dask.config.set({"scheduler-address": None}), workers(2, n_items=10) as client:
        assert client is None
    with dask.config.set({"scheduler-address": None}), workers(2, n_items=500, min_items=1000) as client:
        assert client is None  # a cheap step (e.g. graphs) sets a higher bar
