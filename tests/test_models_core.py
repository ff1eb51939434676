"""CGCNN, SchNet and MEGNet: output shapes, invariances, fast batch == PyG batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_bitwise_equal
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch, Data

from fusion.batching import FastBatch, GraphLoader, GraphStore
from fusion.graphs import structure_to_graph
from fusion.models import build_model
from fusion.train import seed_everything

ARCHS = ["cgcnn", "schnet", "megnet"]


def _crystals() -> list[Structure]:
    """Small crystals of different sizes, with rattled sites so no neighbour ties."""
    rng = np.random.default_rng(0)
    out = []
    base = [
        Structure(
            Lattice.cubic(3.9),
            ["Sr", "Ti", "O", "O", "O"],
            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        ),
        Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.hexagonal(3.2, 5.2),
            ["Zn", "Zn", "O", "O"],
            [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38], [2 / 3, 1 / 3, 0.88]],
        ),
    ]
    for s in base:
        rattled = s.copy()
        rattled.perturb(0.05, min_distance=0.01, seed=int(rng.integers(1 << 30)))
        out.append(rattled)
    return out


@pytest.fixture(scope="module")
def graphs() -> list[Data]:
    return [structure_to_graph(s, y=float(k)) for k, s in enumerate(_crystals())]


def _model(name: str, head: str = "scalar") -> torch.nn.Module:
    seed_everything(0)
    return build_model(name, "cpu", head=head).eval()


def _permute_graph(g: Data, perm: torch.Tensor, edge_perm: torch.Tensor) -> Data:
    """Relabel atoms (new atom k is old atom perm[k]) and reorder edges."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    return Data(
        z=g.z[perm],
        pos=g.pos[perm],
        lattice=g.lattice,
        edge_index=inv[g.edge_index][:, edge_perm],
        edge_vec=g.edge_vec[edge_perm],
        edge_dist=g.edge_dist[edge_perm],
        y=g.y,
        natoms=g.natoms,
    )


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize(("head", "shape"), [("scalar", (3,)), ("evidential", (3, 4))])
def test_output_shapes(graphs, name, head, shape):
    out = _model(name, head)(Batch.from_data_list(graphs))
    assert out.shape == shape
    assert torch.isfinite(out).all()
    if head == "evidential":
        assert (out[:, 1] > 0).all()
        assert (out[:, 2] > 1).all()
        assert (out[:, 3] > 0).all()


@pytest.mark.parametrize("name", ARCHS)
def test_permuting_atoms_and_edges_leaves_prediction(graphs, name):
    model = _model(name)
    gen = torch.Generator().manual_seed(1)
    permuted = [
        _permute_graph(
            g,
            torch.randperm(int(g.natoms), generator=gen),
            torch.randperm(g.edge_index.shape[1], generator=gen),
        )
        for g in graphs
    ]
    ref = model(Batch.from_data_list(graphs))
    out = model(Batch.from_data_list(permuted))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # The check has teeth: changing one element changes the prediction.
    swapped = permuted[0].clone()
    swapped.z = swapped.z.clone()
    swapped.z[0] = 3
    moved = model(Batch.from_data_list([swapped, *permuted[1:]]))
    assert not torch.allclose(moved[0], ref[0], atol=1e-5)


@pytest.mark.parametrize("name", ARCHS)
def test_permuting_sites_of_the_structure_leaves_prediction(name):
    model = _model(name)
    structs = _crystals()
    rng = np.random.default_rng(3)
    shuffled = [Structure.from_sites([s[k] for k in rng.permutation(len(s))]) for s in structs]
    ref = model(Batch.from_data_list([structure_to_graph(s) for s in structs]))
    out = model(Batch.from_data_list([structure_to_graph(s) for s in shuffled]))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fast_batch_has_the_fields_of_a_pyg_batch(graphs):
    order = torch.tensor([2, 0, 1, 2])  # any order, repeats allowed
    fast = GraphStore(graphs).batch(order)
    ref = Batch.from_data_list([graphs[k] for k in order.tolist()])
    assert isinstance(fast, FastBatch)
    assert fast.num_graphs == ref.num_graphs == 4
    for name in ("z", "pos", "lattice", "edge_index", "edge_vec", "edge_dist", "y", "natoms", "batch", "ptr"):
        # Both batches copy the same tensors without arithmetic: bit for bit.
        assert_bitwise_equal(getattr(fast, name), getattr(ref, name), name)
    assert fast.num_nodes == ref.num_nodes
    assert fast.num_edges == ref.num_edges


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("train_mode", [False, True])
def test_model_gives_identical_outputs_on_fast_and_pyg_batches(graphs, name, train_mode):
    model = _model(name).train(train_mode)
    order = torch.tensor([1, 2, 0])
    fast = GraphStore(graphs).batch(order)
    ref = Batch.from_data_list([graphs[k] for k in order.tolist()])
    torch.testing.assert_close(model(fast), model(ref), rtol=0, atol=1e-6)


def test_loader_falls_back_to_pyg_for_extra_fields(graphs):
    extra = [g.clone() for g in graphs]
    for g in extra:
        g.charge = torch.zeros(int(g.natoms))
    loader = GraphLoader(extra, batch_size=2)
    assert loader.store is None
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    assert hasattr(batches[0], "charge")
    assert GraphLoader(graphs, batch_size=2).store is not None


@pytest.mark.parametrize("name", ARCHS)
def test_sizes_build_and_differ_from_random_init(name):
    for size in ("cpu", "paper"):
        assert build_model(name, size).num_parameters() > 1_000
    seed_everything(0)
    a = build_model(name, "cpu")
    seed_everything(1)
    b = build_model(name, "cpu")
    assert (a.embedding.weight != b.embedding.weight).any()  # other seed, other weights


def test_schnet_rejects_unknown_readout():
    with pytest.raises(ValueError, match="readout"):
        build_model("schnet", "cpu", readout="max")
