"""The 11 architectures side by side: paper, atom embedding, geometry, sizes, departures.

One table, one row per registered architecture (:data:`fusion.models.MODELS`),
for the README and the book's Method page, so that accuracies of different
architectures are compared knowing what each one sees. What the code can tell is
computed from the models themselves:

- the atom embedding: an instantiated model holding a
  :class:`~fusion.models.layers.AtomEmbedding` embeds atoms by a linear map of fixed
  element descriptors plus a learned per-element table (:data:`DESCRIPTORS`); one
  holding only an ``nn.Embedding`` uses a learned per-element table alone
  (:data:`LEARNED`); and its width;
- the ``cpu`` and ``paper`` presets (``SIZES``): layers and width, read from the
  preset over the constructor's defaults;
- the parameter counts, of the model built with :func:`fusion.models.build_model`
  (scalar head included).

What the code cannot tell is typed once in :data:`FACTS`: the publication, the
atom input it used, the geometry our implementation feeds the model, which
constructor arguments count its layers and give its width, and where our
implementation departs from the publication. Departures shared by all eleven are
in :data:`COMMON_DEPARTURES`, not repeated per row.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from fusion.models import MODELS, available, build_model
from fusion.models.layers import AtomEmbedding

#: Atom embedding kinds (column ``atom embedding``).
LEARNED = "learned per-element table"
DESCRIPTORS = "element descriptors + learned table"
EMBEDDING_KINDS = (LEARNED, DESCRIPTORS)
SIZES = ("cpu", "paper")

#: What every architecture here does differently from its publication.
COMMON_DEPARTURES = (
    (
        "every model reads the same periodic graph (the 12 nearest neighbours of each atom within 8 Å, "
        "periodic images included), not its publication's own neighbour rule"
    ),
    (
        "the publication's last fully connected layers are replaced by one shared head "
        "(Linear-SiLU-Linear, scalar or evidential) after pooling"
    ),
)


@dataclass(frozen=True)
class Facts:
    """What the code of an architecture cannot tell about it.

    Attributes:
        paper: Short citation of the publication it implements.
        year: Year of that publication.
        paper_atoms: The atom input of the publication.
        geometry: What our implementation feeds it besides the atoms.
        layers: Constructor arguments counting its message-passing layers
            (several are shown as ``a+b``).
        width: Constructor argument of its hidden width.
        departures: Where our implementation departs from the publication,
            besides the atom input and :data:`COMMON_DEPARTURES`.
    """

    paper: str
    year: int
    paper_atoms: str
    geometry: str
    layers: tuple[str, ...]
    width: str
    departures: str


_CGCNN_ATOMS = "CGCNN's 92-d one-hot element features"

#: The per-architecture facts, from each class docstring of :mod:`fusion.models`.
FACTS: dict[str, Facts] = {
    "schnet": Facts(
        "SchNet: Schütt et al., NeurIPS 2017; J. Chem. Phys. 2018",
        2017,
        "learned embedding of Z",
        "distances (Gaussians, cosine cutoff)",
        ("n_interactions",),
        "hidden",
        "Mean pooling (SchNet sums, for extensive energies). The paper preset is the NeurIPS 2017 "
        "size (the 2018 paper used 6 interactions of 128 features); cpu has a 0.2 Å Gaussian grid.",
    ),
    "cgcnn": Facts(
        "CGCNN: Xie & Grossman, Phys. Rev. Lett. 2018",
        2018,
        _CGCNN_ATOMS,
        "distances (Gaussians)",
        ("n_conv",),
        "atom_fea_len",
        "The shared head adds one hidden layer after pooling (n_h + 1 instead of n_h). "
        "The cpu preset is the paper's size.",
    ),
    "megnet": Facts(
        "MEGNet: Chen et al., Chem. Mater. 2019",
        2019,
        "learned 16-d embedding of Z",
        "distances (Gaussians); a global state, all zeros",
        ("n_blocks",),
        "n2",
        "The state input is a zero vector (no global state features in these datasets); no dropout. "
        "The cpu preset has 50 distance Gaussians instead of 100.",
    ),
    "dimenetpp": Facts(
        "DimeNet++: Gasteiger et al., NeurIPS 2020 workshop (DimeNet: ICLR 2020)",
        2020,
        "learned embedding of Z",
        "distances and bond angles (Bessel and spherical Fourier-Bessel bases over bond pairs)",
        ("num_blocks",),
        "hidden",
        "Output blocks emit a per-atom vector, mean-pooled (DimeNet sums); basis cutoff 8 Å instead "
        "of 5 Å; PyTorch's default initialisation instead of Glorot-orthogonal; no moving average "
        "of the weights.",
    ),
    "alignn": Facts(
        "ALIGNN: Choudhary & DeCost, npj Comput. Mater. 2021",
        2021,
        _CGCNN_ATOMS,
        "distances and bond angles (line graph of bond pairs)",
        ("alignn_layers", "gcn_layers"),
        "hidden",
        "Back-tracking bond pairs (a bond and its own reverse image) are left out of the line graph; "
        "the reference code keeps them. Layers: ALIGNN + edge-gated atom-graph layers.",
    ),
    "deepergatgnn": Facts(
        "DeeperGATGNN: Omee et al., Patterns 2022",
        2022,
        _CGCNN_ATOMS,
        "distances (Gaussians)",
        ("layers",),
        "hidden",
        "Global attention pooling scores atoms from their features alone (GATGNN adds a composition "
        "vector); no dropout. The paper preset has 20 layers (the paper studies up to 30).",
    ),
    "matformer": Facts(
        "Matformer: Yan et al., NeurIPS 2022",
        2022,
        _CGCNN_ATOMS,
        "distances (Gaussians of −0.75/d)",
        ("layers",),
        "hidden",
        "No self-connecting lattice edges are added: the lattice is seen only through an atom's own "
        "images among its 12 neighbours.",
    ),
    "potnet": Facts(
        "PotNet: Lin et al., ICML 2023",
        2023,
        _CGCNN_ATOMS,
        "Coulomb, London and Pauli potentials of the distances, and their sums over all periodic "
        "images for every atom pair of the cell",
        ("layers",),
        "hidden",
        "Coulomb lattice sums by Ewald summation, London and Pauli by direct sums within 12 Å (the "
        "paper: one incomplete-Gamma expansion for all three, with learned potential weights); "
        "CGCNN-style gated convolutions.",
    ),
    "comformer": Facts(
        "iComFormer: Yan et al., ICLR 2024",
        2024,
        _CGCNN_ATOMS,
        "distances (Gaussians of −0.75/d); angles between each edge and the three lattice vectors, "
        "and their lengths",
        ("layers", "edge_layers"),
        "hidden",
        "The lattice vectors are used as stored, not the paper's canonical self-connecting edges "
        "(not invariant to a change of lattice basis); the edge-wise layer attends over three "
        "lattice tokens. Layers: node-wise + edge-wise.",
    ),
    "sodnet": Facts(
        "SODNet: Chen et al., NeurIPS 2024 (Datasets and Benchmarks)",
        2024,
        "learned embedding weighted by site occupancy",
        "distances and edge directions (spherical harmonics up to l = 2); equivariant vector features",
        ("layers",),
        "channels",
        "Ordered crystals only (no occupancy weighting or orientation averaging); features stop at "
        "l = 1 (SODNet: l ≤ 2 or more, with e3nn's full tensor products); rotation- but not "
        "parity-aware. The paper preset takes Equiformer's scale.",
    ),
    "crystalframer": Facts(
        "CrystalFramer: Ito et al., ICLR 2025",
        2025,
        "learned embedding of the atom type",
        "distances (Gaussian decay of the attention) and edge vectors written in per-atom frames "
        "built from the attention weights",
        ("layers",),
        "hidden",
        "Attention over the 12-neighbour graph instead of Crystalformer's infinitely connected "
        "attention; max frames only, from head-averaged weights without gradient; pre-LayerNorm blocks.",
    ),
}


def preset(name: str, size: str) -> dict[str, Any]:
    """Constructor arguments of a size preset, over the constructor's defaults.

    Args:
        name: Registry name.
        size: ``"cpu"`` or ``"paper"``.

    Returns:
        Argument name -> value.
    """
    cls = MODELS[name]
    defaults = {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **cls.SIZES[size]}


def atom_embedding(model: nn.Module) -> tuple[str, int]:
    """The kind and width of a model's atom embedding.

    Args:
        model: An instantiated architecture.

    Returns:
        ``(kind, width)``, kind one of :data:`EMBEDDING_KINDS`.

    Raises:
        ValueError: If the model holds no atom embedding this function knows.
    """
    modules = list(model.modules())
    described = [m for m in modules if isinstance(m, AtomEmbedding)]
    if described:
        return DESCRIPTORS, described[0].lin.out_features
    tables = [m for m in modules if isinstance(m, nn.Embedding)]
    if tables:
        return LEARNED, tables[0].embedding_dim
    raise ValueError(f"no atom embedding found in {type(model).__name__}")


def architecture_table(names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per architecture: publication, atom embedding, geometry, sizes, departures.

    Builds each model at both sizes (a fraction of a second each) to count its
    parameters and read its embedding.

    Args:
        names: Registry names; defaults to every registered architecture.

    Returns:
        Columns ``architecture``, ``paper``, ``year``, ``atom embedding``,
        ``paper's atom input``, ``geometry``, then per size ``<size> embedding
        width``, ``<size> layers`` (a string, ``a+b`` when several kinds of layers),
        ``<size> width``, ``<size> parameters`` (int, scalar head included), and
        ``departures``. Sorted by atom embedding, then year.

    Raises:
        KeyError: If a name is not registered or has no entry in :data:`FACTS`.
    """
    rows = []
    for name in available() if names is None else names:
        facts = FACTS[name]
        row: dict[str, Any] = {
            "architecture": name,
            "paper": facts.paper,
            "year": facts.year,
            "paper's atom input": facts.paper_atoms,
            "geometry": facts.geometry,
        }
        for size in SIZES:
            model = build_model(name, size=size)
            kind, width = atom_embedding(model)
            args = preset(name, size)
            row["atom embedding"] = kind
            row[f"{size} embedding width"] = width
            row[f"{size} layers"] = "+".join(str(args[k]) for k in facts.layers)
            row[f"{size} width"] = int(args[facts.width])
            row[f"{size} parameters"] = model.num_parameters()
        row["departures"] = facts.departures
        rows.append(row)
    order = ["architecture", "paper", "year", "atom embedding", "paper's atom input", "geometry"]
    order += [f"{s} {c}" for s in SIZES for c in ("embedding width", "layers", "width", "parameters")]
    df = pd.DataFrame(rows, columns=[*order, "departures"])
    df["_kind"] = df["atom embedding"].map(EMBEDDING_KINDS.index)
    return df.sort_values(["_kind", "year", "architecture"]).drop(columns="_kind").reset_index(drop=True)


def _both(a: Any, b: Any, fmt: str = "{}") -> str:
    """``a`` when both sizes agree, else ``a / b``."""
    return fmt.format(a) if a == b else f"{fmt.format(a)} / {fmt.format(b)}"


def display_tables(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two tables of the book: what each architecture sees, and its sizes and departures.

    Args:
        df: :func:`architecture_table`.

    Returns:
        ``(inputs, sizes)``: display tables of strings, one row per architecture.
    """
    inputs = pd.DataFrame(
        {
            "architecture": df["architecture"],
            "paper": df["paper"],
            "atom embedding here (width cpu / paper)": [
                f"{kind}, {_both(c, p, '{}-d')}"
                for kind, c, p in zip(
                    df["atom embedding"], df["cpu embedding width"], df["paper embedding width"], strict=True
                )
            ],
            "the paper's atom input": df["paper's atom input"],
            "geometry it sees": df["geometry"],
        }
    )
    sizes = pd.DataFrame({"architecture": df["architecture"]})
    for size in SIZES:
        sizes[f"{size}: layers × width"] = [
            f"{n} × {w}" for n, w in zip(df[f"{size} layers"], df[f"{size} width"], strict=True)
        ]
        sizes[f"{size}: parameters"] = [f"{n:,}" for n in df[f"{size} parameters"]]
    sizes["departures from the paper (besides the atom input)"] = df["departures"]
    return inputs, sizes


def embedding_split(df: pd.DataFrame) -> dict[str, Any]:
    """Which architectures use which atom embedding, for the text.

    Args:
        df: :func:`architecture_table`.

    Returns:
        ``n_learned``, ``learned`` (names, comma-separated), ``n_descriptors``,
        ``descriptors``, ``n_models``, ``descriptor_dim`` (the number of fixed
        descriptors per element) and ``common_departures`` (one sentence).
    """
    from fusion.models.layers import element_descriptors

    learned = df.loc[df["atom embedding"] == LEARNED, "architecture"].tolist()
    described = df.loc[df["atom embedding"] == DESCRIPTORS, "architecture"].tolist()
    return {
        "n_models": len(df),
        "n_learned": len(learned),
        "learned": ", ".join(learned),
        "n_descriptors": len(described),
        "descriptors": ", ".join(described),
        "descriptor_dim": int(element_descriptors().shape[1]),
        "common_departures": "; ".join(COMMON_DEPARTURES),
    }
