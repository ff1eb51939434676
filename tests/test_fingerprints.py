"""Tests of the SOAP fingerprints (fusion.fingerprints)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from conftest import assert_bitwise_equal
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from fusion.data import load_dataset
from fusion.fingerprints import (
    DEFAULT_COMPRESSION,
    QUANTUM,
    SOAP_PARAMS,
    _make_soap,
    _pack,
    canonical_fingerprint,
    dataset_species,
    gto_basis,
    load_fingerprints,
    n_features,
    save_fingerprints,
    soap_fingerprints,
    symmetry_orbits,
)
from fusion.paths import dataset_file


def rocksalt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rotated(s: Structure, axis=(1, 2, 3), angle: float = 37.0) -> Structure:
    rot = SymmOp.from_axis_angle_and_translation(axis, angle).rotation_matrix
    return Structure(s.lattice.matrix @ rot.T, s.species, s.frac_coords)


def low_symmetry() -> Structure:
    lat = Lattice.from_parameters(4.1, 4.7, 5.3, 81, 97, 112)
    return Structure(
        lat, ["Na", "Cl", "Cl", "K"], [[0, 0, 0], [0.31, 0.22, 0.45], [0.61, 0.7, 0.12], [0.4, 0.9, 0.8]]
    )


@pytest.fixture(scope="module")
def jdft2d_sample():
    if not dataset_file("matbench_jdft2d").exists():
        pytest.skip("data/ not pulled")
    return load_dataset("matbench_jdft2d", "exfoliation_energy", limit=8, progress=False).structures


@pytest.mark.parametrize("compression", ["mu2", "mu1nu1", "off"])
def test_supercell_and_rotation_invariance(compression):
    species = [11, 17, 19]
    for s in (rocksalt(), low_symmetry()):
        X = soap_fingerprints([s, s * (2, 2, 2), rotated(s)], species, compression, progress=False)
        assert np.abs(X[0] - X[1]).max() < 1e-5
        assert np.abs(X[0] - X[2]).max() < 1e-5


def test_unit_norm_float32_and_distinguishes_structures(jdft2d_sample):
    species = dataset_species(jdft2d_sample)
    X = soap_fingerprints(jdft2d_sample, species, progress=False)
    assert X.dtype == np.float32
    assert X.shape == (len(jdft2d_sample), n_features(species, DEFAULT_COMPRESSION))
    # Unit norm up to the 2^-20 rounding of the stored values (module docstring).
    assert np.allclose(np.linalg.norm(X.astype(np.float64), axis=1), 1.0, rtol=0, atol=1e-5)
    d = np.linalg.norm(X[:, None] - X[None], axis=-1)
    assert (d[~np.eye(len(X), dtype=bool)] > 1e-4).all()
    # A small strain moves the fingerprint, but less than changing the structure.
    strained = jdft2d_sample[0].copy()
    strained.apply_strain(0.02)
    Xs = soap_fingerprints([strained], species, progress=False)[0]
    assert 1e-6 < np.linalg.norm(Xs - X[0]) < d[0, 1:].min()


def test_symmetry_shortcut_equals_mean_over_all_sites():
    from dscribe.descriptors import SOAP

    species = [11, 17]
    s = rocksalt()
    reps, mult = symmetry_orbits(*_pack(s, 0))
    assert mult.sum() == len(s) == 8
    assert len(reps) == 2  # Na and Cl orbits of the conventional cell
    soap = SOAP(species=species, periodic=True, compression={"mode": "mu2"}, **SOAP_PARAMS)
    atoms = Atoms(numbers=s.atomic_numbers, scaled_positions=s.frac_coords, cell=s.lattice.matrix, pbc=True)
    full = soap.create(atoms).mean(axis=0)
    full /= np.linalg.norm(full)
    ours = soap_fingerprints([s], species, "mu2", progress=False)[0]
    # Two code paths: ours rounds to 2^-20 (error <= 2^-21 = 4.8e-7) and uses the
    # 60-digit radial basis (dscribe's LAPACK one differs by ~1e-10 relative).
    assert np.abs(full - ours).max() < 1e-6


def test_parallel_matches_serial_and_keeps_order(jdft2d_sample):
    species = dataset_species(jdft2d_sample)
    serial = soap_fingerprints(jdft2d_sample, species, progress=False)
    parallel = soap_fingerprints(jdft2d_sample, species, n_jobs=2, chunk_size=3, progress=False)
    assert_bitwise_equal(serial, parallel)  # one code path in this process or in workers: bit for bit


def test_compression_sizes():
    species = [11, 17, 19]
    assert n_features(species, "mu2") == 252  # 8*9/2 * 7, independent of species
    assert n_features(species, "mu1nu1") == 8 * 8 * 7 * 3
    same, cross = 3 * (8 * 9 // 2) * 7, 3 * (8 * 8) * 7  # Z1 == Z2 pairs, Z1 < Z2 pairs
    assert n_features(species, "off") == same + cross
    with pytest.raises(ValueError, match="compression"):
        n_features(species, "zip")


def test_missing_species_names_the_structure():
    with pytest.raises(ValueError, match="structure 1"):
        soap_fingerprints([rocksalt(), low_symmetry()], [11, 17], progress=False)


def test_save_load_roundtrip(tmp_path):
    X = np.random.default_rng(0).random((3, 5)).astype(np.float32)
    meta = {"species": [1, 8], "compression": "mu2"}
    save_fingerprints(tmp_path / "fp.npz", ["a", "b", "c"], X, meta)
    ids, X2, meta2 = load_fingerprints(tmp_path / "fp.npz")
    assert ids == ["a", "b", "c"]
    assert_bitwise_equal(X, X2)  # a round trip: bit for bit
    assert meta2 == meta
    with pytest.raises(ValueError, match="ids"):
        save_fingerprints(tmp_path / "bad.npz", ["a"], X)


# --- canonical output: the same bits whichever BLAS kernel runs -------------------------


def _synthetic() -> tuple[list[Structure], list[int]]:
    return [rocksalt(), low_symmetry(), rotated(low_symmetry()), low_symmetry() * (1, 1, 2)], [11, 17, 19]


def test_stored_values_lie_on_the_grid():
    structures, species = _synthetic()
    X = soap_fingerprints(structures, species, "mu1nu1", progress=False)
    k = X.astype(np.float64) / QUANTUM
    assert_bitwise_equal(k, np.round(k))  # multiples of 2^-20, exact in float32
    assert np.abs(X).max() <= 1.0


def test_normalisation_is_the_explicit_correctly_rounded_sum():
    # No BLAS dot product in the norm: sqrt(fsum(v * v)), whatever the kernel.
    rng = np.random.default_rng(0)
    for v in (rng.standard_normal(5000) * 1e3, rng.random(252) ** 8, np.zeros(7)):
        norm = math.sqrt(math.fsum((v * v).tolist()))
        unit = v / norm if norm > 0 else v
        assert_bitwise_equal(
            canonical_fingerprint(v), (np.round(unit / QUANTUM) * QUANTUM).astype(np.float32)
        )


def test_values_that_round_to_zero_are_positive_zero():
    # The sign of a value within 2^-21 of zero is noise; -0.0 and +0.0 differ in the file.
    v = np.array([1.0, -1e-9, 1e-9, -0.0, -3e-7])
    out = canonical_fingerprint(v)
    assert_bitwise_equal(out, np.array([1.0, 0.0, 0.0, 0.0, 0.0], dtype=np.float32))
    assert not np.signbit(out).any()


def test_stored_fingerprint_ignores_last_bit_noise_in_soap(monkeypatch):
    # Different BLAS kernels change the last bits of what feeds the file; noise of
    # 1e-12 (relative) on every SOAP value must not reach the stored bits.
    from dscribe.descriptors import SOAP

    structures, species = _synthetic()
    clean = soap_fingerprints(structures, species, "mu1nu1", progress=False)
    rng = np.random.default_rng(1)
    create = SOAP.create

    def noisy(self, *args, **kwargs):
        out = create(self, *args, **kwargs)
        return out * (1 + 1e-12 * rng.standard_normal(out.shape))

    monkeypatch.setattr(SOAP, "create", noisy)
    assert_bitwise_equal(soap_fingerprints(structures, species, "mu1nu1", progress=False), clean)


def test_radial_basis_is_computed_without_lapack(monkeypatch):
    import dscribe.descriptors.soap as dscribe_soap

    r_cut, n_max, l_max = float(SOAP_PARAMS["r_cut"]), int(SOAP_PARAMS["n_max"]), int(SOAP_PARAMS["l_max"])
    alphas, betas = gto_basis(r_cut, n_max, l_max)
    # The same constants as dscribe's own (LAPACK) ones, to LAPACK's accuracy on
    # this ill-conditioned overlap matrix: 1e-8 of the largest entry.
    ref = dscribe_soap.SOAP(species=[1], periodic=True, **SOAP_PARAMS)
    np.testing.assert_allclose(alphas, ref._alphas, rtol=1e-14)
    np.testing.assert_allclose(betas, ref._betas, rtol=0, atol=1e-8 * np.abs(betas).max())
    soap = _make_soap([11, 17], "mu2")
    assert_bitwise_equal(soap._betas, betas)
    # LAPACK's answer moves with the BLAS kernel (~1e-10 relative, measured);
    # make it move 10x more: the stored fingerprints must not.
    structures, species = _synthetic()
    clean = soap_fingerprints(structures, species, "mu1nu1", progress=False)
    sqrtm, rng = dscribe_soap.sqrtm, np.random.default_rng(2)
    monkeypatch.setattr(dscribe_soap, "sqrtm", lambda m: sqrtm(m) * (1 + 1e-9 * rng.standard_normal(m.shape)))
    assert_bitwise_equal(soap_fingerprints(structures, species, "mu1nu1", progress=False), clean)
