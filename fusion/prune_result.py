"""The outcome of a prune: :class:`PruneResult`, its files and summary, and its warnings.

:class:`PruneResult` holds the scores of every record and one selection per
ratio; :meth:`PruneResult.write` writes the kept and removed CSVs, ``scores.csv``,
``summary.json``, ``skipped.csv`` and the visual ``report.html``
(:mod:`fusion.prune_report`). The warnings that :func:`fusion.prune_api.prune`
attaches to it come from here too: a score that barely varies
(:func:`spread_warnings`) and a kept set whose targets shift
(:func:`ratio_shift`, :func:`shift_warning`), with their thresholds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.prune_options import NEEDS_U

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
#: Fingerprints from this size (bytes) on get a warning naming the memory-light compression.
BIG_FINGERPRINTS = 1_000_000_000


def ratio_label(ratio: float) -> str:
    """Short label of a ratio in file names: ``0.4`` -> ``"0.4"``."""
    return f"{ratio:g}"


@dataclass
class PruneResult:
    """Outcome of :func:`fusion.prune_api.prune`.

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
        seconds: Wall time of :func:`fusion.prune_api.prune`.
        artefacts: With a working folder, what happened to each artefact
            (``structures``, ``fingerprints``, ``graphs``, ``surrogate``):
            ``status`` (``"reused"``, ``"computed"``, ...), ``path``, ``key``
            (:class:`fusion.prune_cache.WorkDir`); empty without one.
        fingerprints: The SOAP fingerprints ``[n, n_features]`` in the order of
            :attr:`ids` (for the report's fingerprint map): a float32 array, or
            a ``scipy.sparse`` CSR matrix when most entries are zero
            (:func:`fusion.prune_steps.compute_fingerprints`); None when the
            method uses none.
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
    artefacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprints: Any = field(default=None, repr=False)

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
            "artefacts": self.artefacts,
            "seconds": round(self.seconds, 2),
        }

    def write(self, out_dir: str | Path, *, report: bool = True) -> dict[str, Path]:
        """Write the outputs into ``out_dir`` (created if needed).

        Files: per ratio the kept and removed CSVs (see :meth:`output_names`;
        columns ``id`` then those of :attr:`scores`), ``scores.csv`` (every
        valid record), ``summary.json`` (:meth:`summary`), when records were
        skipped ``skipped.csv`` (``id``, ``reason``), and ``report.html``
        (:func:`fusion.prune_report.write_report`: figures and tables in one
        offline file).

        Args:
            out_dir: Output folder.
            report: Write ``report.html``. Defaults to True.

        Returns:
            The paths written, by name (``kept_0.4`` style keys for several
            ratios; ``report`` for the report).
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
        if report:
            from fusion.prune_report import write_report

            written["report"] = write_report(self, out / "report.html")
        return written


def spread_warnings(U: np.ndarray, W: np.ndarray, d_nn: np.ndarray, method: str, gamma: float) -> list[str]:
    """Warnings for a score that barely varies over the pool, so that it hardly orders the records.

    Args:
        U: Uncertainty scores (NaN when the method has none).
        W: Redundancy weights (NaN when the method has none).
        d_nn: SOAP nearest-neighbour distances.
        method: Selection method.
        gamma: Decay of ``W = exp(-gamma d_NN)``.

    Returns:
        One warning for U spanning less than :data:`MIN_U_SPREAD`, one for W
        spanning less than :data:`MIN_W_SPREAD`, each only where the method uses it.
    """
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


def ratio_shift(y: np.ndarray, sel: Any) -> dict[str, float | None]:
    """The target shift of one selection's kept set (:attr:`PruneResult.shift` of a ratio).

    Args:
        y: Targets of the pool.
        sel: A :class:`fusion.selection.Selection` of the pool.

    Returns:
        :func:`fusion.stats.target_shift` of the kept set plus ``removed_mean``
        (None when nothing is removed) and ``pool_std``.
    """
    from fusion.stats import target_shift

    mask = sel.kept_mask
    out: dict[str, float | None] = dict(target_shift(y, mask))
    out["removed_mean"] = float(y[~mask].mean()) if (~mask).any() else None
    out["pool_std"] = float(y.std())
    return out


def shift_warning(ratio: float, s: dict[str, float | None]) -> str | None:
    """A warning when the kept set's targets shift at ``ratio``, else None.

    Args:
        ratio: The ratio.
        s: Its shift, from :func:`ratio_shift`.

    Returns:
        The warning when the KS distance exceeds :data:`MAX_KS`, the top-decile
        share is off 0.10 by more than :data:`MAX_TOP_DECILE_DEVIATION`, or the
        kept and removed means differ by more than :data:`MAX_MEAN_GAP_SD` pool
        standard deviations; else None.
    """
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


def fingerprint_nbytes(X: Any) -> int:
    """Memory of the fingerprints: the array's bytes, or a sparse matrix's values and indices.

    Args:
        X: Fingerprints, a numpy array or a scipy sparse matrix (n_records x n_features).

    Returns:
        int: Bytes held (values, plus column indices and row pointers for a sparse matrix).

    Example:
        >>> import numpy as np
        >>> from scipy import sparse
        >>> fingerprint_nbytes(np.zeros((2, 3), dtype=np.float32))
        24
        >>> fingerprint_nbytes(sparse.csr_matrix(np.eye(3, dtype=np.float32)))  # 3 values, 3 indices, 4 pointers
        40
    """
    from scipy import sparse

    if sparse.issparse(X):
        X = sparse.csr_matrix(X)
        return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
    return int(X.nbytes)


def run_warnings(
    U: np.ndarray,
    W: np.ndarray,
    d_nn: np.ndarray,
    surrogate: dict[str, Any] | None,
    X: Any,
    method: str,
    gamma: float,
    shift: dict[float, Any],
) -> list[str]:
    """What deserves a look in a prune: scores that barely vary, a weak surrogate, shifted targets, big fingerprints.

    Args:
        U: Uncertainty scores (NaN where the method does not use them).
        W: Redundancy weights (likewise).
        d_nn: Nearest-neighbour distances (likewise).
        surrogate: The surrogate's quality (``val_mae``, ``median_val_mae``), or None.
        X: The fingerprints, or None when the method does not compute them.
        method: Selection method.
        gamma: Redundancy-weight decay.
        shift: :func:`ratio_shift` of each ratio's selection, by ratio.

    Returns:
        One line per warning, in that order.
    """
    warns = spread_warnings(U, W, d_nn, method, gamma)
    if surrogate is not None and surrogate["val_mae"] >= surrogate["median_val_mae"]:
        warns.append(
            f"the surrogate is no better than predicting the median: validation MAE "
            f"{surrogate['val_mae']:.4g} vs {surrogate['median_val_mae']:.4g} (its U may not mean much; "
            "try more --epochs or another --model)"
        )
    warns += [w for r, s in shift.items() if (w := shift_warning(r, s)) is not None]
    nbytes = 0 if X is None else fingerprint_nbytes(X)
    if nbytes >= BIG_FINGERPRINTS:
        n, width = X.shape
        warns.append(
            f"the fingerprints take {nbytes / 1e9:.1f} GB ({n:,} records x {width:,} features): "
            "the default --compression mu1nu1 grows with the number of elements in the data; "
            "--compression mu2 has 252 features whatever the elements and needs far less memory, "
            "but keeps nearest-neighbour distances less faithfully (benchmarks/bench_compression.py); "
            "with --workdir, dense fingerprints are written to disk block by block instead of held in memory"
        )
    return warns
