"""Periodic crystal graphs: geometry, selection, fast CIF route, cache."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import assert_bitwise_equal
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from scipy.spatial.transform import Rotation

from fusion.cif import cartesian, lattice_from_parameters, parse_p1_cif, structure_from_cif
from fusion.graph_cache import StaleCacheError, load_graphs, save_graphs
from fusion.graphs import (
    IsolatedAtomError,
    build_graphs,
    graph_from_cif,
    graphs_from_cif,
    structure_to_graph,
)
from fusion.models.layers import gaussian_expansion
from fusion.paths import dataset_file

CUTOFF = 8.0
# Where two different code paths are compared (fast CIF reader against
# pymatgen's parser), floating-point results agree to a stated tolerance, not
# bit for bit: positions and distances to 1e-10 Å (a millionth of a bond length)
# in float64. Stored graph fields are float32, and two float64 values 1e-10 Å
# apart may round to neighbouring float32 values, so stored fields are compared
# to 1e-10 Å plus one float32 unit in the last place (relative 2^-23).
LENGTH_TOL = 1e-10  # Å
F32_RTOL = 2.0**-23
# Fractional coordinates: 1e-12 of a cell edge (< 1e-10 Å for edges < 100 Å).
FRAC_TOL = 1e-12


def cscl(a: float = 4.12) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def triclinic(seed: int = 0) -> Structure:
    """A low-symmetry 6-atom cell with jittered positions (no distance ties)."""
    rng = np.random.default_rng(seed)
    lattice = Lattice.from_parameters(4.1, 4.7, 5.3, 81.0, 97.0, 104.0)
    frac = rng.uniform(-0.2, 1.2, size=(6, 3))  # outside [0, 1) on purpose
    return Structure(lattice, ["Ba", "Ti", "O", "O", "Cu", "Si"], frac)


def pymatgen_cif(structure: Structure) -> str:
    return str(CifWriter(structure))


def from_pymatgen(cif: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif")


def assert_same_graph(a, b) -> None:
    """Bit-for-bit equality: for the same code path run twice (serial against
    pooled, a save/load round trip), never for two different routes."""
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():  # noqa: SIM118 (a Data, not a dict)
        assert_bitwise_equal(a[key], b[key], key)


def edge_table(graph) -> dict[tuple[int, int, tuple[int, int, int]], tuple[float, np.ndarray]]:
    """``{(centre, neighbour, image offset): (distance, edge vector)}`` of a graph."""
    j, i = graph.edge_index.numpy()
    pos = graph.pos.double().numpy()
    vec = graph.edge_vec.double().numpy()
    inv = np.linalg.inv(graph.lattice[0].double().numpy())
    # Integer offsets, read robustly from float32 vectors (within 1e-4 of an integer).
    frac = (vec - pos[j] + pos[i]) @ inv
    image = np.rint(frac).astype(np.int64)
    assert np.abs(frac - image).max() < 1e-4
    dist = graph.edge_dist.double().numpy()
    return {
        (int(c), int(n), tuple(int(x) for x in im)): (float(d), v)
        for c, n, im, d, v in zip(i, j, image, dist, vec, strict=True)
    }


def length_tol(value: float) -> float:
    """Tolerance on a stored (float32) length: 1e-10 Å plus one float32 ulp."""
    return LENGTH_TOL + F32_RTOL * abs(value)


def assert_equivalent_graph(a, b) -> None:
    """Two routes' graphs of one structure: equal up to the stated tolerances.

    Integer fields and the target are exact; positions, lattice, edge vectors
    and distances agree to :func:`length_tol`. Edges are compared as sets of
    (centre, neighbour, image offset), not in stored order: neighbours whose
    distances tie within the tolerance may be stored in either order, and at
    the ``max_neighbors`` cut either of them may be kept, as long as each
    centre keeps as many edges and the same sorted distances.
    """
    assert sorted(a.keys()) == sorted(b.keys())
    for key in ("z", "natoms", "y"):
        assert_bitwise_equal(a[key], b[key], key)
    for key in ("pos", "lattice"):
        np.testing.assert_allclose(
            a[key].double(), b[key].double(), rtol=F32_RTOL, atol=LENGTH_TOL, err_msg=key
        )
    ta, tb = edge_table(a), edge_table(b)
    for key in ta.keys() & tb.keys():
        (da, va), (db, vb) = ta[key], tb[key]
        assert abs(da - db) <= length_tol(max(da, db)), key
        np.testing.assert_allclose(va, vb, rtol=F32_RTOL, atol=LENGTH_TOL, err_msg=str(key))
    # Per centre: as many edges, the same sorted distances.
    for da, db in zip(per_atom_sorted_dists(a), per_atom_sorted_dists(b), strict=True):
        assert len(da) == len(db)
        np.testing.assert_allclose(da, db, rtol=F32_RTOL, atol=LENGTH_TOL)
    # An edge kept by one route only is a tie at that centre's cut.
    for only, table in ((ta.keys() - tb.keys(), ta), (tb.keys() - ta.keys(), tb)):
        for key in only:
            centre, d = key[0], table[key][0]
            cut = max(v[0] for k, v in table.items() if k[0] == centre)
            assert cut - d <= length_tol(cut), f"edge {key} at {d} Å is not tied at the cut {cut} Å"


def per_atom_sorted_dists(graph) -> list[np.ndarray]:
    centre = graph.edge_index[1].numpy()
    dist = graph.edge_dist.numpy()
    return [np.sort(dist[centre == i]) for i in range(int(graph.natoms))]


# --- geometry -----------------------------------------------------------------


@pytest.mark.parametrize("max_neighbors", [12, 1000])
def test_supercell_has_the_same_neighbourhoods(max_neighbors):
    # Sorted distance lists do not depend on which tied neighbour is kept, so
    # this holds with 12 neighbours (CsCl: 8 at a*sqrt(3)/2, then 6 at a) too.
    cell = cscl()
    big = cell * (2, 2, 2)
    ref = dict(
        zip(
            cell.atomic_numbers,
            per_atom_sorted_dists(structure_to_graph(cell, CUTOFF, max_neighbors)),
            strict=True,
        )
    )
    got = per_atom_sorted_dists(structure_to_graph(big, CUTOFF, max_neighbors))
    assert len(got) == 16
    for z, dists in zip(big.atomic_numbers, got, strict=True):
        np.testing.assert_allclose(dists, ref[z], rtol=0, atol=1e-5)
    if max_neighbors == 1000:  # everything within 8 Å: many shells, not just 12
        assert len(ref[55]) > 50


def test_edge_vectors_are_periodic_images():
    s = triclinic()
    g = structure_to_graph(s)
    j, i = g.edge_index
    assert torch.allclose(g.edge_dist, g.edge_vec.norm(dim=1), atol=1e-5)
    assert g.edge_dist.min() > 0.1  # no self edges
    # edge_vec = pos[j] + image @ lattice - pos[i] for an integer image
    lattice = g.lattice[0].double()
    image = (g.edge_vec.double() - g.pos[j].double() + g.pos[i].double()) @ torch.linalg.inv(lattice)
    assert torch.allclose(image, image.round(), atol=1e-4)
    assert image.abs().max() >= 1  # periodic images really occur
    assert_bitwise_equal(g.z, torch.tensor(s.atomic_numbers))  # integers
    assert torch.allclose(g.pos.double(), torch.tensor(s.cart_coords), atol=1e-5)
    assert g.natoms.item() == len(s)
    assert g.lattice.shape == (1, 3, 3)


@pytest.mark.parametrize(("cutoff", "max_neighbors"), [(8.0, 12), (5.0, 4), (6.0, 50)])
def test_cutoff_max_neighbors_and_nearest_first(cutoff, max_neighbors):
    s = triclinic(1)
    g = structure_to_graph(s, cutoff, max_neighbors)
    full = structure_to_graph(s, cutoff, 100_000)  # every neighbour within the cutoff
    assert g.edge_dist.max() <= cutoff + 1e-5
    kept, everything = per_atom_sorted_dists(g), per_atom_sorted_dists(full)
    for k, f in zip(kept, everything, strict=True):
        assert len(k) == min(max_neighbors, len(f))
        # The nearest ones are kept; same code path, so exactly the same distances.
        assert_bitwise_equal(k, f[: len(k)])
    # The full list matches an independent count (pymatgen's neighbour search).
    counts = [len(n) for n in s.get_all_neighbors(cutoff)]
    assert [len(f) for f in everything] == counts
    # Within each centre, edges are stored nearest first.
    centre = g.edge_index[1]
    assert torch.all(centre[1:] >= centre[:-1])
    same = centre[1:] == centre[:-1]
    assert torch.all(g.edge_dist[1:][same] >= g.edge_dist[:-1][same])


def test_rotation_leaves_distances_unchanged():
    s = triclinic(2)
    rot = Rotation.from_euler("xyz", [33, -71, 140], degrees=True).as_matrix()
    turned = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    a, b = structure_to_graph(s), structure_to_graph(turned)
    np.testing.assert_allclose(np.sort(a.edge_dist.numpy()), np.sort(b.edge_dist.numpy()), atol=1e-5)
    assert not torch.allclose(a.pos, b.pos, atol=1e-3)  # the rotation did something


def test_isolated_atom_is_an_error_naming_the_record():
    lonely = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [20 / 30, 0, 0]])
    with pytest.raises(IsolatedAtomError, match="no neighbour within 8"):
        structure_to_graph(lonely)
    with pytest.raises(IsolatedAtomError, match=r"record 2 \(id 'mp-bad'\)"):
        build_graphs([cscl(), cscl(4.3), lonely], ids=["a", "b", "mp-bad"], progress=False)
    with pytest.raises(IsolatedAtomError, match="record 1:"):
        graphs_from_cif([pymatgen_cif(cscl()), pymatgen_cif(lonely)], progress=False)
    # A bigger cutoff finds the neighbour 10 Å away through the periodic image.
    assert structure_to_graph(lonely, cutoff=10.5).edge_dist.min() == pytest.approx(10.0, abs=1e-4)


def test_build_graphs_targets_order_and_processes():
    structures = [triclinic(k) for k in range(5)] + [cscl(4.0 + 0.1 * k) for k in range(3)]
    targets = np.arange(8, dtype=float) - 2.5
    serial = build_graphs(structures, targets, progress=False)
    pooled = build_graphs(structures, targets, n_jobs=2, chunk_size=3, progress=False)
    assert [g.y.item() for g in serial] == list(targets)
    for s, a, b in zip(structures, serial, pooled, strict=True):
        # One code path run in this process or in workers: bit for bit.
        assert_same_graph(a, b)
        assert_same_graph(a, structure_to_graph(s, y=a.y.item()))
    assert torch.isnan(build_graphs(structures[:1], progress=False)[0].y).all()
    with pytest.raises(ValueError, match="targets"):
        build_graphs(structures, targets[:3], progress=False)


def test_gaussian_expansion():
    d = torch.tensor([0.0, 2.0, 7.95])
    g = gaussian_expansion(d)
    assert g.shape == (3, 41)
    assert g.argmax(dim=1).tolist() == [0, 10, 40]  # centres every 0.2 Å
    assert g[1, 10] == pytest.approx(1.0)
    assert g[1, 11] == pytest.approx(np.exp(-1.0))  # one width away


# --- fast CIF route ---------------------------------------------------------------


def tricky_structures() -> list[Structure]:
    """Ordered structures that exercise pymatgen's parsing conventions."""
    out = [triclinic(k) for k in range(3)]
    # Equal electronegativity (Cu and Si, 1.90): order by symbol, then file order.
    out.append(
        Structure(
            Lattice.cubic(5.0),
            ["Si", "Cu", "Si", "Cu"],
            [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        )
    )
    # Coordinates near 1/3 and 2/3 (snapped by pymatgen), negative zero, > 1.
    hexa = Lattice.hexagonal(3.2, 5.1)
    out.append(Structure(hexa, ["Ga", "N"], [[1 / 3 + 2e-5, 2 / 3 - 1e-5, -0.0], [0.6667, 0.3333, 1.3]]))
    return out


def assert_frac_close(a: np.ndarray, b: np.ndarray) -> None:
    """Fractional coordinates equal to FRAC_TOL, modulo a lattice translation."""
    d = np.asarray(a) - np.asarray(b)
    np.testing.assert_allclose(d - np.round(d), 0.0, rtol=0, atol=FRAC_TOL)


def test_fast_cif_route_equals_pymatgen_on_synthetic_cifs():
    # Two code paths: equal to the stated tolerances (module top), not bit for bit.
    for s in tricky_structures():
        cif = pymatgen_cif(s)
        cell = parse_p1_cif(cif)
        assert cell is not None  # the fast reader handled it
        ref = from_pymatgen(cif)
        np.testing.assert_allclose(cell.lattice, ref.lattice.matrix, rtol=0, atol=LENGTH_TOL)
        assert_bitwise_equal(cell.numbers, np.array(ref.atomic_numbers))  # integers: same order
        assert_frac_close(cell.frac_coords, ref.frac_coords)
        np.testing.assert_allclose(cell.cart_coords, ref.cart_coords, rtol=0, atol=LENGTH_TOL)
        assert cell.labels == ref.labels
        fast = structure_from_cif(cif)
        assert fast == ref
        assert fast.labels == ref.labels
        assert_equivalent_graph(graph_from_cif(cif, y=1.5), structure_to_graph(ref, y=1.5))


def test_lattice_from_parameters_is_pymatgens_formula_without_numpy_trigonometry(monkeypatch):
    # Two code paths (math against numpy's trigonometry): equal to LENGTH_TOL.
    rng = np.random.default_rng(11)
    for _ in range(200):
        lengths = rng.uniform(2.0, 30.0, 3)
        angles = rng.uniform(60.0, 120.0, 3)
        ours = lattice_from_parameters(*lengths, *angles)
        ref = Lattice.from_parameters(*lengths, *angles).matrix
        np.testing.assert_allclose(ours, ref, rtol=0, atol=LENGTH_TOL)
    # numpy's cos and sin round differently on CPUs with and without AVX-512,
    # so the CIF reader must not reach them: with them broken it gives the same bits.
    cif = pymatgen_cif(triclinic(3))
    expected = parse_p1_cif(cif).lattice

    def refuse(*args, **kwargs):
        raise AssertionError("numpy trigonometry reached the lattice")

    for name in ("cos", "sin", "arccos", "radians", "deg2rad"):
        monkeypatch.setattr(np, name, refuse)
    assert_bitwise_equal(parse_p1_cif(cif).lattice, expected)


def test_cartesian_is_the_spelt_out_product():
    # The graph cache is canonical only if no BLAS product reaches it: Cartesian
    # coordinates and image offsets are the three products added left to right,
    # in IEEE arithmetic, so these hold bit for bit on any machine.
    rng = np.random.default_rng(3)
    frac, lattice = rng.uniform(-1.5, 1.5, (50, 3)), rng.normal(size=(3, 3)) * 5
    spelt = np.array(
        [[f[0] * lattice[0, k] + f[1] * lattice[1, k] + f[2] * lattice[2, k] for k in range(3)] for f in frac]
    )
    assert_bitwise_equal(cartesian(frac, lattice), spelt)
    # Against BLAS only to rounding: its kernel may fuse or reorder.
    np.testing.assert_allclose(cartesian(frac, lattice), frac @ lattice, rtol=0, atol=1e-12)

    s = triclinic(4)
    g = structure_to_graph(s)
    pos = cartesian(s.frac_coords, s.lattice.matrix)
    assert_bitwise_equal(g.pos, torch.from_numpy(pos).float())
    j, i = g.edge_index.numpy()
    image = (g.edge_vec.double().numpy() - pos[j] + pos[i]) @ np.linalg.inv(s.lattice.matrix)
    vec = pos[j] + cartesian(np.rint(image), s.lattice.matrix) - pos[i]
    assert_bitwise_equal(g.edge_vec, torch.from_numpy(vec).float())
    assert_bitwise_equal(g.edge_dist, torch.from_numpy(np.sqrt((vec * vec).sum(axis=1))).float())


def fallback_cifs() -> list[str]:
    """CIFs outside the strict dialect: the fast reader must decline them."""
    base = pymatgen_cif(cscl())
    sym = str(
        CifWriter(
            Structure.from_spacegroup(
                "Fm-3m", Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
            ),
            symprec=0.1,
        )
    )
    return [
        sym,  # symmetry operations other than the identity
        base.replace(
            "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  1",
            "Cl  Cl1  1  0.50000000  0.50000000  0.50000000  0.5",
        ),
        base.replace("Cl  Cl1", "He  He1"),  # no electronegativity: order undefined
        base.replace(
            "0.50000000  0.50000000  0.50000000", "0.00000000  0.00000000  0.00005000"
        ),  # merged sites
        base.replace("_cell_length_a   4.12000000", "_cell_length_a   4.12000(3)"),  # uncertainty
        base.replace("_cell_volume", "_refine_ls_R_factor_all   0.02\n_cell_volume"),  # unknown tag
        base + "\ndata_second\n",
        str(CifWriter(cscl().copy().add_oxidation_state_by_element({"Cs": 1, "Cl": -1}))),
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pymatgen on the odd CIFs
def test_fast_reader_declines_other_dialects_and_graphs_still_match():
    cifs = fallback_cifs()
    for k, cif in enumerate(cifs):
        assert parse_p1_cif(cif) is None, k
    ordered = []
    for cif in cifs:
        try:
            if from_pymatgen(cif).is_ordered:
                ordered.append(cif)
        except ValueError:  # the merged-sites CIF: pymatgen rejects it too
            continue
    assert len(ordered) == 6
    # Both sides read the CIF with pymatgen's parser: one code path, bit for bit.
    for cif, graph in zip(ordered, graphs_from_cif(ordered, progress=False), strict=True):
        assert_same_graph(graph, structure_to_graph(from_pymatgen(cif)))


@pytest.fixture(scope="module")
def real_cifs() -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for name in ("perov5_castelli", "mp_mtcgcnn"):
        path = dataset_file(name)
        if not path.exists():
            pytest.skip("data/ not pulled (run `dvc pull`)")
        with gzip.open(path, "rt") as fh:
            records = json.load(fh)
        pick = np.random.default_rng(7).choice(len(records), size=250, replace=False)
        out[name] = ([records[i]["id"] for i in pick], [records[i]["structure"] for i in pick])
    return out


@pytest.mark.parametrize("name", ["perov5_castelli", "mp_mtcgcnn"])
def test_fast_cif_route_equals_pymatgen_on_real_records(real_cifs, name):
    ids, cifs = real_cifs[name]
    assert sum(parse_p1_cif(c) is not None for c in cifs) >= 245  # the fast reader is used
    graphs = graphs_from_cif(cifs, targets=np.arange(len(cifs)), ids=ids, progress=False)
    # Two code paths: equal to the stated tolerances, ties at the cut allowed.
    for cif, graph, k in zip(cifs, graphs, range(len(cifs)), strict=True):
        assert_equivalent_graph(graph, structure_to_graph(from_pymatgen(cif), y=float(k)))


# --- cache ---------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    structures = [triclinic(k) for k in range(4)] + [cscl()]
    graphs = build_graphs(structures, targets=[0.1, 0.2, 0.3, 0.4, float("nan")], progress=False)
    ids = [f"x-{k}" for k in range(5)]
    meta = {"cutoff": 8.0, "max_neighbors": 12, "dataset": "synthetic"}
    path = tmp_path / "sub" / "graphs.pt"
    save_graphs(path, ids, graphs, meta)
    got_ids, got, got_meta = load_graphs(path, expect={"cutoff": 8.0, "max_neighbors": 12})
    assert got_ids == ids
    assert got_meta == meta
    assert len(got) == len(graphs)
    for a, b in zip(graphs, got, strict=True):
        assert_same_graph(a, b)  # a round trip: bit for bit
    # A cache built with other parameters is detected.
    with pytest.raises(StaleCacheError, match="max_neighbors"):
        load_graphs(path, expect={"cutoff": 8.0, "max_neighbors": 16})
    with pytest.raises(ValueError, match="meta lacks"):
        save_graphs(path, ids, graphs, {"cutoff": 8.0})
    with pytest.raises(ValueError, match="ids"):
        save_graphs(path, ids[:2], graphs, meta)


def test_save_load_empty(tmp_path):
    save_graphs(tmp_path / "empty.pt", [], [], {"cutoff": 8.0, "max_neighbors": 12})
    assert load_graphs(tmp_path / "empty.pt")[:2] == ([], [])


def test_cached_graphs_pickle_as_their_own_bytes(tmp_path):
    """fit_all scatters the cache's graphs to workers: each must pickle as itself, not the whole cache."""
    import pickle

    structures = [cscl(4.0 + 0.01 * k) for k in range(40)]
    built = build_graphs(structures, targets=[float(k) for k in range(40)], progress=False)
    path = tmp_path / "graphs.pt"
    save_graphs(path, [f"s{k}" for k in range(40)], built, {"cutoff": 8.0, "max_neighbors": 12})
    _, loaded, _ = load_graphs(path)
    own_bytes = len(pickle.dumps(built))
    # A view would pickle the whole cache, 40 graphs' worth, for each graph.
    assert len(pickle.dumps(loaded)) < 1.1 * own_bytes
    for graph, original in zip(loaded, built, strict=True):
        assert_same_graph(graph, original)
