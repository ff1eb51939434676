"""The book's checklist of the paper: each item the paper reports, where the book shows it, and its status.

The items are METHOD.md's method steps, baselines, protocol, datasets,
architectures, claims and reference accuracies (the paper's settings are typed
from METHOD.md into :data:`PAPER`; they are constants, not measurements). The
status of every item is derived, never typed: from the run's settings
(``params.yaml``), from which pipeline stages ``dvc.lock`` records with their
outputs (:func:`fusion.report.inputs.finished_stages`, the count of
:func:`fusion.report.inputs.study_progress`) and from ``results/metrics.json``
(the verdict of the ``analyze`` stage). Rebuilding the page as the study runs
moves items from *in progress* to *reproduced* or *partly*.

Statuses:

- *reproduced*: run to completion with the paper's setting;
- *partly*: run to completion with a setting that differs from the paper's (why says how);
- *in progress*: configured, but the stages it needs have not all finished;
- *not run*: this profile does not run it;
- *not possible*: the paper's setting is beyond this run's CPU budget (GPU-scale models).

The statuses, the paper's settings, the evidence and the two status rules live
in :mod:`fusion.report.checklist_rules`, the items (one builder per group) in
:mod:`fusion.report.checklist_items`; this module builds the table and renders it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.report.checklist_items import (
    baseline_items,
    claim_items,
    data_items,
    method_items,
    protocol_items,
)
from fusion.report.checklist_rules import (
    BADGES,
    COLUMNS,
    IN_PROGRESS,
    NOT_POSSIBLE,
    NOT_RUN,
    PAPER,
    PARTLY,
    REPRODUCED,
    STATUSES,
    Evidence,
    gather,
)

__all__ = [
    "BADGES", "COLUMNS", "GROUPS", "IN_PROGRESS", "NOT_POSSIBLE", "NOT_RUN", "PAPER", "PARTLY",
    "REPRODUCED", "STATUSES", "checklist", "counts", "items", "markdown", "run_status",
]  # fmt: skip


#: The page's sections, in order; :func:`items` pairs each with its builder in
#: :mod:`fusion.report.checklist_items`.
GROUPS = ("Method", "Baselines", "Protocol", "Data and architectures", "Claims, tables and figures")


def checklist(params: Mapping[str, Any], root: str | Path = ".") -> pd.DataFrame:
    """Every item the paper reports, where the book shows it, and its status in this run.

    Args:
        params: The parsed ``params.yaml`` (the active profile).
        root: Repository root. Defaults to the working directory.

    Returns:
        One row per item: ``group`` (:data:`GROUPS`), ``item`` (a short name),
        ``paper`` (what the paper reports, from METHOD.md), ``in this book`` (a
        MyST cross-reference), ``status`` (one of :data:`STATUSES`) and ``why``.
    """
    return items(gather(params, root))


def items(ev: Evidence) -> pd.DataFrame:
    """:func:`checklist` from gathered evidence."""
    rows = []
    builders = (method_items, baseline_items, protocol_items, data_items, claim_items)
    for group, build in zip(GROUPS, builders, strict=True):
        for item in build(ev):
            status, why = item.rule()
            rows.append((group, item.name, item.paper, item.book, status, why))
    return pd.DataFrame(rows, columns=COLUMNS)


def counts(table: pd.DataFrame) -> dict[str, Any]:
    """Items per status (``n_items``, ``n_reproduced``, ``n_partly``, ...) and a sentence, for glue."""
    n = {status: int((table["status"] == status).sum()) for status in STATUSES}
    out: dict[str, Any] = {"n_items": len(table)}
    out.update({"n_" + status.replace(" ", "_"): k for status, k in n.items()})
    parts = [f"{k} {status}" for status, k in n.items() if k]
    out["checklist_summary"] = f"{len(table)} items: " + ", ".join(parts) + "."
    return out


def _cell(text: str) -> str:
    """One list-table cell on one line (a cell's text may not contain a line break)."""
    return " ".join(str(text).split()) or "–"


def markdown(table: pd.DataFrame, group: str) -> str:
    """One group of the checklist as a MyST ``list-table``, with a status badge per item.

    Args:
        table: :func:`checklist` output.
        group: One of :data:`GROUPS`.

    Raises:
        KeyError: If ``table`` has no item of ``group``.
    """
    part = table[table["group"] == group]
    if part.empty:
        raise KeyError(f"no checklist item in group {group!r}; groups: {list(dict.fromkeys(table['group']))}")
    out = ["```{list-table}", ":header-rows: 1", ":widths: 14 30 14 42", ":class: fusion-checklist", ""]
    out += ["* - item", "  - the paper (METHOD.md)", "  - in this book", "  - status"]
    for r in part.to_dict("records"):
        out += [
            f"* - **{_cell(r['item'])}**",
            f"  - {_cell(r['paper'])}",
            f"  - {_cell(r['in this book'])}",
            f"  - {{{BADGES[r['status']]}}}`{r['status']}` {_cell(r['why'])}",
        ]
    return "\n".join([*out, "```", ""])


def run_status(progress: Mapping[str, Any]) -> str:
    """One sentence on the training matrix and the analysis (:func:`fusion.report.inputs.study_progress`)."""
    done, total = progress["done"], progress["total"]
    if progress["complete"]:
        return (
            f"complete: all {total} training cells (dataset × architecture × seed) and the analysis have run."
        )
    analysis = (
        "the analysis has not run on all of them" if progress["analysed"] else "the analysis has not run yet"
    )
    return f"in progress: {done} of {total} training cells (dataset × architecture × seed) have finished and {analysis}."
