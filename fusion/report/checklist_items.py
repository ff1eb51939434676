"""The checklist's items, one builder per group of :data:`fusion.report.checklist.GROUPS`.

Each builder takes the run's evidence (:class:`~fusion.report.checklist_rules.Evidence`)
and returns that group's :class:`~fusion.report.checklist_rules.Item` s: the item's
name, what the paper reports (from METHOD.md), where the book shows it, and the
rule that derives its status from the evidence. :mod:`fusion.report.checklist`
calls them in order and renders the table; the statuses, the paper's settings
and the two status rules are in :mod:`fusion.report.checklist_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fusion.report import inputs
from fusion.report.checklist_rules import (
    IN_PROGRESS,
    NOT_RUN,
    PAPER,
    Evidence,
    Item,
    analysed,
    data_deviations,
    fmt_values,
    ref,
    scale_deviations,
    staged,
    surrogate_text,
    training_cells,
)

__all__ = ["BASELINES", "baseline_items", "claim_items", "data_items", "method_items", "protocol_items"]


def method_items(ev: Evidence) -> list[Item]:
    """The method's steps (METHOD.md), in order: split, pool, surrogate, scores, selection, retraining."""
    p, keys = ev.params, list(ev.params["datasets"])
    unc = p.get("uncertainty", {})
    fractions = [float(f) for f in p.get("prepare", {}).get("fractions", PAPER["fractions"])]
    split_dev = [] if fractions == PAPER["fractions"] else [f"fractions {fmt_values(fractions)}"]
    unc_dev = (
        []
        if all(str(unc.get(k, v)) == str(v) for k, v in PAPER["surrogate"].items())
        else [surrogate_text(unc)]
    )
    soap_dev = [f"{k} = {ev.soap.get(k)}" for k, v in PAPER["soap"].items() if ev.soap.get(k) != v]
    compression = p.get("fingerprints", {}).get("compression", "off")
    if compression != "off":
        soap_dev.append(f"dscribe's {compression} compression (the full spectrum does not fit in memory)")
    gamma = float(p.get("prune", {}).get("gamma", PAPER["gamma"]))
    lam = float(unc.get("lam", PAPER["lam"]))
    val = p.get("val_protocol", "fixed")
    scored = ev.count("uncertainty", keys)
    pruned = ev.count("prune", keys)
    return [
        Item(
            "Split",
            "random 70/15/15 train/validation/test split per seed; the test set never changes",
            ref("tbl-datasets", "Data, Table %s"),
            lambda: staged(*ev.count("prepare", keys), "prepare runs (one per dataset)", split_dev),
        ),
        Item(
            "Pruned pool",
            "pruning acts on the training and validation parts together",
            ref("tbl-protocol", "Results, Table %s"),
            lambda: _pool_status(ev, val),
        ),
        Item(
            "Evidential surrogate",
            "a GNN with a Deep Evidential Regression head (NIG likelihood, evidence regulariser 0.01) "
            "scores every structure: U_ale = β/(α−1), U_epi = β/(ν(α−1))",
            ref("sec-method-equations", "Method: the method as equations", "ref"),
            lambda: staged(*scored, "uncertainty runs (one per dataset)"),
        ),
        Item(
            "Surrogate backbone",
            "ALIGNN (4 ALIGNN + 4 GCN layers, hidden 256), 300 epochs, AdamW at 1e-3",
            ref("/stages/uncertainty", "Pipeline record: uncertainty", "doc"),
            lambda: staged(*scored, "uncertainty runs (one per dataset)", unc_dev, gpu=True),
        ),
        Item(
            "Uncertainty score",
            "U = σ(Λ U_epi − U_ale), Λ = 0 (cross-model): noisy structures get a low U",
            ref("fig-signs", "Method, Figure %s"),
            lambda: staged(
                *scored,
                "uncertainty runs (one per dataset)",
                [] if lam == PAPER["lam"] else [f"Λ = {lam:g} (paper: 0)"],
            ),
        ),
        Item(
            "SOAP fingerprint",
            "SOAP (r_cut 5 Å, n_max 8, l_max 6, σ 0.5), multiplicity-weighted mean over "
            "symmetry-unique sites, L2-normalised",
            ref("tbl-bench-compression", "Performance, Table %s"),
            lambda: staged(*ev.count("fingerprints", keys), "fingerprint runs (one per dataset)", soap_dev),
        ),
        Item(
            "Redundancy weight",
            "W = exp(−γ d_NN), γ = 0.1, d_NN the distance to the nearest other structure",
            ref("fig-u-vs-w", "Method, Figure %s"),
            lambda: staged(
                *pruned, "prune runs (one per dataset)", [] if gamma == PAPER["gamma"] else [f"γ = {gamma:g}"]
            ),
        ),
        Item(
            "Importance and selection",
            "I = U / W; remove the largest set whose mean I stays ≤ ε (the longest prefix of I sorted "
            "ascending); ε found by binary search for a target ratio and reported beside it",
            ref("fig-ranking", "Method, Figure %s"),
            lambda: staged(*pruned, "prune runs (one per dataset)"),
        ),
        Item(
            "Retrain and evaluate",
            "each architecture trained from scratch on the kept pool, MAE on the fixed test set",
            ref("fig-mae", "Results, Figure %s"),
            lambda: staged(*training_cells(ev), "training cells", scale_deviations(p)),
        ),
    ]


def _pool_status(ev: Evidence, val: str) -> tuple[str, str]:
    """Step 1's pool: the main study prunes it when ``val_protocol`` is ``pruned``; else the protocol stage, once."""
    if val == PAPER["val_protocol"]:
        return staged(*training_cells(ev), "training cells")
    keys = list(ev.params.get("protocol", {}).get("datasets", []))
    where = ", ".join(keys) or "no dataset"
    dev = [f"the main study prunes the training part only; the paper's protocol is repeated once, on {where}"]
    return staged(*ev.count("protocol", keys), "protocol runs", dev)


def _grid(params: Mapping[str, Any]) -> dict[str, list[float]]:
    """Method -> the ratios the prune stage runs it at."""
    prune = params.get("prune", {})
    grid: dict[str, list[float]] = {
        m: [float(r) for r in prune.get("ratios", [])] for m in prune.get("methods", [])
    }
    for m in prune.get("baselines", []):
        grid[m] = sorted(set(grid.get(m, [])) | {float(r) for r in prune.get("baseline_ratios", [])})
    return grid


#: Method -> (item name, what the paper runs).
BASELINES = {
    "random": ("Random", "random pruning (the reference of every comparison)"),
    "uncertainty": ("Uncertainty only", "rank by U"),
    "weight": ("Weight only", "rank by the weighting factor W: prune the most redundant"),
    "diversity": ("Diversity", "diversity sampling: k-center greedy on the SOAP fingerprints"),
    "active": ("Active learning", "an ensemble grows a small random set by its largest disagreement"),
}


def baseline_items(ev: Evidence) -> list[Item]:
    """One item per baseline of :data:`BASELINES`; one the prune grid lacks is not run."""
    grid = _grid(ev.params)

    def rule(method: str) -> tuple[str, str]:
        ratios = grid.get(method, [])
        if not ratios:
            return NOT_RUN, f"this profile does not run {method}"
        dev = (
            []
            if set(PAPER["ratios"]) <= set(ratios)
            else [f"at {fmt_values(ratios)} only (paper: 20 to 80 %)"]
        )
        return staged(*training_cells(ev), "training cells", dev)

    link = ref("tbl-significance", "Results, Table %s")
    return [Item(name, text, link, lambda m=m: rule(m)) for m, (name, text) in BASELINES.items()]


def protocol_items(ev: Evidence) -> list[Item]:
    """The protocol: pruning ratios, seeds, significance, optimal point and out of distribution."""
    p = ev.params
    ratios = [float(r) for r in p.get("prune", {}).get("ratios", [])]
    ratio_dev = [] if set(PAPER["ratios"]) <= set(ratios) else [f"ratios {fmt_values(ratios)}"]
    n_seeds = len(p["seeds"])
    seed_dev = [] if n_seeds >= PAPER["n_seeds"] else [f"{n_seeds} of {PAPER['n_seeds']} seeds"]
    opt, ood = p.get("optimal", {}), p.get("ood", {})
    opt_keys, ood_keys = list(opt.get("datasets", [])), list(ood.get("datasets", []))
    paper_keys = {k for k, spec in p["datasets"].items() if spec["name"] in PAPER["datasets"]}
    opt_dev = []
    if [round(float(r), 4) for r in opt.get("ratios", [])] != PAPER["optimal_ratios"]:
        opt_dev.append(f"ratios {fmt_values(opt.get('ratios', []))} (paper: 0.5 to 10 % in 0.5 % steps)")
    if paper_keys - set(opt_keys):
        opt_dev.append(f"on {', '.join(opt_keys) or 'no dataset'} only")
    ood_dev = [f"on {', '.join(ood_keys) or 'no dataset'} only"] if paper_keys - set(ood_keys) else []
    if len(ood.get("seeds", p["seeds"])) < PAPER["n_seeds"]:
        ood_dev.append(f"{len(ood['seeds'])} of {PAPER['n_seeds']} seeds")
    return [
        Item(
            "Pruning ratios",
            "0, 20, 40, 60 and 80 % of the pool removed",
            ref("fig-mae", "Results, Figure %s"),
            lambda: staged(*training_cells(ev), "training cells", ratio_dev),
        ),
        Item(
            "Seeds",
            "5 seeds",
            ref("tbl-significance", "Results, Table %s"),
            lambda: staged(*training_cells(ev), "training cells", seed_dev),
        ),
        Item(
            "Significance",
            "test MAE compared across seeds with significance tests",
            ref("tbl-significance", "Results, Table %s"),
            lambda: analysed(ev),
        ),
        Item(
            "Optimal pruning point",
            "a search over 0 to 10 % removed in 0.5 % steps",
            ref("tbl-optimal", "Results, Table %s"),
            lambda: staged(*ev.count("optimal", opt_keys), "optimal-point runs", opt_dev),
        ),
        Item(
            "Out of distribution",
            "leave-one-cluster-out splits on SOAP clusters",
            ref("tbl-ood", "Results, Table %s"),
            lambda: staged(*ev.count("ood", ood_keys), "OOD runs", ood_dev),
        ),
    ]


def data_items(ev: Evidence) -> list[Item]:
    """The paper's three datasets, one item each, then its 11 architectures."""
    p = ev.params
    by_name = {spec["name"]: key for key, spec in p["datasets"].items()}

    def rule(name: str, n: int) -> tuple[str, str]:
        key = by_name.get(name)
        if key is None:
            return NOT_RUN, f"{name} is not in this profile's datasets"
        limit = p["datasets"][key].get("limit")
        dev = [f"a seeded random {limit:,} of {n:,} records"] if limit else []
        read = ev.prepared.get(key, {}).get("n_read")
        if read is not None and int(read) != n:
            dev.append(f"{int(read):,} records read (paper: {n:,})")
        cells = [c for c in inputs.train_cells(p) if c.startswith(f"train@{key}-")]
        return staged(sum(c in ev.finished for c in cells), len(cells), f"training cells of {key}", dev)

    link = ref("tbl-datasets", "Data, Table %s")
    out = [
        Item(
            name.removeprefix("matbench_"),
            f"{name} ({n:,} structures)",
            link,
            lambda name=name, n=n: rule(name, n),
        )
        for name, n in PAPER["datasets"].items()
    ]
    tr_cells = p.get("transfer", {}).get("cells") or {}
    grid_archs = list(dict.fromkeys([*p["architectures"], *(c["arch"] for c in tr_cells.values())]))
    size = p.get("train", {}).get("size", PAPER["size"])
    arch_dev = []
    if set(PAPER["architectures"]) - set(grid_archs):
        arch_dev.append(
            f"{len(set(grid_archs) & set(PAPER['architectures']))} of 11 trained ({', '.join(grid_archs)})"
        )
    if size != PAPER["size"]:
        arch_dev.append(f"at the {size} size")
    done, total = ev.count("transfer", list(tr_cells))
    done_train, total_train = training_cells(ev)
    out.append(
        Item(
            "Architectures",
            "11 architectures at their published sizes: CGCNN, MEGNet, SchNet, DeeperGATGNN, ALIGNN, "
            "DimeNet++, SODNet, Matformer, PotNet, ComFormer, CrystalFramer",
            ref("tbl-transfer", "Results, Table %s"),
            lambda: staged(
                done + done_train,
                total + total_train,
                "training and transfer cells" if total else "training cells",
                arch_dev,
                gpu=True,
            ),
        )
    )
    return out


def claim_items(ev: Evidence) -> list[Item]:
    """The paper's claims, its reference accuracies and its main figure, each judged by the analysis."""
    p = ev.params
    scale = scale_deviations(p)
    grid = _grid(p)
    jdft2d = any(spec["name"] == "matbench_jdft2d" for spec in p["datasets"].values())

    def vs_diversity() -> tuple[str, str]:
        if not jdft2d or 0.8 not in grid.get("diversity", []) or 0.8 not in grid.get("fusion_neg", []):
            return NOT_RUN, "needs jdft2d with FUSION (s = −1) and diversity at 80 %"
        return analysed(ev, scale, "beats_diversity_jdft2d_80")

    def transfer() -> tuple[str, str]:
        done, total = ev.count("transfer", list(p.get("transfer", {}).get("cells") or {}))
        if total == 0:
            return NOT_RUN, "this profile runs no transfer grid"
        if done < total:
            return IN_PROGRESS, f"{done} of {total} transfer cells have finished"
        return analysed(ev, scale, "transfer_11_architectures")

    def optimal() -> tuple[str, str]:
        done, total = ev.count("optimal", list(p.get("optimal", {}).get("datasets", [])))
        if total == 0:
            return NOT_RUN, "this profile runs no optimal-point search"
        if done < total:
            return IN_PROGRESS, f"{done} of {total} optimal-point runs have finished"
        return analysed(ev, scale, "optimal_point")

    return [
        Item(
            "FUSION vs random",
            "FUSION beats random pruning by 1.91 to 13.65 % (average 6.36 %) across datasets",
            ref("tbl-paper", "Against the paper, Table %s"),
            lambda: analysed(ev, scale, "beats_random"),
        ),
        Item(
            "Optimal point",
            "removing 0 to 8 % of the training data at the optimal point improves MAE by up to 12.67 %",
            ref("tbl-optimal", "Results, Table %s"),
            optimal,
        ),
        Item(
            "Transfer across architectures",
            "FUSION's advantage over random holds across the 11 architectures",
            ref("fig-transfer", "Results, Figure %s"),
            transfer,
        ),
        Item(
            "FUSION vs diversity",
            "on jdft2d at 80 % pruning, FUSION's MAE is 12.7 % below diversity sampling's",
            ref("tbl-paper", "Against the paper, Table %s"),
            vs_diversity,
        ),
        Item(
            "Reference accuracies",
            "Matbench v0.1 MAEs on full data (CGCNN: perovskites 0.0452 eV/cell, jdft2d 49.24 meV/atom, "
            "dielectric 0.5988)",
            ref("tbl-accuracy", "Results, Table %s"),
            lambda: analysed(ev, data_deviations(p)),
        ),
        Item(
            "MAE against the fraction removed",
            "test MAE at each pruning ratio for every method, architecture and dataset (the main results)",
            ref("fig-mae", "Results, Figure %s"),
            lambda: analysed(ev, scale),
        ),
    ]
