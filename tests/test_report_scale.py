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
        (tmp_path / "scale.json").write_text(json.dumps({"real": [
            {"structures": 77000, "soap_structures_per_s": 50.0, "soap_seconds": 100.0},
            {"structures": 77000, "soap_structures_per_s": 95.0, "soap_seconds": 55.0}]}))  # fmt: skip
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


def test_projection_needs_every_rate(tmp_path):
    assert scale.projection(scale.measured_rates(tmp_path)).empty
