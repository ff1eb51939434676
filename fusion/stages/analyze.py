"""Stage ``analyze``: every result table of the study, and the headline metrics.

Reads the outputs of ``prepare``, ``tune``, ``uncertainty``, ``prune``,
``train``, ``converge``, ``protocol``, ``optimal``, ``ood`` and ``transfer`` and writes
small tables to ``results/analysis/`` (what the figures and the book read) and
``results/metrics.json`` (the metrics contract: ``study``, ``accuracy``,
``vs_random``, ``transfer``, ``optimal_point``, ``ood``, ``verdict``). The statistics are in :mod:`fusion.analysis`, the
verdict in :mod:`fusion.verdict`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion import analysis, analysis_checks, paths, transfer, verdict
from fusion.stages.common import load_records, load_split, load_summary

#: Tables written, by name (``results/analysis/<name>.csv``).
TABLES = (
    "datasets", "tune", "predictors", "accuracy", "convergence", "runs", "summary", "comparison",
    "cross_dataset", "effective_size", "power_law", "shift", "uncertainty_vs_target", "protocol",
    "optimal_runs", "optimal", "ood_runs", "ood", "fulldata", "transfer_runs", "transfer_accuracy", "transfer",
)  # fmt: skip


def table_path(name: str) -> Path:
    """``results/analysis/<name>.csv``."""
    return paths.analysis_dir() / f"{name}.csv"


def read(name: str) -> pd.DataFrame:
    """One table of this stage (ids as strings; an empty table when nothing was measured)."""
    try:
        return pd.read_csv(table_path(name), dtype={"id": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def run(
    datasets: dict[str, dict[str, Any]],
    seeds: Sequence[int],
    architectures: Sequence[str],
    arch: str = "cgcnn",
    val_protocol: str = "fixed",
    budget: str = "epochs",
    wall_hours: float | None = None,
    protocol_datasets: Sequence[str] = (),
    optimal_datasets: Sequence[str] = (),
    ood_datasets: Sequence[str] = (),
    fulldata_datasets: Sequence[str] = (),
    transfer_cells: Mapping[str, Mapping[str, str]] | None = None,
    transfer_ratios: Sequence[float] = (0.4, 0.8),
    ood_ratio: float = 0.4,
) -> dict[str, Any]:
    """Build every table and ``results/metrics.json``.

    Args:
        datasets: params.yaml ``datasets``.
        seeds: Split seeds of the study.
        architectures: Architectures of the ``train`` matrix.
        arch: The main architecture (accuracy gate, effective size, verdict).
        val_protocol: The study's validation protocol (recorded).
        budget: The budget rule (recorded).
        wall_hours: Measured wall time of the whole run (recorded; None = not measured).
        protocol_datasets: Datasets of the ``protocol`` stage.
        optimal_datasets: Datasets of the ``optimal`` stage.
        ood_datasets: Datasets of the ``ood`` stage.
        fulldata_datasets: Datasets with a full-data run (``fulldata`` stage).
        transfer_cells: The ``transfer`` stage's cells (name -> ``dataset`` and
            ``arch``). On their datasets the main architecture, and any other of
            the ``train`` matrix, join the grid. Defaults to none.
        transfer_ratios: Ratios of the grid; the first heads it.
        ood_ratio: Ratio of the ``ood`` stage (its gaps are set beside the
            in-distribution ones at this ratio).

    Returns:
        The metrics dict (also written).
    """
    keys = list(datasets)
    out: dict[str, pd.DataFrame] = {}
    summaries = [load_summary(k) for k in keys]
    out["datasets"] = pd.DataFrame(summaries)
    targets = {k: load_records(k).set_index("id")["target"] for k in keys}
    splits = {(k, int(s)): load_split(k, int(s)) for k in keys for s in seeds}
    out["tune"] = analysis.read_tables([paths.tune_path(k) for k in keys])
    out["predictors"] = analysis.predictor_table(targets, splits)
    runs = analysis.read_tables(
        [paths.train_path(k, a, int(s)) for k in keys for a in architectures for s in seeds]
    )
    out["runs"] = runs
    out["summary"] = analysis.aggregate(runs)
    out["fulldata"] = analysis.read_tables([paths.fulldata_path(k) for k in fulldata_datasets])
    full = (
        dict(zip(out["fulldata"]["dataset"], out["fulldata"]["test_mae"], strict=True))
        if len(out["fulldata"])
        else {}
    )
    out["convergence"] = analysis.convergence_table(
        analysis.read_tables([paths.converge_path(k) for k in keys])
    )
    acc = analysis.accuracy_table(runs, out["predictors"], datasets, arch, full, out["convergence"])
    out["accuracy"] = acc
    # Holm's family: every comparison of the main architecture (datasets x methods x ratios).
    comparison = analysis.compare(runs[runs["arch"] == arch])
    out["comparison"] = comparison
    gated = acc.loc[acc["passes"], "dataset"].tolist() if len(acc) else []
    out["cross_dataset"] = analysis.cross_dataset(comparison, gated) if len(comparison) else pd.DataFrame()
    out["effective_size"], out["power_law"] = analysis.effective_size_table(runs, arch)
    out["shift"] = analysis_checks.shift_table(_with_dataset(keys))
    scores = {
        (k, int(s)): pd.read_csv(paths.uncertainty_path(k, int(s)), dtype={"id": str})
        for k in keys
        for s in seeds
    }
    out["uncertainty_vs_target"] = analysis_checks.uncertainty_target_table(targets, scores)
    out["protocol"] = analysis_checks.protocol_table(
        analysis.read_tables([paths.protocol_path(k) for k in protocol_datasets]), runs
    )
    out["optimal_runs"] = analysis.read_tables([paths.optimal_path(k) for k in optimal_datasets])
    out["optimal"] = analysis_checks.optimal_table(out["optimal_runs"])
    out["ood_runs"] = analysis.read_tables([paths.ood_path(k) for k in ood_datasets])
    out["ood"] = analysis_checks.ood_table(out["ood_runs"])
    cells = list((transfer_cells or {}).values())
    transfer_keys = [*dict.fromkeys(c["dataset"] for c in cells)]
    grid_archs = [*dict.fromkeys([*architectures, *(c["arch"] for c in cells)])]
    out["transfer_runs"] = transfer.grid_rows(
        runs[runs["dataset"].isin(transfer_keys)],
        analysis.read_tables([paths.transfer_path(c["dataset"], c["arch"]) for c in cells]),
        analysis.read_tables([paths.converge_path(k) for k in transfer_keys]),
    )
    out["transfer_accuracy"] = transfer.accuracy(out["transfer_runs"], out["predictors"], datasets)
    out["transfer"] = transfer.comparison(out["transfer_runs"], transfer_ratios, grid_archs)
    headline = (
        transfer.better_fusion(out["transfer_runs"], arch, float(transfer_ratios[0]))
        if transfer_ratios
        else {}
    )
    for name, df in out.items():
        analysis.save_csv(df, table_path(name))
    verdicts = verdict.verdict(
        comparison,
        out["cross_dataset"],
        gated,
        arch,
        out["optimal"],
        out["ood"],
        runs=runs[runs["arch"] == arch],
        transfer_accuracy=out["transfer_accuracy"],
        transfer=out["transfer"],
        transfer_headline=headline,
        transfer_ratio=float(transfer_ratios[0]) if transfer_ratios else 0.4,
        ood_ratio=float(ood_ratio),
        gate_reasons=dict(zip(acc["dataset"], acc["reason"], strict=True)) if len(acc) else {},
    )
    tuned = {
        k: json.loads(paths.tune_choice_path(k).read_text())
        for k in keys
        if paths.tune_choice_path(k).exists()
    }
    study = {
        "datasets": keys,
        "architecture": arch,
        "seeds": len(seeds),
        "val_protocol": val_protocol,
        "budget": f"{budget} rule; per dataset (lr, epochs of the unpruned run): "
        + ", ".join(f"{k} ({t['lr']:g}, {t['epochs']})" for k, t in tuned.items()),
        "wall_hours": wall_hours,
    }
    metrics = verdict.metrics(study, acc, comparison, out["effective_size"], verdicts, arch)
    metrics.update(
        verdict.claim_sections(
            out["transfer_accuracy"], out["transfer"], headline, out["optimal"], out["ood"],
            float(transfer_ratios[0]) if transfer_ratios else 0.4,
        )
    )  # fmt: skip
    analysis.save_json(metrics, paths.metrics_path())
    return metrics


def _with_dataset(keys: Sequence[str]) -> pd.DataFrame:
    """Every dataset's prune summary with a ``dataset`` column."""
    return pd.concat(
        [pd.read_csv(paths.prune_summary_path(k)).assign(dataset=k) for k in keys], ignore_index=True
    )
