"""End-to-end tests of ``fusion prune`` (fusion.cli) on a tiny CIF folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fusion.cli import main
from fusion.paths import dataset_file

N = 30


@pytest.fixture(scope="module")
def cif_folder(tmp_path_factory):
    if not dataset_file("matbench_jdft2d").exists():
        pytest.skip("data/ not pulled")
    from fusion.data import load_dataset

    ds = load_dataset("matbench_jdft2d", "exfoliation_energy", limit=N, progress=False)
    folder = tmp_path_factory.mktemp("cifs")
    rows = []
    for rid, s, y in zip(ds.ids, ds.structures, ds.targets, strict=True):
        s.to(filename=str(folder / f"{rid}.cif"))
        rows.append(f"{rid},{y}")
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return folder, ds.ids


def test_prune_fusion_end_to_end(cif_folder, tmp_path, capsys):
    folder, ids = cif_folder
    summary = tmp_path / "summary.json"
    argv = ["prune", "--data", str(folder), "--target", "exfoliation_energy", "--ratio", "0.4"]
    argv += ["--out-dir", str(tmp_path), "--epochs", "2", "--quiet"]
    assert main(argv) == 0
    kept = pd.read_csv(tmp_path / "kept.csv", dtype={"id": str})
    removed = pd.read_csv(tmp_path / "removed.csv", dtype={"id": str})
    assert len(kept) == N - round(0.4 * N)
    assert len(removed) == round(0.4 * N)
    assert set(kept["id"]) | set(removed["id"]) == set(ids)
    assert {"U", "W", "I"} <= set(kept.columns)
    assert kept[["U", "W", "I"]].notna().all().all()
    assert ((kept["U"] > 0) & (kept["U"] < 1)).all()
    assert (kept["I"] - kept["U"] / kept["W"]).abs().max() < 1e-6
    # FUSION removes the lowest importances.
    assert removed["I"].max() <= kept["I"].min()
    info = json.loads(summary.read_text())
    assert info["n"] == N
    assert info["ratios"][0]["removed"] == round(0.4 * N)
    assert info["ratios"][0]["epsilon"] == pytest.approx(removed["I"].mean(), rel=1e-6)
    printed = capsys.readouterr().out
    assert "kept=18" in printed
    assert "epsilon=" in printed


def test_prune_baseline_without_surrogate(cif_folder, tmp_path):
    folder, _ = cif_folder
    argv = ["prune", "--data", str(folder), "--target", "exfoliation_energy", "--ratio", "0.2"]
    argv += ["--method", "diversity", "--out-dir", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    assert len(pd.read_csv(tmp_path / "kept.csv")) == N - 6
    assert len(pd.read_csv(tmp_path / "removed.csv")) == 6


def test_bad_cif_exits_2_naming_the_record(cif_folder, tmp_path, capsys):
    folder, ids = cif_folder
    bad = tmp_path / "bad"
    bad.mkdir()
    for rid in ids[:5]:
        (bad / f"{rid}.cif").write_text((folder / f"{rid}.cif").read_text())
    (bad / "broken-42.cif").write_text("data_broken\n_cell_length_a nonsense\n")
    rows = [f"{rid},1.0" for rid in ids[:5]] + ["broken-42,2.0"]
    (bad / "id_prop.csv").write_text("\n".join(rows) + "\n")
    argv = [
        "prune",
        "--data",
        str(bad),
        "--target",
        "t",
        "--method",
        "random",
        "--out-dir",
        str(tmp_path),
    ]
    code = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken-42" in err
    assert "Traceback" not in err
    # --skip-bad drops the record and goes on.
    assert main([*argv, "--quiet", "--skip-bad"]) == 0
    assert len(pd.read_csv(tmp_path / "kept.csv")) == 5 - round(0.4 * 5)
    assert pd.read_csv(tmp_path / "skipped.csv")["id"].tolist() == ["broken-42"]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prune", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--model", "--epochs", "--lambda", "--aleatoric-sign", "--gamma", "--compression", "--seed"):
        assert opt in text
    for opt in ("--n-jobs", "--out-dir", "--ratios", "--patience", "--device"):
        assert opt in text
    assert "default: 0.1" in text
