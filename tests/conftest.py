"""Shared fixtures: tiny synthetic structures and small slices of the real data."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure

from fusion.paths import DATA, dataset_file

N_PEROVSKITES = 300


def rocksalt(a: float = 5.64) -> Structure:
    """Conventional NaCl cell (8 atoms)."""
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    shifted = [[(x + 0.5) % 1, y, z] for x, y, z in fcc]
    return Structure(Lattice.cubic(a), ["Na"] * 4 + ["Cl"] * 4, fcc + shifted)


def cscl(a: float = 4.12) -> Structure:
    """CsCl, 2 atoms."""
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def nacl() -> Structure:
    return rocksalt()


@pytest.fixture
def small_structures() -> list[Structure]:
    return [rocksalt(5.5 + 0.05 * k) if k % 2 else cscl(4.0 + 0.05 * k) for k in range(6)]


@pytest.fixture(scope="session")
def data_available() -> bool:
    if not (DATA / "matbench_jdft2d" / "matbench_jdft2d.json.gz").exists():
        pytest.skip("data/ not pulled (run `dvc pull`)")
    return True


@pytest.fixture(scope="session")
def perovskite_splits() -> tuple[list, list, list]:
    """Graphs of the first 300 perovskites (heat_all), split 70/15/15 with seed 0.

    The short real training runs of every architecture use these.
    """
    if not dataset_file("perov5_castelli").exists():
        pytest.skip("perov5_castelli data not pulled (run `dvc pull`)")
    from fusion.data import load_dataset
    from fusion.graphs import structure_to_graph
    from fusion.splits import random_split

    ds = load_dataset("perov5_castelli", "heat_all", limit=N_PEROVSKITES, progress=False)
    graphs = {
        i: structure_to_graph(s, y=float(t))
        for i, s, t in zip(ds.ids, ds.structures, ds.targets, strict=True)
    }
    split = random_split(ds.ids, seed=0)
    return tuple([graphs[i] for i in split[k]] for k in ("train", "val", "test"))


def mean_predictor_mae(train: list, test: list) -> float:
    """Test MAE of predicting the training mean: the floor a trained model must beat."""
    y_train = torch.cat([g.y.reshape(-1) for g in train]).double()
    y_test = torch.cat([g.y.reshape(-1) for g in test]).double()
    return float((y_test - y_train.mean()).abs().mean())
