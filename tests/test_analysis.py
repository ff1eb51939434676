"""Aggregation, improvement over random, paired tests, and OOD splits on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion import analysis
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


def test_improvement_over_random():
    imp = analysis.improvement_over_reference(analysis.aggregate(runs()), "random").set_index("ratio")
    assert set(imp["method"]) == {"fusion"}
    assert imp.loc[0.4, "improvement_pct"] == pytest.approx(100 * (12 - 10) / 12)
    assert imp.loc[0.0, "improvement_pct"] == pytest.approx(0.0)


def test_paired_test_detects_a_clear_difference_only():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 1, size=8)
    clear = analysis.paired_test(base - 1.0 + rng.normal(0, 0.05, 8), base)
    none = analysis.paired_test(base + rng.normal(0, 0.5, 8), base)
    assert clear["t_pvalue"] < 1e-3
    assert clear["wilcoxon_pvalue"] < 0.01
    assert clear["mean_diff"] == pytest.approx(-1.0, abs=0.1)
    assert none["t_pvalue"] > 0.05
    assert none["wilcoxon_pvalue"] > 0.05
    same = analysis.paired_test(base, base)
    assert same["t_pvalue"] == 1.0
    few = analysis.paired_test(base[:3] - 1, base[:3])
    assert np.isnan(few["wilcoxon_pvalue"])
    assert not np.isnan(few["t_pvalue"])
    assert np.isnan(analysis.paired_test(base[:1], base[:1] + 1)["t_pvalue"])


def test_paired_tests_pairs_by_seed():
    df = runs()
    # Shuffle rows: pairing must follow the seed column, not the row order.
    tests = analysis.paired_tests(df.sample(frac=1, random_state=1)).set_index("ratio")
    assert tests.loc[0.4, "mean_diff"] == pytest.approx(-2.0)
    assert tests.loc[0.4, "t_pvalue"] == 0.0  # constant difference: zero variance
    assert tests.loc[0.0, "t_pvalue"] == 1.0


def test_headline_numbers():
    imp = analysis.improvement_over_reference(analysis.aggregate(runs()))
    optimal = pd.DataFrame(
        {"dataset": "d", "seed": [0, 0, 1, 1], "ratio": [0.0, 0.05, 0.0, 0.05], "test_mae": [10, 9, 10, 8]}
    )
    ood = pd.DataFrame(
        {
            "dataset": "d",
            "cluster": [0, 0, 1, 1],
            "method": ["fusion", "random"] * 2,
            "test_mae": [9.0, 10.0, 9.0, 10.0],
        }
    )
    h = analysis.headline(imp, optimal, ood)
    assert h["improvement_over_random_pct"]["d"] == pytest.approx(16.667, abs=1e-3)
    assert h["optimal_point"]["d"] == {"ratio": 0.05, "improvement_pct": 15.0}
    assert h["ood_improvement_over_random_pct"]["d"] == pytest.approx(10.0)


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


def test_mean_predictor_uses_pool_mean_on_test(tmp_path):
    import json

    targets = pd.Series([1.0, 3.0, 5.0, 10.0, 0.0], index=["a", "b", "c", "d", "e"])
    split = {"train": ["a", "b"], "val": ["c"], "test": ["d", "e"]}
    # Pool mean 3: |10 - 3| and |0 - 3| average to 5.
    assert analysis.mean_predictor_mae(targets, split) == pytest.approx(5.0)
    (tmp_path / "records.csv").write_text("id,target\na,1\nb,3\nc,5\nd,10\ne,0\n")
    (tmp_path / "s0.json").write_text(json.dumps(split))
    (tmp_path / "s1.json").write_text(json.dumps({"train": ["d"], "val": ["e"], "test": ["a"]}))
    table = analysis.mean_predictor_table(
        {"toy": tmp_path / "records.csv"},
        {("toy", 1): tmp_path / "s1.json", ("toy", 0): tmp_path / "s0.json"},
    )
    assert table["seed"].tolist() == [0, 1]
    assert table["test_mae"].tolist() == pytest.approx([5.0, 4.0])


def test_uncertainty_target_table_ranks(tmp_path):
    (tmp_path / "records.csv").write_text("id,target\na,1\nb,2\nc,3\nd,4\n")
    # u_ale rises with the target, u_epi falls, U is unrelated to the order of either.
    (tmp_path / "u.csv").write_text("id,u_ale,u_epi,U\na,0.1,4,0.5\nb,0.2,3,0.7\nc,0.3,2,0.4\nd,0.4,1,0.6\n")
    table = analysis.uncertainty_target_table(
        {"toy": tmp_path / "records.csv"}, {("toy", 0): tmp_path / "u.csv"}
    )
    row = table.iloc[0]
    assert row["n"] == 4
    assert row["spearman_target_u_ale"] == pytest.approx(1.0)
    assert row["spearman_target_u_epi"] == pytest.approx(-1.0)
    assert abs(row["spearman_target_U"]) < 1.0
