"""The Python API of the whole prune (:mod:`fusion.prune_api`, its options and result), with a fake surrogate where training is not the point."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import cscl, rocksalt

from fusion import prune_api, prune_options, prune_result
from fusion.data import CrystalDataset


def tiny_dataset(n=10, targets=None):
    structures = [rocksalt(5.4 + 0.04 * k) if k % 2 else cscl(3.9 + 0.04 * k) for k in range(n)]
    y = np.arange(n, dtype=float) if targets is None else np.asarray(targets, dtype=float)
    return CrystalDataset(
        name="tiny", target="y", ids=[f"s{k}" for k in range(n)], structures=structures, targets=y
    )


@pytest.fixture
def fake_surrogate(monkeypatch):
    """Replace training and scoring: U given by the test, counted calls."""
    import fusion.graphs
    import fusion.uncertainty

    state = {"U": None, "trained": 0}

    def train_surrogate(graphs, model_name, size, config=None, val_fraction=0.1, seed=0):
        state["trained"] += 1
        state["config"] = config
        return object(), SimpleNamespace(val_mae=0.5, epochs_run=3, best_epoch=1, seconds=0.0)

    def score_pool(model, result, graphs, lam=0.0, aleatoric_sign=-1):
        n = len(graphs)
        U = np.linspace(0.1, 0.9, n) if state["U"] is None else np.asarray(state["U"], dtype=float)
        return np.zeros(n), np.zeros(n), U

    monkeypatch.setattr(fusion.graphs, "build_graphs", lambda structures, *a, **k: list(structures))
    monkeypatch.setattr(fusion.uncertainty, "train_surrogate", train_surrogate)
    monkeypatch.setattr(fusion.uncertainty, "score_pool", score_pool)
    return state


def test_prune_result_per_ratio(fake_surrogate, tmp_path):
    ds = tiny_dataset()
    result = prune_api.prune(ds, ratios=[0.2, 0.5], method="fusion", epochs=10, patience=2, device="cpu")
    assert fake_surrogate["trained"] == 1
    assert fake_surrogate["config"].patience == 2
    assert result.ratios == [0.2, 0.5]
    assert len(result.removed_ids(0.2)) == 2
    assert len(result.removed_ids(0.5)) == 5
    assert set(result.kept_ids(0.5)) | set(result.removed_ids(0.5)) == set(ds.ids)
    assert list(result.scores.columns) == ["target", "U", "W", "I", "d_nn", "u_ale", "u_epi"]
    np.testing.assert_allclose(result.scores["I"], result.scores["U"] / result.scores["W"])
    q = result.surrogate
    assert q["epochs_run"] == 3
    assert q["stopped_early"] is True
    assert q["device"] == "cpu"
    # the median predictor on the surrogate's own validation records
    tr, val = prune_api.surrogate_split(len(ds), 0)
    y = ds.targets
    assert q["median_val_mae"] == pytest.approx(np.mean(np.abs(y[val] - np.median(y[tr]))))
    written = result.write(tmp_path)
    assert {p.name for p in written.values()} == {
        "kept_0.2.csv",
        "removed_0.2.csv",
        "kept_0.5.csv",
        "removed_0.5.csv",
        "scores.csv",
        "summary.json",
        "report.html",
    }


def test_flat_uncertainty_warns(fake_surrogate):
    fake_surrogate["U"] = np.full(10, 0.5)
    result = prune_api.prune(tiny_dataset(), ratios=0.3, method="fusion", device="cpu")
    assert any("U barely varies" in w for w in result.warnings)


def test_wide_fingerprints_warn_and_name_the_light_compression(fake_surrogate, monkeypatch):
    monkeypatch.setattr(
        prune_result, "BIG_FINGERPRINTS", 10 * 4
    )  # any 10-record float32 matrix of >= 1 feature
    result = prune_api.prune(tiny_dataset(), ratios=0.3, method="weight", device="cpu")
    (warning,) = [w for w in result.warnings if "fingerprints take" in w]
    assert "10 records x" in warning
    assert "--compression mu2 has 252 features" in warning
    monkeypatch.setattr(prune_result, "BIG_FINGERPRINTS", 10**12)
    result = prune_api.prune(tiny_dataset(), ratios=0.3, method="weight", device="cpu")
    assert not any("fingerprints take" in w for w in result.warnings)


def test_target_shift_warns():
    shift = {"ks": 0.4, "top_decile_share": 0.0, "kept_mean": 1.0, "pool_mean": 2.0, "removed_mean": 3.0}
    warning = prune_result.shift_warning(0.5, shift)
    assert "mean kept 1 vs removed 3" in warning
    assert "KS distance 0.400" in warning
    calm = {"ks": 0.05, "top_decile_share": 0.1, "kept_mean": 2.0, "pool_mean": 2.0, "removed_mean": 2.1}
    assert prune_result.shift_warning(0.5, {**calm, "pool_std": 1.0}) is None
    # a mean gap of more than half a pool standard deviation warns even with a small KS
    assert "mean kept 2 vs removed 2.6" in prune_result.shift_warning(
        0.5, {**calm, "removed_mean": 2.6, "pool_std": 1.0}
    )


def test_shift_reported_per_ratio():
    ds = tiny_dataset()
    result = prune_api.prune(ds, ratios=[0.3], method="random")
    s = result.shift[0.3]
    kept = np.isin(ds.ids, result.kept_ids(0.3))
    assert s["kept_mean"] == pytest.approx(ds.targets[kept].mean())
    assert s["removed_mean"] == pytest.approx(ds.targets[~kept].mean())
    assert 0.0 <= s["ks"] <= 1.0
    assert result.surrogate is None
    assert result.scores["U"].isna().all()


def test_surrogate_split_mirrors_train_surrogate(monkeypatch):
    import fusion.train
    from fusion.uncertainty import train_surrogate

    seen = {}

    class StopError(Exception):
        pass

    def capture(model, train_graphs, val_graphs, test_graphs=None, config=None, callback=None):
        seen["train"], seen["val"] = list(train_graphs), list(val_graphs)
        raise StopError

    monkeypatch.setattr(fusion.train, "train", capture)
    for n, seed in ((10, 0), (37, 3)):
        with pytest.raises(StopError):
            train_surrogate(list(range(n)), "cgcnn", "cpu", seed=seed, val_fraction=prune_api.VAL_FRACTION)
        tr, val = prune_api.surrogate_split(n, seed)
        assert seen["train"] == tr.tolist()
        assert seen["val"] == val.tolist()


def test_methods_mirror_selection():
    from fusion import selection

    assert prune_options.METHODS == selection.METHODS
    assert prune_options.NEEDS_U == selection.NEEDS_U
    assert prune_options.NEEDS_X == selection.NEEDS_X
    assert set(prune_options.METHOD_HELP) == set(selection.METHODS)


def test_options_checked_before_reading(tmp_path):
    with pytest.raises(prune_options.OptionError, match="--epochs"):
        prune_api.prune(tmp_path / "nowhere", "y", epochs=0)
    with pytest.raises(prune_options.OptionError, match="--target is required"):
        prune_api.prune(tmp_path / "nowhere")


def test_skipped_records_carried(tmp_path):
    from fusion.userdata import BadRecordsError

    recs = [{"id": f"r{k}", "structure": rocksalt(5.5 + 0.05 * k).as_dict(), "y": float(k)} for k in range(4)]
    recs += [{"id": "r1", "structure": cscl().as_dict(), "y": 1.0}, {"structure": cscl().as_dict()}]
    path = tmp_path / "recs.json"
    path.write_text(pd.Series(recs).to_json(orient="values"))
    with pytest.raises(BadRecordsError) as exc:
        prune_api.prune(path, "y", method="random")
    assert set(exc.value.skipped["id"]) == {"r1", "(record 5)"}
    result = prune_api.prune(path, "y", method="random", skip_bad=True)
    assert result.ids == ["r0", "r1", "r2", "r3"]
    assert "duplicate id" in dict(zip(result.skipped.id, result.skipped.reason, strict=True))["r1"]
    result.write(tmp_path / "o")
    assert (tmp_path / "o" / "skipped.csv").exists()
