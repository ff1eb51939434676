"""Trainer: AdamW, one-cycle schedule, early stopping, resumable checkpoints.

Usage::

    from fusion.train import TrainConfig, train, predict, seed_everything
    seed_everything(0)                      # before building the model: seeds its init
    model = build_model("cgcnn", size="cpu")
    result = train(model, train_graphs, val_graphs, test_graphs, TrainConfig(epochs=100))
    preds = predict(result.model, graphs, result.target_mean, result.target_std)

Targets are standardised with the training mean and standard deviation; losses
are computed in standardised units, MAEs in target units. Batches are built by
:class:`GraphStore`, which concatenates all graphs once and gathers each batch
with index arithmetic instead of PyG's per-graph ``Batch.from_data_list`` (the
latter dominates the step time for 5-atom crystals). Graphs carrying fields other
than the :mod:`fusion.graphs` contract fall back to PyG collation.

Speed: training and prediction run with float32 subnormals flushed to zero on
the CPU (:func:`denormals_flushed`). Gaussian distance expansions underflow into
subnormals, and a matrix product that reads them runs ~30x slower.

Reproducibility: the same seed, data and model initialisation give the same
MAE on CPU (shuffling uses its own seeded generator). With ``checkpoint_path``
set, a checkpoint is written after every epoch, and a run that was interrupted
resumes from it and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from fusion.models.heads import evidential_loss, point_prediction

CONTRACT_FIELDS = ("z", "pos", "lattice", "edge_index", "edge_vec", "edge_dist", "y", "natoms")
LOSSES = ("auto", "l1", "mse", "evidential")
# Config fields that change the optimisation trajectory: a checkpoint written
# under other values cannot be resumed.
_RESUME_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "loss", "evidential_coeff")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global random generators.

    Args:
        seed: The seed.
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code draws from the legacy global RNG
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[None]:
    """Treat float32 subnormals (below 1.2e-38) as zero on this thread's CPU while inside.

    Why: a Gaussian expansion of distances, such as CGCNN's 0.2 Å-wide basis,
    underflows into subnormal numbers (about 3 % of its entries for bond lengths of
    1-8 Å), and every matrix product that reads them takes a slow microcode path:
    ~30x slower for CGCNN's edge layer, measured. Flushing them made CGCNN training
    5.4x faster on 1 thread, with weights, validation and test MAE bit-identical
    to an unflushed run for all 11 architectures (4 epochs on 300 phonons records;
    ``tests/test_train.py`` checks it on synthetic crystals). A subnormal is more
    than 10^30 times smaller than any weight or feature the models use, so it can
    only change a result where a sum consists of subnormals alone.

    The setting belongs to the calling thread (``torch.set_flush_denormal``); the
    intra-op threads of ``torch.set_num_threads(n > 1)`` keep theirs. On leaving,
    flushing is switched off again (PyTorch's default; it has no getter to restore
    another state).

    Args:
        enabled: Flush while inside. Defaults to True; False does nothing.

    Example:
        >>> import torch
        >>> with denormals_flushed():
        ...     flushed = torch.tensor([1e-40], dtype=torch.float32) * 1.0
        >>> float(flushed[0]), float(torch.tensor([1e-40], dtype=torch.float32)[0] * 1.0) > 0
        (0.0, True)
    """
    if not enabled or not torch.set_flush_denormal(True):  # False: this CPU cannot flush
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


# ----------------------------------------------------------------------------- batching


class FastBatch:
    """A batch of crystal graphs with the fields of a PyG ``Batch``.

    Attributes:
        z: ``[N]`` atomic numbers.
        pos: ``[N, 3]`` positions.
        lattice: ``[B, 3, 3]`` lattices.
        edge_index: ``[2, E]`` with batch-wide node indices.
        edge_vec: ``[E, 3]``.
        edge_dist: ``[E]``.
        y: ``[B]`` targets.
        natoms: ``[B]`` atoms per crystal.
        batch: ``[N]`` crystal index of each atom.
        ptr: ``[B + 1]`` node offsets of the crystals.
        num_graphs: ``B``.
    """

    __slots__ = (*CONTRACT_FIELDS, "batch", "num_graphs", "ptr")

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields[name])

    @property
    def num_nodes(self) -> int:
        """Number of atoms in the batch."""
        return int(self.z.shape[0])

    @property
    def num_edges(self) -> int:
        """Number of edges in the batch."""
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> FastBatch:
        """Return a copy with every tensor on ``device``."""
        out = {
            name: (
                getattr(self, name).to(device, non_blocking=non_blocking)
                if isinstance(getattr(self, name), Tensor)
                else getattr(self, name)
            )
            for name in self.__slots__
        }
        return FastBatch(**out)


def _ranges(starts: Tensor, counts: Tensor, total: int) -> Tensor:
    """Concatenation of ``arange(s, s + c)`` for each ``(s, c)``, without a Python loop."""
    out_starts = torch.cumsum(counts, 0) - counts
    shift = torch.repeat_interleave(starts - out_starts, counts, output_size=total)
    return torch.arange(total, device=starts.device) + shift


class GraphStore:
    """All graphs of a set concatenated once; batches are gathered by index.

    Args:
        graphs: Graphs following the :mod:`fusion.graphs` contract.
        device: Where the concatenated tensors (and so every batch) live.
            Defaults to CPU.

    Raises:
        ValueError: If ``graphs`` is empty.
    """

    def __init__(self, graphs: Sequence[Data], device: torch.device | str = "cpu") -> None:
        if len(graphs) == 0:
            raise ValueError("no graphs")
        dev = torch.device(device)
        self.device = dev
        self.n_nodes = torch.tensor([g.z.shape[0] for g in graphs], dtype=torch.long, device=dev)
        self.n_edges = torch.tensor([g.edge_index.shape[1] for g in graphs], dtype=torch.long, device=dev)
        self.node_ptr = torch.cumsum(self.n_nodes, 0) - self.n_nodes
        self.edge_ptr = torch.cumsum(self.n_edges, 0) - self.n_edges

        def cat(name: str, dim: int = 0) -> Tensor:
            return torch.cat([getattr(g, name) for g in graphs], dim=dim).to(dev)

        self.z = cat("z")
        self.pos = cat("pos")
        self.lattice = cat("lattice")
        self.edge_index = cat("edge_index", dim=1)  # node indices local to each graph
        self.edge_vec = cat("edge_vec")
        self.edge_dist = cat("edge_dist")
        self.y = torch.cat(
            [
                g.y.reshape(-1) if getattr(g, "y", None) is not None else torch.tensor([math.nan])
                for g in graphs
            ]
        ).to(dev, torch.float32)
        self.natoms = self.n_nodes.clone()

    def __len__(self) -> int:
        return int(self.n_nodes.shape[0])

    def batch(self, index: Tensor) -> FastBatch:
        """Gather the graphs ``index`` (``[B]`` long, any order) into one batch."""
        index = index.to(self.device)
        n_nodes, n_edges = self.n_nodes[index], self.n_edges[index]
        counts = torch.stack([n_nodes.sum(), n_edges.sum()]).tolist()  # one sync
        n_total, e_total = int(counts[0]), int(counts[1])
        node_idx = _ranges(self.node_ptr[index], n_nodes, n_total)
        edge_idx = _ranges(self.edge_ptr[index], n_edges, e_total)
        ptr = torch.zeros(len(index) + 1, dtype=torch.long, device=self.device)
        torch.cumsum(n_nodes, 0, out=ptr[1:])
        offset = torch.repeat_interleave(ptr[:-1], n_edges, output_size=e_total)
        graph_of_node = torch.repeat_interleave(
            torch.arange(len(index), device=self.device), n_nodes, output_size=n_total
        )
        return FastBatch(
            z=self.z.index_select(0, node_idx),
            pos=self.pos.index_select(0, node_idx),
            lattice=self.lattice.index_select(0, index),
            edge_index=self.edge_index.index_select(1, edge_idx) + offset,
            edge_vec=self.edge_vec.index_select(0, edge_idx),
            edge_dist=self.edge_dist.index_select(0, edge_idx),
            y=self.y.index_select(0, index),
            natoms=self.natoms.index_select(0, index),
            batch=graph_of_node,
            ptr=ptr,
            num_graphs=len(index),
        )


def fast_batchable(graphs: Sequence[Data]) -> bool:
    """Whether the graphs carry only contract fields (so :class:`GraphStore` is exact)."""
    allowed = set(CONTRACT_FIELDS)
    return all(set(g.keys()) <= allowed for g in graphs)


class GraphLoader:
    """Iterate over batches of graphs, fast-gathered when possible.

    Args:
        graphs: The graphs.
        batch_size: Graphs per batch (the last batch may be smaller).
        shuffle: Draw a new order each epoch from ``generator``. Defaults to False.
        generator: CPU generator used for shuffling (seeded by the caller).
        device: Device of the yielded batches. Defaults to CPU.
        fast: Use :class:`GraphStore`; defaults to :func:`fast_batchable`.
    """

    def __init__(
        self,
        graphs: Sequence[Data],
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        fast: bool | None = None,
    ) -> None:
        self.graphs = list(graphs)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        self.device = torch.device(device)
        self.fast = fast_batchable(self.graphs) if fast is None else fast
        self.store = GraphStore(self.graphs, self.device) if self.fast else None

    def __len__(self) -> int:
        return math.ceil(len(self.graphs) / self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        n = len(self.graphs)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for chunk in order.split(self.batch_size):
            if self.store is not None:
                yield self.store.batch(chunk)
            else:
                yield Batch.from_data_list([self.graphs[k] for k in chunk.tolist()]).to(self.device)


# ----------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Args:
        epochs: Maximum number of epochs. Defaults to 100.
        batch_size: Graphs per training batch. Defaults to 64.
        lr: Peak learning rate of the one-cycle schedule (AdamW). Defaults to 1e-3.
        weight_decay: AdamW weight decay. Defaults to 0.
        patience: Epochs without a new best validation MAE before stopping.
            Defaults to 20.
        seed: Seed of everything random in training (shuffling, dropout). The
            model's initialisation is the caller's: call :func:`seed_everything`
            before building it. Defaults to 0.
        loss: ``"l1"``, ``"mse"``, ``"evidential"`` or ``"auto"`` (evidential for an
            evidential head, else L1). Defaults to ``"auto"``.
        evidential_coeff: Weight of the evidence regulariser. Defaults to 0.01.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
            Defaults to ``"auto"``.
        checkpoint_path: Checkpoint written after each epoch and resumed from if
            it exists. Defaults to None (no checkpoint).
        progress: Show a tqdm bar over epochs. Defaults to True.
        num_threads: If set, ``torch.set_num_threads(num_threads)``. Defaults to None.
        flush_denormals: Train with float32 subnormals flushed to zero
            (:func:`denormals_flushed`; several times faster on CPU). Defaults to True.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 20
    seed: int = 0
    loss: str = "auto"
    evidential_coeff: float = 0.01
    device: str = "auto"
    checkpoint_path: str | Path | None = None
    progress: bool = True
    num_threads: int | None = None
    flush_denormals: bool = True


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        model: The model with the best-validation weights restored.
        val_mae: Best validation MAE (target units).
        test_mae: Test MAE of the restored model, or None without a test set.
        epochs_run: Epochs completed (fewer than ``epochs`` after early stopping).
        best_epoch: Epoch (1-based) of the best validation MAE.
        seconds: Wall time of the call.
        history: One dict per epoch: ``epoch``, ``train_loss``, ``val_mae``, ``lr``,
            ``train_seconds``.
        target_mean: Training-target mean used for standardisation.
        target_std: Training-target standard deviation used for standardisation.
        graphs_per_second: Training graphs processed per second of training
            steps (evaluation excluded), over all epochs.
    """

    model: nn.Module
    val_mae: float
    test_mae: float | None
    epochs_run: int
    best_epoch: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    graphs_per_second: float = 0.0


# ----------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device) -> torch.device:
    """Map ``"auto"`` to CUDA when available, else CPU; pass other names through."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_loss(loss: str, model: nn.Module) -> str:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    head = getattr(model, "head_kind", "scalar")
    if loss == "auto":
        return "evidential" if head == "evidential" else "l1"
    if loss == "evidential" and head != "evidential":
        raise ValueError("the evidential loss needs a model with head='evidential'")
    return loss


def _loss(kind: str, pred: Tensor, y: Tensor, coeff: float) -> Tensor:
    if kind == "evidential":
        return evidential_loss(pred, y, coeff)
    point = point_prediction(pred)
    return F.l1_loss(point, y) if kind == "l1" else F.mse_loss(point, y)


def _targets(graphs: Sequence[Data]) -> np.ndarray:
    return np.array([float(g.y.reshape(-1)[0]) for g in graphs], dtype=np.float64)


@torch.no_grad()
def _raw_outputs(model: nn.Module, loader: GraphLoader) -> Tensor:
    """Model outputs (standardised units) for every graph of ``loader``, on CPU."""
    was_training = model.training
    model.eval()
    try:
        outs = [model(batch).detach().float().cpu() for batch in loader]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def _mae(model: nn.Module, loader: GraphLoader, y: np.ndarray, mean: float, std: float) -> float:
    point = point_prediction(_raw_outputs(model, loader)).double().numpy() * std + mean
    return float(np.mean(np.abs(point - y)))


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "shuffle": generator.get_state(),
    }


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["shuffle"])


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save_atomic(obj: Any, path: Path) -> None:
    """Write then rename, so an interruption never leaves a truncated checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- steps


def _standardisation(y_train: np.ndarray) -> tuple[float, float]:
    """Training-target mean and standard deviation (1 for a single or constant target)."""
    mean = float(y_train.mean())
    std = float(y_train.std()) if len(y_train) > 1 and y_train.std() > 0 else 1.0
    return mean, std


def _fresh_state(model: nn.Module) -> dict[str, Any]:
    """Progress of a run that has not trained yet (what checkpoints store as ``state``)."""
    return {
        "epoch": 0,
        "best_val": math.inf,
        "best_epoch": 0,
        "best_state": _cpu_state(model),
        "bad_epochs": 0,
        "stopped": False,
        "history": [],
    }


def _train_epoch(
    model: nn.Module,
    loader: GraphLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_kind: str,
    y_mean: Tensor,
    y_std: Tensor,
    evidential_coeff: float,
) -> float:
    """One pass over the training set, the schedule stepped every batch.

    Args:
        model: The model (set to training mode here).
        loader: Shuffling loader of the training graphs.
        optimizer: The AdamW optimiser.
        scheduler: The one-cycle schedule.
        loss_kind: ``"l1"``, ``"mse"`` or ``"evidential"``.
        y_mean: Training-target mean (0-d tensor on the model's device).
        y_std: Training-target standard deviation (0-d tensor on the model's device).
        evidential_coeff: Weight of the evidence regulariser.

    Returns:
        Mean training loss per graph (standardised units).
    """
    model.train()
    loss_sum = torch.zeros((), device=y_mean.device)
    for batch in loader:
        optimizer.zero_grad(set_to_none=True)
        pred = model(batch)
        loss = _loss(loss_kind, pred, (batch.y - y_mean) / y_std, evidential_coeff)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * batch.num_graphs  # no host sync per batch
    return float(loss_sum) / len(loader.graphs)


def _record_validation(state: dict[str, Any], model: nn.Module, val_mae: float, patience: int) -> None:
    """Count the epoch just trained, keep the best weights, and decide on early stopping.

    Args:
        state: Run progress (see :func:`_fresh_state`), updated in place.
        model: The model after the epoch.
        val_mae: Its validation MAE (target units).
        patience: Epochs without a new best before stopping.
    """
    state["epoch"] += 1
    if val_mae < state["best_val"]:
        state.update(
            best_val=val_mae,
            best_epoch=state["epoch"],
            best_state=_cpu_state(model),
            bad_epochs=0,
        )
    else:
        state["bad_epochs"] += 1
        state["stopped"] = state["bad_epochs"] >= patience


def _save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    state: dict[str, Any],
    resume_keys: dict[str, Any],
    n_train: int,
    target_mean: float,
    target_std: float,
) -> None:
    """Write everything a resumed run needs to continue bit-for-bit.

    Args:
        path: Checkpoint file (written atomically).
        model: The model.
        optimizer: The optimiser.
        scheduler: The learning-rate schedule.
        generator: The shuffling generator.
        state: Run progress (see :func:`_fresh_state`).
        resume_keys: Config fields a resumed run must share (``_RESUME_KEYS``).
        n_train: Number of training graphs.
        target_mean: Training-target mean.
        target_std: Training-target standard deviation.
    """
    _save_atomic(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(generator),
            "state": state,
            "config": resume_keys,
            "n_train": n_train,
            "target_mean": target_mean,
            "target_std": target_std,
        },
        path,
    )


def _resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    resume_keys: dict[str, Any],
    n_train: int,
) -> dict[str, Any]:
    """Restore model, optimiser, schedule and random generators from a checkpoint.

    Args:
        path: An existing checkpoint written by :func:`_save_checkpoint`.
        model: The model, loaded in place.
        optimizer: The optimiser, loaded in place.
        scheduler: The learning-rate schedule, loaded in place.
        generator: The shuffling generator, loaded in place.
        resume_keys: Config fields of this run (``_RESUME_KEYS``).
        n_train: Number of training graphs of this run.

    Returns:
        The saved run progress (see :func:`_fresh_state`).

    Raises:
        ValueError: If the checkpoint was written with another configuration or
            training-set size.
    """
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest.
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved["config"] != resume_keys or saved["n_train"] != n_train:
        raise ValueError(
            f"checkpoint {path} was written with another configuration or training set: "
            f"{saved['config']} (n_train={saved['n_train']}) vs {resume_keys} "
            f"(n_train={n_train})"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_state(saved["rng"], generator)
    return saved["state"]


# ----------------------------------------------------------------------------- API


def train(
    model: nn.Module,
    train_graphs: Sequence[Data],
    val_graphs: Sequence[Data],
    test_graphs: Sequence[Data] | None = None,
    config: TrainConfig | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a model with early stopping on the validation MAE.

    AdamW with a one-cycle learning-rate schedule (stepped every batch; peak
    ``config.lr``), targets standardised with the training mean/std, early
    stopping after ``patience`` epochs without a better validation MAE, and the
    best-validation weights restored at the end.

    Args:
        model: A :class:`fusion.models.CrystalModel` (or any module mapping a batch
            to ``[B]`` or ``[B, 4]``). Moved to the chosen device, trained in place.
        train_graphs: Training graphs (``y`` set).
        val_graphs: Validation graphs (``y`` set), used for early stopping.
        test_graphs: Optional test graphs, scored once with the restored model.
        config: Hyper-parameters; defaults to ``TrainConfig()``.
        callback: Called as ``callback(epoch, record)`` after each epoch (and its
            checkpoint); an exception raised there stops training, and a later call
            with the same checkpoint path resumes.

    Returns:
        The :class:`TrainResult`.

    Raises:
        ValueError: On an empty or target-less training/validation set, an unknown
            loss, or a checkpoint written with a different configuration.
    """
    t_start = time.perf_counter()
    cfg = config or TrainConfig()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if len(train_graphs) == 0 or len(val_graphs) == 0:
        raise ValueError("training and validation sets must be non-empty")
    device = resolve_device(cfg.device)
    loss_kind = _resolve_loss(cfg.loss, model)
    seed_everything(cfg.seed)

    y_train, y_val = _targets(train_graphs), _targets(val_graphs)
    if not (np.isfinite(y_train).all() and np.isfinite(y_val).all()):
        raise ValueError("training and validation graphs need finite targets (graph.y)")
    mean, std = _standardisation(y_train)

    model.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = GraphLoader(train_graphs, cfg.batch_size, True, generator, device)
    eval_bs = max(cfg.batch_size, 256)  # eval mode: batch size does not change outputs
    val_loader = GraphLoader(val_graphs, eval_bs, device=device)
    y_mean = torch.tensor(mean, device=device)
    y_std = torch.tensor(std, device=device)

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * len(train_loader)
    )

    state = _fresh_state(model)
    ckpt = Path(cfg.checkpoint_path) if cfg.checkpoint_path is not None else None
    resume_keys = {k: asdict(cfg)[k] for k in _RESUME_KEYS}
    if ckpt is not None and ckpt.exists():
        state = _resume(ckpt, model, optimizer, scheduler, generator, resume_keys, len(train_graphs))

    # Subnormals flushed: several times faster on CPU, same results (see denormals_flushed).
    with denormals_flushed(cfg.flush_denormals):
        bar = tqdm(
            total=cfg.epochs,
            initial=state["epoch"],
            desc="epochs",
            unit="ep",
            disable=not cfg.progress,
            leave=False,
        )
        try:
            while state["epoch"] < cfg.epochs and not state["stopped"]:
                t0 = time.perf_counter()
                train_loss = _train_epoch(
                    model, train_loader, optimizer, scheduler, loss_kind, y_mean, y_std, cfg.evidential_coeff
                )
                train_seconds = time.perf_counter() - t0
                val_mae = _mae(model, val_loader, y_val, mean, std)
                _record_validation(state, model, val_mae, cfg.patience)
                record = {
                    "epoch": state["epoch"],
                    "train_loss": train_loss,
                    "val_mae": val_mae,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "train_seconds": train_seconds,
                }
                state["history"].append(record)
                if ckpt is not None:
                    _save_checkpoint(
                        ckpt,
                        model,
                        optimizer,
                        scheduler,
                        generator,
                        state,
                        resume_keys,
                        len(train_graphs),
                        mean,
                        std,
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.4f}", val_mae=f"{val_mae:.4g}")
                if callback is not None:
                    callback(state["epoch"], record)
        finally:
            bar.close()

        model.load_state_dict(state["best_state"])
        test_mae = None
        if test_graphs is not None and len(test_graphs) > 0:
            test_loader = GraphLoader(test_graphs, eval_bs, device=device)
            test_mae = _mae(model, test_loader, _targets(test_graphs), mean, std)
    history = copy.deepcopy(state["history"])
    seconds_trained = sum(h["train_seconds"] for h in history)
    return TrainResult(
        model=model,
        val_mae=float(state["best_val"]),
        test_mae=test_mae,
        epochs_run=int(state["epoch"]),
        best_epoch=int(state["best_epoch"]),
        seconds=time.perf_counter() - t_start,
        history=history,
        target_mean=mean,
        target_std=std,
        graphs_per_second=len(train_graphs) * len(history) / max(seconds_trained, 1e-12),
    )


def predict(
    model: nn.Module,
    graphs: Sequence[Data],
    target_mean: float,
    target_std: float,
    batch_size: int = 256,
) -> np.ndarray:
    """Predict in target units.

    Args:
        model: A trained model (its device is used).
        graphs: Graphs to predict.
        target_mean: ``TrainResult.target_mean``.
        target_std: ``TrainResult.target_std``.
        batch_size: Graphs per batch. Defaults to 256.

    Returns:
        ``[N]`` predictions for a scalar head; ``[N, 4]`` columns
        ``(gamma, v, alpha, beta)`` for an evidential head, with ``gamma`` in target
        units and ``beta`` scaled by ``std**2`` (so that ``beta / (alpha - 1)`` is a
        variance in target units); ``v`` and ``alpha`` are unit-free.
    """
    if len(graphs) == 0:
        return np.zeros((0,), dtype=np.float64)
    device = next(model.parameters()).device
    with denormals_flushed():
        out = _raw_outputs(model, GraphLoader(graphs, batch_size, device=device)).double().numpy()
    if out.ndim == 1:
        return out * target_std + target_mean
    out = out.copy()
    out[:, 0] = out[:, 0] * target_std + target_mean
    out[:, 3] = out[:, 3] * target_std**2
    return out
