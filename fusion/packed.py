"""A checked crystal held as three arrays: what `fusion prune` keeps in memory at scale.

A pymatgen :class:`~pymatgen.core.Structure` costs about 3.3 kB per site (one
``PeriodicSite`` object per atom, each with its species dict, coordinates and
properties): 10,000 cells of 94 atoms take 3.1 GB, more than the fingerprints.
The fingerprints and graphs read only the lattice matrix, the fractional
coordinates and the atomic numbers of an ordered structure, so
:class:`PackedStructure` keeps exactly those (about 32 bytes per site) and
answers the attributes they read with the same values, bit for bit: the
fingerprints and graphs of a packed structure equal those of the structure it
was packed from (``tests/test_packed.py``).

Records are packed on the worker that checks them
(:func:`fusion.record_checks.validate_records` with ``packed=True``), so the full
structures never travel to the main process.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import numpy as np


class PackedLattice(NamedTuple):
    """The lattice of a :class:`PackedStructure`: ``matrix`` holds the lattice vectors as rows (Å)."""

    matrix: np.ndarray


class PackedStructure:
    """An ordered, fully periodic crystal as arrays.

    Args:
        matrix: Lattice vectors as rows, ``[3, 3]`` float64 (Å).
        frac_coords: Fractional coordinates, ``[N, 3]`` float64.
        numbers: Atomic numbers, ``[N]`` int.
    """

    def __init__(self, matrix: Any, frac_coords: Any, numbers: Any) -> None:
        self._matrix = np.array(matrix, dtype=np.float64).reshape(3, 3)
        self._frac = np.array(frac_coords, dtype=np.float64).reshape(-1, 3)
        self._numbers = np.array(numbers, dtype=np.int64).reshape(-1)
        if len(self._numbers) != len(self._frac):
            raise ValueError(f"{len(self._numbers)} atomic numbers for {len(self._frac)} sites")

    @classmethod
    def of(cls, structure: Any) -> PackedStructure:
        """Pack an ordered pymatgen structure (or return a packed one as it is).

        Raises:
            ValueError: If the structure is disordered or not periodic in all
                three directions.
        """
        if isinstance(structure, PackedStructure):
            return structure
        if not structure.is_ordered:
            raise ValueError(f"{structure.formula}: disordered structures cannot be packed")
        if not all(structure.pbc):
            raise ValueError(f"{structure.formula}: only fully periodic structures can be packed")
        return cls(structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)

    # The attributes of pymatgen's Structure that fingerprints, graphs and digests read.
    @property
    def lattice(self) -> PackedLattice:
        """The lattice (``.matrix``)."""
        return PackedLattice(self._matrix)

    @property
    def frac_coords(self) -> np.ndarray:
        """Fractional coordinates ``[N, 3]``."""
        return self._frac

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        """Atomic numbers, one per site (a tuple, as pymatgen returns)."""
        return tuple(int(z) for z in self._numbers)

    @property
    def pbc(self) -> tuple[bool, bool, bool]:
        """Periodic in all three directions."""
        return (True, True, True)

    @property
    def is_ordered(self) -> bool:
        """Always True: only ordered structures are packed."""
        return True

    @cached_property
    def composition(self) -> Any:
        """The pymatgen ``Composition`` (computed on first use)."""
        from pymatgen.core import Composition, Element

        counts: dict[Any, float] = {}
        for z in self._numbers.tolist():
            el = Element.from_Z(z)
            counts[el] = counts.get(el, 0) + 1
        return Composition(counts)

    @property
    def formula(self) -> str:
        """The formula, as pymatgen writes it."""
        return str(self.composition.formula)

    def __len__(self) -> int:
        return len(self._numbers)

    def __repr__(self) -> str:
        return f"PackedStructure({self.formula}, {len(self)} sites)"

    def __getstate__(self) -> dict[str, Any]:
        # The arrays only: the cached composition is rebuilt on demand.
        return {k: self.__dict__[k] for k in ("_matrix", "_frac", "_numbers")}

    def to_structure(self) -> Any:
        """The pymatgen structure with the same lattice, species and fractional coordinates."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self._matrix), self._numbers.tolist(), self._frac)
