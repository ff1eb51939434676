"""Result tables, improvement over random pruning, paired significance tests, figures.

Inputs are the long tables the pipeline writes (one row per dataset, arch,
seed, method, ratio with a ``test_mae``). Everything is a pure function of
DataFrames except the ``save_*``/``plot_*`` helpers, which write files.

Improvement over a reference method (random pruning by default) is
``100 * (MAE_ref - MAE) / MAE_ref``: positive means lower error than the
reference. It is computed from the seed means (:func:`improvement_over_reference`),
and the paired tests (:func:`paired_tests`) compare the two methods seed by
seed, since both were trained on the same split of each seed: a paired t-test
(``scipy.stats.ttest_rel``) and, where at least ``min_n_wilcoxon`` seeds exist,
the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; with n seeds its exact
two-sided p-value cannot go below ``2 / 2**n``, 0.0625 for 5 seeds).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KEYS = ("dataset", "arch", "method", "ratio")


def read_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate result CSVs (empty DataFrame if there are none)."""
    frames = [pd.read_csv(p) for p in paths if Path(p).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def aggregate(df: pd.DataFrame, by: Sequence[str] = KEYS, value: str = "test_mae") -> pd.DataFrame:
    """Mean, sample standard deviation and count of ``value`` over seeds.

    Args:
        df: Long table with the ``by`` columns and ``value``.
        by: Grouping columns. Defaults to dataset, arch, method, ratio.
        value: Column aggregated. Defaults to ``test_mae``.

    Returns:
        ``by`` columns plus ``mean``, ``std`` (ddof 1; NaN for one seed), ``n``.
    """
    g = df.groupby(list(by), sort=True)[value]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def _read_targets(records: dict[str, str | Path]) -> dict[str, pd.Series]:
    """Target per record id (str index) of each dataset's prepare-stage ``records.csv``."""
    return {
        key: pd.read_csv(path, dtype={"id": str}).set_index("id")["target"] for key, path in records.items()
    }


def mean_predictor_mae(targets: pd.Series, split: dict[str, Sequence[str]]) -> float:
    """Test MAE of always predicting the mean target of the pool (train + val).

    The floor a trained model has to beat: the unpruned runs train on this pool.

    Args:
        targets: Target per record id (index: id as str).
        split: ``train``, ``val`` and ``test`` lists of ids.

    Returns:
        ``mean(|y_test - mean(y_pool)|)``.
    """
    index = targets.index.astype(str)
    y = pd.Series(targets.to_numpy(dtype=float), index=index)
    pool = [str(i) for i in (*split["train"], *split["val"])]
    test = [str(i) for i in split["test"]]
    return float(np.mean(np.abs(y.loc[test].to_numpy() - y.loc[pool].mean())))


def mean_predictor_table(
    records: dict[str, str | Path], splits: dict[tuple[str, int], str | Path]
) -> pd.DataFrame:
    """:func:`mean_predictor_mae` for every dataset and seed.

    Args:
        records: Dataset key -> ``records.csv`` of the prepare stage (``id``, ``target``).
        splits: ``(dataset key, seed)`` -> split JSON of the prepare stage.

    Returns:
        ``dataset``, ``seed``, ``test_mae`` (one row per split).
    """
    targets = _read_targets(records)
    rows = [
        {
            "dataset": key,
            "seed": seed,
            "test_mae": mean_predictor_mae(targets[key], json.loads(Path(p).read_text())),
        }
        for (key, seed), p in sorted(splits.items())
    ]
    return pd.DataFrame(rows, columns=["dataset", "seed", "test_mae"])


def uncertainty_target_table(
    records: dict[str, str | Path], scores: dict[tuple[str, int], str | Path]
) -> pd.DataFrame:
    """How strongly the surrogate's uncertainty ranks the pool by its target values.

    A score that ranks structures by their target makes any prefix removal cut
    one end of the target range, shifting the training distribution.

    Args:
        records: Dataset key -> ``records.csv`` of the prepare stage (``id``, ``target``).
        scores: ``(dataset key, seed)`` -> uncertainty CSV (``id``, ``u_ale``, ``u_epi``, ``U``).

    Returns:
        ``dataset``, ``seed``, ``n`` and the Spearman correlations of the target
        with ``u_ale``, ``u_epi`` and ``U``.
    """
    from scipy.stats import spearmanr

    targets = _read_targets(records)
    rows = []
    for (key, seed), path in sorted(scores.items()):
        u = pd.read_csv(path, dtype={"id": str}).set_index("id")
        y = targets[key].loc[u.index].to_numpy(dtype=float)
        row: dict[str, Any] = {"dataset": key, "seed": seed, "n": len(u)}
        for col in ("u_ale", "u_epi", "U"):
            row[f"spearman_target_{col}"] = float(spearmanr(u[col], y).statistic)
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_over_reference(
    summary: pd.DataFrame, reference: str = "random", by: Sequence[str] = ("dataset", "arch", "ratio")
) -> pd.DataFrame:
    """Percentage improvement of each method's mean MAE over the reference method's.

    Args:
        summary: Output of :func:`aggregate` (``method`` and ``mean`` columns).
        reference: Reference method. Defaults to ``"random"``.
        by: Columns identifying a comparison. Defaults to dataset, arch, ratio.

    Returns:
        Rows of the non-reference methods with ``mean``, ``reference_mean`` and
        ``improvement_pct`` (positive = lower MAE than the reference).
    """
    by = list(by)
    ref = summary[summary["method"] == reference][[*by, "mean"]].rename(columns={"mean": "reference_mean"})
    other = summary[summary["method"] != reference]
    out = other.merge(ref, on=by, how="inner")
    out["improvement_pct"] = 100.0 * (out["reference_mean"] - out["mean"]) / out["reference_mean"]
    return out[[*by, "method", "mean", "reference_mean", "improvement_pct"]].reset_index(drop=True)


def paired_test(a: np.ndarray, b: np.ndarray, min_n_wilcoxon: int = 5) -> dict[str, float]:
    """Paired tests of ``a`` against ``b`` (same seeds, same order).

    Args:
        a: Values of the method tested (e.g. FUSION's MAE per seed).
        b: Values of the reference, paired with ``a``.
        min_n_wilcoxon: Fewest pairs for the Wilcoxon test. Defaults to 5.

    Returns:
        ``n``, ``mean_diff`` (``mean(a - b)``), ``t_pvalue`` and ``wilcoxon_pvalue``
        (two-sided). A p-value is NaN when the test cannot run (fewer than 2
        pairs; fewer than ``min_n_wilcoxon`` for Wilcoxon); when every
        difference is exactly zero both p-values are 1 (no evidence of a
        difference).
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} vs {b.shape}")
    d = a - b
    n = len(d)
    out = {
        "n": n,
        "mean_diff": float(d.mean()) if n else np.nan,
        "t_pvalue": np.nan,
        "wilcoxon_pvalue": np.nan,
    }
    if n < 2:
        return out
    if np.all(d == 0):
        out.update(t_pvalue=1.0, wilcoxon_pvalue=1.0 if n >= min_n_wilcoxon else np.nan)
        return out
    out["t_pvalue"] = float(stats.ttest_rel(a, b).pvalue) if d.std() > 0 else 0.0
    if n >= min_n_wilcoxon:
        out["wilcoxon_pvalue"] = float(stats.wilcoxon(a, b).pvalue)
    return out


def paired_tests(
    df: pd.DataFrame,
    reference: str = "random",
    by: Sequence[str] = ("dataset", "arch", "ratio"),
    value: str = "test_mae",
    min_n_wilcoxon: int = 5,
) -> pd.DataFrame:
    """Paired tests of every method against the reference, per comparison group.

    Pairs are matched on ``seed``; seeds missing for either method are dropped.

    Returns:
        One row per (``by``, method): ``n``, ``mean_diff`` (method minus
        reference; negative = lower MAE), ``t_pvalue``, ``wilcoxon_pvalue``.
    """
    by = list(by)
    rows = []
    for group, part in df.groupby(by, sort=True):
        wide = part.pivot_table(index="seed", columns="method", values=value)
        if reference not in wide:
            continue
        for method in wide.columns:
            if method == reference:
                continue
            pair = wide[[method, reference]].dropna()
            res = paired_test(pair[method].to_numpy(), pair[reference].to_numpy(), min_n_wilcoxon)
            rows.append({**dict(zip(by, group, strict=True)), "method": method, **res})
    return pd.DataFrame(rows)


def headline(
    improvement: pd.DataFrame,
    optimal: pd.DataFrame | None = None,
    ood: pd.DataFrame | None = None,
    method: str = "fusion",
) -> dict[str, Any]:
    """Headline numbers (DVC metrics) mirroring the paper's claims.

    Args:
        improvement: Output of :func:`improvement_over_reference` against random.
        optimal: Optimal-point table (``dataset``, ``seed``, ``ratio``, ``test_mae``).
        ood: Leave-one-cluster-out table (``dataset``, ``cluster``, ``method``, ``test_mae``).
        method: The method reported. Defaults to ``"fusion"``.

    Returns:
        A JSON-ready dict: FUSION's mean improvement over random per dataset and
        overall (pruning ratios above 0), the best optimal-point improvement per
        dataset with its ratio, and the mean out-of-distribution improvement.
    """
    out: dict[str, Any] = {}
    imp = improvement[(improvement["method"] == method) & (improvement["ratio"] > 0)]
    if len(imp):
        per = imp.groupby("dataset")["improvement_pct"].mean()
        out["improvement_over_random_pct"] = {k: round(float(v), 3) for k, v in per.items()}
        out["improvement_over_random_pct_mean"] = round(float(per.mean()), 3)
    if optimal is not None and len(optimal):
        curve = optimal.groupby(["dataset", "ratio"])["test_mae"].mean().reset_index()
        best = {}
        for ds, part in curve.groupby("dataset"):
            base = float(part.loc[part["ratio"] == 0, "test_mae"].iloc[0])
            row = part.loc[part["test_mae"].idxmin()]
            best[ds] = {
                "ratio": float(row["ratio"]),
                "improvement_pct": round(100.0 * (base - float(row["test_mae"])) / base, 3),
            }
        out["optimal_point"] = best
    if ood is not None and len(ood):
        mean = ood.pivot_table(index="dataset", columns="method", values="test_mae", aggfunc="mean")
        if {method, "random"} <= set(mean.columns):
            pct = 100.0 * (mean["random"] - mean[method]) / mean["random"]
            out["ood_improvement_over_random_pct"] = {k: round(float(v), 3) for k, v in pct.items()}
    return out


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented, key-sorted JSON and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return path


def save_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table with a fixed float format (identical inputs give identical bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format="%.6g")
    return path


# ----------------------------------------------------------------------------- figures


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the Agg backend unless a notebook's inline backend is active.

    The inline backend is kept because the book glues these figures; anywhere
    else nothing is displayed.
    """
    import matplotlib as mpl

    if mpl.get_backend().lower() not in {"agg", "module://matplotlib_inline.backend_inline"}:
        mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(n_panels: int, ncols: int = 3) -> tuple[Any, np.ndarray]:
    plt = pyplot()
    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, int(np.ceil(n_panels / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat


def _save(fig: Any, path: str | Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # No timestamp in the PNG, so identical tables give identical files.
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return path


def mae_curves_figure(summary: pd.DataFrame) -> Any:
    """Test MAE (mean ± std over seeds) against pruning ratio, one panel per dataset × arch.

    Args:
        summary: :func:`aggregate` output (``dataset, arch, method, ratio, mean, std``).

    Returns:
        The matplotlib figure (FUSION drawn thicker).
    """
    panels = list(summary.groupby(["dataset", "arch"], sort=True))
    fig, axes = _figure(max(1, len(panels)))
    for ax, ((ds, arch), part) in zip(axes, panels, strict=False):
        for k, (method, m) in enumerate(part.groupby("method", sort=True)):
            curve = m.sort_values("ratio")
            ax.errorbar(
                curve["ratio"],
                curve["mean"],
                yerr=curve["std"].fillna(0),
                marker="o",
                ms=3,
                capsize=2,
                label=method,
                color=f"C{k}",
                lw=2.2 if method == "fusion" else 1,
            )
        ax.set(title=f"{ds} / {arch}", xlabel="fraction removed", ylabel="test MAE")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_mae_vs_ratio(summary: pd.DataFrame, path: str | Path, dpi: int = 120) -> Path:
    """Save :func:`mae_curves_figure` to ``path`` (PNG)."""
    return _save(mae_curves_figure(summary), path, dpi)


def plot_improvement(improvement: pd.DataFrame, path: str | Path, dpi: int = 120) -> Path:
    """Improvement over random (%) against ratio, averaged over architectures, one panel per dataset."""
    data = improvement[improvement["ratio"] > 0]
    mean = data.groupby(["dataset", "method", "ratio"])["improvement_pct"].mean().reset_index()
    panels = list(mean.groupby("dataset", sort=True))
    fig, axes = _figure(max(1, len(panels)))
    for ax, (ds, part) in zip(axes, panels, strict=False):
        for method, m in part.groupby("method", sort=True):
            ax.plot(m["ratio"], m["improvement_pct"], marker="o", ms=3, label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=str(ds), xlabel="fraction removed", ylabel="improvement over random (%)")
    axes[0].legend(fontsize=7)
    return _save(fig, path, dpi)


def plot_optimal(optimal: pd.DataFrame, path: str | Path, dpi: int = 120) -> Path:
    """Optimal-point search: MAE change vs ratio 0 (mean ± std over seeds), one panel per dataset."""
    panels = list(optimal.groupby("dataset", sort=True))
    fig, axes = _figure(max(1, len(panels)))
    for ax, (ds, part) in zip(axes, panels, strict=False):
        g = part.groupby("ratio")["improvement_pct"]
        ax.errorbar(g.mean().index, g.mean(), yerr=g.std().fillna(0), marker="o", ms=3, capsize=2)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=str(ds), xlabel="fraction removed (FUSION)", ylabel="MAE improvement vs full (%)")
    return _save(fig, path, dpi)


def plot_ood(ood: pd.DataFrame, path: str | Path, dpi: int = 120) -> Path:
    """Leave-one-cluster-out test MAE per held-out cluster and method, one panel per dataset."""
    panels = list(ood.groupby("dataset", sort=True))
    fig, axes = _figure(max(1, len(panels)))
    for ax, (ds, part) in zip(axes, panels, strict=False):
        wide = part.pivot_table(index="cluster", columns="method", values="test_mae")
        width = 0.8 / max(1, wide.shape[1])
        for k, method in enumerate(wide.columns):
            ax.bar(wide.index + k * width, wide[method], width=width, label=method)
        ax.set(title=str(ds), xlabel="held-out cluster", ylabel="test MAE")
        ax.legend(fontsize=7)
    return _save(fig, path, dpi)
