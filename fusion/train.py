"""Trainer: AdamW, one-cycle schedule, early stopping, resumable checkpoints.

Usage::

    from fusion.train import TrainConfig, train, predict, seed_everything
    seed_everything(0)                      # before building the model: seeds its init
    model = build_model("cgcnn", size="cpu")
    result = train(model, train_graphs, val_graphs, test_graphs, TrainConfig(epochs=100))
    preds = predict(result.model, graphs, result.target_mean, result.target_std)

Targets are standardised with the training mean and standard deviation; losses
are computed in standardised units, MAEs in target units. Batches come from
:class:`fusion.batching.GraphLoader` (index-gathered, not collated graph by graph);
checkpoints are written and resumed by :mod:`fusion.checkpoint`.

Speed: training and prediction run with float32 subnormals flushed to zero on
the CPU (:func:`denormals_flushed`). Gaussian distance expansions underflow into
subnormals, and a matrix product that reads them runs ~30x slower.

Layout: :func:`train` reads as its steps (:func:`_setup`, :func:`_epoch`, the
best checkpoint restored, the test scored); batching is :mod:`fusion.batching`,
checkpoints :mod:`fusion.checkpoint`. The module stays above 400 lines because
the configuration, the result and the steps belong together.

Reproducibility: the same seed, data and model initialisation give the same
MAE on CPU (shuffling uses its own seeded generator). With ``checkpoint_path``
set, a checkpoint is written after every epoch, and a run that was interrupted
resumes from it and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
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
from torch_geometric.data import Data
from tqdm.auto import tqdm

from fusion import checkpoint
from fusion.batching import GraphLoader
from fusion.models.heads import evidential_loss, point_prediction

LOSSES = ("auto", "l1", "mse", "evidential")


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
    ``tests/test_train.py`` checks it on 64 real perovskites). A subnormal is more
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


def eval_batch_size(train_batch_size: int, device: torch.device) -> int:
    """Graphs per batch when only predicting (validation, test, :func:`predict`).

    In eval mode a graph's output does not depend on the other graphs of its
    batch (batch norm uses its running statistics), so this is a speed choice.
    On CPU the training batch size is fastest: with 256 graphs per batch the
    edge tensors outgrow the cache, and a phonons validation pass of CGCNN took
    1.6x longer (jdft2d 2.4x, dielectric 1.2x; 1 thread). Outputs were
    bit-identical for 9 of the 11 architectures and within float32 rounding
    (<= 1.2e-7 in standardised units) for CrystalFramer and DeeperGATGNN. A GPU
    gets at least 256.

    Args:
        train_batch_size: Graphs per training batch.
        device: Where the model runs.

    Returns:
        The batch size.

    Example:
        >>> eval_batch_size(64, torch.device("cpu")), eval_batch_size(64, torch.device("cuda"))
        (64, 256)
    """
    return train_batch_size if device.type == "cpu" else max(train_batch_size, 256)


def _mae(model: nn.Module, loader: GraphLoader, y: np.ndarray, mean: float, std: float) -> float:
    point = point_prediction(_raw_outputs(model, loader)).double().numpy() * std + mean
    return float(np.mean(np.abs(point - y)))


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


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


# ----------------------------------------------------------------------------- API


@dataclass
class _Run:
    """What one training run works with, set up once by :func:`_setup`."""

    model: nn.Module
    device: torch.device
    loss_kind: str
    mean: float
    std: float
    y_mean: Tensor
    y_std: Tensor
    y_val: np.ndarray
    generator: torch.Generator
    train_loader: GraphLoader
    val_loader: GraphLoader
    eval_batch_size: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ckpt: Path | None
    resume_keys: dict[str, Any]
    n_train: int


def _setup(
    model: nn.Module, train_graphs: Sequence[Data], val_graphs: Sequence[Data], cfg: TrainConfig
) -> _Run:
    """Check the data, seed, standardise the targets and build loaders, optimiser and schedule."""
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
    eval_bs = eval_batch_size(cfg.batch_size, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _Run(
        model=model,
        device=device,
        loss_kind=loss_kind,
        mean=mean,
        std=std,
        y_mean=torch.tensor(mean, device=device),
        y_std=torch.tensor(std, device=device),
        y_val=y_val,
        generator=generator,
        train_loader=train_loader,
        val_loader=GraphLoader(val_graphs, eval_bs, device=device),
        eval_batch_size=eval_bs,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * len(train_loader)
        ),
        ckpt=Path(cfg.checkpoint_path) if cfg.checkpoint_path is not None else None,
        resume_keys={k: asdict(cfg)[k] for k in checkpoint.RESUME_KEYS},
        n_train=len(train_graphs),
    )


def _epoch(run: _Run, state: dict[str, Any], cfg: TrainConfig) -> dict[str, float]:
    """One epoch: train, validate, record it in ``state`` and write the checkpoint; returns the record."""
    t0 = time.perf_counter()
    train_loss = _train_epoch(
        run.model, run.train_loader, run.optimizer, run.scheduler, run.loss_kind, run.y_mean, run.y_std,
        cfg.evidential_coeff,
    )  # fmt: skip
    train_seconds = time.perf_counter() - t0
    val_mae = _mae(run.model, run.val_loader, run.y_val, run.mean, run.std)
    _record_validation(state, run.model, val_mae, cfg.patience)
    record = {
        "epoch": state["epoch"],
        "train_loss": train_loss,
        "val_mae": val_mae,
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "train_seconds": train_seconds,
    }
    state["history"].append(record)
    if run.ckpt is not None:
        checkpoint.save(
            run.ckpt, run.model, run.optimizer, run.scheduler, run.generator, state, run.resume_keys,
            run.n_train, run.mean, run.std,
        )  # fmt: skip
    return record


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
    run = _setup(model, train_graphs, val_graphs, cfg)
    state = _fresh_state(model)
    if run.ckpt is not None and run.ckpt.exists():
        state = checkpoint.resume(
            run.ckpt, model, run.optimizer, run.scheduler, run.generator, run.resume_keys, run.n_train
        )

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
                record = _epoch(run, state, cfg)
                bar.update(1)
                bar.set_postfix(loss=f"{record['train_loss']:.4f}", val_mae=f"{record['val_mae']:.4g}")
                if callback is not None:
                    callback(state["epoch"], record)
        finally:
            bar.close()

        model.load_state_dict(state["best_state"])
        test_mae = None
        if test_graphs is not None and len(test_graphs) > 0:
            test_loader = GraphLoader(test_graphs, run.eval_batch_size, device=run.device)
            test_mae = _mae(model, test_loader, _targets(test_graphs), run.mean, run.std)
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
        target_mean=run.mean,
        target_std=run.std,
        graphs_per_second=len(train_graphs) * len(history) / max(seconds_trained, 1e-12),
    )


def predict(
    model: nn.Module,
    graphs: Sequence[Data],
    target_mean: float,
    target_std: float,
    batch_size: int | None = None,
) -> np.ndarray:
    """Predict in target units.

    Args:
        model: A trained model (its device is used).
        graphs: Graphs to predict.
        target_mean: ``TrainResult.target_mean``.
        target_std: ``TrainResult.target_std``.
        batch_size: Graphs per batch. Defaults to None: :func:`eval_batch_size`
            of 64 on the model's device.

    Returns:
        ``[N]`` predictions for a scalar head; ``[N, 4]`` columns
        ``(gamma, v, alpha, beta)`` for an evidential head, with ``gamma`` in target
        units and ``beta`` scaled by ``std**2`` (so that ``beta / (alpha - 1)`` is a
        variance in target units); ``v`` and ``alpha`` are unit-free.
    """
    if len(graphs) == 0:
        return np.zeros((0,), dtype=np.float64)
    device = next(model.parameters()).device
    batch_size = batch_size or eval_batch_size(64, device)
    with denormals_flushed():
        out = _raw_outputs(model, GraphLoader(graphs, batch_size, device=device)).double().numpy()
    if out.ndim == 1:
        return out * target_std + target_mean
    out = out.copy()
    out[:, 0] = out[:, 0] * target_std + target_mean
    out[:, 3] = out[:, 3] * target_std**2
    return out
