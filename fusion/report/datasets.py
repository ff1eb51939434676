"""The data page: one card per dataset (numbers, histograms, structure gallery) and the skipped records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.report.crystals import load_structures, plot_structures
from fusion.report.figures import pyplot
from fusion.report.glue import glue_figure, glue_values
from fusion.report.inputs import read_json, read_table


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


def overview_table(keys: Sequence[str], root: str | Path = ".") -> pd.DataFrame:
    """The datasets side by side (one column each), from the ``prepare`` summaries, with units.

    Transposed so that four datasets fit the page's column.
    """
    rows: dict[str, dict[str, str]] = {}
    for key in keys:
        s = read_json(Path(root, "results", "prepare", key, "summary.json"))
        if not s:
            continue
        unit = s.get("unit", "")
        kept = f"{s['n_kept']:,}" + (" (seeded random subsample)" if s.get("limit") else "")
        rows[key] = {
            "dataset": s["dataset"],
            "target (unit)": f"{s['target']} ({unit})",
            "records read": f"{s['n_read']:,}",
            "records used": kept,
            "skipped": f"{s['n_skipped']:,}",
            "elements": str(s["n_elements"]),
            "atoms per cell, mean (max)": f"{s['nsites_mean']:.1f} ({s['nsites_max']})",
            "target mean ± std": f"{s['target_mean']:.4g} ± {s['target_std']:.3g}",
            "target median": f"{s['target_median']:.4g}" if "target_median" in s else "",
            "target range": f"{s['target_min']:.4g} to {s['target_max']:.4g}",
        }
    table = pd.DataFrame(rows)
    table.insert(0, "", table.index)
    return table


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
