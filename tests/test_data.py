"""Loaders, bad-input handling and splits."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from conftest import assert_bitwise_equal, cscl, rocksalt
from pymatgen.core import Lattice, Structure

from fusion import data as fd
from fusion import online, userdata
from fusion import record_checks as rc
from fusion.splits import load_split, pool_ids, random_split, save_split

BROKEN_CIF = "data_broken\n_cell_length_a 3.0\nloop_\n_atom_site_label\nthis is not a cif\n"


def partial_occupancy() -> Structure:
    return Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def isolated() -> Structure:
    return Structure(Lattice.cubic(30.0), ["H", "H"], [[0, 0, 0], [0.6, 0.6, 0.6]])


def bad_records() -> list[rc.RawRecord]:
    return [
        rc.RawRecord("ok-1", rocksalt(), 1.0),
        rc.RawRecord("broken-cif", BROKEN_CIF, 1.0),
        rc.RawRecord("no-target", cscl(), None),
        rc.RawRecord("nan-target", cscl(), float("nan")),
        rc.RawRecord("inf-target", cscl(), float("inf")),
        rc.RawRecord("text-target", cscl(), "abc"),
        rc.RawRecord("ok-1", cscl(), 2.0),
        rc.RawRecord("partial", partial_occupancy(), 1.0),
        rc.RawRecord("lonely", isolated(), 1.0),
        rc.RawRecord("ok-2", cscl().to(fmt="cif"), "3.5"),
    ]


def test_bad_input_is_skipped_and_reported(tmp_path):
    with pytest.warns(UserWarning, match="skipped 8 of 10"):
        ds = rc.validate_records(bad_records(), name="t", target="y", progress=False)
    assert ds.ids == ["ok-1", "ok-2"]
    assert_bitwise_equal(ds.targets, np.array([1.0, 3.5]))  # parsed, no arithmetic: exact
    reasons = dict(zip(ds.skipped.id + "|" + ds.skipped.index.astype(str), ds.skipped.reason, strict=True))
    by_id = {k.split("|")[0]: v for k, v in reasons.items()}
    assert by_id["broken-cif"].startswith("unparsable structure")
    assert by_id["no-target"] == "missing target"
    assert by_id["nan-target"] == "missing target"
    assert "non-finite" in by_id["inf-target"]
    assert "not a number" in by_id["text-target"]
    assert "duplicate id" in by_id["ok-1"]
    assert "partial occupancies" in by_id["partial"]
    assert "no neighbour within 8.0" in by_id["lonely"]
    # Every input record is either kept or reported.
    assert len(ds) + len(ds.skipped) == 10
    out = ds.save_skip_report(tmp_path / "skipped.csv")
    table = pd.read_csv(out)
    assert list(table.columns) == ["id", "reason"]
    assert len(table) == 8


@pytest.mark.parametrize(
    ("rid", "match"),
    [("broken-cif", "unparsable"), ("partial", "partial occupancies"), ("lonely", "no neighbour")],
)
def test_raise_mode_names_the_record(rid, match):
    recs = [bad_records()[0], next(r for r in bad_records() if r.id == rid)]
    with pytest.raises(fd.DataError, match=rf"record '{rid}'.*{match}"):
        rc.validate_records(recs, name="t", target="y", errors="raise", progress=False)


def test_parallel_validation_matches_serial():
    recs = [
        rc.RawRecord(f"r{k}", (rocksalt(5.5 + 0.01 * k) if k % 3 else cscl()).to(fmt="cif"), k)
        for k in range(240)
    ]
    recs.append(rc.RawRecord("bad", BROKEN_CIF, 1.0))
    with pytest.warns(UserWarning, match="skipped 1"):
        serial = rc.validate_records(recs, name="t", target="y", progress=False)
    with pytest.warns(UserWarning, match="skipped 1"):
        parallel = rc.validate_records(recs, name="t", target="y", n_jobs=2, progress=False)
    assert serial.ids == parallel.ids
    assert_bitwise_equal(serial.targets, parallel.targets)  # one code path in workers or not: exact
    assert serial.skipped.equals(parallel.skipped)


def test_unknown_dataset_and_target():
    with pytest.raises(fd.DataError, match=r"unknown dataset 'nope'"):
        fd.load_dataset("nope", "x")
    with pytest.raises(fd.DataError, match="unknown target 'band_gap' for matbench_jdft2d"):
        fd.load_dataset("matbench_jdft2d", "band_gap")


def test_project_dataset(data_available):
    ds = fd.load_dataset("matbench_jdft2d", "exfoliation_energy", limit=40, progress=False)
    assert len(ds) == 40
    assert len(ds.skipped) == 0
    assert len(set(ds.ids)) == 40
    assert np.isfinite(ds.targets).all()
    assert list(ds.metadata.columns[:3]) == ["id", "formula", "nsites"]
    assert (ds.metadata.nsites.to_numpy() == [len(s) for s in ds.structures]).all()
    sub = ds.subset(ds.ids[5:0:-1])
    assert sub.ids == ds.ids[5:0:-1]
    assert_bitwise_equal(sub.targets, ds.targets[5:0:-1])  # a subset copies the values: exact
    with pytest.raises(fd.DataError, match="not in"):
        ds.subset(["missing-id"])


def test_missing_data_file(tmp_path):
    with pytest.raises(fd.DataError, match="dvc pull"):
        fd.load_dataset("matbench_jdft2d", "exfoliation_energy", data_dir=tmp_path)


# ------------------------------------------------------------------ users' data


def write_cif_folder(folder, header=False):
    folder.mkdir()
    rows = ["id,band_gap"] if header else []
    for k in range(4):
        s = rocksalt(5.5 + 0.1 * k)
        (folder / f"c{k}.cif").write_text(s.to(fmt="cif"))
        rows.append(f"c{k},{0.5 * k}")
    (folder / "bad.cif").write_text(BROKEN_CIF)
    rows.append("bad,1.0")
    rows.append("missing-file,2.0")
    rows.append("c9,")
    (folder / "c9.cif").write_text(cscl().to(fmt="cif"))
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("header", [False, True])
def test_cif_folder(tmp_path, header):
    write_cif_folder(tmp_path / "cifs", header=header)
    with pytest.warns(UserWarning, match="skipped 3"):
        ds = userdata.load_user_data(tmp_path / "cifs", "band_gap", progress=False)
    assert ds.ids == ["c0", "c1", "c2", "c3"]
    np.testing.assert_allclose(ds.targets, [0, 0.5, 1.0, 1.5])
    reasons = dict(zip(ds.skipped.id, ds.skipped.reason, strict=True))
    assert reasons["bad"].startswith("unparsable")
    assert "not found" in reasons["missing-file"]
    assert reasons["c9"] == "target is not a number: ''"


def test_cif_folder_without_id_prop(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(fd.DataError, match=r"no id_prop\.csv"):
        userdata.load_user_data(tmp_path / "x", "y")


def test_extxyz(tmp_path):
    from ase import Atoms
    from ase.io import write

    frames = []
    for k in range(3):
        s = rocksalt(5.5 + 0.1 * k)
        a = Atoms(numbers=s.atomic_numbers, positions=s.cart_coords, cell=s.lattice.matrix, pbc=True)
        a.info["energy"] = -1.0 * k
        a.info["id"] = f"frame{k}"
        frames.append(a)
    mol = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[10, 10, 10], pbc=False)
    mol.info["energy"] = 0.0
    frames.append(mol)
    path = tmp_path / "set.extxyz"
    write(path, frames, format="extxyz")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = userdata.load_user_data(path, "energy", progress=False)
    assert ds.ids == ["frame0", "frame1", "frame2"]
    np.testing.assert_allclose(ds.targets, [0.0, -1.0, -2.0])
    assert ds.structures[1].lattice.a == pytest.approx(5.6)
    assert "not periodic" in ds.skipped.reason.iloc[0]
    assert ds.skipped.id.iloc[0] == "set-3"


def test_json_records(tmp_path):
    recs = [
        {"id": "a", "structure": rocksalt().as_dict(), "gap": 1.0},
        {"id": "b", "structure": cscl().to(fmt="cif"), "gap": 2.0},
        {"id": "c", "structure": cscl().to(fmt="cif")},
    ]
    path = tmp_path / "recs.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(recs, fh)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = userdata.load_user_data(path, "gap", progress=False)
    assert ds.ids == ["a", "b"]
    assert len(ds.structures[0]) == 8
    assert ds.skipped.to_dict("records") == [{"id": "c", "reason": "missing target"}]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(fd.DataError, match="not valid JSON"):
        userdata.load_user_data(tmp_path / "bad.json", "gap")
    with pytest.raises(fd.DataError, match="expected a CIF folder"):
        userdata.load_user_data(_touch(tmp_path / "x.csv"), "gap")


def _touch(path):
    path.write_text("")
    return path


# ------------------------------------------------------------------ online sources on fixtures


def test_matbench_adapter_on_fixture(tmp_path):
    """matminer decodes a file in its own on-disk format; only the download is replaced.

    matminer downloads a task to ``<data_home>/<task>.json.gz`` when the file is
    missing; the fixture is written there in matminer's own format
    (``store_dataframe_as_json``: pandas 'split' orient, Monty-encoded structures),
    so matminer's decoder runs on it unchanged.
    """
    from matminer.utils.io import store_dataframe_as_json

    structs = [rocksalt(5.5), cscl(), partial_occupancy()]
    df = pd.DataFrame({"structure": structs, "exfoliation_en": [50.0, 80.0, 10.0]})
    store_dataframe_as_json(df, str(tmp_path / "matbench_jdft2d.json.gz"), compression="gz", pbar=False)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = online.load_matbench("matbench_jdft2d", data_home=tmp_path, progress=False)
    assert ds.target == "exfoliation_en"
    assert ds.ids == ["mb-jdft2d-00001", "mb-jdft2d-00002"]
    np.testing.assert_allclose(ds.targets, [50.0, 80.0])
    assert ds.structures[0] == structs[0]
    assert "partial" in ds.skipped.reason.iloc[0]
    with pytest.raises(fd.DataError, match="unknown Matbench task"):
        online.load_matbench("matbench_nope", data_home=tmp_path)


class _FakeResponse:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.headers = {"content-length": str(len(payload))}

    def iter_content(self, block):
        buf = io.BytesIO(self.payload)
        while chunk := buf.read(block):
            yield chunk


def test_jarvis_adapter_on_fixture(tmp_path, monkeypatch):
    """jarvis-tools runs unchanged; only its HTTP download returns a fixture zip."""
    import jarvis.db.figshare as fig
    from jarvis.core.atoms import Atoms

    url, js_tag = fig.get_db_info()["dft_2d"][:2]
    records = []
    for k, s in enumerate([rocksalt(5.5), cscl()]):
        atoms = Atoms(
            lattice_mat=s.lattice.matrix,
            coords=s.frac_coords,
            elements=[e.symbol for e in s.species],
            cartesian=False,
        )
        records.append(
            {
                "jid": f"JVASP-{k + 1}",
                "atoms": atoms.to_dict(),
                "exfoliation_energy": 60.0 + k,
                "optb88vdw_bandgap": 1.0,
            }
        )
    records.append({"jid": "JVASP-9", "atoms": records[0]["atoms"], "exfoliation_energy": "na"})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(js_tag, json.dumps(records))
    calls = []

    def fake_get(u, stream=False):
        calls.append(u)
        return _FakeResponse(buf.getvalue())

    monkeypatch.setattr(fig.requests, "get", fake_get)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = online.load_jarvis("dft_2d", "exfoliation_energy", store_dir=tmp_path, progress=False)
    assert calls == [url]
    assert ds.ids == ["JVASP-1", "JVASP-2"]
    np.testing.assert_allclose(ds.targets, [60.0, 61.0])
    assert ds.structures[1].composition.reduced_formula == "CsCl"
    assert ds.skipped.to_dict("records") == [{"id": "JVASP-9", "reason": "target is not a number: 'na'"}]
    with pytest.raises(fd.DataError, match="unknown target 'nope'"):
        online.load_jarvis("dft_2d", "nope", store_dir=tmp_path)


# ------------------------------------------------------------------ splits


def test_split_sizes_and_disjointness():
    ids = [f"id{k}" for k in range(101)]
    split = random_split(ids, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [71, 15, 15]
    assert sorted(i for part in split.values() for i in part) == sorted(ids)
    assert pool_ids(split) == split["train"] + split["val"]


def test_split_determinism(tmp_path):
    ids = [f"id{k}" for k in range(500)]
    a = save_split(random_split(ids, seed=7), tmp_path / "a.json")
    b = save_split(random_split(ids, seed=7), tmp_path / "b.json")
    c = save_split(random_split(ids, seed=8), tmp_path / "c.json")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert load_split(a) == random_split(ids, seed=7)


def test_split_rejects_duplicates_and_bad_fractions():
    with pytest.raises(ValueError, match="unique"):
        random_split(["a", "a"], seed=0)
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(["a", "b"], seed=0, fractions=(0.5, 0.5, 0.5))
