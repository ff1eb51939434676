"""Unit tests of the stage logic on synthetic tables: protocols, budgets, the prune grid, the study's tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_same_integers

from fusion import analysis, verdict
from fusion.paths import column
from fusion.stages import prune, train, tune
from fusion.stages.common import budget_epochs, prunable_ids


def split_of(n: int = 100) -> dict[str, list[str]]:
    ids = [f"r{k}" for k in range(n)]
    return {"train": ids[:70], "val": ids[70:85], "test": ids[85:]}


def test_budget_rules():
    assert budget_epochs(100, 50, 100, "epochs") == 100
    assert budget_epochs(100, 50, 100, "steps") == 200
    assert budget_epochs(100, 30, 100, "steps") == 334  # ceil(333.3): never fewer steps than the full run
    with pytest.raises(ValueError, match="budget rule"):
        budget_epochs(10, 5, 10, "minutes")
    with pytest.raises(ValueError, match="empty"):
        budget_epochs(10, 0, 10, "epochs")


def test_fixed_protocol_prunes_train_only_and_keeps_val_and_test():
    split = split_of()
    assert prunable_ids(split, "fixed") == split["train"]
    assert prunable_ids(split, "pruned") == split["train"] + split["val"]
    with pytest.raises(ValueError, match="val_protocol"):
        prunable_ids(split, "none")


def synthetic_pool(n: int = 200, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"r{k}" for k in range(n)]
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.lognormal(size=n)
    u_ale = 0.5 * y + rng.normal(0, 0.1, n)  # tracks the target, as the real surrogate does
    scores = pd.DataFrame({"U_neg": 1 / (1 + np.exp(u_ale)), "U_pos": 1 / (1 + np.exp(-u_ale))}, index=ids)
    return ids, X, y, scores


def test_prune_pool_grid_matched_control_and_shift():
    ids, X, y, scores = synthetic_pool()
    grid = prune.runs(["random", "fusion_neg", "fusion_pos", "matched_neg"], [0.4, 0.8], ["weight"], [0.4])
    assert grid[0] == ("random", 0.0)
    table, summary = prune.prune_pool(ids, grid, 3, X, y, scores)
    assert table[column("random", 0)].all()
    for method, ratio in grid[1:]:
        assert table[column(method, ratio)].sum() == len(ids) - round(ratio * len(ids))
    # The matched control keeps as many records per target decile as FUSION (s = -1).
    from fusion.selection import decile_edges, decile_index

    bins = decile_index(y, decile_edges(y))
    for ratio in (0.4, 0.8):
        a = np.bincount(bins[table[column("fusion_neg", ratio)].to_numpy()], minlength=10)
        b = np.bincount(bins[table[column("matched_neg", ratio)].to_numpy()], minlength=10)
        assert_same_integers(a, b)  # integer counts: exact by definition
    # s = -1 removes the large-U_ale (large-target) end first: its kept set leaves the top decile.
    shift = summary.set_index(["method", "ratio"])
    assert shift.loc[("fusion_neg", 0.8), "top_decile_share"] < shift.loc[("random", 0.8), "top_decile_share"]
    assert shift.loc[("fusion_pos", 0.8), "top_decile_share"] > shift.loc[("random", 0.8), "top_decile_share"]


def test_prune_grid_rejects_unknown_methods_and_orphan_controls():
    with pytest.raises(ValueError, match="unknown method"):
        prune.runs(["fusion"], [0.4], [], [])
    with pytest.raises(ValueError, match="needs fusion_neg"):
        prune.runs(["random", "matched_neg"], [0.4], [], [])


def test_kept_sets_under_the_fixed_protocol_never_touch_val_or_test():
    split = split_of()
    table = pd.DataFrame({"id": split["train"], column("random", 0.4): [k % 2 == 0 for k in range(70)]})
    tr, va = train.kept_sets(table, split, "random", 0.4, "fixed")
    assert set(tr) <= set(split["train"])
    assert len(tr) == 35
    assert va == split["val"]
    assert not set(tr) & set(split["test"])
    bad = pd.DataFrame({"id": split["val"], column("random", 0.4): True})
    with pytest.raises(ValueError, match="validation ids"):
        train.kept_sets(bad, split, "random", 0.4, "fixed")
    pooled = pd.DataFrame({"id": split["train"] + split["val"], column("random", 0.4): True})
    tr, va = train.kept_sets(pooled, split, "random", 0.4, "pruned")
    assert va == split["val"]
    assert tr == split["train"]


def test_tune_prefers_the_cheaper_budget_within_tolerance():
    grid = pd.DataFrame(
        {"lr": [1e-3, 1e-3, 3e-3, 3e-3], "epochs": [50, 100, 50, 100], "val_mae": [10.0, 9.0, 8.5, 8.4]}
    )
    pick = tune.choose(grid, tolerance=0.02)
    assert (pick["lr"], pick["epochs"]) == (3e-3, 50)  # 8.5 is within 2 % of 8.4
    pick = tune.choose(grid, tolerance=0.0)
    assert (pick["lr"], pick["epochs"]) == (3e-3, 100)


def synthetic_runs(seeds: int = 6) -> pd.DataFrame:
    """MAE = 100 n^-0.5 for random; FUSION 10 % lower at every ratio; 'bad' 10 % higher."""
    rows = []
    rng = np.random.default_rng(0)
    for s in range(seeds):
        for method, factor in (("random", 1.0), ("fusion_neg", 0.9), ("bad", 1.1)):
            for ratio in (0.0, 0.2, 0.4, 0.6, 0.8):
                if ratio == 0 and method != "random":
                    continue
                n = round(1000 * (1 - ratio))
                mae = factor * 100 * n**-0.5 * (1 + rng.normal(0, 0.005))
                rows.append(
                    {"dataset": "d", "arch": "cgcnn", "seed": s, "method": method, "ratio": ratio,
                     "n_train": n, "test_mae": mae, "val_mae": mae}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_compare_pairs_by_seed_with_holm():
    comp = analysis.compare(synthetic_runs()).set_index(["method", "ratio"])
    assert comp.loc[("fusion_neg", 0.4), "improvement_pct"] == pytest.approx(10.0, abs=1.0)
    assert comp.loc[("bad", 0.4), "improvement_pct"] == pytest.approx(-10.0, abs=1.0)
    assert (comp["ci_low"] <= comp["improvement_pct"]).all()
    assert (comp["improvement_pct"] <= comp["ci_high"]).all()
    assert (comp["p_holm"] >= comp["p"]).all()
    assert (comp["n"] == 6).all()
    assert comp["p_wilcoxon"].notna().all()


def test_effective_size_recovers_the_power_law():
    eff, fits = analysis.effective_size_table(synthetic_runs(), "cgcnn")
    assert fits.iloc[0]["b"] == pytest.approx(-0.5, abs=0.02)
    eff = eff.set_index(["method", "ratio"])
    # 10 % lower MAE on a n^-0.5 curve is worth (1/0.9)^2 = 1.23x the records; 10 % higher, 0.83x.
    assert eff.loc[("fusion_neg", 0.4), "n_eff_ratio"] == pytest.approx(1 / 0.81, rel=0.03)
    assert eff.loc[("bad", 0.4), "n_eff_ratio"] == pytest.approx(1 / 1.21, rel=0.03)
    assert eff.loc[("random", 0.4), "n_eff_ratio"] == pytest.approx(1.0, rel=0.02)


def test_convergence_and_accuracy_gate():
    conv = pd.DataFrame(
        {"dataset": "d", "seed": [0, 0, 1, 1], "ratio": 0.0, "factor": [1.0, 2.0, 1.0, 2.0],
         "test_mae": [10.0, 9.9, 10.0, 9.5]}
    )  # fmt: skip
    row = analysis.convergence_table(conv).iloc[0]
    assert row["change_pct"] == pytest.approx(-3.0)
    assert not row["converged"]  # |-3 %| is not below 3 %
    runs = synthetic_runs()
    pred = pd.DataFrame({"dataset": "d", "seed": range(6), "median_mae": 10.0, "mean_mae": 11.0})
    acc = analysis.accuracy_table(runs, pred, {"d": {"name": "matbench_jdft2d", "limit": None}}, "cgcnn")
    assert acc.iloc[0]["passes"]  # ~3.2 against a median predictor of 10, and ratio to Matbench 49.24 tiny
    pred["median_mae"] = 3.3
    acc = analysis.accuracy_table(runs, pred, {"d": {"name": "matbench_jdft2d", "limit": None}}, "cgcnn")
    assert not acc.iloc[0]["passes"]
    assert "median predictor" in acc.iloc[0]["reason"]
    # A subsample meets Matbench only through its full-data run: without one it does not pass.
    pred["median_mae"] = 10.0
    sub = {"d": {"name": "matbench_jdft2d", "limit": 500}}
    acc = analysis.accuracy_table(runs, pred, sub, "cgcnn")
    assert not acc.iloc[0]["passes"]
    assert "no full-data run" in acc.iloc[0]["reason"]
    assert analysis.accuracy_table(runs, pred, sub, "cgcnn", full_data={"d": 50.0}).iloc[0]["passes"]
    assert not analysis.accuracy_table(runs, pred, sub, "cgcnn", full_data={"d": 70.0}).iloc[0]["passes"]


def test_converge_names_a_dataset_without_seeds():
    from fusion.stages import converge

    with pytest.raises(KeyError, match="no seeds for dataset 'phonons'"):
        converge.run("phonons", "cgcnn", {"jdft2d": [0, 1]})


def test_the_gate_keeps_an_unconverged_or_unchecked_dataset_out():
    runs = synthetic_runs()
    pred = pd.DataFrame({"dataset": "d", "seed": range(6), "median_mae": 10.0, "mean_mae": 11.0})
    spec = {"d": {"name": "matbench_jdft2d", "limit": None}}

    def gate(change_by_ratio):  # mean test MAE 10 at 1x, 10 (1 + change) at 2x, per ratio
        conv = pd.DataFrame(
            [{"dataset": "d", "seed": 0, "ratio": r, "factor": f, "test_mae": 10.0 * (1 + c * (f - 1))}
             for r, c in change_by_ratio.items() for f in (1.0, 2.0)]
        )  # fmt: skip
        return analysis.accuracy_table(
            runs, pred, spec, "cgcnn", convergence=analysis.convergence_table(conv)
        ).iloc[0]

    ok = gate({0.0: -0.01, 0.8: 0.02})
    assert ok["passes"]
    assert ok["converged"]
    assert ok["doubling_change_pct"] == pytest.approx(2.0)  # the larger |change|, with its sign
    # Longer training 4 % better at 0.8: under-trained there, out of the verdict.
    low = gate({0.0: -0.01, 0.8: -0.04})
    assert not low["passes"]
    assert not low["converged"]
    assert low["doubling_change_pct"] == pytest.approx(-4.0)
    assert "twice the budget gives 4.0 % lower mean test MAE at ratio 0.8" in low["reason"]
    # Longer training 4 % worse: the budget still moves the MAE by more than 3 %.
    high = gate({0.0: 0.04})
    assert not high["passes"]
    assert "4.0 % higher mean test MAE at ratio 0" in high["reason"]
    # A ratio without its doubled run (NaN change) does not count as a check.
    half = analysis.convergence_table(
        pd.DataFrame({"dataset": "d", "seed": 0, "ratio": 0.0, "factor": [1.0], "test_mae": [10.0]})
    )
    unchecked = analysis.accuracy_table(runs, pred, spec, "cgcnn", convergence=half).iloc[0]
    assert not unchecked["passes"]
    assert "not measured" in unchecked["reason"]
    # No doubled-budget run for the dataset: not shown converged.
    none = analysis.accuracy_table(
        runs, pred, spec, "cgcnn", convergence=analysis.convergence_table(pd.DataFrame())
    )
    assert not none.iloc[0]["passes"]
    assert "not measured" in none.iloc[0]["reason"]


def test_verdict_follows_the_paired_evidence():
    runs = synthetic_runs()
    for fusion_is, expected in (("fusion_neg", "holds"), ("bad", "does not hold")):
        data = runs[runs["method"].isin(["random", fusion_is])].replace({"method": {fusion_is: "fusion_neg"}})
        comp = analysis.compare(data)
        cross = analysis.cross_dataset(comp, ["d"])
        result = verdict.verdict(comp, cross, ["d"], "cgcnn")
        assert result["beats_random"]["status"] == expected, result["beats_random"]
    # FUSION against diversity on jdft2d at 80 %, paired by seed.
    jd = runs[runs["ratio"] == 0.8].replace({"dataset": {"d": "jdft2d"}, "method": {"bad": "diversity"}})
    result = verdict.verdict(analysis.compare(jd), pd.DataFrame(), ["jdft2d"], "cgcnn", runs=jd)
    assert result["beats_diversity_jdft2d_80"]["status"] == "holds"
    assert "lower MAE than diversity" in result["beats_diversity_jdft2d_80"]["reason"]
    # The same evidence on a jdft2d that fails the accuracy gate decides nothing, and says why.
    why = {"jdft2d": "only 9.3 % better than the median predictor (gate: at least 10 % better)"}
    result = verdict.verdict(analysis.compare(jd), pd.DataFrame(), [], "cgcnn", runs=jd, gate_reasons=why)
    entry = result["beats_diversity_jdft2d_80"]
    assert entry["status"] == "unresolved"
    assert "lower MAE than diversity" in entry["reason"]
    assert (
        "jdft2d fails the accuracy gate, so the claim stays unresolved here: only 9.3 % better"
        in entry["reason"]
    )


def optimal_rows(gain: float) -> pd.DataFrame:
    """Optimal-point comparisons with ratio 0 on two datasets; FUSION ``gain`` % better, Holm p 0.001."""
    return pd.DataFrame({"dataset": ["jdft2d", "phonons"], "method": "fusion_neg", "versus": "ratio 0",
                         "chosen_ratio": 0.02, "n": 10, "improvement_pct": gain, "ci_low": gain - 1,
                         "ci_high": gain + 1, "p": 0.001, "p_holm": 0.001})  # fmt: skip


def test_optimal_point_verdict_is_decided_on_gated_datasets_only():
    empty = pd.DataFrame(columns=["arch", "dataset", "method"])
    both = verdict.verdict(empty, pd.DataFrame(), ["jdft2d", "phonons"], "cgcnn", optimal=optimal_rows(5.0))
    assert both["optimal_point"]["status"] == "holds"
    assert "left out" not in both["optimal_point"]["reason"]
    one = verdict.verdict(empty, pd.DataFrame(), ["phonons"], "cgcnn", optimal=optimal_rows(5.0))
    assert one["optimal_point"]["status"] == "holds"
    assert "on phonons" in one["optimal_point"]["reason"]
    assert "left out, failing the accuracy gate: jdft2d" in one["optimal_point"]["reason"]
    none = verdict.verdict(empty, pd.DataFrame(), [], "cgcnn", optimal=optimal_rows(5.0),
                           gate_reasons={"phonons": "not converged"})  # fmt: skip
    assert none["optimal_point"]["status"] == "unresolved"
    assert "5.0 % lower MAE than no pruning" in none["optimal_point"]["reason"]
    assert "jdft2d and phonons fail the accuracy gate" in none["optimal_point"]["reason"]
    assert "jdft2d: reason not given; phonons: not converged" in none["optimal_point"]["reason"]


def tiny_graphs(ids, nudged: bool = False) -> dict:
    """Two-field graphs; ``nudged`` moves the last graph's ``y`` up by one float32 ulp."""
    import torch
    from torch_geometric.data import Data

    out = {i: Data(y=torch.tensor([float(k)]), z=torch.tensor([k])) for k, i in enumerate(ids)}
    if nudged:
        last = out[ids[-1]]
        last.y = torch.nextafter(last.y, torch.tensor([float("inf")]))
    return out


def test_graphs_hash_sees_every_value_and_the_order():
    from fusion.stages.common import graphs_hash

    ids = [f"g{k}" for k in range(5)]
    base = graphs_hash(tiny_graphs(ids))
    assert graphs_hash({k: g.clone() for k, g in tiny_graphs(ids).items()}) == base
    assert graphs_hash(tiny_graphs(ids, nudged=True)) != base  # one float32 ulp in one graph
    assert graphs_hash(dict(reversed(tiny_graphs(ids).items()))) != base
    assert graphs_hash(tiny_graphs(ids[:4])) != base


def test_a_rerun_reuses_finished_runs_and_only_those(tmp_path, monkeypatch):
    from fusion.stages import common
    from fusion.stages.train import fit_or_reuse

    calls = []

    def fake_fit(arch, size, graphs, tr, va, te, config):
        calls.append(len(tr))
        return {"n_train": len(tr), "test_mae": float(len(tr))}

    monkeypatch.setattr("fusion.stages.train.fit_and_score", fake_fit)
    path = tmp_path / "cell.csv"
    split = split_of()
    cfg = common.train_config(3, 8, 1e-3, 3, 0, 1)
    for _ in range(2):  # the first pass trains twice, the rerun reuses both rows
        log = common.RunLog(path)
        for n in (70, 35):
            log.add(
                {
                    "method": "m",
                    **fit_or_reuse(log, "cgcnn", "cpu", {}, (split["train"][:n], split["val"], []), cfg),
                }
            )
        log.frame()
    assert calls == [70, 35]
    assert log.reused == 2
    # Another training set or other settings are new runs.
    log = common.RunLog(path)
    fit_or_reuse(log, "cgcnn", "cpu", {}, (split["train"][:20], split["val"], []), cfg)
    fit_or_reuse(
        log,
        "cgcnn",
        "cpu",
        {},
        (split["train"][:70], split["val"], []),
        common.train_config(6, 8, 1e-3, 6, 0, 1),
    )
    assert calls == [70, 35, 20, 70]
    # The same run on other graphs (a rebuilt cache) is a new run too.
    ids = (split["train"][:20], split["val"], [])
    graphs = tiny_graphs([*ids[0], *ids[1]])
    log.add({"method": "m", **fit_or_reuse(log, "cgcnn", "cpu", graphs, ids, cfg)})
    log.frame()
    log = common.RunLog(path)
    fit_or_reuse(log, "cgcnn", "cpu", graphs, ids, cfg)
    assert (calls[4:], log.reused) == ([20], 1)
    fit_or_reuse(log, "cgcnn", "cpu", tiny_graphs([*ids[0], *ids[1]], nudged=True), ids, cfg)
    assert calls[4:] == [20, 20]


def test_split_of_reads_prepare_s_splits_and_builds_others_the_same_way(tmp_path, monkeypatch):
    from fusion import paths
    from fusion.splits import random_split, save_split
    from fusion.stages.common import write_csv
    from fusion.stages.optimal import split_of

    monkeypatch.chdir(tmp_path)
    ids = [f"r{i}" for i in range(40)]
    write_csv(pd.DataFrame({"id": ids, "target": 1.0}), paths.records_path("d"))
    written = random_split(ids, 0, (0.7, 0.15, 0.15))
    save_split(written, paths.split_path("d", 0))
    assert split_of("d", 0) == written
    # A seed prepare did not write: the same function on the same ids, not the written seed's split.
    assert split_of("d", 5) == random_split(ids, 5, (0.7, 0.15, 0.15)) != written
    assert len(split_of("d", 5, (0.5, 0.25, 0.25))["train"]) == 20


def test_cached_scores_train_a_surrogate_once_per_pool_and_settings(tmp_path, monkeypatch):
    from fusion.stages import surrogates

    calls = []

    def fake(graphs, ids, seed, **settings):
        calls.append((len(ids), seed, settings["epochs"]))
        return pd.DataFrame({"id": list(ids), "U_neg": np.arange(len(ids), dtype=float)}), 0.0

    monkeypatch.setattr(surrogates, "surrogate_frame", fake)
    pool = [f"r{i}" for i in range(10)]
    graphs = tiny_graphs(pool)
    for _ in range(2):
        frame = surrogates.cached_scores(tmp_path, graphs, pool, 3, epochs=5, lr=1e-3)
    assert calls == [(10, 3, 5)]
    assert frame["id"].tolist() == pool  # ids stay strings in pool order
    surrogates.cached_scores(tmp_path, graphs, pool[:8], 3, epochs=5, lr=1e-3)  # another pool
    surrogates.cached_scores(tmp_path, graphs, pool, 4, epochs=5, lr=1e-3)  # another seed
    surrogates.cached_scores(tmp_path, graphs, pool, 3, epochs=6, lr=1e-3)  # other settings
    nudged = tiny_graphs(pool, nudged=True)
    surrogates.cached_scores(tmp_path, nudged, pool, 3, epochs=5, lr=1e-3)  # other graphs
    assert calls == [(10, 3, 5), (8, 3, 5), (10, 4, 5), (10, 3, 6), (10, 3, 5)]
    assert len(list(tmp_path.glob("seed-*.csv"))) == 5


def test_tune_chooses_on_the_mean_over_seeds():
    # Split 0 alone prefers 100 epochs (by noise); the mean over three splits gains
    # 10 % from doubling, so the longer budget is chosen (the phonons case).
    grid = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1, 2, 2],
            "lr": [3e-3] * 6,
            "epochs": [100, 200] * 3,
            "val_mae": [61.0, 65.0, 75.0, 61.0, 94.0, 87.0],
        }
    )
    assert tune.choose(grid[grid["seed"] == 0])["epochs"] == 100
    pick = tune.choose(grid)
    assert (pick["epochs"], pick["seeds"]) == (200, [0, 1, 2])
    assert pick["val_mae"] == pytest.approx((65.0 + 61.0 + 87.0) / 3)


def test_a_full_data_checkpoint_belongs_to_one_run():
    from fusion.stages import fulldata
    from fusion.train import TrainConfig

    ids = (["a", "b"], ["c"], ["d"])
    graphs = tiny_graphs(["a", "b", "c", "d"])
    cfg = TrainConfig(epochs=3, lr=1e-3)
    first = fulldata.checkpoint_file("perovskites", "cgcnn", "cpu", ids, cfg, graphs)
    assert first == fulldata.checkpoint_file("perovskites", "cgcnn", "cpu", ids, cfg, graphs)
    assert first.parts[:2] == ("build", "checkpoints")
    assert first.name.startswith("fulldata-perovskites-")
    # Another learning rate, split or graph set never meets this checkpoint.
    others = [
        fulldata.checkpoint_file("perovskites", "cgcnn", "cpu", ids, TrainConfig(epochs=3, lr=3e-3), graphs),
        fulldata.checkpoint_file("perovskites", "cgcnn", "cpu", (["a"], ["b", "c"], ["d"]), cfg, graphs),
        fulldata.checkpoint_file(
            "perovskites", "cgcnn", "cpu", ids, cfg, tiny_graphs(["a", "b", "c", "d"], True)
        ),
    ]
    assert len({first, *others}) == 4
