"""The visual report of a prune: ``report.html``, one offline file beside the CSVs.

:func:`write_report` (called by :meth:`fusion.prune_result.PruneResult.write`;
``fusion prune --no-report`` skips it) writes a self-contained HTML page: the
figures are matplotlib PNGs embedded as base64, the style is inline, and the
page refers to nothing outside itself (no URL, no CDN), so it opens anywhere,
offline, and can be mailed as is. Sections, in order:

* **Run**: data, target, method, records, options;
* **Selection**: per ratio, kept and removed counts, epsilon, the target shift;
* **Surrogate**: its validation MAE next to the median predictor's on the same
  records, epochs run, early stop, device;
* **Uncertainty U against redundancy weight W**: one scatter per ratio, kept
  and removed records coloured;
* **Sorted importance I**: ``I = U / W`` in ascending order with the running
  mean of the lowest ``k``, and each ratio's threshold epsilon (the running mean
  crosses epsilon where the removal set ends);
* **Target distribution**: histograms of the kept and removed targets per ratio;
* **Fingerprint map**: the first two principal components of the SOAP
  fingerprints (:func:`fusion.report.pca.pca`), kept and removed coloured;
* **Warnings** and, with a working folder, what was reused.

A panel whose quantity the method does not compute (``random`` has neither U
nor W) is left out with a one-line note. Kept records take the method's colour
from :mod:`fusion.report.palette`, removed ones its grey.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion.prune_options import capped_text
from fusion.report.pca import pca

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fusion.prune_result import PruneResult

#: Section titles, in page order (tests look for them).
TITLES = {
    "run": "Run",
    "selection": "Selection",
    "surrogate": "Surrogate",
    "uw": "Uncertainty U against redundancy weight W",
    "importance": "Sorted importance I and the threshold epsilon",
    "targets": "Target distribution of kept and removed records",
    "map": "Fingerprint map",
    "warnings": "Warnings",
    "workdir": "Working folder",
}
#: Panels per row when a figure shows one panel per ratio.
PANELS_PER_ROW = 3

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
p.note { color: #666; font-style: italic; }
p.caption { color: #444; font-size: 0.92em; }
ul.warnings li { color: #8a4b00; }
"""


def _colors(method: str) -> tuple[str, str]:
    """``(kept, removed)`` colours: the method's palette colour and the palette's grey."""
    from fusion.report import palette

    kept = palette.STYLES[method].color if method in palette.STYLES else palette.OKABE_ITO["vermillion"]
    return kept, palette.OKABE_ITO["grey"]


def _ratio_colors(n: int) -> list[str]:
    """One distinguishable colour per ratio (Okabe-Ito, cycled)."""
    from fusion.report import palette

    names = ["blue", "orange", "bluish_green", "reddish_purple", "sky_blue", "vermillion", "black"]
    return [palette.OKABE_ITO[names[k % len(names)]] for k in range(n)]


def _png(fig: Figure) -> str:
    """The figure as an ``<img>`` with a base64 PNG (no software URL in its metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _panels(n: int) -> tuple[Figure, list[Any]]:
    """A figure with ``n`` panels, :data:`PANELS_PER_ROW` per row (the spare ones hidden)."""
    from matplotlib.figure import Figure

    cols = min(n, PANELS_PER_ROW)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.3 * cols, 3.6 * rows), layout="constrained")
    axes = list(np.ravel(fig.subplots(rows, cols, squeeze=False)))
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _masks(result: PruneResult) -> dict[float, np.ndarray]:
    """Per ratio, the kept mask over :attr:`PruneResult.ids`."""
    return {r: np.asarray(sel.kept_mask, dtype=bool) for r, sel in result.selections.items()}


def _kept_removed_scatter(
    result: PruneResult, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str
) -> Figure:
    """One scatter per ratio of ``(x, y)``, removed records in grey under the kept ones."""
    kept_c, removed_c = _colors(result.method)
    masks = _masks(result)
    fig, axes = _panels(len(masks))
    size = 14 if len(x) <= 500 else 5
    for ax, (r, kept) in zip(axes, masks.items(), strict=True):
        ax.scatter(
            x[~kept], y[~kept], s=size, c=removed_c, alpha=0.7, lw=0, label=f"removed ({(~kept).sum()})"
        )
        ax.scatter(x[kept], y[kept], s=size, c=kept_c, alpha=0.8, lw=0, label=f"kept ({kept.sum()})")
        ax.set_title(f"ratio {r:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, loc="best")
    return fig


def figure_uw(result: PruneResult) -> Figure | None:
    """U against W per ratio, or None when the method lacks U or W."""
    U, W = result.scores["U"].to_numpy(float), result.scores["W"].to_numpy(float)
    if np.isnan(U).all() or np.isnan(W).all():
        return None
    return _kept_removed_scatter(
        result, W, U, "redundancy weight W = exp(-gamma d_NN)", "uncertainty score U"
    )


def figure_importance(result: PruneResult) -> Figure | None:
    """Sorted importance with its running mean and each ratio's epsilon, or None without I."""
    from matplotlib.figure import Figure

    I = result.scores["I"].to_numpy(float)
    if np.isnan(I).all():
        return None
    I = np.sort(I[np.isfinite(I)])
    k = np.arange(1, len(I) + 1)
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(k, I, color="#222222", lw=1.5, label="I, ascending")
    ax.plot(k, np.cumsum(I) / k, color="#666666", lw=1.2, ls="--", label="mean of the lowest k")
    for color, (r, sel) in zip(_ratio_colors(len(result.selections)), result.selections.items(), strict=True):
        n_removed = len(sel.removed_ids)
        if sel.epsilon is None or n_removed == 0:
            continue
        ax.axhline(
            sel.epsilon, color=color, ls=":", lw=1.3, label=f"ratio {r:g}: epsilon = {sel.epsilon:.4g}"
        )
        ax.axvline(n_removed, color=color, ls="-", lw=0.8, alpha=0.6)
    ax.set_xlabel("k (records in ascending order of I)")
    ax.set_ylabel("importance I = U / W")
    ax.legend(fontsize=8, loc="best")
    return fig


def figure_targets(result: PruneResult) -> Figure:
    """Histograms of kept and removed targets, one panel per ratio, shared bins."""
    y = result.scores["target"].to_numpy(float)
    kept_c, removed_c = _colors(result.method)
    bins = np.histogram_bin_edges(y, bins=min(40, max(5, int(np.sqrt(len(y))))))
    masks = _masks(result)
    fig, axes = _panels(len(masks))
    for ax, (r, kept) in zip(axes, masks.items(), strict=True):
        ax.hist(y[kept], bins=bins, color=kept_c, alpha=0.65, label=f"kept ({kept.sum()})")
        if (~kept).any():
            ax.hist(
                y[~kept],
                bins=bins,
                color=removed_c,
                histtype="step",
                lw=1.8,
                label=f"removed ({(~kept).sum()})",
            )
        ax.set_title(f"ratio {r:g}")
        ax.set_xlabel(f"target: {result.target}")
        ax.set_ylabel("records")
        ax.legend(fontsize=8, loc="best")
    return fig


def figure_map(result: PruneResult) -> tuple[Figure, np.ndarray] | None:
    """The fingerprint map per ratio and the explained variance, or None without fingerprints."""
    if result.fingerprints is None:
        return None
    coords, explained = pca(result.fingerprints)
    fig = _kept_removed_scatter(
        result,
        coords[:, 0],
        coords[:, 1],
        f"PC 1 ({100 * explained[0]:.1f} % of the variance)",
        f"PC 2 ({100 * explained[1]:.1f} % of the variance)",
    )
    return fig, explained


def _fmt(value: Any) -> str:
    """A table cell: numbers compactly, None as n/a, everything escaped."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value), quote=False)


def _table(header: list[str] | None, rows: list[list[Any]]) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for k, v in enumerate(row):
            if header is None and k == 0:
                cells.append(f"<th>{_fmt(v)}</th>")
            else:
                num = isinstance(v, int | float) and not isinstance(v, bool)
                cells.append(f'<td class="num">{_fmt(v)}</td>' if num else f"<td>{_fmt(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text, quote=False)}</p>'


def _caption(text: str) -> str:
    return f'<p class="caption">{html.escape(text, quote=False)}</p>'


def _missing(result: PruneResult, what: str) -> str:
    """Why the method has no ``what`` (U, W, I, fingerprints), in a few words."""
    from fusion.prune_options import METHOD_HELP

    return f"Not drawn: method '{result.method}' computes no {what} (it removes first: {METHOD_HELP[result.method]})."


def _section(key: str, *parts: str) -> str:
    return (
        f'<section id="{key}">\n<h2>{html.escape(TITLES[key], quote=False)}</h2>\n'
        + "\n".join(parts)
        + "\n</section>"
    )


def render_report(result: PruneResult) -> str:
    """The report's HTML: one self-contained page (module docstring).

    Args:
        result: The prune's result.

    Returns:
        The HTML text.
    """
    o = result.options
    run_rows: list[list[Any]] = [
        ["data", result.data],
        ["target", result.target],
        ["method", result.method],
        ["records", len(result.ids)],
        ["skipped (bad) records", len(result.skipped)],
        ["ratios (fraction removed)", ", ".join(f"{r:g}" for r in result.ratios)],
    ]
    shown = ("gamma", "lambda", "aleatoric_sign", "compression", "seed", "workers", "scheduler")
    run_rows += [[name, o[name]] for name in shown if o.get(name) is not None]
    run_rows.append(["time (s)", round(result.seconds, 1)])
    sections = [_section("run", _table(None, run_rows))]

    sel_rows = []
    for r, sel in result.selections.items():
        s = result.shift[r]
        sel_rows.append(
            [
                r,
                len(sel.kept_ids),
                len(sel.removed_ids),
                None if sel.epsilon is None else float(sel.epsilon),
                s["kept_mean"],
                s["removed_mean"],
                s["ks"],
                s["top_decile_share"],
            ]
        )
    sections.append(
        _section(
            "selection",
            _table(
                [
                    "ratio",
                    "kept",
                    "removed",
                    "epsilon",
                    "target mean, kept",
                    "target mean, removed",
                    "KS distance",
                    "top-decile share",
                ],
                sel_rows,
            ),
            _caption(
                "Top-decile share: the kept set's share of the pool's top-decile targets (0.10 unshifted)."
            ),
        )
    )

    q = result.surrogate
    if q is None:
        sections.append(
            _section("surrogate", _note(f"No surrogate: method '{result.method}' does not train one."))
        )
    else:
        rows = [
            ["model", f"{q['model']} ({q['size']} size)"],
            ["device", q["device"]],
            ["validation MAE (surrogate)", q["val_mae"]],
            ["validation MAE (median predictor)", q["median_val_mae"]],
            ["records (train / validation)", f"{q['n_train']} / {q['n_val']}"],
            [
                "epochs run (of max)",
                f"{q['epochs_run']} of {q['max_epochs']}" + capped_text(q, " (", ")"),
            ],
            ["best epoch", q["best_epoch"]],
            ["early stop", f"yes (patience {q['patience']})" if q["stopped_early"] else "no"],
            ["training time (s)", q["seconds"]],
        ]
        if q.get("reused"):
            rows.append(["reused from the working folder", True])
        verdict = (
            "The surrogate beats the median predictor on its validation records."
            if q["val_mae"] < q["median_val_mae"]
            else "The surrogate does not beat the median predictor: its U may mean little."
        )
        sections.append(_section("surrogate", _table(None, rows), _caption(verdict)))

    fig = figure_uw(result)
    if fig is None:
        U_nan = result.scores["U"].isna().all()
        what = "U or W" if U_nan and result.scores["W"].isna().all() else ("U" if U_nan else "W")
        sections.append(_section("uw", _note(_missing(result, what))))
    else:
        sections.append(
            _section(
                "uw",
                _png(fig),
                _caption(
                    "Each point is a record. FUSION removes records of low importance I = U / W: "
                    "low uncertainty (bottom) and high redundancy (right)."
                ),
            )
        )

    fig = figure_importance(result)
    if fig is None:
        sections.append(_section("importance", _note(_missing(result, "importance I = U / W"))))
    else:
        sections.append(
            _section(
                "importance",
                _png(fig),
                _caption(
                    "The removal set is the largest set whose mean importance stays at or below epsilon: "
                    "the lowest k records, where the running mean (dashed) crosses epsilon (dotted); "
                    "vertical lines mark each ratio's removal count."
                ),
            )
        )

    sections.append(_section("targets", _png(figure_targets(result))))

    got = figure_map(result)
    if got is None:
        sections.append(_section("map", _note(_missing(result, "fingerprints"))))
    else:
        fig, explained = got
        sections.append(
            _section(
                "map",
                _png(fig),
                _caption(
                    f"SOAP fingerprints projected on their first two principal components "
                    f"({100 * explained[:2].sum():.1f} % of the variance): nearby points are similar crystals."
                ),
            )
        )

    if result.warnings:
        items = "\n".join(f"<li>{html.escape(w, quote=False)}</li>" for w in result.warnings)
        sections.append(_section("warnings", f'<ul class="warnings">\n{items}\n</ul>'))
    else:
        sections.append(_section("warnings", _note("No warning.")))

    if result.artefacts:
        rows = [[kind, a.get("status"), a.get("path")] for kind, a in result.artefacts.items()]
        sections.append(_section("workdir", _table(["artefact", "status", "file"], rows)))

    title = f"fusion prune: {result.method} on {result.data} ({result.target})"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title, quote=False)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title, quote=False)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def write_report(result: PruneResult, path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` (through a temporary file).

    Args:
        result: The prune's result.
        path: Output file, conventionally ``<out-dir>/report.html``.

    Returns:
        The path written.
    """
    from fusion.prune_cache import atomic_write

    text = render_report(result)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
