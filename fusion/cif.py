"""A small, strict reader for the P1 CIFs that pymatgen writes.

Every structure in the project's data files is a CIF written by pymatgen's
``CifWriter`` in space group P1 (one symmetry operation, ``'x, y, z'``, one
``_atom_site`` loop, full occupancies). pymatgen's general CIF parser handles
every dialect of the format and costs about 1.5 ms per small structure, which
dominates graph construction. :func:`parse_p1_cif` reads only that one
dialect and reproduces what ``Structure.from_str(text, fmt="cif")`` returns:
the same species, site order and fractional coordinates, and the same lattice
up to a few ulp (bit for bit on CPUs without AVX-512, see below):

* the lattice is pymatgen's :meth:`~pymatgen.core.Lattice.from_parameters`
  formula, evaluated by :func:`lattice_from_parameters` with Python's scalar
  ``math`` functions (see below);
* fractional coordinates within 1e-4 (relative) of 1/3 or 2/3 are snapped to
  those values (pymatgen's ``_sanitize_data``), then wrapped into [0, 1) with
  ``x - floor(x)``;
* sites are ordered as pymatgen orders them (its parser sorts sites by
  composition, then calls ``get_sorted_structure``): by electronegativity,
  ascending, then by element symbol, then in file order.

Anything outside that dialect returns ``None`` so that the caller falls back
to pymatgen: other tags, other symmetry operations, partial occupancies,
quoted or multi-line values, oxidation states, several data blocks, elements
without a Pauling electronegativity (their order in pymatgen is undefined),
two sites closer than pymatgen's merge tolerance, or a degenerate cell. The
tests check equality with pymatgen on hundreds of real records.

Cartesian coordinates are not taken from pymatgen (whose ``cart_coords`` is a
BLAS product, see :func:`cartesian`), so both graph routes of
:mod:`fusion.graphs` compute them from these fractional coordinates with
:func:`cartesian`, the same way on every machine.

The lattice is not taken from pymatgen either. ``Lattice.from_parameters``
calls numpy's ``cos`` and ``sin`` on an array of the three angles, and numpy
evaluates those with its own AVX-512 kernels on CPUs that have AVX-512 and
with the C library elsewhere: the two differ in the last bit. One ulp in the
lattice reorders neighbours whose distances tie to rounding and turns an exact
zero of an edge vector into 2e-16 Å; on the 636 jdft2d records, 1-ulp noise in
half the lattice entries changed 475 graphs. :func:`lattice_from_parameters`
evaluates the same formula with the C library on every machine. On a CPU
without AVX-512 it returns pymatgen's matrix bit for bit (checked on the four
datasets of the study); elsewhere it differs from pymatgen's by at most a few
ulp, which is why the fast route and pymatgen's parser are compared with a
tolerance.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import NamedTuple

import numpy as np
from pymatgen.core import Element, Lattice, Structure

__all__ = ["P1Cell", "cartesian", "lattice_from_parameters", "parse_p1_cif", "structure_from_cif"]

# Header tags pymatgen's CifWriter emits for a P1 structure; any other tag
# means a dialect this reader does not handle.
_HEADER_TAGS = frozenset(
    {
        "_symmetry_space_group_name_H-M",
        "_cell_length_a",
        "_cell_length_b",
        "_cell_length_c",
        "_cell_angle_alpha",
        "_cell_angle_beta",
        "_cell_angle_gamma",
        "_symmetry_Int_Tables_number",
        "_chemical_formula_structural",
        "_chemical_formula_sum",
        "_cell_volume",
        "_cell_formula_units_Z",
    }
)
_CELL_TAGS = (
    "_cell_length_a",
    "_cell_length_b",
    "_cell_length_c",
    "_cell_angle_alpha",
    "_cell_angle_beta",
    "_cell_angle_gamma",
)
_SYMOP_LOOP = ["_symmetry_equiv_pos_site_id", "_symmetry_equiv_pos_as_xyz", "1 'x, y, z'"]
_REQUIRED_COLUMNS = (
    "_atom_site_type_symbol",
    "_atom_site_fract_x",
    "_atom_site_fract_y",
    "_atom_site_fract_z",
)
_ALLOWED_COLUMNS = frozenset(
    {*_REQUIRED_COLUMNS, "_atom_site_label", "_atom_site_symmetry_multiplicity", "_atom_site_occupancy"}
)
# A plain decimal number: no CIF uncertainty "(3)", no "?" or ".".
_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER = re.compile(_NUM)
_NUMBERS = re.compile(rf"{_NUM}(?: {_NUM})*")
# What could change the meaning of a loop body: quotes or comments anywhere;
# text fields, new tags, blocks or loops at the start of a token.
_SPECIAL_TOKEN = re.compile(r"['\"#]|(?:^|\s)(?:[;_]|loop_|data_|global_|save_|stop_)", re.I)
# pymatgen's parser tolerances (CifParser defaults).
_FRAC_TOLERANCE = 1e-4
_SITE_TOLERANCE = 1e-4
_MIN_THICKNESS = 0.01


def cartesian(frac: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Return ``frac @ lattice`` computed the same way on every machine.

    ``frac @ lattice`` goes through BLAS, whose kernel (chosen at run time from
    the CPU, or by ``OPENBLAS_CORETYPE``) may use fused multiply-adds or another
    summation order: the result then differs in the last bits between
    machines, and a coordinate that is zero up to rounding comes out as
    ``2.8e-16`` on one and ``2.2e-16`` on another. Here the three products are
    spelt out and added left to right, each an IEEE-rounded elementwise numpy
    operation, so the bits never depend on the machine.

    Args:
        frac: ``[N, 3]`` coordinates in the lattice basis (fractional
            coordinates, or integer periodic-image offsets).
        lattice: ``[3, 3]`` lattice vectors as rows.

    Returns:
        ``[N, 3]`` float64 Cartesian vectors.
    """
    frac = np.asarray(frac, dtype=np.float64).reshape(-1, 3)
    lattice = np.asarray(lattice, dtype=np.float64)
    return frac[:, 0:1] * lattice[0] + frac[:, 1:2] * lattice[1] + frac[:, 2:3] * lattice[2]


def _element_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Element symbols with their atomic numbers, and pymatgen's site-order rank.

    Returns:
        The symbols of the elements with a Pauling electronegativity, sorted;
        their atomic numbers; and an array ``rank[Z]`` (``-1`` where unsupported)
        whose ascending stable sort reproduces pymatgen's site order.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for each element without X
        elements = [el for el in Element if el.X == el.X]  # NaN X: order undefined
    # pymatgen's Site.__lt__: electronegativity, then species string, ascending.
    ordered = sorted(elements, key=lambda el: (el.X, el.symbol))
    rank = np.full(max(el.Z for el in Element) + 1, -1, dtype=np.int64)
    rank[[el.Z for el in ordered]] = np.arange(len(ordered))
    symbols = np.array(sorted(el.symbol for el in elements))
    return symbols, np.array([Element(sym).Z for sym in symbols], dtype=np.int64), rank


_SYMBOLS, _SYMBOL_Z, _RANK = _element_tables()


class P1Cell(NamedTuple):
    """A periodic cell read from a P1 CIF, in pymatgen's site order.

    Attributes:
        lattice: ``[3, 3]`` float64 lattice vectors as rows (Å).
        numbers: ``[N]`` int64 atomic numbers.
        frac_coords: ``[N, 3]`` float64 fractional coordinates in [0, 1).
        labels: ``[N]`` site labels (``None`` when the CIF has none).
    """

    lattice: np.ndarray
    numbers: np.ndarray
    frac_coords: np.ndarray
    labels: list[str] | None

    @property
    def cart_coords(self) -> np.ndarray:
        """``[N, 3]`` Cartesian coordinates (Å): ``frac_coords @ lattice`` without BLAS (:func:`cartesian`)."""
        return cartesian(self.frac_coords, self.lattice)


def _header_value(raw: str) -> str | None:
    """Return an unquoted single-line header value, or ``None`` if unusual."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        inner = raw[1:-1]
        return None if "'" in inner or '"' in inner else inner
    if not raw or raw[0] in "'\";[" or " " in raw:
        return None
    return raw


def lattice_from_parameters(
    a: float, b: float, c: float, alpha: float, beta: float, gamma: float
) -> np.ndarray:
    """Lattice vectors from cell lengths and angles, the same bits on every machine.

    pymatgen's convention (``Lattice.from_parameters``, ``vesta=False``): the
    third vector along z, the first in the xz plane. Every trigonometric
    function is Python's scalar ``math`` one (the C library), never numpy's,
    whose SIMD kernels round differently on CPUs with and without AVX-512.

    Args:
        a: Length of the first vector (Å).
        b: Length of the second vector (Å).
        c: Length of the third vector (Å).
        alpha: Angle between the second and third vectors (degrees).
        beta: Angle between the first and third vectors (degrees).
        gamma: Angle between the first and second vectors (degrees).

    Returns:
        ``[3, 3]`` float64, the vectors as rows (Å).
    """
    cos_a, cos_b, cos_g = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    sin_a, sin_b = (math.sin(math.radians(x)) for x in (alpha, beta))
    # Clipped as pymatgen does: rounding may push the cosine just past 1.
    gamma_star = math.acos(min(1.0, max(-1.0, (cos_a * cos_b - cos_g) / (sin_a * sin_b))))
    return np.array(
        [
            [a * sin_b, 0.0, a * cos_b],
            [-b * sin_a * math.cos(gamma_star), b * sin_a * math.sin(gamma_star), b * cos_a],
            [0.0, 0.0, float(c)],
        ]
    )


def parse_p1_cif(text: str) -> P1Cell | None:
    """Read a pymatgen-written P1 CIF without pymatgen's general parser.

    Args:
        text: CIF text.

    Returns:
        The cell exactly as ``Structure.from_str(text, fmt="cif")`` would give it,
        or ``None`` when the text is not in the strict dialect described in the
        module docstring (the caller must then use pymatgen).
    """
    lines = text.splitlines()
    # --- header: tag/value pairs up to the first loop (a dozen lines) ---
    header: dict[str, str] = {}
    n_blocks = 0
    pos = 0
    while pos < len(lines):
        line = lines[pos].strip()
        pos += 1
        if not line or line.startswith("#"):
            continue
        if line == "loop_":
            break
        if line.startswith("data_"):
            n_blocks += 1
            continue
        tag, _, raw = line.partition(" ")
        value = _header_value(raw)
        if tag not in _HEADER_TAGS or tag in header or value is None:
            return None
        header[tag] = value
    else:
        return None
    if n_blocks != 1 or any(tag not in header for tag in _CELL_TAGS):
        return None
    if header.get("_symmetry_space_group_name_H-M", "P 1") not in ("P 1", "P1"):
        return None
    if header.get("_symmetry_Int_Tables_number", "1") != "1":
        return None
    cell_text = [header[tag] for tag in _CELL_TAGS]
    if not all(_NUMBER.fullmatch(v) for v in cell_text):
        return None

    # --- symmetry loop: the identity only ---
    symops = [" ".join(line.split()) for line in lines[pos : pos + 4]]
    if symops != [*_SYMOP_LOOP, "loop_"]:
        return None
    pos += 4

    # --- atom_site loop: column names, then a rectangular block of tokens ---
    columns: list[str] = []
    while pos < len(lines) and lines[pos].strip().startswith("_"):
        columns.append(lines[pos].strip())
        pos += 1
    if (
        len(set(columns)) != len(columns)
        or not set(_REQUIRED_COLUMNS) <= set(columns)
        or not set(columns) <= _ALLOWED_COLUMNS
    ):
        return None
    block = "\n".join(lines[pos:]).strip()
    if not block or _SPECIAL_TOKEN.search(block):
        return None
    ncol = len(columns)
    tokens = block.split()
    n_rows = block.count("\n") + 1
    # Every line holds exactly ncol tokens (one regex pass, no per-row Python).
    row = re.compile(rf"^[ \t]*\S+(?:[ \t]+\S+){{{ncol - 1}}}[ \t]*$", re.M)
    if len(tokens) != n_rows * ncol or len(row.findall(block)) != n_rows:
        return None
    table = np.array(tokens).reshape(n_rows, ncol)
    col = {name: table[:, k] for k, name in enumerate(columns)}

    numeric = [col[f"_atom_site_fract_{axis}"] for axis in "xyz"]
    if "_atom_site_occupancy" in col:
        numeric.append(col["_atom_site_occupancy"])
    if not _NUMBERS.fullmatch(" ".join(np.concatenate(numeric).tolist())):
        return None
    frac = np.stack(numeric[:3], axis=1).astype(np.float64)
    if len(numeric) == 4 and (numeric[3].astype(np.float64) != 1).any():
        return None  # partial occupancy
    symbols = col["_atom_site_type_symbol"]
    where = np.searchsorted(_SYMBOLS, symbols).clip(max=len(_SYMBOLS) - 1)
    if (_SYMBOLS[where] != symbols).any():
        return None  # not an element symbol, or an element pymatgen cannot order
    numbers = _SYMBOL_Z[where]

    # pymatgen snaps finite-precision thirds (CifParser._sanitize_data).
    for third in (1 / 3, 2 / 3):
        frac = np.where(np.abs(frac / third - 1) <= _FRAC_TOLERANCE, third, frac)
    # Two sites at (almost) the same place are merged by pymatgen into one
    # disordered site: leave that to pymatgen.
    diff = frac[:, None, :] - frac[None, :, :]
    diff -= np.round(diff)
    close = (np.abs(diff) <= 2 * _SITE_TOLERANCE).all(axis=-1)
    np.fill_diagonal(close, False)
    if close.any():
        return None

    a, b, c, alpha, beta, gamma = (float(v) for v in cell_text)
    lattice = lattice_from_parameters(a, b, c, alpha, beta, gamma)
    # Layer thickness along each axis, V / |b x c| etc. (pymatgen rejects < 0.01 Å);
    # the cross products are spelt out because np.cross is slow on tiny arrays.
    u, v = lattice[[1, 2, 0]], lattice[[2, 0, 1]]
    cross = u[:, [1, 2, 0]] * v[:, [2, 0, 1]] - u[:, [2, 0, 1]] * v[:, [1, 2, 0]]
    volume = abs(float(lattice[0] @ cross[0]))
    if not volume > 0 or (volume < _MIN_THICKNESS * np.sqrt((cross**2).sum(axis=1))).any():
        return None

    order = np.argsort(_RANK[numbers], kind="stable")
    frac = frac[order]
    frac = frac - np.floor(frac)
    labels = col["_atom_site_label"][order].tolist() if "_atom_site_label" in col else None
    return P1Cell(np.array(lattice), numbers[order], frac, labels)


def structure_from_cif(text: str) -> Structure:
    """Build a pymatgen structure from CIF text, through the fast reader when possible.

    Equal in species, labels, site order and fractional coordinates to
    ``Structure.from_str(text, fmt="cif")``, with the same lattice up to a few
    ulp (see the module docstring), several times faster on the project's
    pymatgen-written P1 CIFs.

    Args:
        text: CIF text.

    Returns:
        The structure.
    """
    cell = parse_p1_cif(text)
    if cell is None:
        return Structure.from_str(text, fmt="cif")
    return Structure(
        Lattice(cell.lattice),
        cell.numbers.tolist(),
        cell.frac_coords,
        labels=cell.labels,
    )
