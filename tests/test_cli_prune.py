"""``fusion prune`` as a practitioner's tool, on tiny synthetic CIF folders and JSON lists.

Options checked before any data are read, every bad record reported at once,
``--skip-bad`` writing ``skipped.csv``, output names, ``--ratios`` reusing the
fingerprints and surrogate (counted), ``--method random`` skipping both (counted).
"""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from conftest import cscl, make_cif_folder, rocksalt

from fusion import cli, cli_parser

BROKEN_CIF = "data_broken\n_cell_length_a 3.0\nloop_\n_atom_site_label\nthis is not a cif\n"
N = 12


@pytest.fixture
def cifs(tmp_path):
    return make_cif_folder(tmp_path / "cifs")


@pytest.fixture
def bad_cifs(tmp_path):
    """Five good crystals and four bad records of four kinds."""
    folder = make_cif_folder(
        tmp_path / "bad", n=5, extra_rows=["broken,1.0", "ghost,2.0", "hollow,3.0", "c9,"]
    )
    (folder / "broken.cif").write_text(BROKEN_CIF)
    (folder / "hollow.cif").write_text("")
    (folder / "c9.cif").write_text(cscl().to(fmt="cif"))
    return folder


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def base(data, out, *extra):
    return ["prune", "--data", str(data), "--target", "gap", "--out-dir", str(out), "--quiet", *extra]


# ------------------------------------------------------------------ options first


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "foo"], "--model: unknown model 'foo'; choose one of alignn, cgcnn"),
        (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--patience", "0"], "--patience must be a positive integer, got 0"),
        (["--max-steps", "-1"], "--max-steps must be a positive integer (0: no cap), got -1"),
        (["--max-atom-steps", "-5"], "--max-atom-steps must be a positive integer (0: no cap), got -5"),
        (["--gamma", "-1"], "--gamma must be positive and finite, got -1"),
        (["--n-jobs", "0"], "--n-jobs must be a positive integer (or -1 for every core), got 0"),
        (["--ratio", "1.0"], "--ratio must be in [0, 1)"),
        (["--ratio", "-0.1"], "--ratio must be in [0, 1)"),
        (["--ratios", "0.2,1.5"], "--ratio must be in [0, 1)"),
        (["--ratios", "0.2,0.2"], "a ratio is repeated"),
        (["--method", "foo"], "--method: unknown method 'foo'; choose one of fusion, random"),
        (["--size", "huge"], "--size: unknown preset 'huge'"),
        (["--compression", "zip"], "--compression: unknown mode 'zip'"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
        (["--aleatoric-sign", "2"], "--aleatoric-sign must be -1 or 1"),
        (["--out", "kept.csv"], "--out is replaced by --out-dir DIR"),
        (["--summary", "s.json"], "--summary is replaced by --out-dir DIR"),
    ],
)
def test_bad_option_exits_2_before_reading_data(extra, message, tmp_path, capsys, monkeypatch):
    import fusion.userdata

    def no_reading(*args, **kwargs):
        raise AssertionError("data read before the options were checked")

    monkeypatch.setattr(fusion.userdata, "collect_user_data", no_reading)
    code, _out, err = run(base(tmp_path / "nowhere", tmp_path / "o", *extra), capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_argparse_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["prune", "--data", str(tmp_path), "--target", "gap"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--out-dir" in err


# ------------------------------------------------------------------ bad input, all at once


def test_every_bad_record_listed_at_once(bad_cifs, tmp_path, capsys):
    code, _, err = run(base(bad_cifs, tmp_path / "o", "--method", "random"), capsys)
    assert code == 2
    assert "4 of 9 records are bad" in err
    lines = {line.split(":")[0].strip(): line for line in err.splitlines() if line.startswith("  ")}
    assert "unparsable structure" in lines["broken"]
    assert "no such file: ghost.cif" in lines["ghost"]
    assert "empty file: hollow.cif" in lines["hollow"]
    assert "no value for target 'gap'" in lines["c9"]
    assert "--skip-bad" in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_skip_bad_writes_skipped_csv_without_python_warnings(bad_cifs, tmp_path, capsys):
    out = tmp_path / "o"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, stdout, err = run(base(bad_cifs, out, "--method", "random", "--skip-bad"), capsys)
    assert code == 0
    assert not [w for w in caught if issubclass(w.category, UserWarning)]
    assert "UserWarning" not in err
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped.columns) == ["id", "reason"]
    assert sorted(skipped["id"]) == ["broken", "c9", "ghost", "hollow"]
    assert "skipped 4 bad record(s)" in stdout
    assert "ghost: no such file: ghost.cif" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 5
    assert summary["skipped"] == 4
    assert {r["id"] for r in summary["skipped_records"]} == {"broken", "c9", "ghost", "hollow"}
    assert len(pd.read_csv(out / "kept.csv")) == 5 - round(0.4 * 5)


def test_missing_and_empty_inputs(tmp_path, capsys):
    code, _, err = run(base(tmp_path / "nowhere", tmp_path / "o"), capsys)
    assert code == 2
    assert "no such file" in err
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "id_prop.csv").write_text("")
    code, _, err = run(base(folder, tmp_path / "o"), capsys)
    assert code == 2
    assert "empty file" in err
    (tmp_path / "empty.json").write_text("\n")
    code, _, err = run(base(tmp_path / "empty.json", tmp_path / "o"), capsys)
    assert code == 2
    assert "empty file" in err


def test_header_names_the_target(tmp_path, capsys):
    folder = make_cif_folder(tmp_path / "cifs", header="id,band_gap")
    code, _, err = run(base(folder, tmp_path / "o", "--method", "random"), capsys)
    assert code == 2
    assert "no column 'gap'" in err
    assert "'band_gap'" in err
    argv = base(folder, tmp_path / "o", "--method", "random")
    argv[argv.index("gap")] = "band_gap"
    code, _, _ = run(argv, capsys)
    assert code == 0


def test_json_missing_target_lists_the_keys(tmp_path, capsys):
    recs = [
        {"id": f"r{k}", "structure": rocksalt(5.5 + 0.05 * k).as_dict(), "gap": float(k)} for k in range(4)
    ]
    recs.append({"id": "r9", "structure": cscl().as_dict(), "bandgap": 1.0})
    path = tmp_path / "recs.json"
    path.write_text(json.dumps(recs))
    code, _, err = run(base(path, tmp_path / "o", "--method", "random"), capsys)
    assert code == 2
    assert "r9: no value for target 'gap': the record has keys ['bandgap']" in err


# ------------------------------------------------------------------ outputs


def test_output_names(cifs, tmp_path, capsys):
    out = tmp_path / "o"
    code, stdout, _ = run(base(cifs, out, "--method", "weight", "--ratio", "0.25"), capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "kept.csv",
        "removed.csv",
        "report.html",
        "scores.csv",
        "summary.json",
    ]
    kept = pd.read_csv(out / "kept.csv", dtype={"id": str})
    removed = pd.read_csv(out / "removed.csv", dtype={"id": str})
    scores = pd.read_csv(out / "scores.csv", dtype={"id": str})
    assert len(kept) == N - 3
    assert len(removed) == 3
    assert set(kept["id"]) | set(removed["id"]) == set(scores["id"])
    assert {"id", "target", "U", "W", "I", "d_nn"} <= set(scores.columns)
    assert scores["W"].notna().all()
    # weight removes the most redundant first.
    assert removed["W"].min() >= kept["W"].max()
    assert f"kept -> {out / 'kept.csv'}" in stdout


def test_ratios_reuse_fingerprints_and_surrogate(cifs, tmp_path, capsys, monkeypatch):
    import fusion.fingerprints
    import fusion.uncertainty

    calls = {"soap": 0, "surrogate": 0}
    soap, surrogate = fusion.fingerprints.soap_fingerprints, fusion.uncertainty.train_surrogate

    def counted_soap(*args, **kwargs):
        calls["soap"] += 1
        return soap(*args, **kwargs)

    def counted_surrogate(*args, **kwargs):
        calls["surrogate"] += 1
        return surrogate(*args, **kwargs)

    monkeypatch.setattr(fusion.fingerprints, "soap_fingerprints", counted_soap)
    monkeypatch.setattr(fusion.uncertainty, "train_surrogate", counted_surrogate)
    out = tmp_path / "o"
    argv = base(
        cifs, out, "--ratios", "0.25,0.5,0.75", "--epochs", "1", "--batch-size", "4", "--device", "cpu"
    )
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert calls == {"soap": 1, "surrogate": 1}
    for r, n_removed in (("0.25", 3), ("0.5", 6), ("0.75", 9)):
        assert len(pd.read_csv(out / f"removed_{r}.csv")) == n_removed
        assert len(pd.read_csv(out / f"kept_{r}.csv")) == N - n_removed
    assert not (out / "kept.csv").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["ratio"] for r in summary["ratios"]] == [0.25, 0.5, 0.75]
    q = summary["surrogate"]
    assert q["epochs_run"] == 1
    assert q["max_epochs"] == 1
    assert q["stopped_early"] is False
    assert q["device"] == "cpu"
    assert q["val_mae"] > 0
    assert q["median_val_mae"] > 0
    assert "validation MAE" in stdout
    assert "for the median predictor" in stdout
    scores = pd.read_csv(out / "scores.csv")
    assert scores[["U", "W", "I"]].notna().all().all()


def test_max_steps_caps_the_surrogate_epochs_and_says_so(cifs, tmp_path, capsys):
    # 12 records: 11 train the surrogate, 3 batches of 4 an epoch; 6 steps allow 2 of the 5 epochs.
    out = tmp_path / "o"
    argv = base(cifs, out, "--epochs", "5", "--max-steps", "6", "--batch-size", "4", "--patience", "5",
                "--device", "cpu")  # fmt: skip
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    q = json.loads((out / "summary.json").read_text())["surrogate"]
    assert (q["max_epochs"], q["max_steps"], q["capped"], q["capped_by"]) == (2, 6, True, "--max-steps")
    assert q["epochs_run"] <= 2
    assert "of 2 epochs (capped by --max-steps 6: at most 6 steps)" in stdout
    # The atom budget: a step of 4 cells counts 4 x their mean atoms, so a budget of
    # two and a half such steps caps the steps at 2, less than one epoch of 3: one epoch.
    atoms = q["atoms_per_cell"]
    assert atoms > 1
    code, stdout, _ = run(base(cifs, tmp_path / "a", "--epochs", "5", "--max-atom-steps", str(int(2.5 * 4 * atoms)),
                               "--batch-size", "4", "--patience", "5", "--device", "cpu"), capsys)  # fmt: skip
    assert code == 0
    q = json.loads((tmp_path / "a" / "summary.json").read_text())["surrogate"]
    assert (q["step_cap"], q["max_epochs"], q["capped_by"]) == (2, 1, "--max-atom-steps")
    assert "capped by --max-atom-steps" in stdout
    # No cap: the epochs asked for.
    code, stdout, _ = run(base(cifs, tmp_path / "p", "--epochs", "2", "--max-steps", "0", "--max-atom-steps", "0",
                               "--batch-size", "4", "--device", "cpu"), capsys)  # fmt: skip
    q = json.loads((tmp_path / "p" / "summary.json").read_text())["surrogate"]
    assert (q["max_epochs"], q["max_steps"], q["max_atom_steps"], q["capped"]) == (2, None, None, False)
    assert "capped" not in stdout


def test_random_skips_soap_and_surrogate(cifs, tmp_path, capsys, monkeypatch):
    import fusion.fingerprints
    import fusion.graphs
    import fusion.uncertainty

    def forbidden(*args, **kwargs):
        raise AssertionError("random must not compute fingerprints, graphs or a surrogate")

    for module, name in (
        (fusion.fingerprints, "soap_fingerprints"),
        (fusion.graphs, "build_graphs"),
        (fusion.uncertainty, "train_surrogate"),
    ):
        monkeypatch.setattr(module, name, forbidden)
    out = tmp_path / "o"
    code, _, _ = run(base(cifs, out, "--method", "random"), capsys)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["surrogate"] is None
    assert len(pd.read_csv(out / "removed.csv")) == round(0.4 * N)


# ------------------------------------------------------------------ help


def test_help_documents(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["prune", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    for needle in (
        "exit status",
        "d_NN lies in [0, 2]",
        "--patience",
        "--size cpu",
        "mu2",
        "kept.csv",
        "scores.csv",
        "report.html",
        "--no-report",
        "--workdir DIR",
        "--scheduler ADDRESS",
        "DASK_SCHEDULER_ADDRESS",
        "(default: -1)",
        "reuses them",
    ):
        assert needle in text
    for name in cli_parser.MODEL_NAMES:
        assert name in text
    from fusion.prune_options import METHODS

    for m in METHODS:
        assert f"\n  {m} " in text


def test_version(capsys):
    from fusion import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fusion {__version__}"


def test_model_names_match_the_registry():
    from fusion.models import available

    assert tuple(available()) == cli_parser.MODEL_NAMES
