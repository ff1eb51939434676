"""Tests of the angle-aware / transformer architectures and their geometry helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_bitwise_equal, mean_predictor_mae, short_training
from pymatgen.core import Lattice, Structure
from scipy.special import spherical_jn
from torch_geometric.data import Batch, Data

from fusion.graphs import structure_to_graph
from fusion.models import build_model, point_prediction
from fusion.models.dimenetpp import bessel_zeros, spherical_bessel
from fusion.models.geometry import angles, bond_cosines, line_graph, triplets

ANGULAR = ["dimenetpp", "alignn", "matformer"]


# --------------------------------------------------------------------- helpers
def _cubic(a: float = 3.0) -> Structure:
    return Structure(Lattice.cubic(a), ["Po"], [[0, 0, 0]])


def _crystals() -> list[Structure]:
    """Small, distinct structures (1-5 atoms, different symmetries)."""
    rng = np.random.default_rng(0)
    perov = Structure(
        Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )  # fmt: skip
    perov.perturb(0.1, min_distance=0.05)
    rocksalt = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    tri = Structure(
        Lattice.from_parameters(4.1, 4.7, 5.3, 80, 95, 105),
        ["Li", "Fe", "P"],
        rng.uniform(size=(3, 3)),
    )
    return [perov, rocksalt, tri, _cubic()]


def _batch(structures: list[Structure]) -> Batch:
    return Batch.from_data_list([structure_to_graph(s, y=0.0) for s in structures])


def _eval(name: str, head: str = "scalar", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, "cpu", head, **kw)
    # Random batch-norm statistics, so that eval mode is not the identity.
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _permute(g: Data, seed: int) -> Data:
    """Relabel the atoms and shuffle the edges of one graph."""
    gen = torch.Generator().manual_seed(seed)
    n, e = g.z.numel(), g.edge_index.size(1)
    perm = torch.randperm(n, generator=gen)  # new atom a is old atom perm[a]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    eperm = torch.randperm(e, generator=gen)
    return Data(
        z=g.z[perm], pos=g.pos[perm], lattice=g.lattice, edge_index=inv[g.edge_index][:, eperm],
        edge_vec=g.edge_vec[eperm], edge_dist=g.edge_dist[eperm], y=g.y, natoms=g.natoms,
    )  # fmt: skip


def _rotate(g: Data, rot: torch.Tensor) -> Data:
    out = g.clone()
    out.pos, out.lattice, out.edge_vec = g.pos @ rot.T, g.lattice @ rot.T, g.edge_vec @ rot.T
    return out


def _random_rotation(seed: int) -> torch.Tensor:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.as_tensor(q, dtype=torch.float32)


# -------------------------------------------------------------------- geometry
def _brute_triplets(edge_index, edge_vec, tol=1e-4):
    src, dst = edge_index.tolist()
    pairs = set()
    for a in range(len(src)):  # a = k -> j
        for b in range(len(src)):  # b = j -> i
            if dst[a] != src[b]:
                continue
            back = src[a] == dst[b] and bool((edge_vec[a] + edge_vec[b]).abs().max() <= tol)
            if not back:
                pairs.add((a, b))
    return pairs


def test_triplets_match_brute_force_on_hand_built_graph():
    # 4 atoms, parallel edges (two images of one neighbour), exact reverse pairs.
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3, 0, 0, 3], [1, 0, 2, 1, 0, 0, 3, 3, 2]])
    vec = torch.tensor(
        [[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [2, 1, 0],
         [0, 0, 1], [0, 0, -1], [0, 0, 2], [1, 1, 1]]
    )  # fmt: skip
    idx_kj, idx_ji = triplets(edge_index, 4, vec)
    got = set(zip(idx_kj.tolist(), idx_ji.tolist(), strict=True))
    assert len(got) == idx_kj.numel()  # no duplicates
    expected = _brute_triplets(edge_index, vec)
    assert got == expected
    # Edges 6 (0 -> 3, vec -z) and 5 (3 -> 0, vec +z) are reverse images; 7 (0 -> 3
    # through another image) followed by 5 is a genuine triplet.
    assert (6, 5) not in got
    assert (7, 5) in got


def test_triplets_match_brute_force_on_crystals():
    for s in _crystals()[:3]:
        g = structure_to_graph(s)
        idx_kj, idx_ji = triplets(g.edge_index, g.z.numel(), g.edge_vec)
        got = set(zip(idx_kj.tolist(), idx_ji.tolist(), strict=True))
        assert got == _brute_triplets(g.edge_index, g.edge_vec)
        # No back-tracking: the k image never sits where i is seen from j.
        assert ((g.edge_vec[idx_kj] + g.edge_vec[idx_ji]).norm(dim=-1) > 1e-3).all()
        # Every triplet meets at its shared atom.
        assert_bitwise_equal(g.edge_index[1, idx_kj], g.edge_index[0, idx_ji])  # integer indices


def test_angles_simple_cubic_and_periodic_images():
    # One atom, 6 nearest neighbours = its own images: k == i for every pair, so a
    # node-only back-tracking test would drop everything.
    g = structure_to_graph(_cubic(3.0), max_neighbors=6)
    assert g.edge_index.unique().tolist() == [0]
    idx_kj, idx_ji = triplets(g.edge_index, 1, g.edge_vec)
    assert idx_kj.numel() == 6 * 5
    deg = torch.rad2deg(angles(g.edge_vec, idx_kj, idx_ji))
    assert torch.isclose(deg, torch.tensor(90.0), atol=1e-3).sum() == 24
    assert torch.isclose(deg, torch.tensor(180.0), atol=1e-3).sum() == 6
    # Without edge vectors the node test removes all pairs (documented behaviour).
    assert triplets(g.edge_index, 1)[0].numel() == 0


def test_angles_known_geometry_and_line_graph_cosines():
    # Atoms k=1, j=0, i=2; edge 0 is k -> j, edge 1 is j -> i. edge_vec points from
    # the centre (target) to the neighbour (source): j -> k at 60 degrees in the
    # xy plane, and from i to j along -x, so j -> i is +x.
    edge_index = torch.tensor([[1, 0], [0, 2]])
    vec = torch.tensor([[math.cos(math.pi / 3), math.sin(math.pi / 3), 0.0], [-1.0, 0.0, 0.0]])
    idx_kj, idx_ji = triplets(edge_index, 3, vec)
    assert idx_kj.tolist() == [0]
    assert idx_ji.tolist() == [1]
    assert torch.allclose(torch.rad2deg(angles(vec, idx_kj, idx_ji)), torch.tensor([60.0]), atol=1e-4)
    lg, cos = line_graph(edge_index, vec, 3)
    assert lg.tolist() == [[0], [1]]
    assert torch.allclose(cos, torch.tensor([0.5]), atol=1e-6)
    g = structure_to_graph(_crystals()[2])
    kj, ji = triplets(g.edge_index, g.z.numel(), g.edge_vec)
    assert torch.allclose(bond_cosines(g.edge_vec, kj, ji), torch.cos(angles(g.edge_vec, kj, ji)), atol=1e-5)


def test_spherical_bessel_basis_against_scipy():
    x = torch.linspace(0.5, 20.0, 200, dtype=torch.float64)
    jl = spherical_bessel(x, 6)
    for ell in range(7):
        assert np.allclose(jl[ell].numpy(), spherical_jn(ell, x.numpy()), atol=1e-9)
    z = bessel_zeros(7, 6)
    assert np.all(np.diff(z, axis=1) > 0)
    for ell in range(7):
        assert np.allclose(spherical_jn(ell, z[ell]), 0.0, atol=1e-9)
    assert np.allclose(z[0], np.arange(1, 7) * np.pi)


# -------------------------------------------------------------- architectures
@pytest.mark.parametrize("name", ANGULAR)
def test_output_shapes_scalar_and_evidential(name):
    batch = _batch(_crystals())
    out = _eval(name)(batch)
    assert out.shape == (4,)
    assert torch.isfinite(out).all()
    ev = _eval(name, "evidential")(batch)
    assert ev.shape == (4, 4)
    assert (ev[:, 1] > 0).all()
    assert (ev[:, 2] > 1).all()
    assert (ev[:, 3] > 0).all()
    assert point_prediction(ev).shape == (4,)


@pytest.mark.parametrize("name", ANGULAR)
def test_predictions_distinguish_crystals_and_backprop(name):
    model = build_model(name, "cpu")
    batch = _batch(_crystals())
    out = model(batch)
    assert out.std() > 1e-4  # crystals are not mapped to one number
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


@pytest.mark.parametrize("name", ANGULAR)
def test_permutation_invariance(name):
    model = _eval(name)
    graphs = [structure_to_graph(s) for s in _crystals()]
    ref = model(Batch.from_data_list(graphs))
    perm = model(Batch.from_data_list([_permute(g, k) for k, g in enumerate(graphs)]))
    assert torch.allclose(ref, perm, atol=1e-4, rtol=1e-4)
    # Batch order does not matter either.
    rev = model(Batch.from_data_list(graphs[::-1]))
    assert torch.allclose(ref, rev.flip(0), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ANGULAR)
def test_rotation_invariance(name):
    model = _eval(name)
    graphs = [structure_to_graph(s) for s in _crystals()]
    ref = model(Batch.from_data_list(graphs))
    rot = _random_rotation(1)
    out = model(Batch.from_data_list([_rotate(g, rot) for g in graphs]))
    assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "angle_aware"), [("dimenetpp", True), ("alignn", True), ("matformer", False)]
)
def test_angle_sensitivity(name, angle_aware):
    # Rotate every bond by its own random rotation (a bond and its reverse image
    # by the same one, so back-tracking pairs stay back-tracking): all distances
    # and the triplet lists are unchanged, the bond angles are scrambled. Any
    # change of the embedding can only come from the angles; Matformer (distances
    # only) must not move at all.
    # Train mode: batch statistics keep the signal at a realistic scale (with
    # random weights the gated, normalised angle path of ALIGNN is faint in eval).
    torch.manual_seed(0)
    model = build_model(name, "cpu").train()
    graphs = [structure_to_graph(s) for s in _crystals()[:3]]
    moved = []
    for k, g in enumerate(graphs):
        m = g.clone()
        src, dst = g.edge_index
        rev = (
            (src[:, None] == dst[None, :])
            & (dst[:, None] == src[None, :])
            & ((g.edge_vec[:, None] + g.edge_vec[None, :]).abs().amax(-1) < 1e-4)
        )
        bond = [min([e, *rev[e].nonzero().flatten().tolist()]) for e in range(src.numel())]
        rots = torch.stack([_random_rotation(1000 * k + b) for b in bond])
        m.edge_vec = torch.einsum("eab,eb->ea", rots, g.edge_vec)
        assert torch.allclose(m.edge_vec.norm(dim=-1), g.edge_dist, atol=1e-5)
        moved.append(m)
        before = triplets(g.edge_index, g.z.numel(), g.edge_vec)
        after = triplets(m.edge_index, m.z.numel(), m.edge_vec)
        for x, y in zip(before, after, strict=True):
            assert_bitwise_equal(x, y)  # integer triplet indices: the rotation must not change them
    with torch.no_grad():
        a = model.embed(Batch.from_data_list(graphs))
        b = model.embed(Batch.from_data_list(moved))
    rel = float((a - b).norm() / a.norm())
    if angle_aware:
        assert rel > 5e-4  # float32 rounding alone is ~1e-7
    else:
        assert rel == 0.0


def test_sizes_and_registry():
    for name in ANGULAR:
        cpu = build_model(name, "cpu").num_parameters()
        paper = build_model(name, "paper").num_parameters()
        assert cpu < paper
    # Published sizes: ALIGNN ~4.0M parameters (4 + 4 layers, hidden 256).
    assert 3.5e6 < build_model("alignn", "paper").num_parameters() < 4.5e6


# ------------------------------------------------------------ short training
# Per model: epochs, batch size; lr 2e-3 for all (one-cycle). Test MAEs seen on
# 300 perovskites (heat_all, split seed 0, training seeds 0 and 1), train-mean
# predictor 0.523: dimenetpp 0.30 / 0.35, alignn 0.31 / 0.29, matformer 0.31 / 0.33.
TRAINING = [("dimenetpp", 15, 16), ("alignn", 12, 16), ("matformer", 20, 32)]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "epochs", "batch_size"), TRAINING)
def test_short_training_beats_mean_predictor(name, epochs, batch_size, perovskite_splits):
    tr, _, te = perovskite_splits
    result = short_training(
        name, perovskite_splits, epochs=epochs, batch_size=batch_size, lr=2e-3, device="cpu"
    )
    baseline = mean_predictor_mae(tr, te)
    print(f"{name}: test MAE {result.test_mae:.4f} vs train-mean predictor {baseline:.4f}")
    assert result.test_mae < 0.8 * baseline


@pytest.mark.slow
def test_alignn_evidential_surrogate_trains(perovskite_splits):
    # FUSION's surrogate: ALIGNN with the evidential head and the NIG loss.
    from fusion.train import predict

    tr, _, te = perovskite_splits
    result = short_training(
        "alignn", perovskite_splits, head="evidential", epochs=12, batch_size=16, lr=2e-3, device="cpu"
    )
    baseline = mean_predictor_mae(tr, te)
    print(f"alignn evidential: test MAE {result.test_mae:.4f} vs mean {baseline:.4f}")
    assert result.test_mae < 0.85 * baseline
    out = predict(result.model, te, result.target_mean, result.target_std)
    assert out.shape == (len(te), 4)
    _, v, alpha, beta = out.T
    aleatoric, epistemic = beta / (alpha - 1), beta / (v * (alpha - 1))
    assert np.isfinite(aleatoric).all()
    assert np.isfinite(epistemic).all()
    assert (aleatoric > 0).all()
    assert aleatoric.std() > 0  # uncertainties differ between crystals
