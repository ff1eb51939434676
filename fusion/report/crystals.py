"""Crystal structures of the datasets: a seeded sample, drawn as a chemist draws a unit cell.

Atoms are balls sized by their covalent radius and coloured by element in the
Jmol scheme (ASE's ``covalent_radii`` and ``jmol_colors``), bonded where two atoms
are closer than the sum of their covalent radii (plus 15 %), inside the grey
edges of the unit cell, with the atoms on the cell's faces, edges and corners
repeated on the opposite ones, as in VESTA or a textbook. The drawing is an
orthographic projection along a fixed oblique direction, back to front.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fusion.report.figures import pyplot
from fusion.report.inputs import read_table

BALL = 0.4  # ball radius / covalent radius: the balls of bonded atoms do not hide their bond
BOND_TOLERANCE = 1.15  # bonded: distance < 1.15 x (sum of the covalent radii), one atom a non-metal
# Non-metals and metalloids: a bond has at least one (no metal-metal sticks across an ionic cell).
NONMETALS = frozenset({"H", "He", "B", "C", "N", "O", "F", "Ne", "Si", "P", "S", "Cl", "Ar",
                       "Ge", "As", "Se", "Br", "Kr", "Sb", "Te", "I", "Xe", "At", "Rn"})  # fmt: skip
VACUUM = 6.0  # Å: a gap this wide between a slab's layers along a cell axis is vacuum, not drawn
BOUNDARY = 1e-3  # fractional distance to a cell face under which an atom is repeated on the opposite one
VIEW = (-22.0, 18.0)  # degrees: azimuth about the vertical (Cartesian z) axis, elevation of the eye


def load_structures(key: str, name: str, n: int = 4, seed: int = 0, root: str | Path = ".") -> dict[str, Any]:
    """A seeded sample of ``n`` kept structures of a dataset, parsed from its CIF text.

    Args:
        key: Dataset key (its ``records.csv`` lists the kept ids).
        name: Project dataset name (file ``data/<name>/<name>.json.gz``).
        n: Structures drawn. Defaults to 4.
        seed: Sampling seed. Defaults to 0.
        root: Repository root. Defaults to the working directory.

    Returns:
        ``{"id <id>": Structure}`` in sampled order; :func:`plot_structures` adds
        the formula to the title.
    """
    import warnings

    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.auto warns that ipywidgets is absent
        from fusion.data import read_records

    records = read_table(Path(root, "results", "prepare", key, "records.csv"), dtype={"id": str})
    rng = np.random.default_rng(seed)
    pick = records.iloc[np.sort(rng.choice(len(records), size=min(n, len(records)), replace=False))]
    wanted = set(pick["id"])
    cifs = {
        str(r["id"]): r["structure"] for r in read_records(name, Path(root, "data")) if str(r["id"]) in wanted
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CIF rounding warnings of pymatgen
        return {f"id {i}": Structure.from_str(cifs[i], fmt="cif") for i in pick["id"]}


def formula_text(formula: str) -> str:
    """A formula with its counts as subscripts, in matplotlib's mathtext: ``Ba2TiO4`` -> ``Ba$_{2}$TiO$_{4}$``."""
    return re.sub(r"(\d+(?:\.\d+)?)", r"$_{\1}$", formula)


def _cell_edges(lattice: np.ndarray) -> np.ndarray:
    """The 12 edges of the unit cell as ``[12, 2, 3]`` Cartesian segments."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    pairs = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corners[a] - corners[b]).sum() == 1]
    frac = np.array([[corners[a], corners[b]] for a, b in pairs])
    return frac @ lattice


def cell_atoms(structure: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The atoms drawn in the unit cell: every site wrapped into it, plus its images on the cell's boundary.

    An atom on a face (fractional coordinate 0) is repeated on the opposite face,
    one on an edge on the 3 other edges, one on a corner on the 7 other corners.
    A slab (a 2-D material: a gap of more than :data:`VACUUM` Å between its layers
    along a cell axis) is drawn without its vacuum: along that axis the atoms are
    wrapped to start at 0 (the layer is not cut in two) and the cell is drawn
    only as thick as the layer.

    Args:
        structure: A pymatgen ``Structure``.

    Returns:
        ``(numbers [n], xyz [n, 3], extent [3])``: atomic numbers, Cartesian
        positions (Å), and the fraction of each cell axis drawn (1, or the
        layer's thickness along a vacuum axis).
    """
    frac = np.mod(structure.frac_coords, 1.0)
    frac[frac > 1 - BOUNDARY] = 0.0  # 0.9999 is 0: the image at 1 is added below
    extent = np.ones(3)
    spacing = 1 / np.array(
        structure.lattice.reciprocal_lattice_crystallographic.abc
    )  # between lattice planes
    for axis in range(3):
        f = np.sort(frac[:, axis])
        gaps = np.diff(np.append(f, f[0] + 1))
        k = int(np.argmax(gaps))
        if gaps[k] * spacing[axis] > VACUUM:
            frac[:, axis] = np.mod(frac[:, axis] - f[(k + 1) % len(f)] + BOUNDARY / 2, 1.0) - BOUNDARY / 2
            extent[axis] = max(1 - gaps[k], 0.0)
    numbers = np.array([site.specie.Z for site in structure])
    out_z, out_f = [], []
    for z, f in zip(numbers, frac, strict=True):
        on = [axis for axis in range(3) if extent[axis] == 1 and f[axis] < BOUNDARY]
        for shift in itertools.product((0, 1), repeat=len(on)):
            g = f.copy()
            g[on] += shift
            out_z.append(z)
            out_f.append(g)
    return np.array(out_z), np.array(out_f) @ structure.lattice.matrix, extent


def bonds(numbers: np.ndarray, xyz: np.ndarray) -> list[tuple[int, int]]:
    """The bonds drawn: atoms closer than their covalent radii's sum plus 15 %, one a non-metal.

    A bond needs a non-metal or metalloid (:data:`NONMETALS`) at one end at least,
    so that an ionic cell shows no sticks between its cations.

    Args:
        numbers: ``[n]`` atomic numbers.
        xyz: ``[n, 3]`` Cartesian positions (Å).

    Returns:
        Pairs ``(i, j)``, ``i < j``.
    """
    from ase.data import chemical_symbols, covalent_radii

    r = covalent_radii[numbers]
    nonmetal = np.array([chemical_symbols[z] in NONMETALS for z in numbers])
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    close = (d < BOND_TOLERANCE * (r[:, None] + r[None])) & (d > 0.1)
    close &= nonmetal[:, None] | nonmetal[None]
    return [(i, j) for i, j in zip(*np.nonzero(np.triu(close, 1)), strict=True)]


def _view(points: np.ndarray) -> np.ndarray:
    """Cartesian points in the drawing's frame: x to the right, y up, z towards the reader.

    The cell is turned about its vertical (Cartesian z) axis by the azimuth of
    :data:`VIEW`, then seen from above the horizontal by its elevation.
    """
    azimuth, elevation = np.radians(VIEW)
    turn = np.array(
        [[np.cos(azimuth), -np.sin(azimuth), 0], [np.sin(azimuth), np.cos(azimuth), 0], [0, 0, 1]]
    )
    look = np.array(
        [[1, 0, 0], [0, np.sin(elevation), np.cos(elevation)], [0, -np.cos(elevation), np.sin(elevation)]]
    )
    return points @ (look @ turn).T


def draw_structure(ax: Any, structure: Any, title: str = "") -> None:
    """Draw one crystal structure on a 2-D matplotlib axis (ball and stick, Jmol colours, cell edges).

    Args:
        ax: A matplotlib axis (2-D).
        structure: A pymatgen ``Structure``.
        title: Shown under the reduced formula (e.g. the record's id).
    """
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    numbers, xyz, extent = cell_atoms(structure)
    radius = BALL * covalent_radii[numbers]
    p = _view(xyz)
    cell = structure.lattice.matrix * extent[:, None]  # a slab's cell is as thick as its layer
    edges = _view(_cell_edges(cell).reshape(-1, 3)).reshape(-1, 2, 3)
    depth = np.concatenate([p[:, 2], edges[:, :, 2].ravel()])
    lo, span = depth.min(), np.ptp(depth) + 1e-9

    def zorder(z: float) -> float:  # back to front: farther is drawn first
        return 2 + 10 * (z - lo) / span

    for edge in edges:
        ax.plot(*edge[:, :2].T, color="0.55", lw=0.8, zorder=zorder(edge[:, 2].mean()) - 0.01,
                solid_capstyle="round")  # fmt: skip
    for i, j in bonds(numbers, xyz):
        mid = (p[i] + p[j]) / 2
        for k in (i, j):  # each half of a bond in the colour of its atom
            ax.plot([p[k, 0], mid[0]], [p[k, 1], mid[1]], color=jmol_colors[numbers[k]] * 0.85, lw=2.2,
                    solid_capstyle="butt", zorder=zorder((p[k, 2] + mid[2]) / 2) - 0.005)  # fmt: skip
    for k in np.argsort(p[:, 2]):
        z, colour = zorder(p[k, 2]), jmol_colors[numbers[k]]
        ax.add_patch(Circle(p[k, :2], radius[k], facecolor=colour, edgecolor="0.15", lw=0.5, zorder=z))
        # A highlight up and to the left: the ball reads as a sphere lit from the upper left.
        ax.add_patch(Circle(p[k, :2] + radius[k] * np.array([-0.3, 0.3]), radius[k] * 0.35,
                            facecolor="white", edgecolor="none", alpha=0.45, zorder=z + 1e-4))  # fmt: skip
    pad = radius.max() + 0.3
    allp = np.vstack([p[:, :2], edges[:, :, :2].reshape(-1, 2)])
    ax.set_xlim(allp[:, 0].min() - pad, allp[:, 0].max() + pad)
    ax.set_ylim(allp[:, 1].min() - pad, allp[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_axis_off()
    formula = structure.composition.reduced_formula
    sub = title if title != formula else ""
    if (extent < 1).any():
        sub = f"{sub} (slab: vacuum not drawn)".strip()
    ax.set_title(formula_text(formula) + (f"\n{sub}" if sub else ""), fontsize=10)
    # The elements' colours, in the order of the formula (by electronegativity).
    elements = sorted(structure.composition.elements, key=lambda el: (el.X, el.Z))
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            markersize=7,
            markerfacecolor=jmol_colors[el.Z],
            markeredgecolor="0.15",
            markeredgewidth=0.5,
            label=el.symbol,
        )
        for el in elements
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
              fontsize=8, frameon=False, handletextpad=0.1, columnspacing=0.7)  # fmt: skip


def plot_structures(structures: Mapping[str, Any], ncols: int = 2) -> Any:
    """Draw crystal structures in their unit cell, one panel each, titled by formula and id.

    Args:
        structures: Title (e.g. ``"id 42"``) -> pymatgen ``Structure`` (e.g. :func:`load_structures`).
        ncols: Panels per row. Defaults to 2 (a panel then has half the book's column).

    Returns:
        A matplotlib figure: per structure, the atoms of its unit cell as balls of
        their covalent radius in Jmol colours, their bonds and the cell edges, the
        reduced formula and the title above, the elements' colours below.
    """
    plt = pyplot()
    n = max(1, len(structures))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    width, height, title, legend = 3.4, 3.9, 0.55, 0.35  # inches: a panel, its title and legend
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - title / (height * nrows), bottom=legend / (height * nrows),
                        wspace=0.05, hspace=(title + legend) / (height - title - legend))  # fmt: skip
    for ax in axes.ravel()[len(structures) :]:
        ax.set_axis_off()
    for ax, (title, s) in zip(axes.ravel(), structures.items(), strict=False):
        draw_structure(ax, s, title)
    return fig
