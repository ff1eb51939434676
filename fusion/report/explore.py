"""The book's interactive fingerprint map: every dataset's SOAP fingerprints in 2-D, kept and removed.

:func:`fingerprint_map` draws one dataset as a plotly figure: the first two
principal components of the SOAP fingerprints (``cache/fingerprints/<key>.npz``)
of a seeded sample of its records, the prunable pool of one split coloured by
whether a method kept or removed each structure at a ratio (one dropdown entry
per ``<method>@<ratio>`` column of ``results/prune/<key>/seed-<s>.csv``), and
the hover naming each structure's id, formula and target with its unit.
:func:`load_fingerprint_map` reads those files; :func:`figure_html` turns the
figure into HTML for the book without plotly.js, which ``book/_ext/offline.py``
serves from the book itself, so the page loads nothing from the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.report import palette
from fusion.report.pca import pca

#: Colours of the map (Okabe-Ito): kept, removed, and structures outside the prunable pool.
KEPT = palette.OKABE_ITO["blue"]
REMOVED = palette.OKABE_ITO["vermillion"]
HELD_OUT = "#BBBBBB"
MAX_POINTS = 2000  # records drawn per dataset (a seeded sample above that)
HEIGHT = 560  # px


@dataclass(frozen=True)
class MapInfo:
    """What one map shows, for its caption.

    Attributes:
        key: Dataset key.
        unit: Unit of the target.
        n_records: Records with a fingerprint.
        n_shown: Records drawn (all, or a seeded sample of :data:`MAX_POINTS`).
        sample_seed: Seed of that sample.
        n_pool_shown: Drawn records of the prunable pool of the split.
        columns: The ``<method>@<ratio>`` keep columns the dropdown offers, in its order.
        shown_first: The column drawn when the page opens (None without prune outputs).
        explained: Share of the sample's variance along each of the two axes.
    """

    key: str
    unit: str
    n_records: int
    n_shown: int
    sample_seed: int
    n_pool_shown: int
    columns: tuple[str, ...]
    shown_first: str | None
    explained: tuple[float, float]


def _keep_columns(table: pd.DataFrame) -> list[str]:
    """The ``<method>@<ratio>`` keep columns of a prune table that remove something, FUSION first."""
    found: dict[str, list[tuple[float, str]]] = {}
    for col in table.columns:
        method, sep, ratio = str(col).partition("@")
        if sep and float(ratio) > 0:
            found.setdefault(method, []).append((float(ratio), str(col)))
    return [col for m in palette.ordered(found) for _, col in sorted(found[m])]


def _label(column: str) -> str:
    """``FUSION (s = −1), 40 % removed`` for ``fusion_neg@0.4``."""
    method, _, ratio = column.partition("@")
    name = palette.label(method) if method in palette.STYLES else method
    return f"{name}, {100 * float(ratio):g} % removed"


def _target_text(values: np.ndarray) -> list[str]:
    return [f"{v:.4g}" if np.isfinite(v) else "–" for v in values]


def fingerprint_map(
    key: str,
    ids: Sequence[str],
    X: np.ndarray,
    records: pd.DataFrame,
    unit: str,
    prune: pd.DataFrame | None = None,
    target_name: str = "target",
    first: str | None = None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> tuple[Any, MapInfo]:
    """A hoverable 2-D map of one dataset's fingerprints, kept and removed for a chosen method and ratio.

    Draws the first two principal components (:func:`~fusion.report.pca.pca`) of the
    fingerprints of at most ``max_points`` records (a sample drawn with ``seed``
    when there are more). The records of the prunable pool (the rows of
    ``prune``) are coloured kept or removed by one ``<method>@<ratio>`` column;
    a dropdown switches the column. The other drawn records (held out by the
    split: its test part, and its validation part when that is not pruned) are
    grey. Hovering a point shows its id, formula and target with ``unit``.

    Args:
        key: Dataset key (for the caption).
        ids: Record id of every row of ``X``.
        X: ``[n, d]`` fingerprints.
        records: ``id``, ``target`` and ``formula`` of the records (``results/prepare/<key>/records.csv``).
        unit: Unit of the target.
        prune: The prune table of one split (``id`` and boolean ``<method>@<ratio>`` columns);
            None or empty: every record is drawn in one colour.
        target_name: Name of the target in the hover text. Defaults to ``"target"``.
        first: The column shown when the page opens. Defaults to FUSION (s = −1)
            at its middle ratio, else the first column.
        max_points: Most records drawn. Defaults to :data:`MAX_POINTS`.
        seed: Seed of the sample. Defaults to 0.

    Returns:
        ``(figure, info)``: a ``plotly.graph_objects.Figure`` with four traces:
        0 the other drawn records (``held out (not prunable)``, or every
        record without prune outputs), 1 ``pool`` (the pool's points, coloured
        by the column), 2 and 3 the legend entries ``kept (n)`` and
        ``removed (n)`` (counts of drawn points); and a :class:`MapInfo` for the caption.

    Raises:
        ValueError: If ``ids`` and ``X`` differ in length or ``first`` is not a column.
    """
    import plotly.graph_objects as go

    ids = [str(i) for i in ids]
    if len(ids) != len(X):
        raise ValueError(f"{len(ids)} ids for {len(X)} fingerprints")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(ids))
    if len(rows) > max_points:
        rows = np.sort(rng.choice(len(ids), size=max_points, replace=False))
    coords, explained = pca(X[rows])
    shown = [ids[i] for i in rows]
    rec = records.assign(id=records["id"].astype(str)).set_index("id")
    target = rec["target"].reindex(shown).to_numpy(dtype=np.float64)
    formula = rec["formula"].reindex(shown).fillna("?").astype(str).tolist()
    custom = np.column_stack([shown, formula, _target_text(target)])

    table = prune if prune is not None and len(prune) else None
    columns = _keep_columns(table) if table is not None else []
    in_pool = np.zeros(len(shown), dtype=bool)
    keep: pd.DataFrame | None = None
    if table is not None:
        pool = table.assign(id=table["id"].astype(str)).set_index("id")
        in_pool = np.array([i in pool.index for i in shown])
        keep = pool.loc[[i for i, p in zip(shown, in_pool, strict=True) if p], columns].astype(bool)
    if first is None and columns:
        fusion = [c for c in columns if c.startswith("fusion_neg@")]
        first = fusion[(len(fusion) - 1) // 2] if fusion else columns[0]
    if first is not None and first not in columns:
        raise ValueError(f"{first!r} is not a keep column of the prune table: {columns}")

    hover = (
        "<b>%{customdata[1]}</b> (id %{customdata[0]})<br>"
        f"{target_name} = %{{customdata[2]}} {unit}<br>%{{text}}<extra></extra>"
    )
    axis = [f"PC{j + 1} ({100 * explained[j]:.0f} % of the variance)" for j in range(2)]
    fig = go.Figure()
    # 0: records outside the pool (held out by the split), or all of them without prune outputs.
    rest = ~in_pool
    fig.add_trace(
        go.Scatter(
            x=coords[rest, 0],
            y=coords[rest, 1],
            mode="markers",
            name="held out (not prunable)" if table is not None else "records (no prune output yet)",
            customdata=custom[rest],
            text=["held out" if table is not None else ""] * int(rest.sum()),
            hovertemplate=hover,
            marker={"size": 5, "color": HELD_OUT if table is not None else KEPT, "line": {"width": 0}},
        )
    )
    # 1: the pool, coloured 0 (kept) / 1 (removed) through a two-colour scale, drawn over trace 0.
    fig.add_trace(
        go.Scatter(
            x=coords[in_pool, 0],
            y=coords[in_pool, 1],
            mode="markers",
            name="pool",
            showlegend=False,
            customdata=custom[in_pool],
            hovertemplate=hover,
            marker={
                "size": 6,
                "cmin": 0,
                "cmax": 1,
                "line": {"width": 0},
                "colorscale": [[0, KEPT], [0.5, KEPT], [0.5, REMOVED], [1, REMOVED]],
            },
        )
    )
    # 2, 3: legend entries of the pool's two colours, their counts updated with the column.
    for name, color in (("kept", KEPT), ("removed", REMOVED)):
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=name,
                marker={"size": 8, "color": color},
                visible=bool(columns),
            )
        )

    def state(col: str) -> dict[str, list[Any]]:
        kept = keep[col].to_numpy() if keep is not None else np.zeros(0, dtype=bool)
        return {
            "marker.color": [(~kept).astype(int).tolist(), KEPT, REMOVED],
            "text": [["kept" if k else "removed" for k in kept], [""], [""]],
            "name": ["pool", f"kept ({int(kept.sum())})", f"removed ({int((~kept).sum())})"],
        }

    if first is not None:
        start = state(first)
        fig.data[1].marker.color = start["marker.color"][0]
        fig.data[1].text = start["text"][0]
        fig.data[2].name, fig.data[3].name = start["name"][1:]
        buttons = [{"label": _label(c), "method": "restyle", "args": [state(c), [1, 2, 3]]} for c in columns]
        fig.update_layout(
            updatemenus=[
                {
                    "buttons": buttons,
                    "active": columns.index(first),
                    "direction": "down",
                    "x": 0,
                    "xanchor": "left",
                    "y": 1.02,
                    "yanchor": "bottom",
                    "showactive": True,
                }
            ]
        )
    fig.update_layout(
        template="plotly_white",
        height=HEIGHT,
        margin={"l": 60, "r": 20, "t": 60, "b": 100},
        xaxis_title=axis[0],
        yaxis_title=axis[1],
        # Below the axis title: the dropdown takes the top left.
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -0.14, "yanchor": "top"},
        hoverlabel={"align": "left"},
        font={"size": 12},
    )
    info = MapInfo(
        key=key,
        unit=unit,
        n_records=len(ids),
        n_shown=len(shown),
        sample_seed=seed,
        n_pool_shown=int(in_pool.sum()),
        columns=tuple(columns),
        shown_first=first,
        explained=(float(explained[0]), float(explained[1])),
    )
    return fig, info


def load_fingerprint_map(
    key: str,
    params: Mapping[str, Any],
    seed: int | None = None,
    root: str | Path = ".",
    max_points: int = MAX_POINTS,
) -> tuple[Any, MapInfo]:
    """:func:`fingerprint_map` of dataset ``key`` from the pipeline's files.

    Reads ``cache/fingerprints/<key>.npz``, ``results/prepare/<key>/records.csv``
    and its ``summary.json`` (the unit), and ``results/prune/<key>/seed-<seed>.csv``
    when the ``prune`` stage has written it.

    Args:
        key: Dataset key of ``params["datasets"]``.
        params: The parsed ``params.yaml``.
        seed: Split whose prune outputs are shown. Defaults to the first seed.
        root: Repository root. Defaults to the working directory.
        max_points: Most records drawn.

    Raises:
        FileNotFoundError: If the fingerprints of ``key`` do not exist.
    """
    from fusion import paths
    from fusion.fingerprints import load_fingerprints
    from fusion.report import inputs

    seed = params["seeds"][0] if seed is None else seed
    ids, X, _ = load_fingerprints(Path(root, paths.fingerprints_path(key)))
    records = inputs.read_table(Path(root, paths.records_path(key)), dtype={"id": str})
    unit = inputs.read_json(Path(root, paths.prepare_dir(key), "summary.json")).get("unit", "")
    prune = inputs.pool_scores(key, seed, root)
    target = str(params["datasets"][key].get("target", "target"))
    return fingerprint_map(
        key, ids, X, records, unit, prune, target_name=target, max_points=max_points, seed=0
    )


def figure_html(fig: Any, div_id: str) -> str:
    """The figure as an HTML fragment without plotly.js (the book serves it offline).

    Args:
        fig: A plotly figure.
        div_id: The HTML id of the plot (fixed, so that rebuilding gives the same page).
    """
    return fig.to_html(
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        default_height=f"{HEIGHT}px",
        config={
            "displaylogo": False,
            "responsive": True,
            "modeBarButtonsToRemove": ["toImage", "select2d", "lasso2d"],
        },
    )


def caption(info: MapInfo, seed: int) -> str:
    """The MyST caption of one map: what is drawn, the sample, and what the dropdown does."""
    sample = (
        f"all {info.n_records:,} records"
        if info.n_shown == info.n_records
        else f"{info.n_shown:,} of {info.n_records:,} records (a random sample, seed {info.sample_seed})"
    )
    ev = f"{100 * info.explained[0]:.0f} % and {100 * info.explained[1]:.0f} %"
    if info.shown_first is None:
        what = "The prune stage has not run on this dataset yet, so no kept or removed set is shown."
    else:
        what = (
            f"The {info.n_pool_shown:,} drawn records of the prunable pool of split {seed} are blue when "
            f"kept and vermillion when removed by the method and ratio chosen in the dropdown (opens on "
            f"{_label(info.shown_first)}); grey ones are held out by the split, outside the pool. Counts in the "
            "legend are of drawn points."
        )
    return (
        f"`{info.key}`: SOAP fingerprints of {sample} projected on their first two principal "
        f"components ({ev} of the variance). {what} Hover a point for its id, formula and target "
        f"({info.unit or 'no unit'}); drag to zoom, double-click to reset."
    )


def glue_maps(
    params: Mapping[str, Any], seed: int | None = None, root: str | Path = ".", heading: str = "###"
) -> None:
    """Glue one fingerprint map per dataset of ``params`` and display its MyST section.

    Each map is glued as ``fig_fpmap_<key>`` and labelled ``fig-fpmap-<key>``
    (underscores become hyphens); a dataset without fingerprints gets a sentence
    instead. Needs ``nb_render_markdown_format: myst``.

    Args:
        params: The parsed ``params.yaml``.
        seed: Split whose prune outputs are shown. Defaults to the first seed.
        root: Repository root. Defaults to the working directory.
        heading: Markdown heading level of each dataset's section. Defaults to ``###``.
    """
    from IPython.display import Markdown, display

    from fusion import paths
    from fusion.report.glue import glue_html

    seed = params["seeds"][0] if seed is None else seed
    for key in params["datasets"]:
        name = f"fig_fpmap_{key}"
        if not Path(root, paths.fingerprints_path(key)).exists():
            display(Markdown(f"{heading} `{key}`\n\nThe fingerprints stage has not run on `{key}` yet.\n"))
            continue
        fig, info = load_fingerprint_map(key, params, seed, root)
        glue_html(name, figure_html(fig, f"fpmap-plot-{key}"))
        label = name.replace("_", "-")
        display(
            Markdown(
                f"{heading} `{key}`\n\n```{{glue:figure}} {name}\n:name: {label}\n\n{caption(info, seed)}\n```\n"
            )
        )
