"""Stage ``uncertainty``: an evidential surrogate per seed scores the prunable records.

The surrogate trains on the records a method may prune (the training part
under the study's fixed-validation protocol; train + val under the paper's,
see :func:`fusion.stages.common.prunable_ids`) with a seeded internal hold-out
for model selection, then predicts the Normal-Inverse-Gamma parameters of every
prunable record. The stage writes ``u_ale`` and ``u_epi`` (standardised units)
and the score ``U`` under both signs of the aleatoric term
(:func:`fusion.uncertainty.uncertainty_score`): ``U_neg`` (s = -1, the paper's
formula and its public code) and ``U_pos`` (s = +1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion import paths
from fusion.stages.common import (
    load_graph_cache,
    load_split,
    load_tuned,
    prunable_ids,
    train_config,
    write_csv,
)


def surrogate_frame(
    graphs: Sequence[Any],
    ids: Sequence[str],
    seed: int,
    model: str = "cgcnn",
    size: str = "cpu",
    epochs: int = 50,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int | None = None,
    lam: float = 0.0,
    val_fraction: float = 0.1,
    num_threads: int | None = 1,
) -> tuple[pd.DataFrame, float]:
    """Train the evidential surrogate on ``graphs`` and score them.

    Returns:
        ``(frame, val_mae)``: columns ``id``, ``u_ale``, ``u_epi``, ``U_neg``,
        ``U_pos``; and the surrogate's hold-out MAE (target units).
    """
    from fusion.uncertainty import score_pool, train_surrogate, uncertainty_score

    cfg = train_config(epochs, batch_size, lr, patience or epochs, seed, num_threads)
    net, result = train_surrogate(graphs, model, size, config=cfg, val_fraction=val_fraction, seed=seed)
    u_ale, u_epi, _ = score_pool(net, result, graphs, lam, -1)
    frame = pd.DataFrame(
        {
            "id": list(ids),
            "u_ale": u_ale,
            "u_epi": u_epi,
            "U_neg": uncertainty_score(u_ale, u_epi, lam, -1),
            "U_pos": uncertainty_score(u_ale, u_epi, lam, +1),
        }
    )
    return frame, float(result.val_mae)


def resolve(key: str, epochs: int | str, lr: float | str) -> tuple[int, float]:
    """Epochs and learning rate, ``"tuned"`` meaning the ``tune`` stage's choice for ``key``."""
    tuned = load_tuned(key) if "tuned" in (epochs, lr) else {}
    return int(tuned["epochs"] if epochs == "tuned" else epochs), float(tuned["lr"] if lr == "tuned" else lr)


def run(
    key: str,
    seeds: Sequence[int],
    val_protocol: str = "fixed",
    model: str = "cgcnn",
    size: str = "cpu",
    epochs: int | str = "tuned",
    batch_size: int = 64,
    lr: float | str = "tuned",
    patience: int | None = None,
    lam: float = 0.0,
    val_fraction: float = 0.1,
    num_threads: int | None = 1,
) -> pd.DataFrame:
    """Train one surrogate per seed on that seed's prunable records and write their scores.

    Args:
        key: Dataset key.
        seeds: Split seeds.
        val_protocol: ``"fixed"`` or ``"pruned"`` (which records are prunable).
        model: Surrogate architecture. Defaults to ``"cgcnn"`` (the paper: ALIGNN).
        size: Model size preset. Defaults to ``"cpu"``.
        epochs: Epochs, or ``"tuned"`` (the ``tune`` stage's choice).
        batch_size: Batch size. Defaults to 64.
        lr: Peak learning rate, or ``"tuned"``.
        patience: Early-stopping patience in epochs; None = no early stopping.
        lam: ``Lambda``, weight of the epistemic term. Defaults to 0.
        val_fraction: Internal hold-out share for model selection. Defaults to 0.1.
        num_threads: Torch threads. Defaults to 1.

    Returns:
        One row per seed: pool size, surrogate hold-out MAE, score statistics.
    """
    n_epochs, peak_lr = resolve(key, epochs, lr)
    graphs = load_graph_cache(key)
    rows = []
    for seed in seeds:
        pool = prunable_ids(load_split(key, int(seed)), val_protocol)
        frame, val_mae = surrogate_frame(
            [graphs[i] for i in pool], pool, int(seed), model, size, n_epochs, batch_size, peak_lr,
            patience, lam, val_fraction, num_threads,
        )  # fmt: skip
        write_csv(frame, paths.uncertainty_path(key, int(seed)))
        rows.append(
            {
                "seed": int(seed),
                "n_pool": len(pool),
                "epochs": n_epochs,
                "lr": peak_lr,
                "surrogate_val_mae": val_mae,
                "u_ale_median": float(np.median(frame["u_ale"])),
                "u_epi_median": float(np.median(frame["u_epi"])),
                "U_neg_std": float(frame["U_neg"].std()),
            }
        )
    return pd.DataFrame(rows)
