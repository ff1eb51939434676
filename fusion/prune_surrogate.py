"""The surrogate step of a prune: train the evidential model on the pool once, score every record.

:func:`surrogate_scores` trains (or reuses from the working folder) the
surrogate on a seeded 90 % of the pool, early-stopped on the other 10 %
(:func:`surrogate_split`), within :func:`surrogate_epochs` epochs (``--max-steps``
caps the optimiser steps), and returns the pool's uncertainties ``U``,
``u_ale``, ``u_epi`` with the surrogate's quality beside the median predictor's.
The graphs it trains on come from :func:`fusion.prune_steps.compute_graphs`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fusion.data import CrystalDataset
from fusion.prune_cache import WorkDir
from fusion.prune_options import resolve_device
from fusion.prune_steps import Digest, Workers, cached, compute_graphs, graph_parts

#: Held-out fraction of the pool for the surrogate's early stopping.
VAL_FRACTION = 0.1


def surrogate_split(n: int, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation positions of :func:`fusion.uncertainty.train_surrogate`'s hold-out.

    Mirrors that function's split (a test checks that they agree), so that the
    median predictor is scored on the very records the surrogate is validated on.

    Args:
        n: Pool size, at least 2.
        seed: The surrogate's seed.
        val_fraction: Held-out fraction. Defaults to 0.1.

    Returns:
        ``(train, val)``: sorted positions in the pool.
    """
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def step_cap(
    atoms_per_graph: float, batch_size: int, max_steps: int | None, max_atom_steps: int | None
) -> tuple[int | None, str | None]:
    """The surrogate's optimiser-step cap and the option that sets it (``None``: no cap).

    Args:
        atoms_per_graph: Mean atoms of a training cell.
        batch_size: Batch size (graphs).
        max_steps: ``--max-steps``; None or 0: no cap.
        max_atom_steps: ``--max-atom-steps``, atoms through the model summed
            over the steps (a step of ``batch_size`` cells of
            ``atoms_per_graph`` atoms counts their product); None or 0: no cap.

    Example:
        >>> step_cap(5.0, 64, 3_000, 2_500_000)  # 320 atoms a step: the step cap is lower
        (3000, '--max-steps')
        >>> step_cap(94.0, 64, 3_000, 2_500_000)  # 6,016 atoms a step
        (415, '--max-atom-steps')
    """
    caps = []
    if max_steps:
        caps.append((int(max_steps), "--max-steps"))
    if max_atom_steps:
        caps.append(
            (max(1, int(max_atom_steps // (batch_size * max(atoms_per_graph, 1.0)))), "--max-atom-steps")
        )
    return min(caps) if caps else (None, None)


def surrogate_epochs(n: int, epochs: int, batch_size: int, max_steps: int | None, seed: int = 0) -> int:
    """The surrogate's epoch limit: ``epochs``, or fewer so that it takes at most ``max_steps`` optimiser steps.

    A large pool has many steps per epoch and needs fewer epochs; capping the
    steps keeps the surrogate's cost from growing with the pool beyond
    ``max_steps`` batches (plus its validation passes). At least one epoch.

    Args:
        n: Records of the pool (the surrogate trains on its training part, :func:`surrogate_split`).
        epochs: Maximum epochs (``--epochs``).
        batch_size: Batch size (graphs).
        max_steps: Maximum optimiser steps (:func:`step_cap`); None or 0: no cap.
        seed: The surrogate's seed (it fixes the split, hence the size of the training part).

    Example:
        >>> surrogate_epochs(2_000, 100, 64, 3_000)  # 1,800 training records: 29 steps an epoch
        100
        >>> surrogate_epochs(10_000, 100, 64, 3_000)  # 9,000: 141 steps an epoch
        21
    """
    if not max_steps:
        return int(epochs)
    per_epoch = math.ceil(len(surrogate_split(n, seed)[0]) / batch_size)
    return max(1, min(int(epochs), int(max_steps) // per_epoch))


def surrogate_scores(
    ds: CrystalDataset,
    y: np.ndarray,
    *,
    model: str,
    size: str,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    device: str,
    max_steps: int | None,
    max_atom_steps: int | None,
    lam: float,
    aleatoric_sign: int,
    seed: int,
    pool: Workers,
    workdir: WorkDir | None,
    digest: Digest,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Train the evidential surrogate once and score the pool: ``(U, u_ale, u_epi, quality)``.

    The working folder holds the raw uncertainties ``u_ale`` and ``u_epi``
    (independent of Lambda and s), the trainer's numbers and the weights; the
    graphs are only built (or loaded) when the surrogate has to be trained.

    Args:
        ds: The checked dataset.
        y: Its targets (float64).
        model: Surrogate architecture.
        size: Surrogate size preset.
        epochs: Maximum epochs.
        batch_size: Batch size (graphs).
        lr: Peak learning rate.
        patience: Early-stopping patience (epochs).
        device: Device option (resolved with :func:`fusion.prune_options.resolve_device`).
        max_steps: Maximum optimiser steps (:func:`step_cap`); None or 0: no cap.
        max_atom_steps: Maximum atoms through the model summed over the
            steps (:func:`step_cap`); None or 0: no cap.
        lam: Weight Lambda of the epistemic term of ``U``.
        aleatoric_sign: Sign s of the aleatoric term of ``U``.
        seed: The surrogate's seed.
        pool: The run's workers.
        workdir: The working folder, or None.
        digest: The dataset's digests.
        progress: Show progress bars.

    Returns:
        ``U``, ``u_ale``, ``u_epi`` (one per record) and the surrogate's
        quality (:attr:`fusion.prune_result.PruneResult.surrogate`).
    """
    from fusion import prune_cache, prune_files, uncertainty
    from fusion.stats import median_predictor_mae
    from fusion.train import TrainConfig

    dev = resolve_device(device)
    tr, val = surrogate_split(len(ds), seed, VAL_FRACTION)
    atoms = float(np.mean([len(ds.structures[i]) for i in tr]))
    cap, capped_by = step_cap(atoms, batch_size, max_steps, max_atom_steps)
    requested, epochs = epochs, surrogate_epochs(len(ds), epochs, batch_size, cap, seed)
    fresh: dict[str, np.ndarray] = {}

    def train() -> dict[str, Any]:
        graphs = compute_graphs(ds, pool, workdir, digest, progress)
        pool.release()  # the surrogate trains in this process: the workers' memory is free
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            seed=seed,
            device=dev,
            progress=progress,
        )
        net, result = uncertainty.train_surrogate(
            graphs, model, size, config=config, val_fraction=VAL_FRACTION, seed=seed
        )
        u_ale, u_epi, U = uncertainty.score_pool(net, result, graphs, lam, aleatoric_sign)
        fresh["U"] = np.asarray(U)
        state = net.state_dict() if hasattr(net, "state_dict") else None
        return {
            "u_ale": np.asarray(u_ale, dtype=np.float64),
            "u_epi": np.asarray(u_epi, dtype=np.float64),
            "train": {
                "val_mae": float(result.val_mae),
                "epochs_run": int(result.epochs_run),
                "best_epoch": int(result.best_epoch),
                "seconds": float(result.seconds),
                "target_mean": float(getattr(result, "target_mean", 0.0)),
                "target_std": float(getattr(result, "target_std", 1.0)),
            },
            "state_dict": None if state is None else {k: v.detach().cpu() for k, v in state.items()},
        }

    art = cached(
        workdir,
        "surrogate",
        lambda: {
            "graphs": prune_cache.cache_key("graphs", graph_parts(digest)),
            "model": model,
            "size": size,
            "epochs": epochs,
            "patience": patience,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "val_fraction": VAL_FRACTION,
            "device": dev,
        },
        train,
        prune_files.save_surrogate,
        prune_files.load_surrogate,
    )
    u_ale, u_epi = art["u_ale"], art["u_epi"]
    reused = "U" not in fresh
    if reused and workdir is not None:
        workdir.record.setdefault(
            "graphs", {"status": "not needed (surrogate reused)", "path": None, "key": None}
        )
    U = uncertainty.uncertainty_score(u_ale, u_epi, lam, aleatoric_sign) if reused else fresh["U"]
    t = art["train"]
    quality = {
        "model": model,
        "size": size,
        "val_mae": float(t["val_mae"]),
        "median_val_mae": median_predictor_mae(y[tr], y[val]),
        "n_train": len(tr),
        "n_val": len(val),
        "epochs_run": int(t["epochs_run"]),
        "max_epochs": epochs,
        "max_steps": max_steps or None,
        "max_atom_steps": max_atom_steps or None,
        "atoms_per_cell": round(atoms, 1),
        "step_cap": cap,
        "capped": epochs < requested,
        "capped_by": capped_by if epochs < requested else None,
        "best_epoch": int(t["best_epoch"]),
        "stopped_early": int(t["epochs_run"]) < epochs,
        "patience": patience,
        "device": dev,
        "seconds": round(float(t["seconds"]), 2),
        "reused": reused,
    }
    return np.asarray(U), np.asarray(u_ale), np.asarray(u_epi), quality
