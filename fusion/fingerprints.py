"""SOAP geometric fingerprints of crystals (METHOD.md step 3).

One vector per structure: the SOAP power spectrum (Bartók, Kondor & Csányi,
"On representing chemical environments", Phys. Rev. B 87, 184115, 2013;
computed with dscribe, Himanen et al., Comput. Phys. Commun. 247, 106949, 2020)
of every site, averaged over the structure, then L2-normalised, rounded to
the grid of :data:`QUANTUM` (2^-20) and stored as float32. Parameters follow
the paper: ``r_cut = 5`` Å, ``n_max = 8``, ``l_max = 6``, ``sigma = 0.5``,
periodic, one species list for the whole dataset.

Canonical output: the same structures give the same stored bits on any
machine with the same software stack, whichever BLAS kernel OpenBLAS picks
there (from the CPU, or ``OPENBLAS_CORETYPE``). Three things in the plain
recipe depend on that kernel and are replaced:

* dscribe's GTO radial basis: ``SOAP.get_basis_gto`` orthonormalises it with
  ``scipy.linalg.sqrtm(inv(S))`` of an ill-conditioned overlap matrix (condition
  number ~1e7), through LAPACK/BLAS. The matrices (betas) then differ between
  kernels by ~1e-10 relative, and so does every SOAP value (measured on
  matbench_jdft2d: Haswell against SkylakeX, up to 4e-9 absolute). Here the
  same formulas are evaluated in 60-digit arithmetic (mpmath) and rounded to
  float64 (:func:`gto_basis`), which is also more accurate than LAPACK's.
* Cartesian positions: ASE's ``scaled_positions @ cell`` is a BLAS product;
  :func:`fusion.cif.cartesian` spells it out.
* The L2 norm: ``np.linalg.norm`` of a vector is a BLAS dot product; here it is
  ``sqrt(math.fsum(v * v))``, a correctly rounded sum.

What is left (the compiled SOAP code, spglib, libm) does not call BLAS. As a
second line of defence, each normalised fingerprint is rounded to multiples
of :data:`QUANTUM` = 2^-20 (9.5e-7) before the float32 cast: any residual
last-bit noise (~1e-16) reaches the file only where a value lies within that
noise of a rounding boundary (probability ~1e-10 per value), and the cast is
exact (|x| <= 1, so x * 2^20 is an integer below 2^24); a value that rounds to
zero is stored as +0.0 whatever its sign. The rounding moves each
component by at most 2^-21 (4.8e-7) and a distance between two fingerprints
by ~1e-6 typically (at most 2^-21 * sqrt(F) in the worst case); the selection
works on nearest-neighbour distances whose medians are 0.04-0.5 (see below),
four to five orders of magnitude larger. Rows keep unit norm to ~1e-6.

Speed trick: the paper's multiplicity-weighted mean over symmetry-unique sites
equals the plain mean over all sites (symmetry-equivalent sites have identical
SOAP vectors), so SOAP is evaluated only at one representative per orbit
(spglib, ``symprec = 1e-5``) and weighted by the orbit size. A high-symmetry
cell thus costs as much as its asymmetric unit.

Compression (dscribe's ``compression={"mode": ...}``, Darby et al., npj Comput.
Mater. 8, 166, 2022):

==========  ===============================================  =====================
mode        features                                         252-d independent of
==========  ===============================================  =====================
``off``     ``n_max^2 * S(S+1)/2 * (l_max+1)`` (S species)    no: 1.7 M for S = 87
``mu1nu1``  ``n_max^2 * S * (l_max+1)``                       no: 39 k for S = 87
``mu2``     ``n_max(n_max+1)/2 * (l_max+1)`` = 252            yes (element-agnostic)
==========  ===============================================  =====================

The default is ``mu1nu1``, chosen from ``benchmarks/bench_compression.py`` on
matbench_jdft2d (636 structures, 77 species; ``benchmarks/results/compression.json``):
against uncompressed SOAP, the kept sets of the W-only rule overlap with
Jaccard 0.85-1.00 for ``mu1nu1`` but only 0.15-0.82 for ``mu2`` (two random
subsets: 0.11-0.67). ``mu2`` is element-agnostic (an element substitution
leaves it unchanged) and squeezes the dataset together: median
nearest-neighbour distance 0.037 against 0.45 (``mu1nu1``) and 0.55 (``off``).
``mu2`` is about 3x faster than ``mu1nu1`` and has 252 features for any
dataset; use it where ``mu1nu1`` does not fit: ``n * 64 * 7 * S`` float32 is
5.7 GB for mp_mtcgcnn (36,738 structures, 87 species), and the exact
nearest-neighbour search grows with that width.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

COMPRESSIONS = ("off", "mu1nu1", "mu2")
DEFAULT_COMPRESSION = "mu1nu1"
SOAP_PARAMS: dict[str, float | int] = {"r_cut": 5.0, "n_max": 8, "l_max": 6, "sigma": 0.5}
SYMPREC = 1e-5
QUANTUM = 2.0**-20
"""Grid of the stored fingerprint values (module docstring: canonical output)."""
_BASIS_DIGITS = 60

# A structure travels to worker processes as plain arrays, not as a pymatgen
# object: (lattice [3,3], fractional coords [n,3], atomic numbers [n]).
_Packed = tuple[np.ndarray, np.ndarray, np.ndarray]


def dataset_species(structures: Sequence[Structure]) -> list[int]:
    """Return the sorted atomic numbers present in a dataset (its SOAP species list).

    Args:
        structures: The dataset's structures.

    Returns:
        Sorted unique atomic numbers.
    """
    zs: set[int] = set()
    for s in structures:
        zs.update(s.atomic_numbers)
    return sorted(zs)


@functools.lru_cache(maxsize=8)
def gto_basis(r_cut: float, n_max: int, l_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Return dscribe's GTO radial basis constants, computed the same way on every machine.

    The formulas of ``dscribe.descriptors.SOAP.get_basis_gto`` (dscribe 2.1):
    decay lengths ``a`` evenly spaced from 1 Å to ``r_cut``; exponents
    ``alpha = -log(1e-3 / a^l) / a^2``; overlap matrix
    ``S_ij = Gamma(l + 3/2) / 2 * (alpha_i + alpha_j)^-(l + 3/2)``; Löwdin
    orthonormalisation ``beta = S^-1/2``. Evaluated in 60-digit arithmetic
    (mpmath), ``S`` from the float64 exponents the compiled code receives, and
    each result rounded once to float64: no LAPACK/BLAS, whose answer for the
    ill-conditioned ``S`` depends on the kernel in its last ~6 digits.

    Args:
        r_cut: Radial cutoff (Å).
        n_max: Number of radial basis functions.
        l_max: Maximum degree of the spherical harmonics.

    Returns:
        ``(alphas [l_max + 1, n_max], betas [l_max + 1, n_max, n_max])``, float64,
        read-only.
    """
    import mpmath

    alphas = np.zeros((l_max + 1, n_max))
    betas = np.zeros((l_max + 1, n_max, n_max))
    with mpmath.workdps(_BASIS_DIGITS):
        threshold = mpmath.mpf(1e-3)  # dscribe's float64 1e-3, exactly
        a = [1 + (mpmath.mpf(r_cut) - 1) * i / (n_max - 1) for i in range(n_max)]
        for l in range(l_max + 1):
            alphas[l] = [float(-mpmath.log(threshold / ai**l) / ai**2) for ai in a]
            x = [mpmath.mpf(v) for v in alphas[l]]
            p = l + mpmath.mpf(3) / 2
            half_gamma = mpmath.gamma(p) / 2
            S = mpmath.matrix([[half_gamma * (xi + xj) ** -p for xj in x] for xi in x])
            eigval, eigvec = mpmath.eigsy(S)
            B = eigvec * mpmath.diag([e ** mpmath.mpf(-0.5) for e in eigval]) * eigvec.T
            betas[l] = [[float(B[i, j]) for j in range(n_max)] for i in range(n_max)]
    alphas.flags.writeable = False
    betas.flags.writeable = False
    return alphas, betas


def _make_soap(species: Sequence[int], compression: str) -> Any:
    from dscribe.descriptors import SOAP

    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; choose one of {COMPRESSIONS}")
    soap = SOAP(
        species=list(species),
        periodic=True,
        compression={"mode": compression},
        dtype="float64",
        **SOAP_PARAMS,
    )
    # Replace dscribe's LAPACK-computed basis constants by canonical ones.
    alphas, betas = gto_basis(
        float(SOAP_PARAMS["r_cut"]), int(SOAP_PARAMS["n_max"]), int(SOAP_PARAMS["l_max"])
    )
    if soap._alphas.shape != alphas.shape or soap._betas.shape != betas.shape:
        raise RuntimeError("dscribe's GTO basis layout changed; update fusion.fingerprints.gto_basis")
    soap._alphas, soap._betas = alphas.copy(), betas.copy()
    return soap


def n_features(species: Sequence[int], compression: str = DEFAULT_COMPRESSION) -> int:
    """Return the fingerprint length for a species list and compression mode.

    Args:
        species: Atomic numbers of the dataset.
        compression: ``"off"``, ``"mu1nu1"`` or ``"mu2"``. Defaults to ``"mu1nu1"``.

    Returns:
        Number of features per structure.
    """
    return int(_make_soap(species, compression).get_number_of_features())


def symmetry_orbits(
    lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return one representative site per symmetry orbit and the orbit sizes.

    Args:
        lattice: ``[3, 3]`` lattice vectors as rows (Å).
        frac: ``[n, 3]`` fractional coordinates.
        numbers: ``[n]`` atomic numbers.

    Returns:
        ``(representatives, multiplicities)``: site indices (ascending) and the
        number of sites in each orbit (summing to ``n``). If spglib finds no
        symmetry dataset, every site is its own orbit.
    """
    import spglib

    data = spglib.get_symmetry_dataset((lattice, frac, numbers), symprec=SYMPREC)
    if data is None:
        n = len(numbers)
        return np.arange(n), np.ones(n, dtype=np.int64)
    reps, counts = np.unique(np.asarray(data.equivalent_atoms), return_counts=True)
    return reps, counts


def _pack(structure: Structure, index: int) -> _Packed:
    if not structure.is_ordered:
        raise ValueError(f"structure {index} ({structure.formula}) is disordered; SOAP needs ordered sites")
    return (
        np.array(structure.lattice.matrix, dtype=np.float64),
        np.array(structure.frac_coords, dtype=np.float64),
        np.array(structure.atomic_numbers, dtype=np.int64),
    )


def canonical_fingerprint(mean: np.ndarray) -> np.ndarray:
    """L2-normalise a mean SOAP vector and round it to the :data:`QUANTUM` grid.

    No BLAS: the norm is ``sqrt(math.fsum(v * v))`` (correctly rounded, so
    independent of summation order), the rest elementwise IEEE operations.

    Args:
        mean: ``[F]`` float64 vector.

    Returns:
        ``[F]`` float32 vector, multiples of 2^-20 (exact in float32), with no
        negative zeros; the zero vector stays zero.
    """
    mean = np.asarray(mean, dtype=np.float64)
    norm = math.sqrt(math.fsum((mean * mean).tolist()))
    unit = mean / norm if norm > 0 else mean
    # + 0.0 turns the -0.0 of a tiny negative value into +0.0: the sign of a
    # value that rounds to zero is noise, and a -0.0 would change the file.
    return (np.round(unit / QUANTUM) * QUANTUM + 0.0).astype(np.float32)


def _fingerprint_chunk(args: tuple[list[_Packed], list[int], str]) -> np.ndarray:
    """Worker: fingerprints of a chunk of packed structures, ``[len(chunk), F]`` float32."""
    from ase import Atoms

    from fusion.cif import cartesian

    packed, species, compression = args
    soap = _make_soap(species, compression)
    out = np.empty((len(packed), soap.get_number_of_features()), dtype=np.float32)
    for k, (lattice, frac, numbers) in enumerate(packed):
        reps, mult = symmetry_orbits(lattice, frac, numbers)
        # Positions from fusion.cif.cartesian, not ASE's scaled_positions (a BLAS product).
        atoms = Atoms(numbers=numbers, positions=cartesian(frac, lattice), cell=lattice, pbc=True)
        per_site = np.atleast_2d(soap.create(atoms, centers=reps.tolist()))
        # Row by row, in site order (a numpy reduction along axis 0, not BLAS).
        mean = (mult[:, None] * per_site).sum(axis=0) / mult.sum()
        out[k] = canonical_fingerprint(mean)
    return out


def soap_fingerprints(
    structures: Sequence[Structure],
    species: Sequence[int],
    compression: str = DEFAULT_COMPRESSION,
    n_jobs: int = 1,
    progress: bool = True,
    chunk_size: int = 64,
    client: Any = None,
) -> np.ndarray:
    """Compute the L2-normalised, symmetry-averaged SOAP fingerprint of each structure.

    Args:
        structures: Ordered pymatgen structures.
        species: Atomic numbers covering every structure (one list per dataset;
            see :func:`dataset_species`). Fixed explicitly so that fingerprints of
            the same dataset are comparable across calls.
        compression: ``"off"``, ``"mu1nu1"`` (default) or ``"mu2"``; see the
            module docstring.
        n_jobs: Local Dask workers when no ``client`` is given (-1: one per
            core). Defaults to 1 (no cluster). Chunks are gathered in input
            order, so the result does not depend on the number of workers.
        progress: Show a tqdm progress bar over structures. Defaults to True.
        chunk_size: Structures per task sent to a worker. Defaults to 64.
        client: A ``distributed.Client`` from :func:`fusion.parallel.workers`
            to run the chunks on. Defaults to None.

    Returns:
        ``[n_structures, n_features]`` float32 array, rows of unit norm (to ~1e-6)
        on the 2^-20 grid; the same bits on every machine (module docstring).

    Raises:
        ValueError: If a structure is disordered or holds an element missing
            from ``species`` (the message names the structure's index).
    """
    allowed = {int(z) for z in species}
    packed = []
    for i, s in enumerate(structures):
        p = _pack(s, i)
        missing = set(p[2].tolist()) - allowed
        if missing:
            raise ValueError(f"structure {i} ({s.formula}) has elements {sorted(missing)} not in species")
        packed.append(p)
    n_feat = n_features(species, compression)
    if not packed:
        return np.zeros((0, n_feat), dtype=np.float32)
    tasks = [
        (packed[a : a + chunk_size], list(species), compression) for a in range(0, len(packed), chunk_size)
    ]
    from fusion.parallel import map_on_workers

    run: dict[str, Any] = {
        "progress": progress,
        "desc": f"SOAP ({compression})",
        "weights": [len(t[0]) for t in tasks],
        "unit": "struct",
    }
    parts = map_on_workers(_fingerprint_chunk, tasks, client, n_jobs, **run)
    return np.concatenate(parts, axis=0)


def save_fingerprints(
    path: str | Path, ids: Sequence[str], X: np.ndarray, meta: dict[str, Any] | None = None
) -> None:
    """Save fingerprints with their record ids and metadata to a compressed ``.npz``.

    Args:
        path: Output file (``.npz``).
        ids: Record id of each row of ``X``.
        X: ``[n, F]`` fingerprints.
        meta: JSON-serialisable metadata (species, compression, ...). Defaults to
            none.

    Raises:
        ValueError: If ``ids`` and ``X`` differ in length.
    """
    if len(ids) != len(X):
        raise ValueError(f"{len(ids)} ids but {len(X)} fingerprint rows")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, X=np.asarray(X), ids=np.asarray(list(ids), dtype=str), meta=np.asarray(json.dumps(meta or {}))
    )


def load_fingerprints(path: str | Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Load fingerprints written by :func:`save_fingerprints`.

    Args:
        path: The ``.npz`` file.

    Returns:
        ``(ids, X, meta)``.
    """
    with np.load(Path(path), allow_pickle=False) as f:
        return [str(i) for i in f["ids"]], f["X"], json.loads(str(f["meta"]))
