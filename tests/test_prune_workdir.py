"""``fusion prune --workdir``: the four artefacts reused across runs, recomputed when what they depend on changes.

Reuse is shown by counting the calls of the functions that compute each
artefact (counting wrappers), never by timing.
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bitwise_equal, cscl, make_cif_folder

from fusion import cli, prune_api, prune_cache

N = 12
FAST = {"epochs": 1, "batch_size": 4, "device": "cpu", "n_jobs": 1}


@pytest.fixture
def cifs(tmp_path):
    return make_cif_folder(tmp_path / "cifs")


@pytest.fixture
def counted(monkeypatch):
    """Count the calls of the four functions that compute the artefacts."""
    import fusion.featurize
    import fusion.fingerprints
    import fusion.uncertainty
    import fusion.userdata

    calls = dict.fromkeys(("structures", "fingerprints", "graphs", "surrogate"), 0)
    for kind, module, name in (
        ("structures", fusion.userdata, "collect_user_data"),
        ("fingerprints", fusion.fingerprints, "soap_fingerprints"),
        ("graphs", fusion.featurize, "graphs"),
        ("surrogate", fusion.uncertainty, "train_surrogate"),
    ):
        original = getattr(module, name)

        def wrapper(*args, _kind=kind, _original=original, **kwargs):
            calls[_kind] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, functools.wraps(original)(wrapper))
    return calls


def status(result):
    return {kind: a["status"] for kind, a in result.artefacts.items()}


def test_second_run_reuses_and_changed_options_recompute(cifs, tmp_path, counted):
    work = tmp_path / "work"
    first = prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    assert counted == {"structures": 1, "fingerprints": 1, "graphs": 1, "surrogate": 1}
    assert set(status(first).values()) == {"computed"}

    # Another ratio, method, gamma, lambda and sign: nothing recomputed.
    again = prune_api.prune(
        cifs, "gap", [0.5, 0.6], "fusion", workdir=work, gamma=3.0, lam=1.0, aleatoric_sign=1, **FAST
    )
    assert counted == {"structures": 1, "fingerprints": 1, "graphs": 1, "surrogate": 1}
    assert (
        status(again)["structures"] == status(again)["fingerprints"] == status(again)["surrogate"] == "reused"
    )
    assert again.surrogate["reused"] is True
    # U recomputed from the cached raw uncertainties with the new Lambda and s.
    from fusion.uncertainty import uncertainty_score

    s = again.scores
    # The same function on the same cached values, and a value read back: bit for bit.
    assert_bitwise_equal(np.asarray(s["U"]), np.asarray(uncertainty_score(s["u_ale"], s["u_epi"], 1.0, 1)))
    assert_bitwise_equal(np.asarray(s["u_ale"]), np.asarray(first.scores["u_ale"]))

    prune_api.prune(cifs, "gap", 0.3, "weight", workdir=work, **FAST)
    assert counted == {"structures": 1, "fingerprints": 1, "graphs": 1, "surrogate": 1}

    # Same options as the first run: the same bits and the same kept ids.
    same = prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    pd.testing.assert_frame_equal(same.scores, first.scores, check_exact=True)
    assert same.kept_ids(0.25) == first.kept_ids(0.25)
    assert same.surrogate["val_mae"] == first.surrogate["val_mae"]

    # A changed compression recomputes the fingerprints only.
    prune_api.prune(cifs, "gap", 0.25, "weight", workdir=work, compression="mu2", **FAST)
    assert counted == {"structures": 1, "fingerprints": 2, "graphs": 1, "surrogate": 1}

    # A changed surrogate option retrains on the cached graphs.
    for option in ({"epochs": 2}, {"seed": 1}, {"lr": 2e-3}, {"patience": 1}, {"batch_size": 3}):
        result = prune_api.prune(cifs, "gap", 0.25, "uncertainty", workdir=work, **{**FAST, **option})
        assert status(result)["graphs"] == "reused"
        assert status(result)["surrogate"] == "computed"
    assert counted == {"structures": 1, "fingerprints": 2, "graphs": 1, "surrogate": 6}


def test_input_changes(cifs, tmp_path, counted):
    work = tmp_path / "work"
    prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)

    # A touched file (same content): read again, the rest keyed by content and reused.
    st = (cifs / "c3.cif").stat()
    os.utime(cifs / "c3.cif", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    result = prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    assert counted == {"structures": 2, "fingerprints": 1, "graphs": 1, "surrogate": 1}
    assert status(result)["surrogate"] == "reused"

    # Changed targets: the same fingerprints, new graphs (they hold y) and a new surrogate.
    (cifs / "id_prop.csv").write_text("\n".join(f"c{k},{k * k}" for k in range(N)) + "\n")
    result = prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    assert counted == {"structures": 3, "fingerprints": 1, "graphs": 2, "surrogate": 2}
    assert result.scores["target"].tolist() == [float(k * k) for k in range(N)]

    # A changed crystal: everything downstream recomputed.
    (cifs / "c4.cif").write_text(cscl(4.5).to(fmt="cif"))
    prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    assert counted == {"structures": 4, "fingerprints": 2, "graphs": 3, "surrogate": 3}


def test_interrupted_run_resumes(cifs, tmp_path, counted, monkeypatch):
    import fusion.uncertainty

    work = tmp_path / "work"
    train = fusion.uncertainty.train_surrogate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fusion.uncertainty, "train_surrogate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    assert sorted(p.name.split("-")[0] for p in work.glob("*") if not p.name.endswith(".json")) == [
        "fingerprints",
        "graphs",
        "structures",
    ]
    monkeypatch.setattr(fusion.uncertainty, "train_surrogate", train)
    result = prune_api.prune(cifs, "gap", 0.25, "fusion", workdir=work, **FAST)
    assert counted == {
        "structures": 1,
        "fingerprints": 1,
        "graphs": 1,
        "surrogate": 1,
    }  # trained once, after the resume
    assert status(result) == {
        "structures": "reused",
        "fingerprints": "reused",
        "graphs": "reused",
        "surrogate": "computed",
    }
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


def test_damaged_artefact_is_recomputed(cifs, tmp_path, counted, caplog):
    work = tmp_path / "work"
    prune_api.prune(cifs, "gap", 0.25, "weight", workdir=work, **FAST)
    (path,) = (p for p in work.glob("fingerprints-*") if p.suffix in {".npy", ".npz"})
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level("WARNING", logger="fusion.prune"):
        result = prune_api.prune(cifs, "gap", 0.25, "weight", workdir=work, **FAST)
    assert counted["fingerprints"] == 2
    assert status(result)["fingerprints"] == "computed"
    assert "unreadable cached fingerprints" in caplog.text


def test_bad_records_cached_then_skipped(tmp_path, counted):
    from fusion.userdata import BadRecordsError

    folder = make_cif_folder(tmp_path / "cifs", n=5)
    (folder / "id_prop.csv").write_text((folder / "id_prop.csv").read_text() + "ghost,1.0\n")
    with pytest.raises(BadRecordsError, match="1 of 6 records are bad"):
        prune_api.prune(folder, "gap", 0.2, "random", workdir=tmp_path / "w", **FAST)
    result = prune_api.prune(folder, "gap", 0.2, "random", workdir=tmp_path / "w", skip_bad=True, **FAST)
    assert counted["structures"] == 1
    assert result.skipped["id"].tolist() == ["ghost"]


def test_edited_code_recomputes(cifs, tmp_path, counted, monkeypatch):
    work = tmp_path / "work"
    prune_api.prune(cifs, "gap", 0.25, "weight", workdir=work, **FAST)
    digest = prune_cache.code_digest
    monkeypatch.setattr(
        prune_cache, "code_digest", lambda kind: digest(kind) + ("x" if kind == "fingerprints" else "")
    )
    prune_api.prune(cifs, "gap", 0.25, "weight", workdir=work, **FAST)
    assert counted == {"structures": 1, "fingerprints": 2, "graphs": 0, "surrogate": 0}


def test_cache_keys_hold_their_options():
    assert prune_cache.cache_key("surrogate", {"lr": 1e-3}) != prune_cache.cache_key(
        "surrogate", {"lr": 2e-3}
    )
    assert prune_cache.cache_key("graphs", {"a": 1}) != prune_cache.cache_key("fingerprints", {"a": 1})
    assert prune_cache.cache_key("graphs", {"a": 1, "b": 2}) == prune_cache.cache_key(
        "graphs", {"b": 2, "a": 1}
    )


def test_cli_workdir_reports_reuse(cifs, tmp_path, capsys):
    argv = [
        "prune",
        "--data",
        str(cifs),
        "--target",
        "gap",
        "--quiet",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--n-jobs",
        "1",
        "--no-report",
        "--workdir",
        str(tmp_path / "work"),
    ]
    assert cli.main([*argv, "--out-dir", str(tmp_path / "a")]) == 0
    first = capsys.readouterr()
    assert "reused" not in first.err
    assert "saved surrogate to" in first.err
    assert cli.main([*argv, "--out-dir", str(tmp_path / "b"), "--ratio", "0.6", "--gamma", "2"]) == 0
    second = capsys.readouterr()
    for kind in ("structures", "fingerprints", "surrogate"):
        assert f"fusion prune: reused {kind} from {tmp_path / 'work'}" in second.err
    assert "structures reused, fingerprints reused, surrogate reused" in second.out
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["artefacts"]["surrogate"]["status"] == "reused"
    assert summary["options"]["workdir"] == str(tmp_path / "work")
    assert not (tmp_path / "b" / "report.html").exists()


def test_workdir_must_be_a_folder(cifs, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    argv = ["prune", "--data", str(cifs), "--target", "gap", "--out-dir", str(tmp_path / "o")]
    assert cli.main([*argv, "--workdir", str(tmp_path / "file")]) == 2
    assert "--workdir: " in capsys.readouterr().err


def _dense_dataset(n: int):
    """``n`` slightly strained CsCl cells: ``mu2`` fingerprints of them are dense (no zero-filled species blocks)."""
    from fusion.data import CrystalDataset

    structures = [cscl(4.0 + 0.001 * k) for k in range(n)]
    return CrystalDataset("strained", "a", [f"s{k}" for k in range(n)], structures, np.arange(n, dtype=float))


def _fingerprints(ds, workdir, monkeypatch):
    """The prune's fingerprint step on ``ds`` (``mu2``, in this process), in blocks of 64 records."""
    import contextlib

    from fusion import prune_steps

    monkeypatch.setattr(prune_steps, "FINGERPRINT_BLOCK", 64 * 4 * 252)  # 64 rows of mu2's 252 features
    with contextlib.ExitStack() as stack:
        pool = prune_steps.Workers(1, None, stack, min_items=10**9)
        work = None if workdir is None else prune_cache.WorkDir(workdir)
        return prune_steps.compute_fingerprints(ds, "mu2", pool, work, prune_steps.Digest(ds), progress=False)


def test_dense_fingerprints_stream_to_the_working_folder(tmp_path, monkeypatch):
    # 300 records in blocks of 64: five blocks, the last one short.
    ds = _dense_dataset(300)
    in_memory = _fingerprints(ds, None, monkeypatch)
    streamed = _fingerprints(ds, tmp_path / "work", monkeypatch)
    (path,) = (p for p in (tmp_path / "work").glob("fingerprints-*") if not p.name.endswith(".json"))
    assert path.suffix == ".npy"
    assert isinstance(streamed, np.memmap)
    assert not streamed.flags.writeable
    assert streamed.shape == in_memory.shape == (300, 252)
    assert_bitwise_equal(np.asarray(streamed), in_memory)  # the same blocks, written or copied
    reused = _fingerprints(ds, tmp_path / "work", monkeypatch)
    assert_bitwise_equal(np.asarray(reused), in_memory)


def test_streamed_fingerprints_memory_does_not_grow_with_the_dataset(tmp_path, monkeypatch):
    """Peak traced memory of the fingerprint step for 256 and 1,280 records, in blocks of 64.

    numpy reports its buffers to tracemalloc, so the measure sees the arrays:
    held in memory, the peak grows with the array (by 1,024 rows x 252 x 4 bytes);
    written to the working folder, it stays about one block (the old code held
    every block and their concatenation: twice the growth).
    """
    import tracemalloc

    def peak(n, workdir):
        ds = _dense_dataset(n)
        tracemalloc.start()
        try:
            _fingerprints(ds, workdir, monkeypatch)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    _fingerprints(_dense_dataset(2), None, monkeypatch)  # imports and first-call caches, not measured
    growth = (1280 - 256) * 252 * 4
    held = peak(1280, None) - peak(256, None)
    streamed = peak(1280, tmp_path / "a") - peak(256, tmp_path / "b")
    assert held > growth / 2, (held, growth)  # the measure sees the array (growth +- transients)
    assert streamed < growth / 4, (streamed, growth)
