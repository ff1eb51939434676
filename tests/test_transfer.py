"""The transfer grid (fusion.transfer), the claim sections of metrics.json and their verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion import analysis, transfer, verdict
from fusion.models import available
from fusion.stages.transfer import cost_seconds, grid

DATASETS = {"phonons": {"name": "matbench_phonons", "limit": None}}


def grid_frame(
    effects: dict[str, float], seeds: int = 6, doubled: dict[str, float] | None = None
) -> pd.DataFrame:
    """Rows of a grid: per arch, random MAE 50 (+-1 % noise); fusion_neg lower by ``effects[arch]`` %.

    fusion_pos is 5 % higher everywhere; its validation MAE is higher too, so
    fusion_neg is the better sign. ``doubled``: arch -> relative change of the
    doubled unpruned run of seed 0.
    """
    rng = np.random.default_rng(0)
    rows = []
    for arch, eff in effects.items():
        for s in range(seeds):
            base = 50 * (1 + rng.normal(0, 0.01))
            rows.append({"dataset": "phonons", "arch": arch, "seed": s, "method": "random", "ratio": 0.0,
                         "factor": 1.0, "val_mae": base, "test_mae": base})  # fmt: skip
            for ratio in (0.4, 0.8):
                r = base * (1 + ratio / 4)
                for method, mae in (
                    ("random", r),
                    ("fusion_neg", r * (1 - eff / 100)),
                    ("fusion_pos", r * 1.05),
                ):
                    rows.append({"dataset": "phonons", "arch": arch, "seed": s, "method": method, "ratio": ratio,
                                 "factor": 1.0, "val_mae": mae, "test_mae": mae})  # fmt: skip
        change = (doubled or {}).get(arch, 0.0)
        first = next(r for r in rows if r["arch"] == arch and r["seed"] == 0 and r["ratio"] == 0)
        rows.append({**first, "factor": 2.0, "test_mae": first["test_mae"] * (1 + change / 100)})
    return pd.DataFrame(rows)


def predictors(median: float = 100.0) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "phonons", "seed": range(6), "median_mae": median, "mean_mae": median})


def test_grid_puts_the_comparison_before_the_doubled_runs():
    cells = grid([0, 1], [0.4, 0.8], ["random", "fusion_neg"], [0], 2.0)
    assert len(cells) == 2 * (1 + 2 * 2) + 1
    assert cells[-1] == (0, "random", 0.0, 2.0)
    assert all(c[3] == 1.0 for c in cells[:-1])
    assert cells[:5] == [(0, "random", 0.0, 1.0), (0, "random", 0.4, 1.0), (0, "fusion_neg", 0.4, 1.0),
                         (0, "random", 0.8, 1.0), (0, "fusion_neg", 0.8, 1.0)]  # fmt: skip
    # No seeds: only the convergence runs (the `paper` profile, where `train` runs every architecture).
    assert grid([], [0.4], ["random"], [0, 1], 2.0) == [(0, "random", 0.0, 2.0), (1, "random", 0.0, 2.0)]


def test_cost_estimate_prices_each_run_by_its_data_and_budget():
    cells = {"phonons-schnet": {"dataset": "phonons", "arch": "schnet"}}
    est = cost_seconds(cells, [0, 1], [0.4, 0.8], ["random", "fusion_neg"], [0], 2.0, {"phonons": 100.0},
                       {"schnet": 0.5})  # fmt: skip
    # Per seed: unpruned 1 + 2 methods x (0.6 + 0.2) kept = 2.6 units; two seeds, plus the doubled run: 7.2.
    assert est.loc[0, "runs"] == len(grid([0, 1], [0.4, 0.8], ["random", "fusion_neg"], [0], 2.0)) == 11
    assert est.loc[0, "seconds"] == pytest.approx(7.2 * 100 * 0.5, rel=1e-12)  # float sums: rounding only
    steps = cost_seconds(cells, [0, 1], [0.4, 0.8], ["random", "fusion_neg"], [0], 2.0, {"phonons": 100.0},
                         {"schnet": 0.5}, budget="steps")  # fmt: skip
    assert steps.loc[0, "seconds"] == pytest.approx(12 * 100 * 0.5, rel=1e-12)  # 10 runs x 1 + 1 x 2


def test_grid_rows_keep_the_train_stage_run_once_and_only_converge_longer_runs():
    train = grid_frame({"cgcnn": 5.0}).query("factor == 1").drop(columns="factor")
    again = train[train["seed"] == 0].assign(
        test_mae=-1.0
    )  # the same runs, as a transfer cell would hold them
    conv = pd.DataFrame({"dataset": "phonons", "arch": "cgcnn", "seed": [0, 0], "ratio": 0.0,
                         "factor": [1.0, 2.0], "test_mae": [49.0, 48.0]})  # fmt: skip
    rows = transfer.grid_rows(train, again.assign(factor=1.0), conv)
    assert len(rows) == len(train) + 1
    assert (rows["test_mae"] >= 0).all()  # the train stage's copy wins
    longer = rows[rows["factor"] == 2.0]
    assert longer[["method", "test_mae"]].to_numpy().tolist() == [["random", 48.0]]


def test_accuracy_gates_convergence_matbench_and_the_median_predictor():
    rows = transfer.grid_rows(pd.DataFrame(), grid_frame({"megnet": 5, "schnet": 5, "sodnet": 5},
                                                         doubled={"schnet": -4.0}), pd.DataFrame())  # fmt: skip
    acc = transfer.accuracy(rows, predictors(100.0), DATASETS).set_index("arch")
    # Matbench phonons: MEGNet 28.8 -> 50 / 28.8 = 1.7x passes the 2x gate; SchNet 39.0 too but is not converged.
    assert acc.loc["megnet", "passes"], acc.loc["megnet", "reason"]
    assert acc.loc["megnet", "ratio_to_matbench"] == pytest.approx(acc.loc["megnet", "test_mae"] / 28.8)
    assert not acc.loc["schnet", "passes"]
    assert acc.loc["schnet", "change_pct"] == pytest.approx(-4.0)
    assert "not converged" in acc.loc["schnet", "reason"]
    # SODNet has no Matbench entry: only convergence and the median predictor gate it.
    assert np.isnan(acc.loc["sodnet", "matbench_mae"])
    assert acc.loc["sodnet", "passes"]
    acc = transfer.accuracy(rows, predictors(52.0), DATASETS).set_index("arch")
    assert not acc["passes"].any()
    assert "median predictor" in acc.loc["megnet", "reason"]
    # A subsample is never set against Matbench's full-data figure.
    sub = transfer.accuracy(rows, predictors(), {"phonons": {"name": "matbench_phonons", "limit": 500}})
    assert sub["matbench_mae"].isna().all()


def test_better_sign_is_chosen_on_validation_and_heads_the_verdict():
    rows = transfer.grid_rows(
        pd.DataFrame(), grid_frame({"cgcnn": 6, "megnet": 6, "sodnet": 6}), pd.DataFrame()
    )
    head = transfer.better_fusion(rows, "cgcnn", 0.4)
    assert head == {"phonons": "fusion_neg"}
    flipped = rows.copy()
    flipped.loc[flipped["method"] == "fusion_pos", "val_mae"] = 1.0  # only validation changes
    assert transfer.better_fusion(flipped, "cgcnn", 0.4) == {"phonons": "fusion_pos"}

    comp = transfer.comparison(rows, [0.4, 0.8])
    assert len(comp) == 3 * 2 * 2  # archs x signs x ratios, one Holm family
    cell = comp.set_index(["arch", "method", "ratio"]).loc[("megnet", "fusion_neg", 0.4)]
    assert cell["improvement_pct"] == pytest.approx(6.0, abs=0.01)
    assert cell["p_holm"] < 0.05
    acc = transfer.accuracy(rows, predictors(), DATASETS)
    result = verdict.verdict(pd.DataFrame(columns=["arch", "dataset", "method"]), pd.DataFrame(), [], "cgcnn",
                             transfer_accuracy=acc, transfer=comp, transfer_headline=head)  # fmt: skip
    # Better everywhere, but on 3 architectures: consistent with the claim, not a demonstration of it.
    three = result["transfer_11_architectures"]
    assert three["status"] == "unresolved", three
    assert "on 3 gated architectures of the paper's 11" in three["reason"]
    eleven = dict.fromkeys(available(), 6.0)
    assert len(eleven) == verdict.PAPER_ARCHITECTURES
    rows = transfer.grid_rows(pd.DataFrame(), grid_frame(eleven), pd.DataFrame())
    result = verdict.verdict(pd.DataFrame(columns=["arch", "dataset", "method"]), pd.DataFrame(), [], "cgcnn",
                             transfer_accuracy=transfer.accuracy(rows, predictors(), DATASETS),
                             transfer=transfer.comparison(rows, [0.4, 0.8]),
                             transfer_headline=transfer.better_fusion(rows, "cgcnn", 0.4))  # fmt: skip
    assert result["transfer_11_architectures"]["status"] == "holds", result["transfer_11_architectures"]

    worse = transfer.grid_rows(pd.DataFrame(), grid_frame({"cgcnn": -6, "megnet": -6}), pd.DataFrame())
    comp = transfer.comparison(worse, [0.4, 0.8])
    result = verdict.verdict(pd.DataFrame(columns=["arch", "dataset", "method"]), pd.DataFrame(), [], "cgcnn",
                             transfer_accuracy=transfer.accuracy(worse, predictors(), DATASETS), transfer=comp,
                             transfer_headline=transfer.better_fusion(worse, "cgcnn", 0.4))  # fmt: skip
    assert result["transfer_11_architectures"]["status"] == "does not hold"


def test_claim_sections_of_the_metrics_contract():
    rows = transfer.grid_rows(pd.DataFrame(), grid_frame({"cgcnn": 6, "megnet": 2}), pd.DataFrame())
    acc, comp = transfer.accuracy(rows, predictors(), DATASETS), transfer.comparison(rows, [0.4, 0.8])
    opt = pd.DataFrame({"dataset": "phonons", "method": ["fusion_neg", "fusion_neg"], "versus": ["ratio 0", "random"],
                        "chosen_ratio": 0.02, "n": 10, "improvement_pct": [1.5, 0.5], "ci_low": [0.1, -1.0],
                        "ci_high": [2.9, 2.0], "p": [0.04, 0.5], "p_holm": [0.08, 0.5]})  # fmt: skip
    ood = pd.DataFrame({"dataset": "jdft2d", "folds": ["kmeans", "paper"], "method": "fusion_neg", "n": [15, 3],
                        "improvement_pct": [-1.0, 2.0], "ci_low": [-3.0, -9.0], "ci_high": [1.0, 13.0],
                        "p": [0.3, 0.6], "p_holm": [0.6, 0.6]})  # fmt: skip
    out = verdict.claim_sections(acc, comp, {"phonons": "fusion_neg"}, opt, ood, 0.4)
    megnet = out["transfer"]["phonons"]["megnet"]
    assert {"test_mae", "matbench_mae", "improvement_pct", "ci95", "p_holm"} <= set(megnet)
    assert megnet["method"] == "fusion_neg"
    assert megnet["matbench_mae"] == 28.8
    assert megnet["improvement_pct"] == pytest.approx(2.0, abs=0.01)
    assert set(megnet["comparisons"]) == {
        "fusion_neg@0.4",
        "fusion_pos@0.4",
        "fusion_neg@0.8",
        "fusion_pos@0.8",
    }
    point = out["optimal_point"]["phonons"]["fusion_neg"]
    assert point["chosen_ratio"] == 0.02
    assert point["vs_ratio0"]["improvement_pct"] == 1.5
    assert point["vs_random"]["ci95"] == [-1.0, 2.0]
    assert set(out["ood"]["jdft2d"]) == {"kmeans", "paper"}
    assert out["ood"]["jdft2d"]["paper"]["fusion_neg"]["n"] == 3


def test_ood_verdict_sets_each_fold_source_beside_the_in_distribution_gap():
    ident = analysis.compare(
        grid_frame({"cgcnn": 6}).query("factor == 1 and method != 'fusion_pos'").rename(columns={})
    )
    shrunk = pd.DataFrame({"dataset": "phonons", "folds": "kmeans", "method": "fusion_neg", "n": 15,
                           "improvement_pct": [1.0], "ci_low": [-2.0], "ci_high": [4.0], "p": [0.5],
                           "p_holm": [0.5]})  # fmt: skip
    result = verdict.verdict(ident, pd.DataFrame(), ["phonons"], "cgcnn", ood=shrunk)
    assert result["ood_gaps_shrink"]["status"] == "holds", result["ood_gaps_shrink"]
    assert "+1.0 % OOD against +6.0 % in distribution" in result["ood_gaps_shrink"]["reason"]
    grown = shrunk.assign(improvement_pct=12.0, ci_low=8.0, ci_high=16.0)
    result = verdict.verdict(ident, pd.DataFrame(), ["phonons"], "cgcnn", ood=grown)
    assert result["ood_gaps_shrink"]["status"] == "does not hold"
    # On a dataset that fails the accuracy gate, the measurement is reported and decides nothing.
    result = verdict.verdict(ident, pd.DataFrame(), [], "cgcnn", ood=grown,
                             gate_reasons={"phonons": "not converged"})  # fmt: skip
    assert result["ood_gaps_shrink"]["status"] == "unresolved"
    assert "+12.0 % OOD against +6.0 % in distribution" in result["ood_gaps_shrink"]["reason"]
    assert (
        "phonons fails the accuracy gate, so the claim stays unresolved here: not converged"
        in result["ood_gaps_shrink"]["reason"]
    )


def test_report_table_heatmap_and_sentence_agree():
    from fusion.report import transfer as report

    rows = transfer.grid_rows(pd.DataFrame(), grid_frame({"cgcnn": 6, "megnet": 6, "schnet": -6},
                                                         doubled={"schnet": 5.0}), pd.DataFrame())  # fmt: skip
    acc, comp = transfer.accuracy(rows, predictors(), DATASETS), transfer.comparison(rows, [0.4, 0.8])
    metrics = verdict.claim_sections(acc, comp, transfer.better_fusion(rows, "cgcnn", 0.4), pd.DataFrame(),
                                     pd.DataFrame(), 0.4)  # fmt: skip
    heads, ratio = report.headline_of(metrics)
    assert (heads, ratio) == ({"phonons": "fusion_neg"}, 0.4)
    table, values = report.transfer_display(acc, comp, heads, {"phonons": "cm⁻¹"})
    assert len(table) == 3
    assert values["transfer_summary"].startswith(
        "2 of 3 (dataset, architecture) pairs, over 3 architectures, pass the gates; the table below gives the "
        "reason of each one that fails. On phonons at 40 % removed, FUSION (s = −1) has a lower MAE"
    )
    # One architecture that fails its gate: singular nouns, and the dataset said once, not once per ratio.
    alone = transfer.grid_rows(
        pd.DataFrame(), grid_frame({"cgcnn": 6}, doubled={"cgcnn": 5.0}), pd.DataFrame()
    )
    acc1, comp1 = transfer.accuracy(alone, predictors(), DATASETS), transfer.comparison(alone, [0.4, 0.8])
    assert report.transfer_display(acc1, comp1, heads, {"phonons": "cm⁻¹"})[1]["transfer_summary"] == (
        "0 of 1 (dataset, architecture) pair, over 1 architecture, pass the gates; the table below gives the "
        "reason of each one that fails. On phonons no architecture passes the gates."
    )
    alone_verdict = verdict.verdict(pd.DataFrame(columns=["arch", "dataset", "method"]), pd.DataFrame(), [],
                                    "cgcnn", transfer_accuracy=acc1, transfer=comp1, transfer_headline=heads)  # fmt: skip
    assert alone_verdict["transfer_11_architectures"]["reason"] == (
        "the 1 (dataset, architecture) pair of 1 architecture fails the convergence and accuracy gates"
    )
    by_arch = table.set_index("architecture")
    assert by_arch.loc["schnet", "counted?"] == "not converged (+5.0 % with twice the budget)"
    megnet = by_arch.loc["megnet"]
    assert megnet["counted?"] == "counted"
    assert megnet["unpruned test MAE"].endswith("cm⁻¹")
    assert megnet["Matbench"] == "28.8 cm⁻¹"
    assert megnet["FUSION (s = −1) vs random, 40 % removed (%)"].startswith("+6.0 (")
    assert megnet["FUSION (s = −1) vs random, 40 % removed (%)"].endswith("*")
    fig = report.transfer_heatmap(acc, comp, heads)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 3 * 2  # architectures x ratios
    assert sum(t.startswith("−6.0") for t in texts) == 2  # schnet, drawn though it fails its gate
    sentence = report.transfer_sentence(comp, acc, heads)
    assert "lower MAE than random for 2 of 2 gated architectures (2 Holm-significantly" in sentence
    measured = report.transfer_measured(acc, comp, heads, 0.4)
    assert measured.startswith("3 architectures, 2 of 3 (dataset, architecture) pairs gated; ")
    assert measured.endswith("from 6.0 % lower MAE to 6.0 % lower MAE than random")
    assert report.transfer_measured(pd.DataFrame(), pd.DataFrame(), {}, 0.4) == "not run"
    # Nothing run: a placeholder figure and sentences that say so.
    assert report.transfer_display(pd.DataFrame(), pd.DataFrame(), {}, {})[1] == {
        "transfer_summary": "The transfer grid has not run in this study."
    }
    assert report.transfer_heatmap(pd.DataFrame(), pd.DataFrame(), {}).axes[0].texts
