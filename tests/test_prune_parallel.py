"""``fusion prune --n-jobs/--scheduler``: one Dask client per run, results independent of the workers."""

from __future__ import annotations

import contextlib

import dask
import pytest
from conftest import make_cif_folder

from fusion import cli, cli_parser, prune_api

FAST = {"epochs": 1, "batch_size": 4, "device": "cpu"}


@pytest.fixture
def cifs(tmp_path):
    return make_cif_folder(tmp_path / "cifs")


@pytest.fixture
def opened(monkeypatch):
    """Count the clients (not None) opened through :func:`fusion.parallel.workers`; every step uses workers."""
    import fusion.parallel

    count = {"clients": 0, "live": 0}
    original = fusion.parallel.workers

    @contextlib.contextmanager
    def counted(*args, **kwargs):
        with original(*args, **kwargs) as client:
            count["clients"] += client is not None
            count["live"] += 1
            try:
                yield client
            finally:
                count["live"] -= 1

    monkeypatch.setattr(fusion.parallel, "workers", counted)
    monkeypatch.setattr(prune_api, "MIN_PARALLEL", 1)
    return count


@pytest.mark.slow  # two worker processes start and import the featurisers (~20 s on 2 busy cores)
def test_one_local_cluster_same_kept_ids(cifs, opened, monkeypatch):
    from fusion import uncertainty

    live_in_training = []
    original = uncertainty.train_surrogate

    def watched(*args, **kwargs):
        live_in_training.append(opened["live"])
        return original(*args, **kwargs)

    monkeypatch.setattr(uncertainty, "train_surrogate", watched)
    with dask.config.set({"scheduler-address": None}):
        serial = prune_api.prune(cifs, "gap", [0.25, 0.5], "fusion", n_jobs=1, **FAST)
        assert opened["clients"] == 0
        pooled = prune_api.prune(cifs, "gap", [0.25, 0.5], "fusion", n_jobs=2, **FAST)
    assert opened["clients"] == 1  # checks, fingerprints and graphs on one client
    assert live_in_training == [0, 0]  # the local cluster is stopped before the surrogate trains
    assert pooled.options["workers"] == 2
    for r in (0.25, 0.5):
        assert pooled.kept_ids(r) == serial.kept_ids(r)
    assert pooled.scores.equals(serial.scores)


def test_existing_scheduler_same_kept_ids(cifs, opened):
    from distributed import LocalCluster

    serial = prune_api.prune(cifs, "gap", 0.4, "diversity", n_jobs=1, **FAST)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        remote = prune_api.prune(cifs, "gap", 0.4, "diversity", scheduler=cluster.scheduler_address, **FAST)
        # the address from Dask's configuration, i.e. DASK_SCHEDULER_ADDRESS
        with dask.config.set({"scheduler-address": cluster.scheduler_address}):
            from_env = prune_api.prune(cifs, "gap", 0.4, "diversity", **FAST)
    assert opened["clients"] == 2
    assert remote.options["scheduler"] == from_env.options["scheduler"] == cluster.scheduler_address
    assert remote.kept_ids(0.4) == from_env.kept_ids(0.4) == serial.kept_ids(0.4)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--scheduler", "not an address"], None, "--scheduler: 'not an address' does not look like"),
        (["--scheduler", "http://head:8786"], None, "--scheduler: 'http://head:8786'"),
        (["--scheduler", "tcp://head:99999"], None, "does not look like a Dask scheduler address"),
        ([], "head", "DASK_SCHEDULER_ADDRESS: 'head' does not look like"),
    ],
)
def test_bad_scheduler_exits_2_before_reading_data(argv, env, message, tmp_path, capsys, monkeypatch):
    import fusion.userdata

    def no_reading(*args, **kwargs):
        raise AssertionError("data read before the scheduler was checked")

    monkeypatch.setattr(fusion.userdata, "collect_user_data", no_reading)
    base = ["prune", "--data", str(tmp_path), "--target", "gap", "--out-dir", str(tmp_path / "o"), *argv]
    with dask.config.set({"scheduler-address": env}):
        code = cli.main(base)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_n_jobs_defaults_to_every_core(capsys):
    args = cli_parser.build_parser().parse_args(["prune", "--data", "d", "--target", "t", "--out-dir", "o"])
    assert args.n_jobs == -1
    assert args.scheduler is None
    assert args.workdir is None
    assert args.no_report is False


def test_unreachable_scheduler_exits_2_before_reading_data(tmp_path, capsys, monkeypatch):
    import fusion.userdata

    def no_reading(*args, **kwargs):
        raise AssertionError("data read before the scheduler was reached")

    monkeypatch.setattr(fusion.userdata, "collect_user_data", no_reading)
    argv = ["prune", "--data", str(tmp_path), "--target", "gap", "--out-dir", str(tmp_path / "o")]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = cli.main([*argv, "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--scheduler tcp://127.0.0.1:1: cannot connect" in err
    assert not (tmp_path / "o").exists()
