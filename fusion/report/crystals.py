"""Crystal structures of the datasets: a seeded sample, drawn as 3-D atoms in their cell."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fusion.report.figures import pyplot
from fusion.report.inputs import read_table


def load_structures(key: str, name: str, n: int = 4, seed: int = 0, root: str | Path = ".") -> dict[str, Any]:
    """A seeded sample of ``n`` kept structures of a dataset, parsed from its CIF text.

    Args:
        key: Dataset key (its ``records.csv`` lists the kept ids).
        name: Project dataset name (file ``data/<name>/<name>.json.gz``).
        n: Structures drawn. Defaults to 4.
        seed: Sampling seed. Defaults to 0.
        root: Repository root. Defaults to the working directory.

    Returns:
        ``{"<id> <formula>": Structure}`` in sampled order.
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
        return {
            f"{i} {f}": Structure.from_str(cifs[i], fmt="cif")
            for i, f in zip(pick["id"], pick["formula"], strict=True)
        }


def _cell_edges(lattice: np.ndarray) -> np.ndarray:
    """The 12 edges of the unit cell as ``[12, 2, 3]`` Cartesian segments."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    pairs = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corners[a] - corners[b]).sum() == 1]
    frac = np.array([[corners[a], corners[b]] for a, b in pairs])
    return frac @ lattice


def plot_structures(structures: Mapping[str, Any], ncols: int = 4) -> Any:
    """Draw crystal structures as 3-D scatter plots of the atoms in the cell, coloured by element.

    Args:
        structures: Title -> pymatgen ``Structure`` (e.g. :func:`load_structures`).
        ncols: Panels per row. Defaults to 4.

    Returns:
        A matplotlib figure, one 3-D panel per structure with the cell edges.
    """
    plt = pyplot()
    n = max(1, len(structures))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig = plt.figure(figsize=(3.6 * ncols, 4.2 * nrows))
    # One colour per element over the whole gallery, so a colour means the same element everywhere.
    symbols = sorted({el.symbol for s in structures.values() for el in s.composition.elements})
    cmap = plt.get_cmap("tab20", max(len(symbols), 1))
    colour = {sym: cmap(k) for k, sym in enumerate(symbols)}
    for k, (title, s) in enumerate(structures.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1, projection="3d")
        xyz = s.cart_coords
        species = np.array([site.specie.symbol for site in s])
        for edge in _cell_edges(s.lattice.matrix):
            ax.plot(*edge.T, color="0.6", lw=0.6)
        for sym in np.unique(species):
            sel = species == sym
            ax.scatter(
                *xyz[sel].T, s=60, color=colour[sym], edgecolors="k", linewidths=0.3, label=sym, alpha=1
            )
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
        ax.set_box_aspect(
            np.ptp(np.vstack([xyz, _cell_edges(s.lattice.matrix).reshape(-1, 3)]), axis=0) + 1e-6
        )
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    fig.tight_layout()
    return fig
