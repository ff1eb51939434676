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
nor W) is left out with a one-line note. The figures are drawn by
:mod:`fusion.prune_figures`; this module lays out the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusion.prune_figures import figure_importance, figure_map, figure_targets, figure_uw
from fusion.prune_options import capped_text

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


def _png(fig: Figure) -> str:
    """The figure as an ``<img>`` with a base64 PNG (no software URL in its metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


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
