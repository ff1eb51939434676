"""PackedStructure: the arrays fusion prune holds instead of pymatgen structures."""

from __future__ import annotations

import gc
import pickle
import tracemalloc

import numpy as np
import pytest
from conftest import assert_bitwise_equal, assert_same_integers, cscl, rocksalt
from pymatgen.core import Lattice, Structure

from fusion import featurize, fingerprints
from fusion.packed import PackedStructure
from fusion.prune_cache import structures_digest
from fusion.record_checks import RawRecord, validate_records


def _crystals() -> list[Structure]:
    # A triclinic cell too, so that nothing depends on a diagonal lattice.
    tri = Structure(
        Lattice.from_parameters(4.1, 4.6, 5.3, 81, 97, 103),
        ["Mg", "O", "O"],
        [[0.0, 0.0, 0.0], [0.31, 0.27, 0.52], [0.69, 0.73, 0.48]],
    )
    return [rocksalt(5.6), cscl(4.1), tri, rocksalt(5.5) * (2, 1, 1)]


def test_packed_answers_the_structure_attributes_with_the_same_values():
    for s in _crystals():
        p = PackedStructure.of(s)
        assert len(p) == len(s)
        assert p.atomic_numbers == s.atomic_numbers
        assert p.formula == s.formula
        assert p.composition.reduced_formula == s.composition.reduced_formula
        assert_bitwise_equal(p.lattice.matrix, s.lattice.matrix)
        assert_bitwise_equal(p.frac_coords, s.frac_coords)
        back = p.to_structure()
        assert_bitwise_equal(back.frac_coords, s.frac_coords)
        assert back.atomic_numbers == s.atomic_numbers


def test_fingerprints_graphs_and_digest_of_packed_equal_those_of_the_structures():
    # The same arrays go through the same code: the results must be the same bits.
    structures = _crystals()
    packed = [PackedStructure.of(s) for s in structures]
    species = fingerprints.dataset_species(structures)
    assert fingerprints.dataset_species(packed) == species
    x_s = fingerprints.soap_fingerprints(structures, species, "mu2", progress=False)
    x_p = fingerprints.soap_fingerprints(packed, species, "mu2", progress=False)
    assert_bitwise_equal(x_p, x_s)
    ids = [f"c{k}" for k in range(len(structures))]
    y = np.arange(len(structures), dtype=float)
    g_s = featurize.graphs(structures, y, ids, kind="structure")
    g_p = featurize.graphs(packed, y, ids, kind="structure")
    for a, b in zip(g_s, g_p, strict=True):
        assert_same_integers(a.edge_index.numpy(), b.edge_index.numpy())
        for key in ("pos", "edge_attr", "y", "cell"):
            if key in a:
                assert_bitwise_equal(a[key], b[key], key)
    assert structures_digest(ids, packed) == structures_digest(ids, structures)


def test_validate_records_packed_keeps_the_same_records_and_reasons():
    good = [rocksalt(5.4 + 0.1 * k) if k % 2 else cscl(4.0 + 0.1 * k) for k in range(5)]
    recs = [RawRecord(f"r{k}", s.to(fmt="cif"), float(k)) for k, s in enumerate(good)]
    recs += [RawRecord("bad-target", good[0].to(fmt="cif"), "n/a"), RawRecord("bad-cif", "not a cif", 1.0)]
    plain = validate_records(recs, name="t", target="y", progress=False)
    packed = validate_records(recs, name="t", target="y", progress=False, packed=True)
    assert packed.ids == plain.ids
    assert_bitwise_equal(packed.targets, plain.targets)
    assert packed.metadata.equals(plain.metadata)
    assert packed.skipped.equals(plain.skipped)
    assert all(isinstance(s, PackedStructure) for s in packed.structures)
    for p, s in zip(packed.structures, plain.structures, strict=True):
        assert_bitwise_equal(p.frac_coords, s.frac_coords)


def test_a_packed_dataset_takes_a_fraction_of_the_memory_and_survives_pickling():
    cif = (rocksalt(5.6) * (3, 3, 2)).to(fmt="cif")  # 144 atoms
    recs = [RawRecord(f"r{k}", cif, 1.0) for k in range(10)]
    held = {}
    for packed in (False, True):
        gc.collect()
        tracemalloc.start()
        ds = validate_records(recs, name="t", target="y", progress=False, packed=packed)
        held[packed] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    # Measured ~1,000 vs ~90 bytes per site: one pymatgen object per site against three arrays.
    assert held[True] * 5 < held[False], held
    p = ds.structures[0]
    q = pickle.loads(pickle.dumps(p))
    assert_bitwise_equal(q.frac_coords, p.frac_coords)
    assert q.formula == p.formula == "Na72 Cl72"


def test_disordered_structures_are_refused_with_their_formula():
    s = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="disordered"):
        PackedStructure.of(s)
    with pytest.raises(ValueError, match="3 atomic numbers for 2 sites"):
        PackedStructure(np.eye(3), np.zeros((2, 3)), [1, 2, 3])


def test_prune_graphs_in_blocks_equal_one_block(monkeypatch):
    import contextlib

    from fusion import prune_steps

    ds = validate_records(
        [
            RawRecord(f"r{k}", (rocksalt(5.4 + 0.1 * k) if k % 2 else cscl(4.0 + 0.1 * k)), float(k))
            for k in range(7)
        ],
        name="t",
        target="y",
        progress=False,
        packed=True,
    )
    with contextlib.ExitStack() as stack:
        pool = prune_steps.Workers(1, None, stack, min_items=200)
        whole = prune_steps.compute_graphs(ds, pool, None, prune_steps.Digest(ds), progress=False)
        monkeypatch.setattr(prune_steps, "GRAPH_BLOCK", 3)  # blocks of 3, 3 and 1
        blocks = prune_steps.compute_graphs(ds, pool, None, prune_steps.Digest(ds), progress=False)
    assert len(blocks) == len(whole) == 7
    for a, b in zip(whole, blocks, strict=True):
        assert_same_integers(a.edge_index.numpy(), b.edge_index.numpy())
        for key in ("pos", "edge_attr", "y"):
            if key in a:
                assert_bitwise_equal(a[key], b[key], key)
