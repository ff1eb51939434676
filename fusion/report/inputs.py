"""Reading the pipeline's outputs and the run's settings for the book's pages.

Paths are relative to the working directory, the repository root, as in
:mod:`fusion.paths`. A missing file reads as an empty table or dict, so a
page of a partial run still renders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.analysis import count


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
    if not path.exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:  # the analyze stage writes an empty table as an empty file
        return pd.DataFrame()


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file; an empty dict if it does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


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
    baselines = [f"{m}" for m in prune.get("baselines", [])]
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
        "baselines": ", ".join(baselines) if baselines else "none",
        "baseline_ratios": ", ".join(f"{r:g}" for r in prune.get("baseline_ratios", [])),
        "gamma": float(prune["gamma"]),
        "compression": str(params["fingerprints"]["compression"]),
        "surrogate": f"{unc['model']} ({unc['size']} size)",
        "surrogate_epochs": str(unc["epochs"]),
        "lam": float(unc["lam"]),
        "val_protocol": str(params.get("val_protocol", "fixed")),
        "train_size": str(train["size"]),
        "train_epochs": str(train["epochs"]),
        "budget_rule": str(train.get("budget", "epochs")),
        "batch_size": int(train["batch_size"]),
        "optimal_ratios": ", ".join(f"{r:g}" for r in params["optimal"]["ratios"]),
        "optimal_arch": str(params["optimal"]["arch"]),
        "ood_clusters": int(params["ood"]["n_clusters"]),
        "ood_ratio": float(params["ood"]["ratio"]),
        "ood_min_test": int(params["ood"]["min_test"]),
        "transfer_scope": transfer_scope(params.get("transfer", {})),
    }


def transfer_scope(transfer: Mapping[str, Any]) -> str:
    """The ``transfer`` grid in words: each architecture with its datasets, and the seeds.

    Example:
        >>> transfer_scope({"cells": {"p-s": {"dataset": "p", "arch": "s"}, "d-s": {"dataset": "d", "arch": "s"},
        ...                           "p-c": {"dataset": "p", "arch": "c"}}, "seeds": [0, 1, 2]})
        's on p and d; c on p (3 seeds)'
    """
    by_arch: dict[str, list[str]] = {}
    for cell in (transfer.get("cells") or {}).values():
        by_arch.setdefault(cell["arch"], []).append(cell["dataset"])
    if not by_arch:
        return "no architecture besides the main one"
    parts = [
        f"{a} on {', '.join(ks[:-1]) + ' and ' + ks[-1] if len(ks) > 1 else ks[0]}"
        for a, ks in by_arch.items()
    ]
    return f"{'; '.join(parts)} ({count(len(transfer.get('seeds', [])), 'seed')})"


def _profile_name(params: Mapping[str, Any], root: str | Path = ".") -> str:
    """Name of the profile whose file equals ``params`` (``custom`` if none does)."""
    import yaml

    for path in sorted(Path(root, "profiles").glob("*.yaml")):
        if yaml.safe_load(path.read_text()) == dict(params):
            return path.stem
    return "custom"


def pool_scores(key: str, seed: int, root: str | Path = ".") -> pd.DataFrame:
    """The pool of one split with U, W, I and the keep/remove columns of every method@ratio."""
    return read_table(Path(root, "results", "prune", key, f"seed-{seed}.csv"), dtype={"id": str})


def uncertainty_scores(key: str, seed: int, root: str | Path = ".") -> pd.DataFrame:
    """The surrogate's ``u_ale``, ``u_epi`` and both signs' ``U`` per prunable id of one split."""
    return read_table(Path(root, "results", "uncertainty", key, f"seed-{seed}.csv"), dtype={"id": str})


def analysis_table(name: str, root: str | Path = ".") -> pd.DataFrame:
    """``results/analysis/<name>.csv`` of the ``analyze`` stage (empty if missing or empty)."""
    return read_table(Path(root, "results", "analysis", f"{name}.csv"), dtype={"id": str})


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
    from fusion.paths import column

    return column(method, ratio)


def finished_stages(root: str | Path = ".") -> set[str]:
    """The stages (``train@jdft2d-cgcnn-0``, ``analyze``, ...) that ``dvc.lock`` records as run, with their outputs.

    A stage counts when ``dvc.lock`` records it and every output it records for
    it still exists, each file with its recorded MD5 (size alone for files over
    64 MB; a folder's presence). A cell still running has a partial CSV but no
    entry yet; an entry left from an earlier run whose outputs were removed or
    rewritten does not count either. Reads no DVC state beyond ``dvc.lock``.

    Args:
        root: Repository root. Defaults to the working directory.
    """
    import yaml

    lock_file = Path(root, "dvc.lock")
    lock = yaml.safe_load(lock_file.read_text()) if lock_file.exists() else {}
    stages = (lock or {}).get("stages", {}) or {}
    return {name for name, entry in stages.items() if _outs_present(entry or {}, root)}


def _outs_present(entry: Mapping[str, Any], root: str | Path) -> bool:
    import hashlib

    for out in entry.get("outs", []) or []:
        path = Path(root, out["path"])
        digest = str(out.get("md5", ""))
        if not path.exists():
            return False
        if path.is_dir() or digest.endswith(".dir") or not digest:
            continue
        if "size" in out and path.stat().st_size != int(out["size"]):
            return False
        if path.stat().st_size <= 64 * 2**20 and hashlib.md5(path.read_bytes()).hexdigest() != digest:
            return False
    return True


def train_cells(params: Mapping[str, Any]) -> list[str]:
    """The ``train`` stages of ``params``: ``train@<dataset>-<arch>-<seed>``, one per cell of the matrix."""
    return [
        f"train@{k}-{a}-{s}"
        for k in params["datasets"]
        for a in params["architectures"]
        for s in params["seeds"]
    ]


def study_progress(params: Mapping[str, Any], root: str | Path = ".") -> dict[str, Any]:
    """How far the run of ``params`` has got: finished ``train`` cells and whether ``analyze`` has run.

    Args:
        params: The parsed ``params.yaml``.
        root: Repository root. Defaults to the working directory.

    Returns:
        ``done`` and ``total`` training cells (:func:`finished_stages`),
        ``analysed`` (``analyze`` finished and ``results/metrics.json`` present)
        and ``complete`` (every cell and the analysis).
    """
    from fusion import paths

    finished = finished_stages(root)
    cells = train_cells(params)
    done = sum(c in finished for c in cells)
    analysed = "analyze" in finished and Path(root, paths.metrics_path()).exists()
    return {
        "done": done,
        "total": len(cells),
        "analysed": analysed,
        "complete": analysed and done == len(cells),
    }


def study_status(params: Mapping[str, Any], root: str | Path = ".") -> str:
    """One sentence on how far the run of ``params`` has got (recorded ``train`` cells, analysis).

    The pipeline can span sessions; a page built before the ``analyze`` stage has
    run says so instead of showing empty tables without a word. A cell counts
    when ``dvc.lock`` records it with its outputs (:func:`finished_stages`; a
    cell still running has a partial CSV).
    """
    progress = study_progress(params, root)
    done, total = progress["done"], progress["total"]
    if progress["complete"]:
        return f"complete: all {total} training cells and the analysis have run."
    return (
        f"in progress: {done} of {total} training cells (dataset × architecture × seed) have "
        "finished and the analyze stage has not run on them yet, so the study's tables and "
        "figures are empty; they fill in when dvc repro completes."
    )
