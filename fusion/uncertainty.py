"""Evidential uncertainty scores of the pool (METHOD.md step 2).

A surrogate GNN with a Deep Evidential Regression head (Amini et al., NeurIPS
2020; :class:`fusion.models.heads.EvidentialHead`) predicts, per crystal, the
Normal-Inverse-Gamma parameters ``(gamma, v, alpha, beta)``. From them:

- aleatoric uncertainty ``U_ale = beta / (alpha - 1)`` (expected data noise),
- epistemic uncertainty ``U_epi = beta / (v (alpha - 1))`` (variance of the mean),
- score ``U = sigmoid(Lambda * U_epi + s * U_ale)``.

Sign of the aleatoric term: the FUSION paper and its public code both compute
``U = sigmoid(Lambda * U_epi - U_ale)`` (``s = -1``: noisy samples get a LOW U
and are pruned first). ``s = +1`` (the opposite sign, quiet samples pruned
first) is this companion's ablation, not a variant of the paper. Both are
explicit parameters; the default ``s = -1``, ``Lambda = 0`` is the paper's
formula in its "cross-model" setting. An earlier version of this companion
attributed ``s = +1`` to the public code: that was wrong.

Units: the variances scale with the square of the target's unit, and a sigmoid
of ``(meV/atom)^2`` saturates. :func:`evidential_uncertainties` therefore takes
the trainer's ``target_std`` and returns uncertainties in standardised units
(the units the surrogate was trained in).

The surrogate is trained on the pool itself (METHOD.md): its uncertainties are
in-sample, which is what the paper's scores are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit


def evidential_uncertainties(nig: np.ndarray, target_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Aleatoric and epistemic uncertainties from NIG parameters.

    Args:
        nig: ``[N, 4]`` columns ``(gamma, v, alpha, beta)``, with ``v > 0``,
            ``alpha > 1``, ``beta > 0``.
        target_std: Divide both by ``target_std**2`` (the trainer's target
            standard deviation when ``nig`` is in target units), giving
            standardised units. Defaults to 1 (no scaling).

    Returns:
        ``(u_ale, u_epi)``: ``beta / (alpha - 1)`` and ``beta / (v (alpha - 1))``,
        float64 ``[N]``.

    Raises:
        ValueError: If ``nig`` is not ``[N, 4]`` or violates the constraints.
    """
    nig = np.asarray(nig, dtype=np.float64)
    if nig.ndim != 2 or nig.shape[1] != 4:
        raise ValueError(f"expected [N, 4] NIG parameters, got shape {nig.shape}")
    _, v, alpha, beta = nig.T
    if (v <= 0).any() or (alpha <= 1).any() or (beta <= 0).any():
        raise ValueError("NIG parameters need v > 0, alpha > 1, beta > 0")
    scale = 1.0 / float(target_std) ** 2
    u_ale = beta / (alpha - 1.0) * scale
    u_epi = beta / (v * (alpha - 1.0)) * scale
    return u_ale, u_epi


def uncertainty_score(
    u_ale: np.ndarray, u_epi: np.ndarray, lam: float = 0.0, aleatoric_sign: int = -1
) -> np.ndarray:
    """FUSION's uncertainty score ``U = sigmoid(lam * u_epi + aleatoric_sign * u_ale)``.

    The default ``aleatoric_sign = -1`` is the paper's formula
    ``sigmoid(Lambda * U_epi - U_ale)``, which its public code also computes;
    ``+1`` is the opposite sign (an ablation). With
    ``lam = 0`` (the paper's cross-model setting) only the aleatoric term
    counts. A larger ``lam`` raises ``U`` most for samples with large
    epistemic uncertainty.

    Args:
        u_ale: Aleatoric uncertainties ``[N]``.
        u_epi: Epistemic uncertainties ``[N]``.
        lam: Weight ``Lambda`` of the epistemic term. Defaults to 0.
        aleatoric_sign: ``-1`` (the paper's formula and public code, default) or ``+1`` (ablation).

    Returns:
        ``U`` in ``(0, 1)`` ``[N]``. In float64 the sigmoid rounds to exactly 1
        for arguments above about 37 (and to 0 below about -745), so a large
        ``lam`` times a large ``u_epi`` ties those samples at ``U = 1``.

    Raises:
        ValueError: If ``aleatoric_sign`` is not ``±1``.
    """
    if aleatoric_sign not in (-1, 1):
        raise ValueError(f"aleatoric_sign must be -1 or +1, got {aleatoric_sign}")
    u_ale = np.asarray(u_ale, dtype=np.float64)
    u_epi = np.asarray(u_epi, dtype=np.float64)
    return expit(lam * u_epi + aleatoric_sign * u_ale)


def train_surrogate(
    graphs_pool: Sequence[Any],
    model_name: str = "cgcnn",
    size: str = "cpu",
    config: Any = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Train an evidential surrogate on the pool.

    A seeded ``val_fraction`` of the pool is held out for early stopping; the
    rest trains the model. The returned model then scores the whole pool.

    Args:
        graphs_pool: Graphs of the pool (with targets ``y``).
        model_name: Registered architecture. Defaults to ``"cgcnn"`` (the paper
            uses ALIGNN; CGCNN is the cheap CPU default).
        size: ``"cpu"`` (default) or ``"paper"``.
        config: A :class:`fusion.train.TrainConfig`; defaults to
            ``TrainConfig(seed=seed)``.
        val_fraction: Held-out fraction of the pool. Defaults to 0.1.
        seed: Seed of the hold-out split and of the model. Defaults to 0.

    Returns:
        ``(model, result)``: the trained model and the trainer's result
        (``result.target_mean``, ``result.target_std``, ...).

    Raises:
        ValueError: If the pool has fewer than 2 graphs.
    """
    import torch

    from fusion.models import build_model
    from fusion.train import TrainConfig, train

    graphs_pool = list(graphs_pool)
    n = len(graphs_pool)
    if n < 2:
        raise ValueError(f"need at least 2 graphs to train a surrogate, got {n}")
    if config is None:
        config = TrainConfig(seed=seed)
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    val = [graphs_pool[i] for i in np.sort(perm[:n_val])]
    tr = [graphs_pool[i] for i in np.sort(perm[n_val:])]
    torch.manual_seed(seed)  # model initialisation
    model = build_model(model_name, size=size, head="evidential")
    result = train(model, tr, val, config=config)
    return result.model, result


def score_pool(
    model: Any,
    result: Any,
    graphs: Sequence[Any],
    lam: float = 0.0,
    aleatoric_sign: int = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict NIG parameters of ``graphs`` and return ``(u_ale, u_epi, U)``.

    Args:
        model: Trained evidential model.
        result: The trainer's result (for ``target_mean`` and ``target_std``).
        graphs: Graphs to score.
        lam: ``Lambda``. Defaults to 0.
        aleatoric_sign: Sign of the aleatoric term. Defaults to -1 (the paper's formula and code).

    Returns:
        Standardised ``u_ale``, ``u_epi`` and the score ``U``.
    """
    from fusion.train import predict

    nig = np.asarray(predict(model, list(graphs), result.target_mean, result.target_std))
    u_ale, u_epi = evidential_uncertainties(nig, target_std=float(result.target_std))
    return u_ale, u_epi, uncertainty_score(u_ale, u_epi, lam, aleatoric_sign)


def save_uncertainties(
    path: str | Path, ids: Sequence[str], u_ale: np.ndarray, u_epi: np.ndarray, U: np.ndarray
) -> Path:
    """Write per-record uncertainties as CSV (columns id, u_ale, u_epi, U).

    Args:
        path: Output CSV.
        ids: Record ids.
        u_ale: Aleatoric uncertainties.
        u_epi: Epistemic uncertainties.
        U: Scores.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": list(ids), "u_ale": u_ale, "u_epi": u_epi, "U": U}).to_csv(
        path, index=False, float_format="%.10g"
    )
    return path


def load_uncertainties(path: str | Path) -> pd.DataFrame:
    """Read a CSV written by :func:`save_uncertainties` (ids as strings)."""
    return pd.read_csv(path, dtype={"id": str})
