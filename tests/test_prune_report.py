"""``report.html`` (:mod:`fusion.prune_report`): written beside the CSVs, self-contained, offline."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import make_cif_folder
from test_prune_api import fake_surrogate, tiny_dataset  # noqa: F401 - the fixture

from fusion import cli, prune_api, prune_report
from fusion.report.pca import pca

T = prune_report.TITLES


def offline(text: str) -> None:
    assert "http://" not in text
    assert "https://" not in text
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)


def test_fusion_report_has_every_panel(fake_surrogate, tmp_path):  # noqa: F811
    result = prune_api.prune(tiny_dataset(12), ratios=[0.25, 0.5], method="fusion", device="cpu", n_jobs=1)
    path = result.write(tmp_path)["report"]
    assert path == tmp_path / "report.html"
    text = path.read_text()
    offline(text)
    for key in ("run", "selection", "surrogate", "uw", "importance", "targets", "map", "warnings"):
        assert f"<h2>{T[key]}</h2>" in text
    assert text.count('src="data:image/png;base64,') == 4
    assert "validation MAE (median predictor)" in text
    assert "Not drawn" not in text


def test_random_report_leaves_panels_out(tmp_path):
    result = prune_api.prune(tiny_dataset(12), ratios=0.4, method="random", n_jobs=1)
    text = prune_report.render_report(result)
    offline(text)
    assert "Not drawn: method 'random' computes no U or W" in text
    assert "Not drawn: method 'random' computes no importance I = U / W" in text
    assert "Not drawn: method 'random' computes no fingerprints" in text
    assert "No surrogate: method 'random' does not train one." in text
    assert text.count("data:image/png") == 1  # the target histograms only


def test_weight_report_notes_the_missing_u(tmp_path):
    result = prune_api.prune(tiny_dataset(12), ratios=0.4, method="weight", n_jobs=1)
    text = prune_report.render_report(result)
    assert "Not drawn: method 'weight' computes no U " in text
    assert f"<h2>{T['map']}</h2>" in text
    assert text.count("data:image/png") == 2  # targets and the fingerprint map


def test_cli_writes_report_unless_no_report(tmp_path, capsys):
    cifs = make_cif_folder(tmp_path / "cifs")
    argv = ["prune", "--data", str(cifs), "--target", "gap", "--method", "weight", "--quiet", "--n-jobs", "1"]
    assert cli.main([*argv, "--out-dir", str(tmp_path / "a")]) == 0
    assert f"report -> {tmp_path / 'a' / 'report.html'}" in capsys.readouterr().out
    offline((tmp_path / "a" / "report.html").read_text())
    assert cli.main([*argv, "--out-dir", str(tmp_path / "b"), "--no-report"]) == 0
    assert not (tmp_path / "b" / "report.html").exists()
    assert "report ->" not in capsys.readouterr().out


def test_fingerprint_pca():
    rng = np.random.default_rng(0)
    line = np.outer(rng.normal(size=50), [3.0, 4.0, 0.0]) + 1.0
    coords, explained = pca(line)
    assert coords.shape == (50, 2)
    assert explained[0] == pytest.approx(1.0)
    assert explained[1] == pytest.approx(0.0, abs=1e-12)
    # distances along the line are kept: |PC1 difference| = |t difference| * 5
    t = (line[:, 0] - 1.0) / 3.0
    np.testing.assert_allclose(np.abs(coords[:, 0] - coords[0, 0]), 5 * np.abs(t - t[0]), atol=1e-9)
    one_feature, explained = pca(rng.normal(size=(5, 1)))
    assert one_feature.shape == (5, 2)
    assert explained[1] == 0.0


def test_pca_fits_on_a_sample_and_projects_every_row():
    rng = np.random.default_rng(2)
    t = rng.normal(size=3000)
    X = (np.outer(t, [1.0, 2.0, 2.0]) + 0.5).astype(np.float32)
    coords, explained = pca(X, max_fit=200)  # axes from 200 rows, all 3,000 projected
    assert coords.shape == (3000, 2)
    assert explained[0] == pytest.approx(1.0, abs=1e-6)
    # Exact up to float32 rounding: every row lies on the fitted line, |PC1 step| = 3 |t step|.
    np.testing.assert_allclose(np.abs(coords[:, 0] - coords[0, 0]), 3 * np.abs(t - t[0]), atol=1e-4)
