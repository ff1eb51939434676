"""Tests of DeeperGATGNN, PotNet, iComFormer, SODNet and CrystalFramer.

Shapes of both heads, invariance to atom permutation and to rigid rotation, and
(slow) a short real training run on perovskites that must beat the mean predictor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Splits, mean_predictor_mae, short_training
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

from fusion.graphs import structure_to_graph
from fusion.models import build_model
from fusion.models.crystalframer import max_frames
from fusion.models.potnet import attach_potential_sums, infinite_potential_sums
from fusion.models.sodnet import _Y2_BASIS, real_spherical_harmonics

EXTRA = ["deepergatgnn", "potnet", "comformer", "sodnet", "crystalframer"]


def _low_symmetry_structures() -> list[Structure]:
    """Three small crystals without symmetry ties (triclinic, perturbed sites)."""
    rng = np.random.default_rng(0)
    out = []
    for n, species in [(3, ["Ca", "Ti", "O"]), (5, ["Sr", "Ti", "O", "O", "O"]), (4, ["Li", "Fe", "P", "O"])]:
        lat = Lattice.from_parameters(*(4.0 + rng.uniform(0, 1.5, 3)), *(rng.uniform(75, 105, 3)))
        frac = rng.uniform(0, 1, (n, 3))
        out.append(Structure(lat, species, frac))
    return out


@pytest.fixture(scope="module")
def batch() -> Batch:
    graphs = [structure_to_graph(s, y=float(k)) for k, s in enumerate(_low_symmetry_structures())]
    return Batch.from_data_list(graphs)


def _rotation(seed: int = 1) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    if torch.det(q) < 0:  # proper rotation
        q[:, 0] = -q[:, 0]
    return q.float()


def _rotated(batch: Batch, rot: torch.Tensor) -> Batch:
    out = batch.clone()
    out.pos = batch.pos @ rot.T
    out.lattice = batch.lattice @ rot.T
    out.edge_vec = batch.edge_vec @ rot.T
    return out


def _permuted(batch: Batch, seed: int = 2) -> Batch:
    """Permute atoms inside each crystal and shuffle the edge order."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.cat(
        [
            torch.nonzero(batch.batch == b).squeeze(1)[torch.randperm(int(n), generator=g)]
            for b, n in enumerate(batch.natoms)
        ]
    )  # new atom k is old atom perm[k]
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    eperm = torch.randperm(batch.edge_index.shape[1], generator=g)
    out = batch.clone()
    out.z, out.pos, out.batch = batch.z[perm], batch.pos[perm], batch.batch[perm]
    out.edge_index = inv[batch.edge_index[:, eperm]]
    out.edge_vec, out.edge_dist = batch.edge_vec[eperm], batch.edge_dist[eperm]
    return out


@pytest.mark.parametrize("name", EXTRA)
@pytest.mark.parametrize(("head", "shape"), [("scalar", (3,)), ("evidential", (3, 4))])
def test_output_shapes(batch, name, head, shape):
    torch.manual_seed(0)
    model = build_model(name, size="cpu", head=head)
    out = model(batch)
    assert tuple(out.shape) == shape
    assert torch.isfinite(out).all()
    out.sum().backward()  # every parameter that matters gets a gradient
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


@pytest.mark.parametrize("name", EXTRA)
def test_permutation_invariance(batch, name):
    torch.manual_seed(0)
    model = build_model(name, size="cpu").eval()
    with torch.no_grad():
        ref, perm = model(batch), model(_permuted(batch))
    assert ref.std() > 1e-4  # the crystals are told apart: a constant model would pass otherwise
    torch.testing.assert_close(perm, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", EXTRA)
def test_rotation_invariance(batch, name):
    torch.manual_seed(0)
    model = build_model(name, size="cpu").eval()
    with torch.no_grad():
        ref, rot = model(batch), model(_rotated(batch, _rotation()))
    assert ref.std() > 1e-4
    torch.testing.assert_close(rot, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["crystalframer", "sodnet"])
def test_frames_and_cross_products_see_handedness(batch, name):
    """A mirror image keeps every distance and angle; right-handed frames (CrystalFramer)
    and the cross-product path (SODNet) still tell it apart, so the direction
    information is really used (a distance-only or broken-frame model would not)."""
    torch.manual_seed(0)
    model = build_model(name, size="cpu").eval()
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    with torch.no_grad():
        ref, mir = model(batch), model(_rotated(batch, mirror))
    assert ref.std() > 1e-4
    assert (ref - mir).abs().max() > 0.01 * ref.std()


def test_rotation_check_is_sensitive(batch):
    """The rotation test can fail: a model fed raw Cartesian edge vectors is not invariant."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    with torch.no_grad():
        a = lin(batch.edge_vec).sum()
        b = lin(_rotated(batch, _rotation()).edge_vec).sum()
    assert not torch.allclose(a, b, atol=1e-4)


def test_parameter_counts_grow_with_size():
    for name in EXTRA:
        small = build_model(name, size="cpu").num_parameters()
        big = build_model(name, size="paper").num_parameters()
        assert 0 < small < big, name


# --------------------------------------------------------------- building blocks


def _nacl(primitive: bool) -> Structure:
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3])
    return s.get_primitive_structure() if primitive else s


@pytest.mark.parametrize("primitive", [True, False])
@pytest.mark.parametrize("eta_scale", [0.7, 1.0, 1.6])
def test_potnet_coulomb_sum_gives_madelung_constant(primitive, eta_scale):
    """Ewald pair sums reproduce NaCl's Madelung constant, whatever the Ewald splitting."""
    g = structure_to_graph(_nacl(primitive))
    q = torch.where(g.z == 11, 1.0, -1.0).double()
    idx, sums = infinite_potential_sums(
        g.pos, g.lattice, torch.zeros(len(g.z), dtype=torch.long), g.natoms, eta_scale=eta_scale
    )
    assert idx.shape[1] == len(g.z) ** 2  # every ordered pair, self pairs included
    energy = 0.5 * (q[idx[0]] * q[idx[1]] * sums[:, 0].double()).sum()
    madelung = -energy / (len(g.z) / 2) * (5.64 / 2)  # per ion pair, times the NN distance
    assert abs(float(madelung) - 1.747565) < 2e-4


def test_potnet_short_range_sums_match_brute_force():
    s = _low_symmetry_structures()[1]
    g = structure_to_graph(s)
    idx, sums = infinite_potential_sums(
        g.pos, g.lattice, torch.zeros(len(g.z), dtype=torch.long), g.natoms, radius=9.0
    )
    nbr = s.get_all_neighbors(9.0, include_index=True)  # periodic images within 9 Å
    pauli, london = np.zeros((len(s), len(s))), np.zeros((len(s), len(s)))
    for i, site_nbrs in enumerate(nbr):
        for n in site_nbrs:
            pauli[i, n.index] += np.exp(-n.nn_distance)
            london[i, n.index] -= n.nn_distance**-6
    tail = 4 * np.pi / (3 * s.volume * 9.0**3)
    np.testing.assert_allclose(sums[:, 2].numpy(), pauli[idx[1], idx[0]], rtol=1e-4)
    np.testing.assert_allclose(sums[:, 1].numpy(), london[idx[1], idx[0]] - tail, rtol=1e-4, atol=1e-7)


def test_potnet_cached_sums_equal_on_the_fly(batch):
    graphs = batch.to_data_list()
    cached = Batch.from_data_list([attach_potential_sums(g) for g in graphs])
    torch.manual_seed(0)
    model = build_model("potnet", size="cpu").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(cached), model(batch), atol=1e-5, rtol=1e-5)


def test_spherical_harmonics_closed_form():
    u = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(3)), dim=-1)
    y0, y1, y2 = real_spherical_harmonics(u)
    torch.testing.assert_close(y0, torch.ones(50, 1))
    torch.testing.assert_close((y1**2).sum(-1), torch.full((50,), 3.0))
    torch.testing.assert_close((y2**2).sum(-1), torch.full((50,), 5.0))
    # Y2 are the coordinates of the traceless part of u u^T in the _Y2_BASIS basis.
    t2 = torch.einsum("em,mab->eab", y2, _Y2_BASIS)
    expect = 15**0.5 / 2 * (u.unsqueeze(-1) * u.unsqueeze(-2) - torch.eye(3) / 3)
    torch.testing.assert_close(t2, expect, atol=1e-5, rtol=1e-5)
    # l = 2 transforms within itself: |Y2| and Y2(Ru) . Y2(Rv) are rotation invariant.
    rot = _rotation()
    torch.testing.assert_close(
        (real_spherical_harmonics(u @ rot.T)[2] * real_spherical_harmonics(u.flip(0) @ rot.T)[2]).sum(-1),
        (y2 * real_spherical_harmonics(u.flip(0))[2]).sum(-1),
        atol=1e-5,
        rtol=1e-5,
    )


def test_max_frames_are_rotation_equivariant(batch):
    torch.manual_seed(0)
    w = torch.rand(batch.edge_index.shape[1])
    dst, n = batch.edge_index[1], batch.z.shape[0]
    frames = max_frames(w, batch.edge_vec, dst, n)
    torch.testing.assert_close(
        frames @ frames.transpose(1, 2), torch.eye(3).expand(n, 3, 3), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.linalg.det(frames), torch.ones(n), atol=1e-5, rtol=0)
    rot = _rotation()
    torch.testing.assert_close(
        max_frames(w, batch.edge_vec @ rot.T, dst, n), frames @ rot.T, atol=1e-5, rtol=1e-5
    )
    # The first axis is the most-weighted edge of each atom (unless a near-tie, < 1 %).
    top = torch.stack([w.masked_fill(dst != i, -1).topk(2).values for i in range(n)])
    best = torch.stack([w.masked_fill(dst != i, -1).argmax() for i in range(n)])
    clear = top[:, 0] > 1.01 * top[:, 1]
    assert clear.sum() >= n // 2
    torch.testing.assert_close(
        frames[clear, 0], torch.nn.functional.normalize(batch.edge_vec[best[clear]], dim=-1)
    )


# --------------------------------------------------------------------------- slow
TRAINING = {  # name: (epochs, peak lr); batch size 32 throughout
    "deepergatgnn": (25, 3e-3),
    "potnet": (25, 3e-3),
    "comformer": (25, 3e-3),
    "sodnet": (25, 3e-3),
    "crystalframer": (25, 3e-3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXTRA)
def test_training_beats_mean_predictor(perovskite_splits, name):
    epochs, lr = TRAINING[name]
    splits = perovskite_splits
    if name == "potnet":  # precompute the infinite sums once instead of every epoch
        splits = Splits(*([attach_potential_sums(g) for g in gs] for gs in splits))
    result = short_training(name, splits, epochs=epochs, batch_size=32, lr=lr, patience=epochs, device="cpu")
    mae, mae_mean = float(result.test_mae), mean_predictor_mae(splits.train, splits.test)
    print(f"{name}: test MAE {mae:.4f} vs mean predictor {mae_mean:.4f} ({result.seconds:.1f} s)")
    assert mae < 0.75 * mae_mean
