"""Write the thin stage notebooks of ``notebooks/`` from one table (run from the repository root).

Every stage notebook has the same shape: a title that says what the stage does
and which files it writes, a ``parameters`` cell with defaults only (papermill
injects the real values from ``params.yaml``), one call into its
``fusion.stages`` module, and a cell that shows the result. Editing a
notebook by hand is fine; this script only saves typing them eleven times.

Usage: ``python tools/make_stage_notebooks.py [STAGE ...]``
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The training stages build their settings (the `train` group) from the injected values.
SETTINGS = "Settings(size, epochs, lr, budget, batch_size, patience, num_threads)"

STAGES: dict[str, dict[str, str]] = {
    "prepare": {
        "title": "load and validate a dataset, write its records, skip report and splits",
        "text": "Bad records are listed in `skipped.csv` with their reason, never dropped silently. "
        "`limit` keeps a seeded random subsample. Writes `results/prepare/<key>/`.",
        "params": 'key = "jdft2d"\nname = "matbench_jdft2d"\ntarget = "exfoliation_energy"\nlimit = 200\n'
        "sample_seed = 0\nseeds = [0]\nfractions = [0.7, 0.15, 0.15]\ncutoff = 8.0\nworkers = 1\nscheduler = None",
        "call": "prepare.run(key, name, target, seeds, limit, sample_seed, fractions, cutoff, workers, scheduler)",
    },
    "graphs": {
        "title": "the periodic crystal graph of every kept record",
        "text": "Writes `cache/graphs/<key>.pt`.",
        "params": 'key = "jdft2d"\nname = "matbench_jdft2d"\ncutoff = 8.0\nmax_neighbors = 12\nworkers = 1\n'
        "scheduler = None",
        "call": "graphs.run(key, name, cutoff, max_neighbors, workers, scheduler)",
    },
    "fingerprints": {
        "title": "the SOAP fingerprint of every kept record",
        "text": "Writes `cache/fingerprints/<key>.npz`.",
        "params": 'key = "jdft2d"\nname = "matbench_jdft2d"\ncompression = "mu1nu1"\nworkers = 1\nscheduler = None',
        "call": "fingerprints.run(key, name, compression, workers, scheduler)",
    },
    "tune": {
        "title": "the main architecture's learning rate and budget, on validation only",
        "text": "Trains on the unpruned training part of the splits `seeds` for every learning rate x budget "
        "and keeps the validation MAE only; the choice reads the mean over the seeds. Writes `results/tune/<key>.csv` (every run) and "
        "`results/tune/<key>.json` (the choice the other stages read).",
        "params": 'key = "jdft2d"\narch = "cgcnn"\nsize = "cpu"\nseeds = [0]\nlrs = [0.001, 0.003]\n'
        'epochs = {"jdft2d": [2, 3]}\nbatch_size = 64\ntolerance = 0.02\nnum_threads = 1',
        "show": 'result[["seed", "lr", "epochs", "val_mae", "seconds"]]',
        "call": "tune.run(key, arch, size, seeds, lrs, epochs, batch_size, tolerance, num_threads)",
    },
    "uncertainty": {
        "title": "an evidential surrogate per seed scores the prunable records",
        "text": "Writes `results/uncertainty/<key>/seed-<s>.csv` with `u_ale`, `u_epi` and the score under both "
        "signs of the aleatoric term: `U_neg` (s = -1, the paper's formula and its public code) and `U_pos`.",
        "params": 'key = "jdft2d"\nseeds = [0]\nval_protocol = "fixed"\nmodel = "cgcnn"\nsize = "cpu"\n'
        'epochs = "tuned"\nbatch_size = 64\nlr = "tuned"\npatience = None\nlam = 0.0\nval_fraction = 0.1\n'
        "num_threads = 1",
        "show": 'result[["seed", "n_pool", "epochs", "surrogate_val_mae", "U_neg_std"]]',
        "call": "uncertainty.run(key, seeds, val_protocol, model, size, epochs, batch_size, lr, patience, lam, "
        "val_fraction, num_threads)",
    },
    "prune": {
        "title": "every method prunes every seed's prunable records",
        "text": "Writes `results/prune/<key>/seed-<s>.csv` (scores and one keep column per method@ratio) and "
        "`summary.csv` (sizes, epsilon, and each kept set's target shift: KS distance, top-decile share).",
        "params": 'key = "jdft2d"\nseeds = [0]\nval_protocol = "fixed"\nmethods = ["random", "fusion_neg"]\n'
        'ratios = [0.4]\nbaselines = ["weight"]\nbaseline_ratios = [0.4]\ngamma = 0.1\n'
        'active = {"n_models": 5, "init_fraction": 0.1}',
        "show": 'result.groupby(["method", "ratio"])[["n_kept", "epsilon", "ks", "top_decile_share"]].mean()',
        "call": "prune.run(key, seeds, val_protocol, methods, ratios, baselines, baseline_ratios, gamma, active)",
    },
    "train": {
        "title": "one architecture on every kept set of one dataset and seed",
        "text": "One cell of the dataset x architecture x seed matrix. Writes "
        "`results/train/<key>/<arch>-seed-<s>.csv` (val and test MAE per method and ratio).",
        "params": 'key = "jdft2d"\narch = "cgcnn"\nseed = 0\nval_protocol = "fixed"\nsize = "cpu"\n'
        'epochs = "tuned"\nlr = "tuned"\nbudget = "epochs"\nbatch_size = 64\npatience = None\nnum_threads = 1\n'
        "workers = 1\nscheduler = None",
        "show": 'result.pivot_table(index="method", columns="ratio", values="test_mae")',
        "settings": SETTINGS,
        "call": "train.run(key, arch, seed, val_protocol, settings, workers=workers, scheduler=scheduler)",
    },
    "transfer": {
        "title": "another architecture on the main study's kept sets",
        "text": "One cell (a dataset and an architecture) of `transfer.cells`: the unpruned run and every method at every ratio "
        "for each seed, then the unpruned run with `factor` times the budget for `converge_seeds`. "
        "Writes `results/transfer/<key>/<arch>.csv`.",
        "params": 'key = "jdft2d"\narch = "schnet"\nseeds = [0]\nratios = [0.4]\n'
        'methods = ["random", "fusion_neg"]\nconverge_seeds = [0]\nfactor = 2.0\nval_protocol = "fixed"\n'
        'size = "cpu"\nepochs = "tuned"\nlr = "tuned"\nbudget = "epochs"\nbatch_size = 64\npatience = None\n'
        "num_threads = 1\nworkers = 1\nscheduler = None",
        "show": 'result.pivot_table(index="method", columns=["ratio", "factor"], values="test_mae")',
        "settings": SETTINGS,
        "call": "transfer.run(key, arch, seeds, ratios, methods, converge_seeds, factor, val_protocol, settings, "
        "workers, scheduler)",
    },
    "converge": {
        "title": "does doubling the training budget move the test MAE?",
        "text": "Random pruning at the given ratios and seeds, retrained with `factor` times the budget. "
        "Writes `results/converge/<key>.csv`.",
        "params": 'key = "jdft2d"\narch = "cgcnn"\nseeds = [0]\nval_protocol = "fixed"\nratios = [0.0, 0.8]\n'
        'factor = 2.0\nsize = "cpu"\nepochs = "tuned"\nlr = "tuned"\nbudget = "epochs"\nbatch_size = 64\n'
        "patience = None\nnum_threads = 1\nworkers = 1\nscheduler = None",
        "show": 'result.pivot_table(index=["ratio", "seed"], columns="factor", values="test_mae")',
        "settings": SETTINGS,
        "call": "converge.run(key, arch, seeds, val_protocol, ratios, factor, settings, workers=workers, "
        "scheduler=scheduler)",
    },
    "protocol": {
        "title": "the paper's protocol once: validation pruned with the pool",
        "text": "Writes `results/protocol/<key>.csv`.",
        "params": 'key = "jdft2d"\narch = "cgcnn"\nseeds = [0]\nratio = 0.4\n'
        'methods = ["random", "fusion_neg", "fusion_pos"]\ngamma = 0.1\nuncertainty = {}\nsize = "cpu"\n'
        'epochs = "tuned"\nlr = "tuned"\nbudget = "epochs"\nbatch_size = 64\npatience = None\nnum_threads = 1',
        "show": 'result.pivot_table(index="method", columns="seed", values="test_mae")',
        "settings": SETTINGS,
        "call": "protocol.run(key, arch, seeds, ratio, methods, gamma, uncertainty, settings)",
    },
    "optimal": {
        "title": "the optimal pruning point: small fractions removed, equal optimiser steps",
        "text": "Writes `results/optimal/<key>.csv`; the `analyze` stage chooses the point on validation. "
        "Seeds beyond the study's get their split and surrogate here (`results/optimal/<key>-surrogates/`).",
        "params": 'key = "jdft2d"\narch = "cgcnn"\nseeds = [0]\nratios = [0.04]\n'
        'methods = ["random", "fusion_neg", "fusion_pos"]\ngamma = 0.1\nsize = "cpu"\nepochs = "tuned"\n'
        'lr = "tuned"\nbudget = "steps"\nbatch_size = 64\npatience = None\nnum_threads = 1\nworkers = 1\n'
        "scheduler = None\nfractions = [0.7, 0.15, 0.15]\nuncertainty = {}",
        "show": 'result.pivot_table(index="method", columns="ratio", values="test_mae")',
        "settings": SETTINGS,
        "call": "optimal.run(key, arch, seeds, ratios, methods, gamma, settings, workers=workers, "
        "scheduler=scheduler, fractions=fractions, surrogate=uncertainty)",
    },
    "ood": {
        "title": "leave-one-cluster-out on clusters of the SOAP fingerprints",
        "text": "Folds from our own k-means clusters and/or the FUSION group's SOAP LOCO folds (`folds`). "
        "Writes `results/ood/<key>.csv`, `results/ood/<key>-clusters.csv` and the fold surrogates' scores "
        "(`results/ood/<key>-surrogates/`).",
        "params": 'key = "jdft2d"\narch = "cgcnn"\nseeds = [0]\nn_clusters = 3\nmin_test = 10\nratio = 0.4\n'
        'methods = ["random", "fusion_neg", "fusion_pos"]\nval_fraction = 0.15\ngamma = 0.1\nuncertainty = {}\n'
        'size = "cpu"\nepochs = "tuned"\nlr = "tuned"\nbatch_size = 64\npatience = None\nnum_threads = 1\n'
        'folds = ["kmeans"]\nworkers = 1\nscheduler = None',
        "show": 'result.pivot_table(index="method", columns=["folds", "cluster"], values="test_mae")',
        "settings": "Settings(size, epochs, lr, batch_size=batch_size, patience=patience, num_threads=num_threads)",
        "call": "ood.run(key, arch, seeds, n_clusters, min_test, ratio, methods, val_fraction, gamma, "
        "uncertainty, settings, folds, workers, scheduler)",
    },
    "fulldata": {
        "title": "one long run on a subsampled dataset in full",
        "text": "Where the study trains on a subsample, Matbench's full-data MAE is compared with this run. "
        "Writes `results/fulldata/<key>.csv`.",
        "params": 'key = "jdft2d"\nname = "matbench_jdft2d"\ntarget = "exfoliation_energy"\narch = "cgcnn"\n'
        'seed = 0\nepochs = "tuned"\nlr = "tuned"\nbatch_size = 64\nnum_threads = 1',
        "show": 'result[["dataset", "n_records", "epochs", "test_mae", "median_predictor_mae"]]',
        "call": "fulldata.run(key, name, target, arch, seed=seed, epochs=epochs, lr=lr, batch_size=batch_size, "
        "num_threads=num_threads)",
    },
    "analyze": {
        "title": "every result table of the study, and the headline metrics",
        "text": "Writes `results/analysis/*.csv` and `results/metrics.json` (study, accuracy, vs_random, "
        "transfer, optimal_point, ood, verdict).",
        "params": 'datasets = {"jdft2d": {"name": "matbench_jdft2d", "target": "exfoliation_energy", '
        '"limit": 200}}\nseeds = [0]\narchitectures = ["cgcnn"]\narch = "cgcnn"\nval_protocol = "fixed"\n'
        'budget = "epochs"\nwall_hours = None\nprotocol_datasets = []\noptimal_datasets = []\nood_datasets = []\n'
        "fulldata_datasets = {}\ntransfer_cells = {}\n"
        "transfer_ratios = [0.4, 0.8]\nood_ratio = 0.4",
        "call": "analyze.run(datasets, seeds, architectures, arch, val_protocol, budget, wall_hours, "
        "protocol_datasets, optimal_datasets, ood_datasets, fulldata_datasets, transfer_cells, "
        "transfer_ratios, ood_ratio)",
    },
    "figures": {
        "title": "the study's figures as PNG, from the analysis tables",
        "text": "Writes `results/figures/*.png` with the functions the book uses (`fusion.report.study`).",
        "params": 'arch = "cgcnn"\ndpi = 110',
        "call": "figures.run(arch, dpi)",
    },
}


def cell(kind: str, source: str, tags: list[str] | None = None) -> dict:
    """One notebook cell."""
    c = {
        "cell_type": kind,
        "metadata": {"tags": tags} if tags else {},
        "source": source.splitlines(keepends=True),
    }
    if kind == "code":
        c.update(execution_count=None, outputs=[])
    return c


def notebook(stage: str, spec: dict[str, str]) -> dict:
    """The notebook of ``stage``."""
    head = (
        f"# Stage `{stage}`: {spec['title']}\n\n{spec['text']}\n\n"
        f"Code: `fusion/stages/{stage}.py`; parameters: group `{stage}` of `params.yaml`; "
        f"stage `{stage}` of `dvc.yaml`."
    )
    settings = f"settings = {stage}.{spec['settings']}\n" if "settings" in spec else ""
    cells = [
        cell("markdown", head),
        cell(
            "code",
            f"# Parameters (defaults; papermill injects params.yaml's values)\n{spec['params']}",
            ["parameters"],
        ),
        cell("code", f"from fusion.stages import {stage}"),
        cell("code", f"{settings}result = {spec['call']}\n{spec.get('show', 'result')}"),
    ]
    for k, c in enumerate(cells):
        c["id"] = f"{stage}-{k}"  # stable ids: nbformat 4.5 requires them
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def main(argv: list[str]) -> int:
    """Write the notebooks named in ``argv`` (all when none), formatted as ``make lint`` wants them."""
    written = []
    for stage in argv or list(STAGES):
        path = Path("notebooks") / f"{stage}.ipynb"
        path.write_text(json.dumps(notebook(stage, STAGES[stage]), indent=1, ensure_ascii=False) + "\n")
        written.append(str(path))
        print(path)
    # The calls are written on one line; the project's formatter wraps the long ones.
    subprocess.run([str(Path(sys.executable).parent / "ruff"), "format", "-q", *written], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
