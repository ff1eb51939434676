"""Shared fixtures: tiny synthetic structures and small slices of the real data."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from fusion.paths import DATA, dataset_file

# Where a page was built or run: home and work folders, temporary files, installed packages.
MACHINE_PATH = re.compile(r"/work/|/root/|/home/|/tmp/|/Users/|[A-Z]:\\Users\\|site-packages|dist-packages")
# A warning the Python warnings module printed (``path:line: SomeWarning: message``).
PYTHON_WARNING = re.compile(r"\b\w*Warning: ")

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


class Splits(NamedTuple):
    """Training, validation and test graphs (unpacks as ``train, val, test``)."""

    train: list
    val: list
    test: list


def perovskite_graph_splits(limit: int) -> Splits:
    """Graphs of the first ``limit`` perovskites (heat_all, eV/cell), split 70/15/15 with seed 0.

    Skips the calling test when the data are not pulled.

    Args:
        limit: Number of perovskites read.

    Returns:
        The split graphs.
    """
    if not dataset_file("perov5_castelli").exists():
        pytest.skip("perov5_castelli data not pulled (run `dvc pull`)")
    from fusion.data import load_dataset
    from fusion.graphs import structure_to_graph
    from fusion.splits import random_split

    ds = load_dataset("perov5_castelli", "heat_all", limit=limit, progress=False)
    graphs = {
        i: structure_to_graph(s, y=float(t))
        for i, s, t in zip(ds.ids, ds.structures, ds.targets, strict=True)
    }
    split = random_split(ds.ids, seed=0)
    return Splits(*([graphs[i] for i in split[k]] for k in ("train", "val", "test")))


@pytest.fixture(scope="session")
def perovskite_splits() -> Splits:
    """Graphs of the first 300 perovskites: the short real training runs of every architecture."""
    return perovskite_graph_splits(N_PEROVSKITES)


def short_training(
    name: str,
    splits: Splits,
    *,
    head: str = "scalar",
    model_seed: int = 0,
    overrides: dict[str, Any] | None = None,
    **config: Any,
) -> Any:
    """Build a cpu-size architecture under a fixed seed and train it with :func:`fusion.train.train`.

    Args:
        name: Registry name of the architecture.
        splits: Training, validation and test graphs.
        head: ``"scalar"`` or ``"evidential"``. Defaults to ``"scalar"``.
        model_seed: Seed of the model's initialisation. Defaults to 0.
        overrides: Constructor arguments replacing the cpu preset's. Defaults to None.
        **config: :class:`fusion.train.TrainConfig` fields; ``progress`` defaults to False.

    Returns:
        The :class:`fusion.train.TrainResult`.
    """
    from fusion.models import build_model
    from fusion.train import TrainConfig, seed_everything, train

    seed_everything(model_seed)
    model = build_model(name, "cpu", head=head, **(overrides or {}))
    train_g, val_g, test_g = splits
    return train(model, train_g, val_g, test_g, TrainConfig(**{"progress": False, **config}))


def mean_predictor_mae(train: list, test: list) -> float:
    """Test MAE of predicting the training mean: the floor a trained model must beat."""
    y_train = torch.cat([g.y.reshape(-1) for g in train]).double()
    y_test = torch.cat([g.y.reshape(-1) for g in test]).double()
    return float((y_test - y_train.mean()).abs().mean())


def assert_same_integers(a: object, b: object, msg: str = "") -> None:
    """Assert that two integer or boolean arrays (counts, masks, indices) are equal element by element.

    Integers are exact by definition, so no tolerance applies.
    """
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype.kind in "biu", f"not integer/boolean: {a.dtype} {msg}"
    assert b.dtype.kind in "biu", f"not integer/boolean: {b.dtype} {msg}"
    assert a.shape == b.shape, f"{a.shape} != {b.shape} {msg}"
    assert (a == b).all(), f"{int((a != b).sum())} elements differ {msg}"


def assert_bitwise_equal(a: object, b: object, msg: str = "") -> None:
    """Assert that two arrays or tensors are equal bit for bit (same shape, dtype and values).

    For determinism checks only: the same code path run twice (same seed,
    serial against pooled, a save/load round trip), or values copied or read
    without arithmetic. Results of different code paths or BLAS calls are
    compared with a stated tolerance instead (``np.testing.assert_allclose``,
    ``torch.testing.assert_close``). Floats are compared bit for bit: ``-0.0``
    differs from ``+0.0``, a NaN equals a NaN with the same payload.
    """
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor), msg
        assert isinstance(b, torch.Tensor), msg
        assert a.dtype == b.dtype, f"{msg}: dtype {a.dtype} vs {b.dtype}"
        a, b = a.detach().cpu().numpy(), b.detach().cpu().numpy()
    else:
        a, b = np.asarray(a), np.asarray(b)
    assert a.dtype.kind == b.dtype.kind, f"{msg}: dtype {a.dtype} vs {b.dtype}"
    assert a.shape == b.shape, f"{msg}: shape {a.shape} vs {b.shape}"
    if a.dtype.kind in "fc":  # the bits: -0.0 differs from +0.0, NaNs compare by payload
        assert a.dtype == b.dtype, f"{msg}: dtype {a.dtype} vs {b.dtype}"
        a, b = np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8)
    assert np.array_equal(a, b), msg


def make_cif_folder(folder, n: int = 12, header=None, extra_rows=(), targets=None):
    """Write ``n`` small crystals as ``<id>.cif`` plus ``id_prop.csv`` (a user's CIF folder).

    Args:
        folder: The folder to create.
        n: Crystals (rock salt and CsCl types, slightly different cells). Defaults to 12.
        header: A header line for ``id_prop.csv``. Defaults to none.
        extra_rows: More ``id_prop.csv`` lines (e.g. bad records). Defaults to none.
        targets: One target per crystal. Defaults to ``0.3 k + k mod 3``.
    """
    folder.mkdir()
    rows = [header] if header else []
    for k in range(n):
        s = rocksalt(5.4 + 0.04 * k) if k % 2 else cscl(3.9 + 0.04 * k)
        (folder / f"c{k}.cif").write_text(s.to(fmt="cif"))
        rows.append(f"c{k},{0.3 * k + (k % 3) if targets is None else targets[k]}")
    rows += list(extra_rows)
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return folder
