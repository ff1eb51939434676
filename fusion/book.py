"""Helpers for the Jupyter Book (``book/``): result tables, glue, figures, structure drawings.

The book's pages that show numbers are notebooks in ``book/src/`` executed by
papermill (the ``book-*`` stages of ``dvc.yaml``, run from the repository root) into
``book/pages/``. Their code cells only call the functions here, so every number
and figure of the book comes from the pipeline's outputs (``results/``,
``cache/``, ``benchmarks/results/``) through one tested module. Paths are
relative to the working directory, the repository root, as in
:mod:`fusion.pipeline`.

Figures are returned as matplotlib figures (the notebook glues them with
:func:`glue_figure`); tables as DataFrames (:func:`glue_table`); numbers the
text quotes are glued with :func:`glue_values`.

This module is also a small Sphinx extension (``extra_extensions: [fusion.book]``
in ``book/_config.yml``): it serves MathJax from a local copy instead of a CDN
(see :func:`setup`).
"""

from __future__ import annotations

import json
import operator
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.analysis import headline, pyplot

#: The paper's claims, quoted from Wang et al., AAAI 2026 (see METHOD.md). These
#: are constants typed from the paper, not measurements of this project.
PAPER_CLAIMS: dict[str, float] = {
    "improvement_min_pct": 1.91,
    "improvement_max_pct": 13.65,
    "improvement_mean_pct": 6.36,
    "optimal_ratio_max": 0.08,
    "optimal_improvement_max_pct": 12.67,
    "jdft2d_80_vs_diversity_pct": 12.7,
}

#: Benchmarks of ``benchmarks/`` whose JSON the performance page shows, in order.
BENCHMARKS: tuple[str, ...] = (
    "graphs",
    "fingerprints",
    "compression",
    "selection",
    "train_throughput",
    "cgcnn_parity",
)

# ----------------------------------------------------------------------------- reading


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the pipeline's ``params.yaml`` (the active profile)."""
    import yaml

    return yaml.safe_load(Path(path).read_text())


def read_table(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV result table; an empty DataFrame if the file does not exist.

    Args:
        path: CSV file.
        **kwargs: Passed to :func:`pandas.read_csv`.
    """
    path = Path(path)
    return pd.read_csv(path, **kwargs) if path.exists() else pd.DataFrame()


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file; an empty dict if it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


# ----------------------------------------------------------------------------- glue


def glue_values(values: Mapping[str, Any]) -> None:
    """Glue every value of ``values`` under its key, without displaying it.

    The text refers to them with ``{glue:text}`key``` (strings) or
    ``{glue:text}`key:.2f``` (numbers). NumPy scalars are converted to Python
    ones so their text form is a plain number.
    """
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value.item() if isinstance(value, np.generic) else value, display=False)


def glue_figure(name: str, fig: Any) -> None:
    """Glue a matplotlib figure (for ``{glue:figure}``) and close it."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


def glue_table(name: str, df: pd.DataFrame) -> None:
    """Glue a table (for ``{glue:figure}``/``{glue}``), rendered as HTML without its index."""
    from IPython.display import HTML
    from myst_nb import glue

    html = df.to_html(index=False, na_rep="–", classes="fusion-table", border=0, escape=True)
    glue(name, HTML(html), display=False)


# ----------------------------------------------------------------------------- run settings


def run_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of the run that the text states as deviations from the paper.

    Args:
        params: The parsed ``params.yaml``.

    Returns:
        Flat dict of strings and numbers, ready for :func:`glue_values`.
    """
    ds = params["datasets"]
    unc, train, prune = params["uncertainty"], params["train"], params["prune"]
    limits = [f"{k}: {v['limit']}" for k, v in ds.items() if v.get("limit")]
    return {
        "profile": str(params.get("profile", _profile_name(params))),
        "datasets": ", ".join(f"{k} ({v['name']}, {v['target']})" for k, v in ds.items()),
        "n_datasets": len(ds),
        "limits": "; ".join(limits) if limits else "none (full datasets)",
        "architectures": ", ".join(params["architectures"]),
        "n_architectures": len(params["architectures"]),
        "seeds": ", ".join(str(s) for s in params["seeds"]),
        "n_seeds": len(params["seeds"]),
        "ratios": ", ".join(f"{r:g}" for r in prune["ratios"]),
        "methods": ", ".join(prune["methods"]),
        "gamma": float(prune["gamma"]),
        "compression": str(params["fingerprints"]["compression"]),
        "surrogate": f"{unc['model']} ({unc['size']} size)",
        "surrogate_epochs": int(unc["epochs"]),
        "lam": float(unc["lam"]),
        "aleatoric_sign": int(unc["aleatoric_sign"]),
        "sign_source": "the paper's text" if int(unc["aleatoric_sign"]) < 0 else "the paper's code",
        "train_size": str(train["size"]),
        "train_epochs": int(train["epochs"]),
        "batch_size": int(train["batch_size"]),
        "optimal_ratios": ", ".join(f"{r:g}" for r in params["optimal"]["ratios"]),
        "optimal_arch": str(params["optimal"]["arch"]),
        "ood_clusters": int(params["ood"]["n_clusters"]),
        "ood_ratio": float(params["ood"]["ratio"]),
    }


def _profile_name(params: Mapping[str, Any], root: str | Path = ".") -> str:
    """Name of the profile whose file equals ``params`` (``custom`` if none does)."""
    import yaml

    for path in sorted(Path(root, "profiles").glob("*.yaml")):
        if yaml.safe_load(path.read_text()) == dict(params):
            return path.stem
    return "custom"


# ----------------------------------------------------------------------------- data page


def element_counts(formulas: Sequence[str]) -> pd.Series:
    """Number of structures containing each element, most frequent first."""
    from pymatgen.core import Composition

    counts: dict[str, int] = {}
    for formula in formulas:
        for el in Composition(formula).elements:
            counts[el.symbol] = counts.get(el.symbol, 0) + 1
    return pd.Series(counts, name="structures").sort_values(ascending=False, kind="stable")


def dataset_card(key: str, root: str | Path = ".") -> dict[str, Any]:
    """Numbers of one dataset's card, from the ``prepare`` stage's summary.

    Returns:
        Keys prefixed with ``<key>_``: dataset, target, n_read, n_kept,
        n_skipped, n_elements, nsites_mean, nsites_max, target mean/std/min/max.
    """
    summary = read_json(Path(root, "results", "prepare", key, "summary.json"))
    names = ["dataset", "target", "n_read", "n_kept", "n_skipped", "n_elements", "nsites_mean", "nsites_max"]
    names += ["target_mean", "target_std", "target_min", "target_max"]
    return {f"{key}_{n}": summary[n] for n in names if n in summary}


def plot_dataset_card(key: str, root: str | Path = ".", top_elements: int = 25) -> Any:
    """Target distribution, structure-size histogram and element frequencies of one dataset.

    Args:
        key: Dataset key of ``params.yaml``.
        root: Repository root. Defaults to the working directory.
        top_elements: Elements shown in the frequency panel. Defaults to 25.

    Returns:
        A matplotlib figure with three panels.
    """
    plt = pyplot()
    records = read_table(Path(root, "results", "prepare", key, "records.csv"), dtype={"id": str})
    summary = read_json(Path(root, "results", "prepare", key, "summary.json"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].hist(records["target"], bins=40, color="C0")
    axes[0].set(xlabel=summary.get("target", "target"), ylabel="structures", title="target")
    axes[1].hist(records["nsites"], bins=np.arange(0.5, records["nsites"].max() + 1.5), color="C1")
    axes[1].set(xlabel="atoms in the cell", ylabel="structures", title="structure size")
    counts = element_counts(records["formula"]).head(top_elements)
    axes[2].bar(counts.index, counts.to_numpy(), color="C2")
    axes[2].tick_params(axis="x", labelrotation=90, labelsize=7)
    axes[2].set(ylabel="structures containing it", title=f"{top_elements} most frequent elements")
    fig.suptitle(f"{key}: {summary.get('dataset', '')}, {len(records)} structures", fontsize=10)
    fig.tight_layout()
    return fig


def dataset_cards(
    params: Mapping[str, Any], gallery_size: int = 4, seed: int = 0, root: str | Path = "."
) -> None:
    """Display one card per dataset: a heading, its numbers, its histograms and a structure gallery.

    The number of datasets depends on the profile, so the cards are generated:
    each figure is glued (``card_<key>``, ``gallery_<key>``) and a MyST
    Markdown output places it with a labelled ``{glue:figure}`` directive
    (labels ``fig-card-<key>`` and ``fig-gallery-<key>``). Needs
    ``nb_render_markdown_format: myst`` in the book's configuration.

    Args:
        params: The parsed ``params.yaml``.
        gallery_size: Structures drawn per dataset. Defaults to 4.
        seed: Sampling seed of the gallery. Defaults to 0.
        root: Repository root. Defaults to the working directory.
    """
    from IPython.display import Markdown, display

    for key, spec in params["datasets"].items():
        card = dataset_card(key, root)
        glue_values(card)
        glue_figure(f"card_{key}", plot_dataset_card(key, root))
        glue_figure(
            f"gallery_{key}", plot_structures(load_structures(key, spec["name"], gallery_size, seed, root))
        )
        g = card.get
        text = (
            f"### `{key}`: {g(f'{key}_dataset')}, target `{g(f'{key}_target')}`\n\n"
            f"Source: `data/{spec['name']}/{spec['name']}.json.gz` (provenance in its `SOURCE.md`). "
            f"Read {g(f'{key}_n_read')} records (limit: {spec.get('limit') or 'none'}), kept {g(f'{key}_n_kept')}, "
            f"skipped {g(f'{key}_n_skipped')}; {g(f'{key}_n_elements')} elements, "
            f"{g(f'{key}_nsites_mean', float('nan')):.2f} atoms per cell on average "
            f"(at most {g(f'{key}_nsites_max')}); target mean {g(f'{key}_target_mean', float('nan')):.4g}, "
            f"std {g(f'{key}_target_std', float('nan')):.4g}, range {g(f'{key}_target_min', float('nan')):.4g} "
            f"to {g(f'{key}_target_max', float('nan')):.4g}.\n\n"
            f"```{{glue:figure}} card_{key}\n:name: fig-card-{key}\n\n"
            f"`{key}`: distribution of the target, of the number of atoms per cell, and of the elements.\n```\n\n"
            f"```{{glue:figure}} gallery_{key}\n:name: fig-gallery-{key}\n\n"
            f"`{key}`: {gallery_size} structures drawn at random (seed {seed}), atoms of the unit cell "
            "coloured by element, cell edges in grey.\n```\n"
        )
        display(Markdown(text))


def bad_inputs(keys: Sequence[str], root: str | Path = ".") -> pd.DataFrame:
    """Every record the ``prepare`` stage skipped, with its reason, over all datasets.

    Returns:
        Columns ``dataset``, ``id``, ``reason`` (no rows if nothing was skipped).
    """
    frames = []
    for key in keys:
        df = read_table(Path(root, "results", "prepare", key, "skipped.csv"), dtype={"id": str})
        if len(df):
            frames.append(df.assign(dataset=key)[["dataset", "id", "reason"]])
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["dataset", "id", "reason"])
    )


def load_structures(key: str, name: str, n: int = 4, seed: int = 0, root: str | Path = ".") -> dict[str, Any]:
    """A seeded sample of ``n`` kept structures of a dataset, parsed from its CIF text.

    Args:
        key: Dataset key (its ``records.csv`` lists the kept ids).
        name: Project dataset name (file ``data/<name>/<name>.json.gz``).
        n: Structures drawn. Defaults to 4.
        seed: Sampling seed. Defaults to 0.
        root: Repository root. Defaults to the working directory.

    Returns:
        ``{"<id> <formula>": Structure}`` in sampled order.
    """
    import warnings

    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.auto warns that ipywidgets is absent
        from fusion.data import read_records

    records = read_table(Path(root, "results", "prepare", key, "records.csv"), dtype={"id": str})
    rng = np.random.default_rng(seed)
    pick = records.iloc[np.sort(rng.choice(len(records), size=min(n, len(records)), replace=False))]
    wanted = set(pick["id"])
    cifs = {
        str(r["id"]): r["structure"] for r in read_records(name, Path(root, "data")) if str(r["id"]) in wanted
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CIF rounding warnings of pymatgen
        return {
            f"{i} {f}": Structure.from_str(cifs[i], fmt="cif")
            for i, f in zip(pick["id"], pick["formula"], strict=True)
        }


def _cell_edges(lattice: np.ndarray) -> np.ndarray:
    """The 12 edges of the unit cell as ``[12, 2, 3]`` Cartesian segments."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    pairs = [(a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(corners[a] - corners[b]).sum() == 1]
    frac = np.array([[corners[a], corners[b]] for a, b in pairs])
    return frac @ lattice


def plot_structures(structures: Mapping[str, Any], ncols: int = 4) -> Any:
    """Draw crystal structures as 3-D scatter plots of the atoms in the cell, coloured by element.

    Args:
        structures: Title -> pymatgen ``Structure`` (e.g. :func:`load_structures`).
        ncols: Panels per row. Defaults to 4.

    Returns:
        A matplotlib figure, one 3-D panel per structure with the cell edges.
    """
    plt = pyplot()
    n = max(1, len(structures))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig = plt.figure(figsize=(3.6 * ncols, 4.2 * nrows))
    # One colour per element over the whole gallery, so a colour means the same element everywhere.
    symbols = sorted({el.symbol for s in structures.values() for el in s.composition.elements})
    cmap = plt.get_cmap("tab20", max(len(symbols), 1))
    colour = {sym: cmap(k) for k, sym in enumerate(symbols)}
    for k, (title, s) in enumerate(structures.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1, projection="3d")
        xyz = s.cart_coords
        species = np.array([site.specie.symbol for site in s])
        for edge in _cell_edges(s.lattice.matrix):
            ax.plot(*edge.T, color="0.6", lw=0.6)
        for sym in np.unique(species):
            sel = species == sym
            ax.scatter(
                *xyz[sel].T, s=60, color=colour[sym], edgecolors="k", linewidths=0.3, label=sym, alpha=1
            )
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
        ax.set_box_aspect(
            np.ptp(np.vstack([xyz, _cell_edges(s.lattice.matrix).reshape(-1, 3)]), axis=0) + 1e-6
        )
        ax.legend(fontsize=6, loc="upper left", frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- method page


def pool_scores(key: str, seed: int, root: str | Path = ".") -> pd.DataFrame:
    """The pool of one split with U, W, I and the keep/remove columns of every method@ratio."""
    return read_table(Path(root, "results", "prune", key, f"seed-{seed}.csv"), dtype={"id": str})


def prune_summary(key: str, root: str | Path = ".") -> pd.DataFrame:
    """Sizes and epsilon per (seed, method, ratio) of one dataset's ``prune`` stage."""
    return read_table(Path(root, "results", "prune", key, "summary.csv"))


def middle_ratio(ratios: Sequence[float]) -> float:
    """The middle one of the pruning ratios above 0 (the ratio the method page illustrates)."""
    positive = sorted(r for r in ratios if r > 0)
    if not positive:
        raise ValueError(f"no pruning ratio above 0 in {list(ratios)}")
    return float(positive[(len(positive) - 1) // 2])


def keep_column(method: str, ratio: float) -> str:
    """Name of the keep/remove column of ``method`` at ``ratio`` in the ``prune`` table."""
    from fusion.pipeline import column

    return column(method, ratio)


def removal_curve(importance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running mean of the sorted importances: the smallest epsilon that removes each fraction.

    Removing the k least important samples is the largest removal whose mean
    importance is at most the k-prefix mean, so this curve is the
    epsilon-to-ratio map of FUSION's discrete optimisation (METHOD.md step 6).

    Args:
        importance: ``I`` of the pool, any order.

    Returns:
        ``(fraction_removed, epsilon)``, both of length ``len(importance)``.
    """
    s = np.sort(np.asarray(importance, dtype=np.float64))
    k = np.arange(1, len(s) + 1)
    return k / len(s), np.cumsum(s) / k


def plot_u_vs_w(scores: pd.DataFrame, column: str | None = None) -> Any:
    """Uncertainty ``U`` against redundancy weight ``W``, coloured by importance ``I``.

    Args:
        scores: :func:`pool_scores` output.
        column: Optional keep/remove column (``fusion@0.4``); removed samples get a red edge.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4))
    sc = ax.scatter(scores["W"], scores["U"], c=scores["I"], s=14, cmap="viridis")
    if column is not None and column in scores:
        removed = ~scores[column].astype(bool)
        ax.scatter(
            scores.loc[removed, "W"],
            scores.loc[removed, "U"],
            s=30,
            facecolors="none",
            edgecolors="C3",
            linewidths=0.7,
            label=f"removed by {column}",
        )
        ax.legend(fontsize=7)
    fig.colorbar(sc, ax=ax, label="importance I = U / W")
    ax.set(xlabel="redundancy weight W = exp(-γ d_NN)", ylabel="uncertainty score U")
    fig.tight_layout()
    return fig


def plot_ranking_and_epsilon(
    scores: pd.DataFrame, summary: pd.DataFrame, seed: int, method: str = "fusion"
) -> Any:
    """Two panels: the sorted importances with the removed prefix, and the epsilon-ratio curve.

    Args:
        scores: :func:`pool_scores` output of ``seed``.
        summary: :func:`prune_summary` output (the epsilon found per ratio).
        seed: Split seed (selects the rows of ``summary``).
        method: The method whose epsilons are marked. Defaults to ``"fusion"``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = summary[(summary["seed"] == seed) & (summary["method"] == method) & (summary["ratio"] > 0)]
    s = np.sort(scores["I"].to_numpy())
    axes[0].plot(np.arange(len(s)), s, color="k", lw=1)
    for k, (_, row) in enumerate(rows.sort_values("ratio").iterrows()):
        n = int(row["n_removed"])
        axes[0].axvspan(0, n, color=f"C{k}", alpha=0.15, label=f"removed at r={row['ratio']:g} ({n})")
    axes[0].set(xlabel="rank (ascending I)", ylabel="importance I", title="the I ranking")
    axes[0].legend(fontsize=7)
    frac, eps = removal_curve(s)
    axes[1].plot(frac, eps, color="k", lw=1, label="mean I of the removed prefix")
    for k, (_, row) in enumerate(rows.sort_values("ratio").iterrows()):
        axes[1].plot(
            row["n_removed"] / row["n_pool"],
            row["epsilon"],
            "o",
            color=f"C{k}",
            label=f"r={row['ratio']:g}: ε={row['epsilon']:.4g}",
        )
    axes[1].set(xlabel="fraction removed", ylabel="ε (bound on mean I of removed)", title="ε against ratio")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def pca_2d(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``X`` on their first two principal components.

    Returns:
        ``(coords [n, 2], explained_variance_ratio [2])``.
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    _, sv, vt = np.linalg.svd(Xc, full_matrices=False)
    var = sv**2
    return Xc @ vt[:2].T, var[:2] / max(var.sum(), np.finfo(float).tiny)


def pool_projection(key: str, scores: pd.DataFrame, root: str | Path = ".") -> tuple[np.ndarray, np.ndarray]:
    """PCA of the SOAP fingerprints of the pool rows of ``scores`` (same order)."""
    from fusion.fingerprints import load_fingerprints

    ids, X, _ = load_fingerprints(Path(root, "cache", "fingerprints", f"{key}.npz"))
    pos = {str(i): k for k, i in enumerate(ids)}
    return pca_2d(X[[pos[i] for i in scores["id"]]])


def plot_projection(
    scores: pd.DataFrame,
    coords: np.ndarray,
    methods: Sequence[str],
    ratio: float,
    explained: np.ndarray | None = None,
    ncols: int = 3,
) -> Any:
    """Kept vs removed samples of each method at ``ratio`` in the 2-D fingerprint projection.

    Args:
        scores: :func:`pool_scores` output (``<method>@<ratio>`` keep columns).
        coords: ``[n_pool, 2]`` projection in the row order of ``scores``.
        methods: Methods shown, one panel each (missing columns are skipped).
        ratio: Pruning ratio shown.
        explained: Explained variance ratios of the two axes, for the labels.
        ncols: Panels per row. Defaults to 3.
    """
    plt = pyplot()
    cols = [(m, f"{m}@{ratio:g}") for m in methods if f"{m}@{ratio:g}" in scores]
    n = max(1, len(cols))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(cols) :]:
        ax.set_visible(False)
    ev = explained if explained is not None else np.full(2, np.nan)
    for ax, (method, col) in zip(axes.flat, cols, strict=False):
        keep = scores[col].astype(bool).to_numpy()
        ax.scatter(*coords[~keep].T, s=8, color="C3", alpha=0.6, label=f"removed ({(~keep).sum()})")
        ax.scatter(*coords[keep].T, s=8, color="C0", alpha=0.8, label=f"kept ({keep.sum()})")
        ax.set(
            title=f"{method}, r={ratio:g}",
            xlabel=f"PC1 ({100 * ev[0]:.0f} %)",
            ylabel=f"PC2 ({100 * ev[1]:.0f} %)",
        )
        ax.legend(fontsize=6, markerscale=1.5)
    fig.tight_layout()
    return fig


def method_numbers(scores: pd.DataFrame, summary: pd.DataFrame, seed: int, ratio: float) -> dict[str, Any]:
    """Numbers the method page quotes for one pool: size, correlations, epsilon at ``ratio``."""
    from scipy.stats import spearmanr

    row = summary[
        (summary["seed"] == seed) & (summary["method"] == "fusion") & np.isclose(summary["ratio"], ratio)
    ]
    return {
        "pool_size": len(scores),
        "rho_U_I": float(spearmanr(scores["U"], scores["I"]).statistic),
        "rho_W_I": float(spearmanr(scores["W"], scores["I"]).statistic),
        "W_min": float(scores["W"].min()),
        "W_max": float(scores["W"].max()),
        "U_min": float(scores["U"].min()),
        "U_max": float(scores["U"].max()),
        "epsilon": float(row["epsilon"].iloc[0]) if len(row) else float("nan"),
        "n_removed": int(row["n_removed"].iloc[0]) if len(row) else 0,
        "ratio": float(ratio),
        "ratio_pct": 100.0 * float(ratio),
    }


# ----------------------------------------------------------------------------- results page


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.4g}" if not np.isfinite(std) else f"{mean:.4g} ± {std:.2g}"


def reference_table(summary: pd.DataFrame, baseline: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Unpruned test MAE of every architecture beside the mean predictor's, per dataset.

    Args:
        summary: ``results/analysis/summary.csv``.
        baseline: ``results/analysis/mean_predictor.csv`` (``dataset``, ``seed``, ``test_mae``).

    Returns:
        The display table (``dataset``, ``mean predictor``, one column per architecture,
        each as mean over seeds and, in brackets, its ratio to the mean predictor) and
        glue values: ``n_ref_cells`` (dataset × architecture pairs) and
        ``n_ref_below`` (pairs more than 10 % below the mean predictor).
    """
    if summary.empty or baseline.empty:
        return pd.DataFrame(), {"n_ref_cells": 0, "n_ref_below": 0}
    floor = baseline.groupby("dataset")["test_mae"].mean()
    full = summary[summary["ratio"] == 0].pivot_table(
        index="dataset", columns="arch", values="mean", aggfunc="mean"
    )
    ratio = full.div(floor.reindex(full.index), axis=0)
    table = pd.DataFrame(
        {arch: [f"{m:.4g} ({r:.2f})" for m, r in zip(full[arch], ratio[arch], strict=True)] for arch in full},
        index=full.index,
    )
    table.insert(0, "mean predictor", [f"{v:.4g}" for v in floor.reindex(full.index)])
    table.columns.name = None
    values = {"n_ref_cells": int(ratio.notna().sum().sum()), "n_ref_below": int((ratio < 0.9).sum().sum())}
    return table.reset_index(), values


def uncertainty_target_summary(table: pd.DataFrame, sign: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per dataset, the mean over seeds of the uncertainty-target rank correlations.

    Args:
        table: ``results/analysis/uncertainty_vs_target.csv``.
        sign: The run's aleatoric sign ``s``; with ``Lambda = 0``, ``U`` falls
            as ``s * U_ale`` falls.

    Returns:
        The display table and glue values: ``rho_ale_max`` (the largest mean
        correlation of ``U_ale`` with the target), its dataset ``rho_ale_max_dataset``,
        and ``prefix_end``: the end of the target range (``large``/``small``) that a
        positive correlation puts first in FUSION's removal order when ``Lambda = 0``.
    """
    if table.empty:
        return pd.DataFrame(), {"rho_ale_max": float("nan"), "rho_ale_max_dataset": "–", "prefix_end": "–"}
    cols = {
        "spearman_target_u_ale": "ρ(target, U_ale)",
        "spearman_target_u_epi": "ρ(target, U_epi)",
        "spearman_target_U": "ρ(target, U)",
    }
    mean = table.groupby("dataset")[list(cols)].mean()
    shown = mean.rename(columns=cols).map(lambda v: f"{v:+.2f}").reset_index()
    best = mean["spearman_target_u_ale"].idxmax()
    return shown, {
        "rho_ale_max": float(mean.loc[best, "spearman_target_u_ale"]),
        "rho_ale_max_dataset": str(best),
        "prefix_end": "large" if sign < 0 else "small",
    }


def main_table(
    summary: pd.DataFrame, tests: pd.DataFrame, method: str = "fusion", reference: str = "random"
) -> pd.DataFrame:
    """Test MAE per dataset × architecture × ratio (rows) and method (columns), mean ± std over seeds.

    Args:
        summary: ``results/analysis/summary.csv`` (``mean``, ``std``, ``n`` per key).
        tests: ``results/analysis/tests.csv`` (paired tests against the reference).
        method: The method whose paired test is shown. Defaults to ``"fusion"``.
        reference: The reference of the tests. Defaults to ``"random"``.

    Returns:
        A display table: ``dataset``, ``arch``, ``ratio``, ``seeds``, one column per
        method, and the paired t-test and Wilcoxon p-values of ``method`` vs ``reference``.
    """
    if summary.empty:
        return pd.DataFrame()
    cell = summary.assign(cell=[_fmt(m, s) for m, s in zip(summary["mean"], summary["std"], strict=True)])
    wide = cell.pivot_table(
        index=["dataset", "arch", "ratio"], columns="method", values="cell", aggfunc="first"
    )
    seeds = summary.groupby(["dataset", "arch", "ratio"])["n"].max().rename("seeds")
    out = wide.join(seeds).reset_index()
    if not tests.empty:
        t = tests[tests["method"] == method].set_index(["dataset", "arch", "ratio"])
        p = t[["t_pvalue", "wilcoxon_pvalue"]].rename(
            columns={
                "t_pvalue": f"p (t, {method} vs {reference})",
                "wilcoxon_pvalue": f"p (Wilcoxon, {method} vs {reference})",
            }
        )
        out = out.merge(p.reset_index(), on=["dataset", "arch", "ratio"], how="left")
    out.columns.name = None
    return out


def improvement_matrix(improvement: pd.DataFrame, method: str = "fusion") -> pd.DataFrame:
    """Mean improvement over the reference (%) of ``method`` per architecture (rows) and dataset (columns).

    Averaged over the pruning ratios above 0.
    """
    data = improvement[(improvement["method"] == method) & (improvement["ratio"] > 0)]
    return data.pivot_table(index="arch", columns="dataset", values="improvement_pct", aggfunc="mean")


def plot_improvement_heatmap(improvement: pd.DataFrame) -> Any:
    """Heatmaps of the improvement over random (%), architectures × datasets, one panel per method.

    The surrogate is one architecture; the other rows show how far its pruning
    transfers (the paper's cross-model setting).
    """
    plt = pyplot()
    methods = sorted(improvement["method"].unique(), key=lambda m: (m != "fusion", m))
    n = max(1, len(methods))
    ncols = min(3, n)
    nrows = int(np.ceil(n / ncols))
    mats = [improvement_matrix(improvement, m) for m in methods]
    lim = max([np.nanmax(np.abs(m.to_numpy())) for m in mats if m.size] + [1.0])
    height = 1.2 + 0.45 * max(3, *(len(m) for m in mats))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.8 * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(methods) :]:
        ax.set_visible(False)
    im = None
    for ax, method, mat in zip(axes.flat, methods, mats, strict=False):
        im = ax.imshow(mat.to_numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(mat.shape[1]), mat.columns, fontsize=8)
        ax.set_yticks(range(mat.shape[0]), mat.index, fontsize=8)
        for (i, j), v in np.ndenumerate(mat.to_numpy()):
            ax.text(j, i, f"{v:+.1f}", ha="center", va="center", fontsize=7)
        ax.set_title(method, fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat[: len(methods)]), label="improvement over random (%)", shrink=0.8)
    return fig


def optimal_table(optimal: pd.DataFrame) -> pd.DataFrame:
    """The optimal-point search: mean test MAE and improvement vs ratio 0 per dataset and ratio."""
    if optimal.empty:
        return optimal
    g = optimal.groupby(["dataset", "arch", "ratio"])
    out = g.agg(
        test_mae=("test_mae", "mean"),
        mae_std=("test_mae", "std"),
        improvement_pct=("improvement_pct", "mean"),
        seeds=("seed", "nunique"),
    ).reset_index()
    return out.round({"test_mae": 4, "mae_std": 3, "improvement_pct": 2})


def plot_optimal(optimal: pd.DataFrame) -> Any:
    """MAE improvement (%) against the fraction FUSION removes, per dataset (mean ± std over seeds)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for k, (ds, part) in enumerate(optimal.groupby("dataset", sort=True)):
        g = part.groupby("ratio")["improvement_pct"]
        ax.errorbar(
            100 * g.mean().index,
            g.mean(),
            yerr=g.std().fillna(0),
            marker="o",
            ms=3,
            capsize=2,
            label=str(ds),
            color=f"C{k}",
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="% of the pool removed by FUSION", ylabel="MAE improvement vs no pruning (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def ood_table(ood: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-cluster-out test MAE per dataset, held-out cluster and method."""
    if ood.empty:
        return ood
    wide = (
        ood.pivot_table(
            index=["dataset", "arch", "cluster", "cluster_size"], columns="method", values="test_mae"
        )
        .round(4)
        .reset_index()
    )
    wide.columns.name = None
    return wide


def plot_ood(ood: pd.DataFrame) -> Any:
    """Leave-one-cluster-out test MAE, bars per held-out cluster and method, one panel per dataset."""
    plt = pyplot()
    panels = list(ood.groupby("dataset", sort=True))
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.3), squeeze=False)
    for ax, (ds, part) in zip(axes.flat, panels, strict=False):
        wide = part.pivot_table(index="cluster", columns="method", values="test_mae")
        width = 0.8 / max(1, wide.shape[1])
        for k, method in enumerate(wide.columns):
            ax.bar(wide.index + k * width, wide[method], width=width, label=method, color=f"C{k}")
        ax.set(title=str(ds), xlabel="held-out cluster", ylabel="test MAE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def result_numbers(
    improvement: pd.DataFrame,
    optimal: pd.DataFrame,
    ood: pd.DataFrame,
    method: str = "fusion",
    reference: str = "random",
) -> dict[str, Any]:
    """Numbers the results and paper pages quote, computed from the analysis tables.

    Returns:
        ``imp_mean``/``imp_min``/``imp_max``: FUSION's improvement over random
        (%), averaged over architectures and ratios > 0 per dataset, then its
        mean, min and max over datasets; ``imp_cells_pos``/``imp_cells``: the
        dataset × arch × ratio cells where FUSION beats random; ``opt_ratio`` and
        ``opt_imp``: the best optimal point (largest improvement over all
        datasets); ``ood_imp``: mean out-of-distribution improvement over random.
    """
    out: dict[str, Any] = {"method": method, "reference": reference}
    imp = improvement[(improvement["method"] == method) & (improvement["ratio"] > 0)]
    per = imp.groupby("dataset")["improvement_pct"].mean()
    out.update(
        imp_mean=float(per.mean()) if len(per) else float("nan"),
        imp_min=float(per.min()) if len(per) else float("nan"),
        imp_max=float(per.max()) if len(per) else float("nan"),
        imp_cells=len(imp),
        imp_cells_pos=int((imp["improvement_pct"] > 0).sum()),
    )
    if len(optimal):
        # The same definition as results/metrics.json: improvement of the seed-mean MAE.
        points = headline(improvement, optimal)["optimal_point"]
        ds = max(points, key=lambda k: points[k]["improvement_pct"])
        out.update(
            opt_ratio_pct=100 * points[ds]["ratio"],
            opt_imp=points[ds]["improvement_pct"],
            opt_dataset=str(ds),
        )
    else:
        out.update(opt_ratio_pct=float("nan"), opt_imp=float("nan"), opt_dataset="none")
    if len(ood) and {method, reference} <= set(ood["method"]):
        mean = ood.groupby("method")["test_mae"].mean()
        out["ood_imp"] = float(100 * (mean[reference] - mean[method]) / mean[reference])
    else:
        out["ood_imp"] = float("nan")
    return out


# ----------------------------------------------------------------------------- paper page


def jdft2d_vs_diversity(summary: pd.DataFrame, key: str = "jdft2d", ratio: float = 0.8) -> float:
    """How much lower FUSION's MAE is than diversity sampling's (%), averaged over architectures.

    NaN when the dataset, ratio or either method is missing from ``summary``.
    """
    part = summary[(summary["dataset"] == key) & np.isclose(summary["ratio"], ratio)]
    mean = part.groupby("method")["mean"].mean()
    if not {"fusion", "diversity"} <= set(mean.index):
        return float("nan")
    return float(100 * (mean["diversity"] - mean["fusion"]) / mean["diversity"])


def paper_comparison(numbers: Mapping[str, Any], vs_diversity: float) -> pd.DataFrame:
    """The paper's claims (quoted constants) beside this run's measurements.

    Args:
        numbers: :func:`result_numbers` output.
        vs_diversity: :func:`jdft2d_vs_diversity` output.
    """
    p = PAPER_CLAIMS
    rows = [
        (
            "FUSION vs random, range over datasets (%)",
            f"{p['improvement_min_pct']:.2f} to {p['improvement_max_pct']:.2f}",
            f"{numbers['imp_min']:.2f} to {numbers['imp_max']:.2f}",
        ),
        ("FUSION vs random, average (%)", f"{p['improvement_mean_pct']:.2f}", f"{numbers['imp_mean']:.2f}"),
        (
            "optimal point: fraction removed (%)",
            f"0 to {100 * p['optimal_ratio_max']:.0f}",
            f"{numbers['opt_ratio_pct']:.1f}",
        ),
        (
            "optimal point: best MAE improvement (%)",
            f"up to {p['optimal_improvement_max_pct']:.2f}",
            f"{numbers['opt_imp']:.2f}",
        ),
        (
            "jdft2d at 80 %: FUSION MAE below diversity (%)",
            f"{p['jdft2d_80_vs_diversity_pct']:.1f}",
            f"{vs_diversity:.2f}",
        ),
    ]
    return pd.DataFrame(rows, columns=["claim", "paper (quoted, METHOD.md)", "this run (measured)"])


# ----------------------------------------------------------------------------- performance page


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts (and lists of scalars) into ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and any(isinstance(v, Mapping | list) for v in obj):
        for k, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{k}]"))
    else:
        out[prefix] = ", ".join(map(str, obj)) if isinstance(obj, list) else obj
    return out


def benchmark_table(name: str, folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """One benchmark's JSON as a two-column table (``measure``, ``value``).

    A benchmark that has not been run yields one row saying so.
    """
    data = read_json(Path(folder, f"{name}.json"))
    if not data:
        return pd.DataFrame({"measure": [f"{name}.json"], "value": ["not run yet (no file)"]})
    flat = flatten(data)
    return pd.DataFrame({"measure": list(flat), "value": [str(v) for v in flat.values()]})


def _graphs_row(data: dict[str, Any], method: str, field: str) -> float | None:
    rows = [r for r in data.get("results", []) if r["dataset"] == "perov5_castelli" and r["method"] == method]
    return float(rows[0][field]) if rows else None


def _selection_seconds(data: dict[str, Any], n: int) -> float | None:
    rows = [r for r in data.get("fusion", []) if r["n"] == n]
    return float(rows[0]["total_seconds"]) if rows else None


_COMPARE = {">=": operator.ge, "<": operator.lt, "<=": operator.le}

#: The issues' acceptance targets: (benchmark, measure, comparison, bound, read value).
TARGETS: tuple[tuple[str, str, str, float, Any], ...] = (
    (
        "graphs",
        "perov5 graphs from CIF text, x cgcnn2 (wall)",
        ">=",
        3,
        lambda d: _graphs_row(d, "fusion-cif", "speedup_wall"),
    ),
    (
        "graphs",
        "perov5 graphs from parsed structures per second (wall)",
        ">=",
        2000,
        lambda d: _graphs_row(d, "fusion-structure", "per_s_wall"),
    ),
    (
        "fingerprints",
        "whole mp_mtcgcnn SOAP, default compression, 2 cores (s)",
        "<",
        300,
        lambda d: d.get("mp_mtcgcnn_full_measured", {}).get("seconds"),
    ),
    (
        "selection",
        "FUSION selection on 10^6 fingerprints (s)",
        "<",
        300,
        lambda d: _selection_seconds(d, 1_000_000),
    ),
    (
        "train_throughput",
        "CGCNN training throughput, x cgcnn2",
        ">=",
        1.5,
        lambda d: d.get("speedup_cgcnn"),
    ),
    (
        "cgcnn_parity",
        "CGCNN test MAE / cgcnn2's (mean over seeds)",
        "<=",
        1.1,
        lambda d: d.get("mean", {}).get("ratio"),
    ),
)


def benchmark_targets(folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """Each acceptance target with the measured value read from the benchmark JSON.

    Returns:
        ``benchmark``, ``measure``, ``target``, ``measured`` (rounded, or "not run")
        and ``met`` ("yes", "no" or "–").
    """
    rows = []
    for name, measure, compare, bound, read in TARGETS:
        value = read(read_json(Path(folder, f"{name}.json")))
        met = "–" if value is None else ("yes" if _COMPARE[compare](value, bound) else "no")
        shown = "not run" if value is None else f"{value:,.3g}" if value < 100 else f"{value:,.0f}"
        row = {"benchmark": name, "measure": measure, "target": f"{compare} {bound:,g}"}
        rows.append({**row, "measured": shown, "met": met})
    return pd.DataFrame(rows)


def glue_benchmarks(
    folder: str | Path = "benchmarks/results", names: Sequence[str] = BENCHMARKS
) -> pd.DataFrame:
    """Glue each benchmark table as ``bench_<name>`` and return which files exist.

    Returns:
        ``benchmark``, ``file``, ``present`` (bool) and ``measures`` per name.
    """
    rows = []
    for name in names:
        table = benchmark_table(name, folder)
        glue_table(f"bench_{name}", table)
        present = Path(folder, f"{name}.json").exists()
        rows.append(
            {
                "benchmark": name,
                "file": f"{Path(folder, name)}.json",
                "present": present,
                "measures": len(table) if present else 0,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- plumbing


def _mathjax_source(srcdir: Path) -> Path:
    return srcdir / "node_modules" / "mathjax" / "es5"


def _copy_mathjax(app: Any, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    # Copied after the build: Sphinx never sees these files, so it adds no script tags for them.
    shutil.copytree(
        _mathjax_source(Path(app.srcdir)), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True
    )


def _check_mathjax(app: Any, config: Any) -> None:
    from sphinx.errors import ConfigError

    src = _mathjax_source(Path(app.srcdir))
    if not (src / "tex-chtml.js").exists():
        raise ConfigError(f"MathJax not found at {src}: run `npm ci --prefix book` (see book/package.json)")
    # A relative mathjax_path is resolved against _static/ of the output.
    config.mathjax_path = "mathjax/tex-chtml.js"


def _drop_remote_scripts(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    # sphinx-thebe (always loaded by Jupyter Book) inlines the CDN address of
    # thebe on every page; the book has no launch button, so the line is dropped.
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [
            js for js in scripts if "://" not in str(getattr(js, "attributes", {}).get("body", ""))
        ]


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: an offline book, with MathJax 3 from ``book/node_modules``.

    The book is read offline, so the MathJax tree (npm ``mathjax``, pinned in
    ``book/package.json``, installed by ``npm ci --prefix book``) is copied to
    ``_static/mathjax/`` of the HTML output after the build and ``mathjax_path``
    points there. It is not put in the book's source ``_static`` folder, where
    Sphinx would add a script tag for every ``.js`` file. Inline scripts that
    name a remote URL (sphinx-thebe's CDN address) are removed from every page.
    """
    app.connect("config-inited", _check_mathjax)
    app.connect("html-page-context", _drop_remote_scripts)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
