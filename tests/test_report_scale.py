import json

import pytest

from fusion.report import scale


def _rates(tmp_path, with_scale: bool):
    (tmp_path / "selection.json").write_text(json.dumps({"fusion": [
        {"n": 10_000, "nn_search": "exact", "nn_seconds": 1.0, "prefix_search_seconds": 0.001},
        {"n": 100_000, "nn_search": "exact", "nn_seconds": 100.0, "prefix_search_seconds": 0.01},
        {"n": 1_000_000, "nn_search": "approximate (IVF)", "nn_seconds": 200.0, "prefix_search_seconds": 0.2},
    ]}))  # fmt: skip
    (tmp_path / "train_throughput.json").write_text(
        json.dumps({"graphs_per_second": {"cgcnn": 1000.0}, "dataset": "d", "threads": 1})
    )
    (tmp_path / "fingerprints.json").write_text(json.dumps({"datasets": {"mp_mtcgcnn": {
        "ours_mu2_n_jobs_1": {"structures_per_s": 100.0}, "ours_mu2_n_jobs_2": {"structures_per_s": 180.0}}}}))  # fmt: skip
    if with_scale:
        (tmp_path / "scale.json").write_text(json.dumps({"compression": "mu1nu1", "records": 77000, "real": [
            {"workers": 1, "structures": 77000, "soap_structures_per_s": 50.0, "soap_seconds": 100.0,
             "check_seconds": 10.0, "featurise_seconds": 110.0, "fingerprint_mb": 616.0, "peak_rss_gb": 2.0},
            {"workers": 2, "structures": 77000, "soap_structures_per_s": 95.0, "soap_seconds": 55.0,
             "check_seconds": 6.0, "featurise_seconds": 66.0, "fingerprint_mb": 616.0, "peak_rss_gb": 3.0}],
            "neighbours": {"nn_exact_seconds": 900.0, "nn_approx_seconds": 30.0, "nn_approx_recall": 0.97,
                           "removed_overlap_approx_vs_exact": 0.999, "ratio": 0.4}}))  # fmt: skip
    return scale.measured_rates(tmp_path)


def test_rates_prefer_the_scale_benchmark(tmp_path):
    r = _rates(tmp_path, with_scale=False)
    assert r["soap_per_s"] == 100.0
    assert r["efficiency_2"] == pytest.approx(0.9)
    r = _rates(tmp_path, with_scale=True)
    assert r["soap_per_s"] == 50.0
    assert r["efficiency_2"] == pytest.approx(100 / 55 / 2)
    assert "bench_scale" in r["sources"]["soap"]


def test_projection_arithmetic(tmp_path):
    r = _rates(tmp_path, with_scale=False)
    p = scale.projection(r, sizes=(1e5, 1e6, 1e8), workers=(1, 10), atoms_per_cell=5.0).set_index(
        ["structures", "workers"]
    )
    # Featurisation: n / (rate x workers x efficiency); 1 worker counts as fully efficient.
    assert p.loc[(1e6, 1), "featurisation (h)"] == pytest.approx(1e6 / 100 / 3600)
    assert p.loc[(1e6, 10), "featurisation (h)"] == pytest.approx(1e6 / (100 * 10 * 0.9) / 3600)
    # Exact search up to 1e5 (exponent 2 fitted from the two points), IVF above, as n^1.5.
    assert p.loc[(1e5, 1), "search"] == "exact"
    assert p.loc[(1e5, 1), "nearest neighbours (h)"] == pytest.approx(100 / 3600)
    assert p.loc[(1e8, 10), "nearest neighbours (h)"] == pytest.approx(200 * 100**1.5 / 10 / 3600)
    # Fingerprint memory and where the index stops fitting one worker.
    assert p.loc[(1e8, 1), "fingerprints (GB)"] == pytest.approx(1e8 * 252 * 4 / 1e9)
    assert bool(p.loc[(1e6, 1), "index fits one worker"])
    assert not bool(p.loc[(1e8, 1), "index fits one worker"])
    # The surrogate does not divide by workers; the step cap (3,000 batches of 64)
    # leaves 1 epoch at 10^6: 900,000 / 64 -> 14,063 batches, and 1,000 graphs a second.
    assert p.loc[(1e6, 1), "surrogate (h)"] == p.loc[(1e6, 10), "surrogate (h)"]
    assert p.loc[(1e6, 1), "surrogate epochs"] == 1
    trained, evaluated = 14_063 * 64, 1e5 + 1e6
    assert p.loc[(1e6, 1), "surrogate (h)"] == pytest.approx((trained + evaluated / 3) / 1000 / 3600)
    # A pool small enough for 100 epochs within the cap: 1e3 records, 15 batches an epoch.
    small = scale.projection(r, sizes=(1e3,), workers=(1,), atoms_per_cell=5.0).iloc[0]
    assert small["surrogate epochs"] == 100
    # Cells of 30 atoms: --max-atom-steps (2.5 million) allows 2.5e6 // (64 x 30) = 1,302
    # batches; 2e4 records train on 18,000, 282 batches an epoch: 4 epochs (--max-steps alone: 10).
    big = scale.projection(r, sizes=(2e4,), workers=(1,), atoms_per_cell=30.0).iloc[0]
    assert big["surrogate epochs"] == 4


def test_projection_needs_every_rate(tmp_path):
    assert scale.projection(scale.measured_rates(tmp_path)).empty


def test_projection_uses_the_sparse_real_data_measurements(tmp_path):
    r = _rates(tmp_path, with_scale=True)
    p = scale.projection(r, sizes=(1e6,), workers=(1,), atoms_per_cell=5.0).iloc[0]
    # Above 10^5: the sparse search measured on 77,000 real structures, scaled as n^1.5.
    assert p["search"] == "projection + IVF"
    assert p["nearest neighbours (h)"] == pytest.approx(30 * (1e6 / 77000) ** 1.5 / 3600)
    # Memory: the measured 8,000 bytes a structure of the sparse rows, not 252 float32.
    assert p["fingerprints (GB)"] == pytest.approx(1e6 * 8000 / 1e9)
    # Up to 20,000 sparse rows: exact, scaled as n^2 from the exact search on the same structures.
    small = scale.projection(r, sizes=(1e4, 5e4), workers=(1,)).set_index("structures")
    assert small.loc[1e4, "search"] == "exact"
    assert small.loc[1e4, "nearest neighbours (h)"] == pytest.approx(900 * (1e4 / 77000) ** 2 / 3600)
    assert small.loc[5e4, "search"] == "projection + IVF"


def test_measured_tables(tmp_path):
    assert scale.measured_table(tmp_path).empty
    assert scale.neighbours_table(tmp_path).empty
    _rates(tmp_path, with_scale=True)
    m = scale.measured_table(tmp_path)
    assert list(m["speed-up"]) == [1.0, pytest.approx(110 / 66, abs=0.005)]
    nb = scale.neighbours_table(tmp_path)
    assert list(nb["seconds"]) == [900.0, 30.0]
    assert nb.iloc[1]["true neighbour found"] == "97.0 %"


def test_worker_overhead_table_and_ratios(tmp_path):
    assert scale.worker_overhead_table(tmp_path).empty
    assert set(scale.worker_overhead_values(tmp_path).values()) == {"not measured"}
    run = {"wall_s": 9.8, "user_s": 9.3, "sys_s": 0.4, "minor_faults": 61917}
    slow = {"wall_s": 16.1, "user_s": 10.9, "sys_s": 5.1, "minor_faults": 2656562}
    (tmp_path / "worker_overhead.json").write_text(json.dumps({
        "allocator": {"structures": 640, "chunk": 64, "glibc_default": run, "dask_worker_65536": slow,
                      "slowdown_dask_setting": 1.64},
        "hardware": {"alone_s": 12.1, "two_at_once_s": 11.5, "slowdown_two_at_once": 0.95},
        "cpu": [{"workers": 1, "structures": 6000, "wall_s": 70.0, "soap_s": 60.0, "main_cpu_s": 71.0,
                 "worker_cpu_s": 0.0, "worker_sys_s": 0.0},
                {"workers": 2, "structures": 6000, "wall_s": 49.0, "soap_s": 40.0, "main_cpu_s": 15.0,
                 "worker_cpu_s": 74.0, "worker_sys_s": 6.0}],
        "speedup_2_over_1": 1.43, "cpu_ratio_2_over_1": 1.25,
    }))  # fmt: skip
    table = scale.worker_overhead_table(tmp_path)
    assert len(table) == 6
    assert table["page faults"].tolist()[:2] == ["61,917", "2,656,562"]
    assert table["page faults"].isna().tolist()[2:] == [True] * 4  # shown as the page's "–"
    assert table["run"].iloc[-1] == "featurisation of 6,000, 2 workers"
    assert table["CPU workers (s)"].iloc[-1] == 74.0
    assert scale.worker_overhead_values(tmp_path) == {
        "overhead_dask_trim": "1.64x", "overhead_two_at_once": "0.95x",
        "overhead_speedup": "1.43x", "overhead_cpu_ratio": "1.25x",
        "overhead_cores_1": "1.01", "overhead_cores_2": "1.82",  # (71 + 0) / 70 and (15 + 74) / 49
    }  # fmt: skip
