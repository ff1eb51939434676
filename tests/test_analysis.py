"""The study's tables on hand-made data: aggregation, floors, optimal point, OOD, protocol; OOD splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion import analysis, analysis_checks
from fusion.ood import leave_one_cluster_out, soap_clusters


def runs() -> pd.DataFrame:
    rows = []
    # fusion: 8, 10, 12 (mean 10); random: 10, 12, 14 (mean 12); at ratio 0 both 20.
    for seed, (f, r) in enumerate([(8.0, 10.0), (10.0, 12.0), (12.0, 14.0)]):
        rows += [
            {"dataset": "d", "arch": "a", "seed": seed, "method": "fusion", "ratio": 0.4, "test_mae": f},
            {"dataset": "d", "arch": "a", "seed": seed, "method": "random", "ratio": 0.4, "test_mae": r},
            {"dataset": "d", "arch": "a", "seed": seed, "method": "fusion", "ratio": 0.0, "test_mae": 20.0},
            {"dataset": "d", "arch": "a", "seed": seed, "method": "random", "ratio": 0.0, "test_mae": 20.0},
        ]
    return pd.DataFrame(rows)


def test_aggregate_mean_std_n():
    s = analysis.aggregate(runs()).set_index(["method", "ratio"])
    assert s.loc[("fusion", 0.4), "mean"] == pytest.approx(10.0)
    assert s.loc[("fusion", 0.4), "std"] == pytest.approx(2.0)  # sample std of 8, 10, 12
    assert s.loc[("random", 0.4), "mean"] == pytest.approx(12.0)
    assert s.loc[("random", 0.0), "std"] == pytest.approx(0.0)
    assert (s["n"] == 3).all()


def test_clusters_and_leave_one_cluster_out():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5
    X = np.concatenate([c + rng.normal(0, 0.1, (n, 3)) for c, n in zip(centres, [30, 20, 10], strict=True)])
    labels = soap_clusters(X, 3, seed=0)
    assert np.bincount(labels).tolist() == [30, 20, 10]  # renumbered by size
    assert len(set(labels[:30])) == 1
    ids = [f"r{k}" for k in range(len(X))]
    folds = leave_one_cluster_out(ids, labels, seed=0, val_fraction=0.2)
    assert [f["cluster"] for f in folds] == [0, 1, 2]
    for f in folds:
        test = set(f["test"])
        assert test == {i for i, lab in zip(ids, labels, strict=True) if lab == f["cluster"]}
        assert not test & set(f["train"])
        assert not test & set(f["val"])
        assert len(f["train"]) + len(f["val"]) + len(test) == len(ids)
        assert len(f["val"]) == round(0.2 * (len(ids) - len(test)))
    assert folds == leave_one_cluster_out(ids, labels, seed=0, val_fraction=0.2)
    with pytest.raises(ValueError, match="n_clusters"):
        soap_clusters(X, 1)


def test_constant_predictors_fit_on_the_training_part():
    targets = {"toy": pd.Series([1.0, 3.0, 5.0, 10.0, 0.0], index=["a", "b", "c", "d", "e"])}
    split = {"train": ["a", "b", "c"], "val": [], "test": ["d", "e"]}
    table = analysis.predictor_table(targets, {("toy", 0): split})
    # Training median 3 and mean 3: |10 - 3| and |0 - 3| average to 5.
    assert table.iloc[0]["median_mae"] == pytest.approx(5.0)
    assert table.iloc[0]["mean_mae"] == pytest.approx(5.0)


def test_uncertainty_target_table_ranks():
    targets = {"toy": pd.Series([1.0, 2.0, 3.0, 4.0], index=["a", "b", "c", "d"])}
    # u_ale rises with the target, u_epi falls.
    u = pd.DataFrame({"id": ["a", "b", "c", "d"], "u_ale": [0.1, 0.2, 0.3, 0.4], "u_epi": [4, 3, 2, 1]})
    row = analysis_checks.uncertainty_target_table(targets, {("toy", 0): u}).iloc[0]
    assert row["n"] == 4
    assert row["spearman_u_ale"] == pytest.approx(1.0)
    assert row["spearman_u_epi"] == pytest.approx(-1.0)


def test_optimal_point_is_chosen_on_validation_not_test():
    rows = []
    for seed in range(4):
        rows.append({"dataset": "d", "seed": seed, "method": "random", "ratio": 0.0, "val_mae": 10.0,
                     "test_mae": 10.0 + 0.1 * seed})  # fmt: skip
        for method in ("fusion_neg", "random"):
            # 0.02 looks best on validation; 0.04 would look best on test.
            rows.append({"dataset": "d", "seed": seed, "method": method, "ratio": 0.02, "val_mae": 9.0,
                         "test_mae": 9.5 + 0.1 * seed**2 + (0.2 + 0.05 * seed if method == "random" else 0.0)})  # fmt: skip
            rows.append({"dataset": "d", "seed": seed, "method": method, "ratio": 0.04, "val_mae": 11.0,
                         "test_mae": 8.0 + 0.1 * seed})  # fmt: skip
    table = analysis_checks.optimal_table(pd.DataFrame(rows)).set_index(["method", "versus"])
    assert table.loc[("fusion_neg", "ratio 0"), "chosen_ratio"] == 0.02
    assert table.loc[("fusion_neg", "ratio 0"), "improvement_pct"] > 0
    assert table.loc[("fusion_neg", "random"), "improvement_pct"] > 0  # FUSION beats random at 0.02
    assert (table["p_holm"] >= table["p"]).all()


def test_ood_pairs_by_seed_and_cluster():
    rows = []
    for seed in range(2):
        for cluster in range(3):
            base = 10.0 + cluster + seed
            rows.append(
                {"dataset": "d", "seed": seed, "cluster": cluster, "method": "random", "test_mae": base}
            )
            rows.append({"dataset": "d", "seed": seed, "cluster": cluster, "method": "fusion_neg",
                         "test_mae": (0.9 + 0.01 * (cluster - seed)) * base})  # fmt: skip
    row = analysis_checks.ood_table(pd.DataFrame(rows)).iloc[0]
    assert row["n"] == 6
    assert row["improvement_pct"] == pytest.approx(10.0, abs=1.0)


def test_protocol_table_sets_pruned_beside_fixed():
    runs = pd.DataFrame({"dataset": "d", "arch": "a", "seed": [0, 1], "method": "random", "ratio": 0.4,
                         "val_mae": [5.0, 5.0], "test_mae": [6.0, 6.0], "n_val": [30, 30]})  # fmt: skip
    pruned = runs.assign(val_protocol="pruned", val_mae=4.0, n_val=18)
    table = analysis_checks.protocol_table(pruned, runs).set_index("val_protocol")
    assert table.loc["fixed", "n_val"] == 30
    assert table.loc["pruned", "n_val"] == 18
    assert table.loc["pruned", "n"] == 2


def test_paper_folds_restricted_to_kept_records():
    from fusion.ood import paper_folds, restrict_folds

    source = {"clusters": 2, "folds": {
        "1": {"train": ["a", "b"], "val": ["c"], "test": ["d", "e"]},
        "0": {"train": ["d", "e"], "val": ["b"], "test": ["a", "b", "c"]},
    }}  # fmt: skip
    loco = restrict_folds(source, ["a", "c", "d", "e"])  # "b" is not kept (e.g. a subsample)
    assert loco["dropped"] == 3
    folds = paper_folds(loco)
    assert [f["cluster"] for f in folds] == [0, 1]
    assert folds[0] == {"cluster": 0, "train": ["d", "e"], "val": [], "test": ["a", "c"]}
    assert folds[1] == {"cluster": 1, "train": ["a"], "val": ["c"], "test": ["d", "e"]}
    with pytest.raises(ValueError, match="tested exactly once"):
        restrict_folds(source, ["a", "z"])


def test_ood_table_keeps_fold_sources_apart():
    rows = [
        {"dataset": "d", "folds": src, "seed": s, "cluster": c, "method": m,
         "test_mae": 10.0 + c + s - (delta if m == "fusion_neg" else 0.0)}
        for src, delta in (("kmeans", 1.0), ("paper", -1.0))
        for s in range(2) for c in range(2) for m in ("random", "fusion_neg")
    ]  # fmt: skip
    table = analysis_checks.ood_table(pd.DataFrame(rows)).set_index("folds")
    assert table.loc["kmeans", "improvement_pct"] > 0 > table.loc["paper", "improvement_pct"]
    assert table.loc["kmeans", "n"] == table.loc["paper", "n"] == 4
