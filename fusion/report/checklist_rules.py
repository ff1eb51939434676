"""The checklist's rules: the paper's settings, the run's evidence and the status of an item.

:mod:`fusion.report.checklist` lists the items; this module holds what every
item's rule is made of: the statuses and their badges, the paper's settings
typed from METHOD.md (:data:`PAPER`; constants, not measurements), the evidence
read from the run's files (:class:`Evidence`, :func:`gather`), the two status
rules (:func:`staged` for stage runs, :func:`analysed` for the analysis) and the
deviations of this run's setting from the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion.report import inputs

REPRODUCED = "reproduced"
PARTLY = "partly"
IN_PROGRESS = "in progress"
NOT_RUN = "not run"
NOT_POSSIBLE = "not possible"
STATUSES = (REPRODUCED, PARTLY, IN_PROGRESS, NOT_RUN, NOT_POSSIBLE)
#: sphinx-design badge of each status on the page.
BADGES = {
    REPRODUCED: "bdg-success",
    PARTLY: "bdg-info",
    IN_PROGRESS: "bdg-warning",
    NOT_RUN: "bdg-light",
    NOT_POSSIBLE: "bdg-dark",
}
COLUMNS = ["group", "item", "paper", "in this book", "status", "why"]

#: The paper's settings, typed from METHOD.md (constants, not measurements).
PAPER: dict[str, Any] = {
    "fractions": [0.7, 0.15, 0.15],
    "val_protocol": "pruned",
    "surrogate": {"model": "alignn", "size": "paper", "epochs": 300},
    "lam": 0.0,
    "soap": {"r_cut": 5.0, "n_max": 8, "l_max": 6, "sigma": 0.5},
    "gamma": 0.1,
    "ratios": [0.2, 0.4, 0.6, 0.8],
    "optimal_ratios": [round(0.005 * k, 3) for k in range(1, 21)],
    "n_seeds": 5,
    "datasets": {"matbench_dielectric": 4764, "matbench_jdft2d": 636, "matbench_perovskites": 18928},
    "architectures": [
        "alignn", "cgcnn", "comformer", "crystalframer", "deepergatgnn", "dimenetpp",
        "matformer", "megnet", "potnet", "schnet", "sodnet",
    ],
    "size": "paper",
    "epochs": 300,
    "baselines": ["uncertainty", "weight", "diversity", "active"],
}  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """What the run has produced, as the checklist reads it.

    Attributes:
        params: The parsed ``params.yaml``.
        finished: Stages that ``dvc.lock`` records with their outputs.
        progress: :func:`fusion.report.inputs.study_progress`.
        verdict: ``results/metrics.json``'s ``verdict`` (empty before the analysis).
        prepared: Dataset key -> its ``prepare`` summary (``results/prepare/<key>/summary.json``).
        soap: The SOAP settings of the fingerprints (``fusion.fingerprints.SOAP_PARAMS``).
    """

    params: Mapping[str, Any]
    finished: frozenset[str]
    progress: Mapping[str, Any]
    verdict: Mapping[str, Mapping[str, str]]
    prepared: Mapping[str, Mapping[str, Any]]
    soap: Mapping[str, float]

    def count(self, stage: str, items: Sequence[str] | None = None) -> tuple[int, int]:
        """``(finished, expected)`` runs of a stage: one per item (``stage@item``), or the stage itself."""
        names = [f"{stage}@{i}" for i in items] if items is not None else [stage]
        return sum(n in self.finished for n in names), len(names)


def gather(params: Mapping[str, Any], root: str | Path = ".") -> Evidence:
    """Read what the checklist needs from the run's files.

    Args:
        params: The parsed ``params.yaml``.
        root: Repository root. Defaults to the working directory.
    """
    from fusion import paths
    from fusion.fingerprints import SOAP_PARAMS

    metrics = inputs.read_json(Path(root, paths.metrics_path()))
    return Evidence(
        params=params,
        finished=frozenset(inputs.finished_stages(root)),
        progress=inputs.study_progress(params, root),
        verdict=metrics.get("verdict", {}) or {},
        prepared={
            k: inputs.read_json(Path(root, paths.prepare_dir(k), "summary.json")) for k in params["datasets"]
        },
        soap=dict(SOAP_PARAMS),
    )


# ----------------------------------------------------------------------------- status rules


def staged(
    done: int, total: int, what: str, deviations: Sequence[str] = (), gpu: bool = False
) -> tuple[str, str]:
    """The status of an item that needs ``total`` stage runs, ``done`` of which have finished.

    Args:
        done: Finished runs.
        total: Runs the profile configures (0: it runs none).
        what: What a run is, plural (``"training cells"``).
        deviations: How this run's setting differs from the paper's (empty: it does not).
        gpu: The deviations are the paper's GPU-scale setting, beyond the CPU budget.

    Returns:
        ``(status, why)``.
    """
    dev = "; ".join(deviations)
    if gpu and deviations:
        return NOT_POSSIBLE, f"{dev}: the paper's setting needs a GPU, beyond this run's CPU budget"
    if total == 0:
        return NOT_RUN, f"this profile runs no {what}"
    if done < total:
        then = f"; when done, partly: {dev}" if dev else ""
        return IN_PROGRESS, f"{done} of {total} {what} have finished{then}"
    if deviations:
        return PARTLY, dev
    return REPRODUCED, f"all {total} {what} have finished, with the paper's setting"


def analysed(ev: Evidence, deviations: Sequence[str] = (), verdict: str | None = None) -> tuple[str, str]:
    """The status of an item the ``analyze`` stage computes from the whole training matrix.

    Args:
        ev: The run's evidence.
        deviations: How this run's setting differs from the paper's.
        verdict: Key of the claim in ``metrics.json``'s ``verdict`` whose status and reason are quoted.
    """
    p = ev.progress
    if not p["complete"]:
        where = (
            f"{p['done']} of {p['total']} training cells have finished"
            if p["done"] < p["total"]
            else f"all {p['total']} training cells have finished"
        )
        dev = f"; when done, partly: {'; '.join(deviations)}" if deviations else ""
        return IN_PROGRESS, f"{where} and the analysis has not run on all of them{dev}"
    found = ""
    if verdict is not None:
        v = ev.verdict.get(verdict, {})
        found = f"verdict: {v.get('status', 'not evaluated')}" + (
            f" ({v['reason']})" if v.get("reason") else ""
        )
    why = "; ".join([*(d for d in deviations), *([found] if found else [])])
    return (PARTLY if deviations else REPRODUCED), why or "analysed over the complete training matrix"


def epochs_text(epochs: Any) -> str:
    """``"12 epochs"``, or ``"epochs chosen on validation"`` for ``"tuned"``."""
    return "epochs chosen on validation" if epochs == "tuned" else f"{epochs} epochs"


def surrogate_text(unc: Mapping[str, Any]) -> str:
    """``cgcnn at the cpu size, epochs chosen on validation`` (against the paper's ALIGNN)."""
    paper = PAPER["surrogate"]
    return (
        f"{unc.get('model')} at the {unc.get('size')} size, {epochs_text(unc.get('epochs'))} "
        f"(paper: {paper['model'].upper()} at the {paper['size']} size, {paper['epochs']} epochs)"
    )


def fmt_values(values: Sequence[float], pct: bool = True) -> str:
    """``"20 %, 40 %"`` (fractions as percentages), or the plain values with ``pct=False``."""
    return ", ".join(f"{100 * v:g} %" if pct else f"{v:g}" for v in values)


def scale_deviations(params: Mapping[str, Any]) -> list[str]:
    """How the trained models differ from the paper's: architectures, size, epochs, data, validation."""
    out = []
    archs = list(params["architectures"])
    paper = [a for a in archs if a in PAPER["architectures"]]
    if set(PAPER["architectures"]) - set(archs):
        out.append(f"{len(paper)} of {len(PAPER['architectures'])} architectures ({', '.join(archs)})")
    train = params.get("train", {})
    if train.get("size", PAPER["size"]) != PAPER["size"]:
        out.append(f"{train['size']} size")
    if train.get("epochs", PAPER["epochs"]) != PAPER["epochs"]:
        out.append(f"{epochs_text(train['epochs'])} (paper: {PAPER['epochs']})")
    out += data_deviations(params)
    if params.get("val_protocol", "fixed") != PAPER["val_protocol"]:
        out.append("fixed validation set")
    return out


def data_deviations(params: Mapping[str, Any]) -> list[str]:
    """The paper's datasets this run leaves out or subsamples."""
    names = {spec["name"]: (key, spec) for key, spec in params["datasets"].items()}
    out = []
    for name, n in PAPER["datasets"].items():
        if name not in names:
            out.append(f"{name} not run")
        elif names[name][1].get("limit"):
            out.append(f"{names[name][0]}: {names[name][1]['limit']:,} of {n:,} records")
    return out


# ----------------------------------------------------------------------------- the items


@dataclass(frozen=True)
class Item:
    """One item of the paper and the rule that gives its status.

    Attributes:
        name: A short name.
        paper: What the paper reports (from METHOD.md).
        book: Where the book shows it (a MyST cross-reference).
        rule: Returns ``(status, why)``.
    """

    name: str
    paper: str
    book: str
    rule: Callable[[], tuple[str, str]]


def ref(label: str, text: str, role: str = "numref") -> str:
    """A MyST cross-reference: ``numref`` to a figure or table (``%s`` is its number), ``ref``, ``doc``."""
    return f"{{{role}}}`{text} <{label}>`"


def training_cells(ev: Evidence) -> tuple[int, int]:
    """``(finished, expected)`` training cells."""
    return ev.progress["done"], ev.progress["total"]
