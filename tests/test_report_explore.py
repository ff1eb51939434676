"""The book's interactive fingerprint map (fusion.report.explore) on tiny synthetic fingerprint sets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fusion.report import explore
from fusion.report.pca import pca

N = 12


def _inputs():
    rng = np.random.default_rng(0)
    ids = [str(100 + i) for i in range(N)]
    X = rng.normal(size=(N, 6)).astype(np.float32)
    records = pd.DataFrame(
        {"id": ids, "target": np.linspace(1.0, 12.0, N), "formula": [f"Si{i + 1}O" for i in range(N)]}
    )
    pool = ids[:8]  # the last 4 are the split's validation and test records
    prune = pd.DataFrame(
        {
            "id": pool,
            "y": 0.0,
            "random@0": True,
            "random@0.5": [True, False] * 4,
            "fusion_neg@0.25": [True] * 6 + [False] * 2,
            "fusion_neg@0.5": [True] * 4 + [False] * 4,
            "fusion_neg@0.75": [True] * 2 + [False] * 6,
        }
    )
    return ids, X, records, prune


def test_map_draws_the_pool_kept_and_removed_with_a_dropdown_of_every_method_and_ratio():
    ids, X, records, prune = _inputs()
    fig, info = explore.fingerprint_map("toy", ids, X, records, "eV/atom", prune, target_name="e_form")
    names = [t.name for t in fig.data]
    assert names == ["held out (not prunable)", "pool", "kept (4)", "removed (4)"]
    held, pool = fig.data[0], fig.data[1]
    assert len(pool.x) == 8
    assert len(held.x) == 4
    assert [row[0] for row in held.customdata] == ids[8:]
    # The map opens on FUSION (s = -1) at its middle ratio; removed points are coded 1.
    assert info.shown_first == "fusion_neg@0.5"
    assert list(pool.marker.color) == [0] * 4 + [1] * 4
    assert list(pool.text) == ["kept"] * 4 + ["removed"] * 4
    # One dropdown entry per keep column that removes something (not random@0), FUSION first.
    menu = fig.layout.updatemenus[0]
    assert info.columns == ("fusion_neg@0.25", "fusion_neg@0.5", "fusion_neg@0.75", "random@0.5")
    assert [b.label for b in menu.buttons] == [
        "FUSION (s = −1), 25 % removed",
        "FUSION (s = −1), 50 % removed",
        "FUSION (s = −1), 75 % removed",
        "random, 50 % removed",
    ]
    assert menu.active == 1
    update, traces = menu.buttons[3].args
    assert list(traces) == [1, 2, 3]
    assert update["marker.color"][0] == [0, 1] * 4
    assert update["name"][1:] == ["kept (4)", "removed (4)"]
    # Hover: id, formula, target with its name and unit, kept or removed.
    assert "e_form = %{customdata[2]} eV/atom" in pool.hovertemplate
    assert [list(r) for r in pool.customdata[:2]] == [["100", "Si1O", "1"], ["101", "Si2O", "2"]]
    assert info.n_records == info.n_shown == N
    assert info.n_pool_shown == 8
    assert "4 records" not in explore.caption(info, seed=0)
    assert "all 12 records" in explore.caption(info, seed=0)


def test_map_without_prune_outputs_draws_every_record_in_one_colour():
    ids, X, records, _ = _inputs()
    fig, info = explore.fingerprint_map("toy", ids, X, records, "eV", None)
    assert fig.data[0].name == "records (no prune output yet)"
    assert len(fig.data[0].x) == N
    assert len(fig.data[1].x) == 0
    assert not fig.data[2].visible
    assert not fig.data[3].visible
    assert not fig.layout.updatemenus
    assert info.shown_first is None
    assert info.columns == ()
    assert "has not run on this dataset" in explore.caption(info, seed=0)


def test_map_samples_large_sets_with_a_fixed_seed_and_rejects_unknown_columns():
    ids, X, records, prune = _inputs()
    fig, info = explore.fingerprint_map("toy", ids, X, records, "eV", prune, max_points=5)
    again, _ = explore.fingerprint_map("toy", ids, X, records, "eV", prune, max_points=5)
    assert info.n_shown == 5
    assert info.n_records == N
    assert sum(len(t.x) for t in fig.data[:2]) == 5
    assert fig.to_json() == again.to_json()
    assert "5 of 12 records (a random sample, seed 0)" in explore.caption(info, seed=0)
    with pytest.raises(ValueError, match="not a keep column"):
        explore.fingerprint_map("toy", ids, X, records, "eV", prune, first="weight@0.5")
    with pytest.raises(ValueError, match="ids for"):
        explore.fingerprint_map("toy", ids[:-1], X, records, "eV", prune)


def test_projection_is_pca_with_a_sign_that_does_not_depend_on_the_solver():
    rng = np.random.default_rng(1)
    t = rng.normal(size=40)
    X = np.outer(t, [3.0, 0.0, 1.0]) + 0.05 * rng.normal(size=(40, 3))
    coords, explained = pca(X)
    assert explained[0] > 0.95
    assert explained.sum() <= 1 + 1e-9
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.99
    # The same rows, mirrored or shifted, give the same picture.
    for other in (-X, X + 7.0):
        np.testing.assert_allclose(pca(other)[0], coords, atol=1e-8)
    for j in range(2):
        assert coords[np.argmax(np.abs(coords[:, j])), j] > 0
    assert pca(X[:1])[0].shape == (1, 2)


def test_figure_html_carries_no_plotly_js_and_no_remote_address():
    ids, X, records, prune = _inputs()
    fig, _ = explore.fingerprint_map("toy", ids, X, records, "eV", prune)
    html = explore.figure_html(fig, "fpmap-plot-toy")
    assert 'id="fpmap-plot-toy" class="plotly-graph-div"' in html
    assert "<script src" not in html
    assert "://" not in html
    assert len(html) < 60_000  # the library itself (4.8 MB) is served once by the book


def test_load_fingerprint_map_reads_the_pipeline_files(tmp_path):
    from fusion import paths
    from fusion.fingerprints import save_fingerprints

    ids, X, records, prune = _inputs()
    root = tmp_path
    (root / paths.prepare_dir("toy")).mkdir(parents=True)
    records.to_csv(root / paths.records_path("toy"), index=False)
    (root / paths.prepare_dir("toy") / "summary.json").write_text(json.dumps({"unit": "meV/atom"}))
    fp = root / paths.fingerprints_path("toy")
    fp.parent.mkdir(parents=True)
    save_fingerprints(fp, ids, X, {"species": [8, 14], "compression": "off"})
    params = {"datasets": {"toy": {"name": "toy", "target": "exfoliation_energy"}}, "seeds": [3]}
    _, info = explore.load_fingerprint_map("toy", params, root=root)
    assert info.shown_first is None
    assert info.unit == "meV/atom"
    (root / paths.prune_path("toy", 3)).parent.mkdir(parents=True)
    prune.to_csv(root / paths.prune_path("toy", 3), index=False)
    fig, info = explore.load_fingerprint_map("toy", params, root=root)
    assert info.shown_first == "fusion_neg@0.5"
    assert "exfoliation_energy = %{customdata[2]} meV/atom" in fig.data[1].hovertemplate
