"""Prune a user's crystal dataset from Python: the engine behind ``fusion prune``.

Example::

    from fusion.prune_api import prune

    result = prune("my_cifs/", "band_gap", ratios=[0.2, 0.4], method="fusion", epochs=50)
    result.scores                 # DataFrame by id: target, U, W, I, d_nn, u_ale, u_epi
    result.kept_ids(0.4)          # ids kept when 40 % are removed
    result.removed_ids(0.4)       # the removed ids, first removed first
    result.surrogate              # validation MAE against the median predictor's, epochs, device
    result.warnings               # what deserves a look before trusting the selection
    result.write("pruned/")       # kept.csv, removed.csv, scores.csv, summary.json (+ skipped.csv)

Steps, each done once for all ratios: load and check every record
(:func:`fusion.data.collect_user_data`), SOAP fingerprints and nearest-neighbour
distances (methods that use them), graphs and an evidential surrogate (methods
that use ``U``), then one selection per ratio.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.data import CrystalDataset, DataError

#: Selection methods (mirrors :data:`fusion.selection.METHODS`, checked by a test).
METHODS = ("fusion", "random", "uncertainty", "weight", "diversity", "active")
#: Methods that need the surrogate's uncertainty score U.
NEEDS_U = frozenset({"fusion", "uncertainty"})
#: Methods that need SOAP fingerprints.
NEEDS_X = frozenset({"fusion", "weight", "diversity", "active"})
#: Surrogate size presets.
SIZES = ("cpu", "paper")
#: What each method removes first (for ``--help`` and the README).
METHOD_HELP = {
    "fusion": "FUSION: the records of lowest importance I = U / W (low uncertainty, high redundancy)",
    "random": "a seeded random subset (no fingerprints, no surrogate)",
    "uncertainty": "the lowest surrogate uncertainty U (no fingerprints)",
    "weight": "the most redundant: highest W = exp(-gamma d_NN) (no surrogate)",
    "diversity": "all but the k-center-greedy (farthest-point) centres in SOAP space (no surrogate)",
    "active": "all that an ensemble-disagreement active learner never acquired (no surrogate)",
}
#: Warn when U spans less than this over the pool (max - min; U is in (0, 1)).
MIN_U_SPREAD = 0.01
#: Warn when W spans less than this over the pool (max - min; W is in (0, 1]).
MIN_W_SPREAD = 0.01
#: Warn when the KS distance between kept and pool targets exceeds this.
MAX_KS = 0.1
#: Warn when the kept set's top-decile share differs from 0.10 by more than this.
MAX_TOP_DECILE_DEVIATION = 0.05
#: Warn when |kept mean - removed mean| exceeds this many pool standard deviations.
MAX_MEAN_GAP_SD = 0.5
#: Held-out fraction of the pool for the surrogate's early stopping.
VAL_FRACTION = 0.1


class OptionError(ValueError):
    """An option of :func:`prune` (or ``fusion prune``) is out of range or unknown."""


def check_options(
    *,
    ratios: Sequence[float],
    method: str,
    model: str,
    size: str,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    gamma: float,
    n_jobs: int,
    device: str,
    aleatoric_sign: int,
) -> None:
    """Check every option before any data are read.

    Raises:
        OptionError: Naming the first bad option, its value and what is allowed.
    """
    if not ratios:
        raise OptionError("--ratios: give at least one ratio")
    for r in ratios:
        if not (isinstance(r, int | float) and 0.0 <= float(r) < 1.0):
            raise OptionError(f"--ratio must be in [0, 1) (the fraction of records REMOVED), got {r}")
    if len(set(ratios)) != len(ratios):
        raise OptionError(f"--ratios: a ratio is repeated in {list(ratios)}")
    if method not in METHODS:
        raise OptionError(f"--method: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if size not in SIZES:
        raise OptionError(f"--size: unknown preset {size!r}; choose one of {', '.join(SIZES)}")
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--patience", patience)):
        if not isinstance(value, int) or value < 1:
            raise OptionError(f"{name} must be a positive integer, got {value}")
    if not lr > 0:
        raise OptionError(f"--lr must be positive, got {lr}")
    if not (gamma > 0 and np.isfinite(gamma)):
        raise OptionError(f"--gamma must be positive and finite, got {gamma}")
    if not isinstance(n_jobs, int) or (n_jobs < 1 and n_jobs != -1):
        raise OptionError(f"--n-jobs must be a positive integer (or -1 for every core), got {n_jobs}")
    if aleatoric_sign not in (-1, 1):
        raise OptionError(f"--aleatoric-sign must be -1 or 1, got {aleatoric_sign}")
    if method in NEEDS_U:
        from fusion.models import available

        if model not in available():
            raise OptionError(f"--model: unknown model {model!r}; choose one of {', '.join(available())}")
        resolve_device(device)


def resolve_device(device: str) -> str:
    """The torch device the surrogate will train on.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.

    Returns:
        The device's name, e.g. ``"cpu"`` or ``"cuda"``.

    Raises:
        OptionError: For an unknown name or CUDA requested where none is available.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
        return device
    raise OptionError(f"--device: unknown device {device!r}; choose auto, cpu, cuda or cuda:N")


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


def ratio_label(ratio: float) -> str:
    """Short label of a ratio in file names: ``0.4`` -> ``"0.4"``."""
    return f"{ratio:g}"


@dataclass
class PruneResult:
    """Outcome of :func:`prune`.

    Attributes:
        data: What was pruned (a path or a dataset name).
        target: Target name.
        method: Selection method.
        ids: Ids of the valid records, in input order.
        scores: One row per valid record, indexed by id: ``target``, ``U``
            (uncertainty score in (0, 1), NaN unless the method uses it), ``W``
            (redundancy weight in (0, 1]), ``I = U / W``, ``d_nn`` (SOAP
            nearest-neighbour distance, in [0, 2] since fingerprints have unit
            norm; NaN unless the method uses fingerprints), ``u_ale``, ``u_epi``
            (standardised aleatoric and epistemic uncertainties).
        selections: One :class:`fusion.selection.Selection` per ratio.
        skipped: Bad records left out (``--skip-bad``): ``id``, ``reason``.
        surrogate: The surrogate's quality, or None when the method has none:
            ``model``, ``val_mae`` and ``median_val_mae`` (target units, on the
            same held-out records), ``n_train``, ``n_val``, ``epochs_run``,
            ``max_epochs``, ``best_epoch``, ``stopped_early``, ``device``,
            ``seconds``.
        shift: Per ratio, :func:`fusion.stats.target_shift` of the kept set
            (``ks``, ``top_decile_share``, ``kept_mean``, ``pool_mean``) plus
            ``removed_mean`` (None when nothing is removed) and ``pool_std``.
        warnings: Plain-language warnings (tiny score spread, surrogate no
            better than the median, target shift).
        options: The options used.
        seconds: Wall time of :func:`prune`.
    """

    data: str
    target: str
    method: str
    ids: list[str]
    scores: pd.DataFrame
    selections: dict[float, Any]
    skipped: pd.DataFrame
    surrogate: dict[str, Any] | None
    shift: dict[float, dict[str, float | None]]
    warnings: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ratios(self) -> list[float]:
        """The ratios pruned, in the order given."""
        return list(self.selections)

    def kept_ids(self, ratio: float) -> list[str]:
        """Ids kept at ``ratio``, in input order."""
        return list(self.selections[ratio].kept_ids)

    def removed_ids(self, ratio: float) -> list[str]:
        """Ids removed at ``ratio`` (first removed first for the ranking methods)."""
        return list(self.selections[ratio].removed_ids)

    def output_names(self) -> dict[float, tuple[str, str]]:
        """Per ratio, the file names of its kept and removed CSVs.

        One ratio: ``kept.csv`` and ``removed.csv``; several:
        ``kept_<ratio>.csv`` and ``removed_<ratio>.csv`` (e.g. ``kept_0.4.csv``).
        """
        if len(self.selections) == 1:
            return dict.fromkeys(self.selections, ("kept.csv", "removed.csv"))
        return {r: (f"kept_{ratio_label(r)}.csv", f"removed_{ratio_label(r)}.csv") for r in self.selections}

    def summary(self, out_dir: str | Path | None = None) -> dict[str, Any]:
        """The run as a JSON-ready dict (what ``summary.json`` holds).

        Args:
            out_dir: Folder the files were written to, for their paths. Defaults to None.
        """
        names = self.output_names()
        per_ratio = []
        for r, sel in self.selections.items():
            entry: dict[str, Any] = {
                "ratio": r,
                "kept": len(sel.kept_ids),
                "removed": len(sel.removed_ids),
                "epsilon": sel.epsilon,
                **{f"target_{k}": v for k, v in self.shift[r].items()},
            }
            if out_dir is not None:
                entry["kept_csv"] = str(Path(out_dir) / names[r][0])
                entry["removed_csv"] = str(Path(out_dir) / names[r][1])
            per_ratio.append(entry)
        d_nn = self.scores["d_nn"].to_numpy()
        return {
            "data": self.data,
            "target": self.target,
            "method": self.method,
            "n": len(self.ids),
            "skipped": len(self.skipped),
            "skipped_records": self.skipped.to_dict("records"),
            "ratios": per_ratio,
            "surrogate": self.surrogate,
            "d_nn_median": None if np.isnan(d_nn).all() else float(np.nanmedian(d_nn)),
            "warnings": list(self.warnings),
            "options": self.options,
            "seconds": round(self.seconds, 2),
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the outputs into ``out_dir`` (created if needed).

        Files: per ratio the kept and removed CSVs (see :meth:`output_names`;
        columns ``id`` then those of :attr:`scores`), ``scores.csv`` (every
        valid record), ``summary.json`` (:meth:`summary`) and, when records were
        skipped, ``skipped.csv`` (``id``, ``reason``).

        Args:
            out_dir: Output folder.

        Returns:
            The paths written, by name (``kept_0.4`` style keys for several ratios).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for r, (kept_name, removed_name) in self.output_names().items():
            sel = self.selections[r]
            for name, ids in ((kept_name, sel.kept_ids), (removed_name, sel.removed_ids)):
                path = out / name
                self.scores.loc[list(ids)].reset_index().to_csv(path, index=False, float_format="%.8g")
                written[path.stem] = path
        written["scores"] = out / "scores.csv"
        self.scores.reset_index().to_csv(written["scores"], index=False, float_format="%.8g")
        if len(self.skipped):
            written["skipped"] = out / "skipped.csv"
            self.skipped.to_csv(written["skipped"], index=False)
        written["summary"] = out / "summary.json"
        written["summary"].write_text(json.dumps(self.summary(out), indent=2) + "\n")
        return written


def _spread_warnings(U: np.ndarray, W: np.ndarray, d_nn: np.ndarray, method: str, gamma: float) -> list[str]:
    out = []
    if method in NEEDS_U and np.ptp(U) < MIN_U_SPREAD:
        out.append(
            f"the uncertainty score U barely varies (it spans {np.min(U):.4g} to {np.max(U):.4g}): "
            "the surrogate hardly tells the records apart, so "
            + ("the order comes mostly from W" if method == "fusion" else "the order is close to arbitrary")
            + " (try more --epochs, or --lambda > 0 to weigh in the epistemic term)"
        )
    if method in {"fusion", "weight"} and np.ptp(W) < MIN_W_SPREAD:
        out.append(
            f"the redundancy weight W barely varies (it spans {np.min(W):.4g} to {np.max(W):.4g}; "
            f"median d_NN = {np.median(d_nn):.3g}, gamma = {gamma:g}): raise --gamma to about "
            f"{1.0 / max(float(np.median(d_nn)), 1e-12):.3g} (1 / median d_NN) for W to matter"
        )
    return out


def _shift(y: np.ndarray, sel: Any) -> dict[str, float | None]:
    from fusion.stats import target_shift

    mask = sel.kept_mask
    out: dict[str, float | None] = dict(target_shift(y, mask))
    out["removed_mean"] = float(y[~mask].mean()) if (~mask).any() else None
    out["pool_std"] = float(y.std())
    return out


def _shift_warning(ratio: float, s: dict[str, float | None]) -> str | None:
    ks, top = float(s["ks"]), float(s["top_decile_share"])
    gap = 0.0 if s["removed_mean"] is None else abs(float(s["kept_mean"]) - float(s["removed_mean"]))
    sd = float(s.get("pool_std") or 0.0)
    big_gap = sd > 0 and gap > MAX_MEAN_GAP_SD * sd
    if ks <= MAX_KS and abs(top - 0.1) <= MAX_TOP_DECILE_DEVIATION and not big_gap:
        return None
    removed = "n/a" if s["removed_mean"] is None else f"{s['removed_mean']:.4g}"
    return (
        f"ratio {ratio:g}: the kept set's target distribution shifts: mean kept {s['kept_mean']:.4g} vs "
        f"removed {removed} (pool {s['pool_mean']:.4g} +- {sd:.4g}), KS distance {ks:.3f}, "
        f"top-decile share {top:.3f} (0.10 unshifted)"
    )


def prune(
    data: str | Path | CrystalDataset,
    target: str | None = None,
    ratios: float | Sequence[float] = 0.4,
    method: str = "fusion",
    *,
    model: str = "cgcnn",
    size: str = "cpu",
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int = 20,
    device: str = "auto",
    lam: float = 0.0,
    aleatoric_sign: int = -1,
    gamma: float = 0.1,
    compression: str | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    skip_bad: bool = False,
    progress: bool = False,
) -> PruneResult:
    """Prune a crystal dataset at one or several ratios.

    Fingerprints, nearest-neighbour distances and the surrogate are computed
    once and shared by every ratio.

    Args:
        data: A folder of ``<id>.cif`` files with ``id_prop.csv``, an
            ``.extxyz`` file, a ``.json``/``.json.gz`` list of records, or a
            loaded :class:`fusion.data.CrystalDataset`.
        target: Target name (``id_prop.csv`` header column, JSON key or extxyz
            info key). Defaults to the dataset's own when ``data`` is a
            ``CrystalDataset``; required for a path.
        ratios: Fraction(s) of the records to REMOVE, each in ``[0, 1)``.
            Defaults to 0.4.
        method: One of :data:`METHODS` (see :data:`METHOD_HELP`). Defaults to ``"fusion"``.
        model: Surrogate architecture, one of ``fusion.models.available()``.
            Defaults to ``"cgcnn"``.
        size: Surrogate size preset, ``"cpu"`` (small, fast) or ``"paper"``
            (the published hyper-parameters). Defaults to ``"cpu"``.
        epochs: Maximum surrogate epochs. Defaults to 100.
        batch_size: Surrogate batch size (graphs). Defaults to 64.
        lr: Surrogate peak learning rate. Defaults to 1e-3.
        patience: Stop the surrogate after this many epochs without a better
            validation MAE. Defaults to 20.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. Defaults to ``"auto"``.
        lam: Weight Lambda of the epistemic term in
            ``U = sigmoid(Lambda U_epi + s U_ale)``. Defaults to 0.
        aleatoric_sign: Sign ``s`` of the aleatoric term (-1: the paper's). Defaults to -1.
        gamma: Decay of ``W = exp(-gamma d_NN)``, in 1 / (SOAP distance);
            ``d_NN`` lies in [0, 2]. Defaults to 0.1 (the paper's).
        compression: SOAP compression (``fusion.fingerprints.COMPRESSIONS``).
            Defaults to ``fusion.fingerprints.DEFAULT_COMPRESSION``.
        seed: Seed of the surrogate and of the random, diversity and active
            choices. Defaults to 0.
        n_jobs: Worker processes for loading, fingerprints and graphs (-1: every
            core). Defaults to 1.
        skip_bad: Leave bad records out (listed in ``skipped``) instead of
            raising. Defaults to False.
        progress: Show progress bars. Defaults to False.

    Returns:
        The :class:`PruneResult`.

    Raises:
        OptionError: A bad option (checked before any data are read).
        fusion.data.BadRecordsError: Without ``skip_bad``, listing every bad record.
        fusion.data.DataError: Unreadable input, or fewer than 2 valid records.
    """
    import time

    from fusion.fingerprints import COMPRESSIONS, DEFAULT_COMPRESSION

    t0 = time.perf_counter()
    ratio_list = [float(r) for r in ([ratios] if isinstance(ratios, int | float) else ratios)]
    compression = DEFAULT_COMPRESSION if compression is None else compression
    check_options(
        ratios=ratio_list,
        method=method,
        model=model,
        size=size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
        gamma=gamma,
        n_jobs=n_jobs,
        device=device,
        aleatoric_sign=aleatoric_sign,
    )
    if compression not in COMPRESSIONS:
        raise OptionError(
            f"--compression: unknown mode {compression!r}; choose one of {', '.join(COMPRESSIONS)}"
        )
    jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs

    if isinstance(data, CrystalDataset):
        ds = data
        target = ds.target if target is None else target
        source = ds.name
    else:
        if target is None:
            raise OptionError("--target is required")
        from fusion.data import collect_user_data

        source = str(data)
        ds = collect_user_data(
            data, target, errors="skip" if skip_bad else "raise", n_jobs=jobs, progress=progress
        )
    n = len(ds)
    if n < 2:
        raise DataError(f"{source}: need at least 2 valid records, got {n}")
    y = np.asarray(ds.targets, dtype=np.float64)

    nan = np.full(n, np.nan)
    X, d_nn, W = None, nan.copy(), nan.copy()
    if method in NEEDS_X:
        from fusion import fingerprints
        from fusion.selection import nearest_neighbor_distance, redundancy_weight

        X = fingerprints.soap_fingerprints(
            ds.structures,
            fingerprints.dataset_species(ds.structures),
            compression,
            n_jobs=jobs,
            progress=progress,
        )
        d_nn = nearest_neighbor_distance(X)
        W = redundancy_weight(d_nn, gamma)

    U, u_ale, u_epi = nan.copy(), nan.copy(), nan.copy()
    surrogate = None
    if method in NEEDS_U:
        U, u_ale, u_epi, surrogate = _surrogate_scores(
            ds,
            y,
            model=model,
            size=size,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            device=device,
            lam=lam,
            aleatoric_sign=aleatoric_sign,
            seed=seed,
            n_jobs=jobs,
            progress=progress,
        )

    from fusion.selection import importance, select

    selections = {}
    for r in ratio_list:
        selections[r] = select(
            method,
            r,
            ids=ds.ids,
            seed=seed,
            U=U if method in NEEDS_U else None,
            X=X,
            gamma=gamma,
            **({"d_nn": d_nn} if method in {"fusion", "weight"} else {}),
            **({"y": y} if method == "active" else {}),
        )
    scores = pd.DataFrame(
        {
            "id": ds.ids,
            "target": y,
            "U": U,
            "W": W,
            "I": importance(U, W),
            "d_nn": d_nn,
            "u_ale": u_ale,
            "u_epi": u_epi,
        }
    ).set_index("id")

    warns = _spread_warnings(U, W, d_nn, method, gamma)
    if surrogate is not None and surrogate["val_mae"] >= surrogate["median_val_mae"]:
        warns.append(
            f"the surrogate is no better than predicting the median: validation MAE "
            f"{surrogate['val_mae']:.4g} vs {surrogate['median_val_mae']:.4g} (its U may not mean much; "
            "try more --epochs or another --model)"
        )
    shift = {r: _shift(y, sel) for r, sel in selections.items()}
    warns += [w for r in ratio_list if (w := _shift_warning(r, shift[r])) is not None]
    options = {
        "model": model if method in NEEDS_U else None,
        "size": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "device": device,
        "lambda": lam,
        "aleatoric_sign": aleatoric_sign,
        "gamma": gamma,
        "compression": compression if method in NEEDS_X else None,
        "seed": seed,
        "skip_bad": skip_bad,
    }
    return PruneResult(
        data=source,
        target=str(target),
        method=method,
        ids=list(ds.ids),
        scores=scores,
        selections=selections,
        skipped=ds.skipped.reset_index(drop=True),
        surrogate=surrogate,
        shift=shift,
        warnings=warns,
        options=options,
        seconds=time.perf_counter() - t0,
    )


def _surrogate_scores(
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
    lam: float,
    aleatoric_sign: int,
    seed: int,
    n_jobs: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Train the evidential surrogate once and score the pool: ``(U, u_ale, u_epi, quality)``."""
    from fusion import uncertainty
    from fusion.graphs import build_graphs
    from fusion.stats import median_predictor_mae
    from fusion.train import TrainConfig

    graphs = build_graphs(ds.structures, ds.targets, n_jobs=n_jobs, progress=progress, ids=ds.ids)
    dev = resolve_device(device)
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
    tr, val = surrogate_split(len(graphs), seed, VAL_FRACTION)
    quality = {
        "model": model,
        "size": size,
        "val_mae": float(result.val_mae),
        "median_val_mae": median_predictor_mae(y[tr], y[val]),
        "n_train": len(tr),
        "n_val": len(val),
        "epochs_run": int(result.epochs_run),
        "max_epochs": epochs,
        "best_epoch": int(result.best_epoch),
        "stopped_early": int(result.epochs_run) < epochs,
        "patience": patience,
        "device": dev,
        "seconds": round(float(result.seconds), 2),
    }
    return np.asarray(U), np.asarray(u_ale), np.asarray(u_epi), quality
