"""The performance page: benchmark results of ``benchmarks/results/`` and the acceptance targets."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.prune_cache import ARTEFACTS
from fusion.report.glue import glue_table
from fusion.report.inputs import read_json

#: Benchmarks of ``benchmarks/`` whose JSON the performance page shows, in order.
BENCHMARKS: tuple[str, ...] = (
    "graphs",
    "fingerprints",
    "compression",
    "selection",
    "train_throughput",
    "cgcnn_parity",
    "scale",
    "prune_scale",
)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts (and lists of scalars) into ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and any(isinstance(v, Mapping | list) for v in obj):
        for k, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{k}]"))
    elif isinstance(obj, list) and len(obj) > 6 and all(isinstance(v, int | float) for v in obj):
        # A long series (e.g. per-round timings) as a summary, so the table fits its column.
        a = np.asarray(obj, dtype=float)
        out[prefix] = f"{len(a)} values: median {np.median(a):.4g}, min {a.min():.4g}, max {a.max():.4g}"
    else:
        out[prefix] = ", ".join(map(str, obj)) if isinstance(obj, list) else obj
    return out


#: Diagnostics a benchmark keeps beside its measures, not shown in its table: the
#: ``fusion prune`` run's own summary (its surrogate part has a table of its own,
#: :func:`prune_scale_surrogate`; the rest names temporary paths) and stderr.
_HIDDEN = re.compile(r"(^|\.)(summary|stderr_tail)(\.|$)")


def benchmark_table(name: str, folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """One benchmark's JSON as a two-column table (``measure``, ``value``).

    A benchmark that has not been run yields one row saying so.
    """
    data = read_json(Path(folder, f"{name}.json"))
    if not data:
        return pd.DataFrame({"measure": [f"{name}.json"], "value": ["not run yet (no file)"]})
    flat = {k: v for k, v in flatten(data).items() if not _HIDDEN.search(k)}
    # Zero-width spaces after "." and "_" let long dotted names wrap inside the column.
    names = [k.replace(".", ".\u200b").replace("_", "_\u200b") for k in flat]
    return pd.DataFrame({"measure": names, "value": [str(v) for v in flat.values()]})


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
        glue_table(f"bench_{name}", table, wrap=True)
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


def _graphs_row(data: dict[str, Any], method: str, field: str) -> float | None:
    rows = [r for r in data.get("results", []) if r["dataset"] == "perov5_castelli" and r["method"] == method]
    return float(rows[0][field]) if rows else None


class AtLeast(float):
    """A lower bound: the value of a run stopped at the benchmark's time limit."""


def _prune_run(data: dict[str, Any], method: str, field: str) -> float | None:
    """A field of the run of ``method``; an :class:`AtLeast` when the run was stopped at the limit.

    Only a run with default options counts against the targets (None otherwise).
    """
    if data.get("options"):
        return None
    for r in data.get("runs", []):
        if r["method"] == method and r.get("timed_out"):
            return AtLeast(r[field])
        if r["method"] == method and r["returncode"] == 0:
            return float(r[field])
    return None


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
    (
        "prune_scale",
        "fusion prune, 10^4 cells of 20-150 atoms (s)",
        "<=",
        900,
        lambda d: _prune_run(d, "fusion", "seconds"),
    ),
    (
        "prune_scale",
        "the same run: peak memory (GB)",
        "<=",
        4,
        lambda d: _prune_run(d, "fusion", "peak_rss_gb"),
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
        if isinstance(
            value, AtLeast
        ):  # stopped at the limit: a bound, met only if it already fails an upper target
            shown = f"at least {shown} (stopped)"
            met = "no" if compare in ("<", "<=") and not _COMPARE[compare](value, bound) else "–"
        row = {"benchmark": name, "measure": measure, "target": f"{compare} {bound:,g}"}
        rows.append({**row, "measured": shown, "met": met})
    return pd.DataFrame(rows)


def prune_scale_steps(folder: str | Path = "benchmarks/results", name: str = "prune_scale") -> pd.DataFrame:
    """The timeline of each ``fusion prune`` run of ``bench_prune_scale.py``: when each step ended.

    Each step's end is when its artefact was saved to the working folder; a run
    stopped at the benchmark's limit ends with the step it was in.

    Returns:
        ``run`` (method and extra options), ``step``, ``took (s)`` and
        ``ended at (s)``; no rows before the benchmark has run.
    """
    data = read_json(Path(folder, f"{name}.json"))
    options = " ".join(data.get("options") or [])
    rows = []
    for r in data.get("runs", []):
        run = f"{r['method']} {options}".strip()
        last = 0.0
        for s in r.get("steps", []):
            rows.append((run, s["step"], s["ended_s"] - last, s["ended_s"]))
            last = s["ended_s"]
        if r.get("timed_out"):
            done = [s["step"] for s in r.get("steps", [])]
            after = [a for a in ARTEFACTS if a not in done]
            step = f"{after[0] if after else 'selection'} (stopped at the limit)"
        else:
            step = "selection, outputs and report" if r.get("returncode") == 0 else "(failed)"
        rows.append((run, step, r["seconds"] - last, r["seconds"]))
    table = pd.DataFrame(rows, columns=["run", "step", "took (s)", "ended at (s)"])
    return table.round({"took (s)": 0, "ended at (s)": 0})


def surrogate_budget(folder: str | Path = "benchmarks/results") -> dict[str, str]:
    """The default surrogate budget of ``fusion prune`` and what it gave on the 10^4-cell input, as text for the page.

    Returns:
        ``budget_max_steps`` and ``budget_max_atom_steps`` (the defaults),
        ``budget_small_cells`` (the largest mean cell size, in atoms, that
        keeps ``--max-steps`` with batches of 64), ``prune_scale_atoms``
        (mean atoms of the input) and ``prune_scale_step_cap`` (the run's step
        cap, or "not measured" when no run finished).
    """
    from fusion.prune_options import MAX_ATOM_STEPS, MAX_STEPS

    data = read_json(Path(folder, "prune_scale.json"))
    caps = [
        q["step_cap"]
        for r in data.get("runs", [])
        if (q := (r.get("summary") or {}).get("surrogate")) and q.get("step_cap")
    ]
    atoms = (data.get("input") or {}).get("atoms_mean")
    return {
        "budget_max_steps": f"{MAX_STEPS:,}",
        "budget_max_atom_steps": f"{MAX_ATOM_STEPS / 1e6:g} million",
        "budget_small_cells": f"{MAX_ATOM_STEPS // (64 * MAX_STEPS)}",
        "prune_scale_atoms": "–" if atoms is None else f"{atoms:.0f}",
        "prune_scale_step_cap": f"{caps[0]:,}" if caps else "not measured",
    }


def prune_scale_surrogate(
    folder: str | Path = "benchmarks/results", names: Sequence[str] = ("prune_scale",)
) -> pd.DataFrame:
    """The surrogate of each finished ``fusion prune --method fusion`` run of ``bench_prune_scale.py``.

    Returns:
        ``run`` (extra options), ``epochs``, ``step cap`` and the option that
        ``set by`` it, ``training (s)``, the
        surrogate's ``val MAE`` and the median predictor's on the same records
        (target units), and ``vs median`` (the surrogate's MAE as a share of the
        median's); no rows for runs without a surrogate (stopped, or another method).
    """
    rows = []
    for name in names:
        data = read_json(Path(folder, f"{name}.json"))
        for r in data.get("runs", []):
            q = (r.get("summary") or {}).get("surrogate")
            if not q:
                continue
            rows.append(
                {
                    "run": " ".join(data.get("options") or []) or "default options",
                    "epochs": q["epochs_run"],
                    "step cap": q.get("step_cap") or q["max_steps"],
                    "set by": q.get("capped_by") or ("--max-steps" if q.get("capped") else "none reached"),
                    "training (s)": round(q["seconds"]),
                    "val MAE": round(q["val_mae"], 3),
                    "median's val MAE": round(q["median_val_mae"], 3),
                    "vs median": f"{100 * q['val_mae'] / q['median_val_mae']:.0f} %",
                }
            )
    return pd.DataFrame(rows)


def denormals_table(folder: str | Path = "benchmarks/results") -> pd.DataFrame:
    """``bench_denormals.py``: training time with and without flushing subnormals, per architecture.

    Returns:
        ``architecture``, ``plain (s)``, ``flushed (s)``, ``speed-up`` and
        ``bit-identical`` (weights and validation MAE), fastest speed-up first;
        one row saying so when the benchmark has not been run.
    """
    data = read_json(Path(folder, "denormals.json"))
    if not data:
        return pd.DataFrame({"architecture": ["denormals.json"], "plain (s)": ["not run yet (no file)"]})
    by_speedup = sorted(data["architectures"].items(), key=lambda item: -item[1]["speedup"])
    return pd.DataFrame(
        [
            {
                "architecture": arch,
                "plain (s)": round(r["seconds_plain"], 2),
                "flushed (s)": round(r["seconds_flushed"], 2),
                "speed-up": f"{r['speedup']:.2f}x",
                "bit-identical": "yes" if r["bit_identical"] else "no",
            }
            for arch, r in by_speedup
        ]
    )


def denormals_setup(folder: str | Path = "benchmarks/results") -> dict[str, str]:
    """Glue values describing the ``bench_denormals.py`` run (``denormals_setup``)."""
    data = read_json(Path(folder, "denormals.json"))
    if not data:
        return {"denormals_setup": "not run yet"}
    return {
        "denormals_setup": f"{data['n_train']:,} training records of {data['dataset']}, {data['epochs']} epochs, "
        f"{data['threads']} thread, median of {data['rounds']} alternating rounds, commit {data['code_version']}"
    }
