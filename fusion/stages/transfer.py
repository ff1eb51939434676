"""Stage ``transfer``: the other architectures trained on the main study's kept sets.

The paper claims that FUSION's advantage transfers across 11 architectures.
Each DVC cell trains one architecture on one dataset: the unpruned training
part and the kept sets of ``methods`` at ``ratios`` from the ``prune`` stage of
the main study (the same subsets the main architecture trained on, so every
comparison is paired by seed), with the fixed validation set and the budget of
the ``train`` group. For ``converge_seeds`` the unpruned run is repeated with
``factor`` times the budget: the convergence check of every architecture.
The main architecture's rows come from the ``train`` and ``converge`` stages;
``analyze`` puts all of them side by side (:func:`fusion.analysis.transfer_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from fusion import paths
from fusion.stages.common import RunLog, load_graph_cache, load_split
from fusion.stages.train import Settings, fit_all, kept_sets


def grid(
    seeds: Sequence[int],
    ratios: Sequence[float],
    methods: Sequence[str],
    converge_seeds: Sequence[int],
    factor: float,
) -> list[tuple[int, str, float, float]]:
    """The runs of one cell as ``(seed, method, ratio, budget factor)``, in training order.

    Per seed: the unpruned run (``random`` at ratio 0), then every method at
    every ratio; the longer unpruned runs of ``converge_seeds`` come last, so
    the comparison finishes first.

    Example:
        >>> grid([0], [0.4], ["random", "fusion_neg"], [0], 2.0)
        [(0, 'random', 0.0, 1.0), (0, 'random', 0.4, 1.0), (0, 'fusion_neg', 0.4, 1.0), (0, 'random', 0.0, 2.0)]
    """
    out = []
    for seed in map(int, seeds):
        out.append((seed, "random", 0.0, 1.0))
        out += [(seed, m, float(r), 1.0) for r in ratios for m in methods if r > 0]
    return out + [(int(s), "random", 0.0, float(factor)) for s in converge_seeds]


def cost_seconds(
    cells: Mapping[str, Mapping[str, str]],
    seeds: Sequence[int],
    ratios: Sequence[float],
    methods: Sequence[str],
    converge_seeds: Sequence[int],
    factor: float,
    unpruned_seconds: Mapping[str, float],
    relative_cost: Mapping[str, float],
    budget: str = "epochs",
) -> pd.DataFrame:
    """Estimated single-core seconds of each transfer cell, before it runs.

    A run costs the main architecture's unpruned run on that dataset
    (``unpruned_seconds``, measured by ``train``), times the architecture's
    cost relative to it (``relative_cost``, from a benchmark), times the
    budget multiplier, times the fraction of the training part kept when the
    budget is a number of epochs (with ``"steps"`` every ratio trains as long).

    Args:
        cells: params.yaml ``transfer.cells`` (cell name -> ``dataset`` and ``arch``).
        seeds: Split seeds of the grid (:func:`grid`).
        ratios: Pruning ratios of the grid.
        methods: Methods at every ratio.
        converge_seeds: Seeds whose unpruned run is repeated with ``factor`` x the budget.
        factor: Budget multiplier of the convergence check.
        unpruned_seconds: Dataset key -> seconds of the main architecture's unpruned run.
        relative_cost: Architecture -> its training time relative to the main architecture.
        budget: ``"epochs"`` or ``"steps"`` (params.yaml ``train.budget``). Defaults to ``"epochs"``.

    Returns:
        ``cell``, ``dataset``, ``arch``, ``runs`` and ``seconds`` (the estimate), one row per cell.

    Example:
        >>> cost_seconds({"a-x": {"dataset": "a", "arch": "x"}}, [0], [0.5], ["random"], [0], 2.0,
        ...              {"a": 10.0}, {"x": 3.0})[["runs", "seconds"]].to_dict("records")
        [{'runs': 3, 'seconds': 105.0}]
    """
    runs = grid(seeds, ratios, methods, converge_seeds, factor)
    units = sum(times * (1.0 if budget == "steps" else 1.0 - ratio) for _, _, ratio, times in runs)
    rows = [
        {"cell": name, "dataset": c["dataset"], "arch": c["arch"], "runs": len(runs),
         "seconds": units * unpruned_seconds[c["dataset"]] * relative_cost[c["arch"]]}
        for name, c in cells.items()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["cell", "dataset", "arch", "runs", "seconds"])


def run(
    key: str,
    arch: str,
    seeds: Sequence[int],
    ratios: Sequence[float] = (0.4, 0.8),
    methods: Sequence[str] = ("random", "fusion_neg", "fusion_pos"),
    converge_seeds: Sequence[int] = (0,),
    factor: float = 2.0,
    val_protocol: str = "fixed",
    settings: Settings = Settings(),
    workers: int | None = 1,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Train ``arch`` on the main study's kept sets of dataset ``key``.

    Args:
        key: Dataset key (its ``prune`` stage must have run for ``seeds``).
        arch: Architecture (any of :func:`fusion.models.available`).
        seeds: Split seeds (3 in the study).
        ratios: Pruning ratios. Defaults to 0.4 and 0.8.
        methods: Methods at every ratio (columns of the prune table).
        converge_seeds: Seeds whose unpruned run is repeated with ``factor`` x the budget.
        factor: Budget multiplier of the convergence check. Defaults to 2.
        val_protocol: ``"fixed"`` or ``"pruned"``.
        settings: The training settings (:class:`fusion.stages.train.Settings`;
            ``"tuned"`` epochs and learning rate are the main architecture's choice).
        workers: Dask workers training runs side by side (``None``: one per
            core). Defaults to 1 (this process). The rows do not depend on it.
        scheduler: Address of an existing Dask scheduler. Defaults to None.

    Returns:
        One row per run of :func:`grid` (``factor`` 1 or the multiplier), also
        written to ``results/transfer/<key>/<arch>.csv``.
    """
    n_epochs, peak_lr = settings.resolved(key)
    graphs = load_graph_cache(key)
    cells = grid(seeds, ratios, methods, converge_seeds, factor)
    splits = {s: load_split(key, s) for s in sorted({c[0] for c in cells})}
    tables = {s: pd.read_csv(paths.prune_path(key, s), dtype={"id": str}) for s in splits}
    runs = []
    for seed, method, ratio, times in cells:
        split = splits[seed]
        tr, va = kept_sets(tables[seed], split, method, ratio, val_protocol)
        cfg = settings.config(round(n_epochs * times), peak_lr, seed, len(tr), len(split["train"]))
        runs.append(((tr, va, split["test"]), cfg))

    def row(k: int, res: dict[str, Any]) -> dict[str, Any]:
        seed, method, ratio, times = cells[k]
        return {
            "dataset": key,
            "arch": arch,
            "seed": seed,
            "method": method,
            "ratio": ratio,
            "factor": times,
            **res,
        }

    log = RunLog(paths.transfer_path(key, arch))
    log.rows = fit_all(log, arch, settings.size, graphs, runs, row, workers, scheduler)
    return log.frame().drop(columns="run_key")  # the key stays in the CSV; the page shows the results
