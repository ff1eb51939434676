"""The results and paper pages' display tables (fusion.report.study_tables, study_checks, tables) on tiny frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion.report import formatting, study_checks, study_tables, tables
from fusion.verdict import describe_change

UNITS = {"a": "meV/atom", "b": "eV"}


# ----------------------------------------------------------------------------- sentences read right for either sign


def test_describe_change_reads_correctly_for_either_sign():
    assert describe_change(12.04) == "12.0 % lower MAE"
    assert describe_change(-12.06) == "12.1 % higher MAE"
    assert describe_change(-3.0, noun="test MAE") == "3.0 % higher test MAE"
    assert describe_change(2.5, noun="") == "2.5 % lower"
    assert describe_change(0.01).startswith("the same MAE")
    assert describe_change(float("nan")) == "no measurement"
    assert "-" not in describe_change(-40.0)


def test_signed_ci_and_p_formatting():
    assert formatting.signed(3.94) == "+3.9"
    assert formatting.signed(-3.94) == "\u22123.9"
    assert formatting.signed(float("nan")) == "–"
    assert formatting.ci_cell(-3.9, -8.0, 0.25) == "\u22123.9 (\u22128.0 to +0.2)"
    assert formatting.fmt_p(0.0004) == "< 0.001"
    assert formatting.fmt_p(0.0312) == "0.031"
    assert formatting.span("1.00×", "x", "1.00×", "x") == "1.00× (x)"
    assert formatting.span("0.5×", "x", "1.2×", "y") == "from 0.5× (x) to 1.2× (y)"


# ----------------------------------------------------------------------------- verdict and gate


def test_verdict_values_cover_every_claim_even_when_missing():
    verdict = {"beats_random": {"status": "does not hold", "reason": "FUSION (s = -1): 4.0 % higher MAE"}}
    values = study_tables.verdict_values(verdict, tables.PAPER_CLAIMS)
    assert values["status_beats_random"] == "does not hold"
    assert "1.91 to 13.65 %" in values["verdict_beats_random"]
    assert values["verdict_beats_random"].endswith("4.0 % higher MAE.")
    assert values["status_optimal_point"] == "not evaluated"
    assert set(study_tables.claims(tables.PAPER_CLAIMS)) == {
        k.removeprefix("status_") for k in values if k.startswith("status_")
    }
    table = study_tables.verdict_table(verdict, tables.PAPER_CLAIMS)
    assert len(table) == 5


def test_accuracy_display_puts_units_in_cells_and_says_worse_for_negative():
    acc = pd.DataFrame(
        {"dataset": ["a", "b"], "test_mae": [70.4, 0.3], "n_seeds": [2, 2], "median_predictor_mae": [42.7, 0.5],
         "matbench_cgcnn_mae": [49.24, 0.6], "ratio_to_matbench": [np.nan, 0.5], "vs_median_pct": [-64.8, 40.0],
         "subsampled": [True, False], "full_data_test_mae": [np.nan, np.nan], "passes": [False, True],
         "reason": ["64.8 % worse", "passes"]}
    )  # fmt: skip
    shown, values = study_tables.accuracy_display(acc, UNITS)
    row = shown.set_index("dataset")
    assert row.loc["a", "ours: test MAE"] == "70.4 meV/atom"
    assert row.loc["a", "vs median predictor"] == "64.8 % worse"
    assert row.loc["b", "vs median predictor"] == "40.0 % better"
    assert row.loc["a", "vs Matbench CGCNN"] == "–"
    assert row.loc["a", "ours: full data"] == "not run"
    assert row.loc["b", "vs Matbench CGCNN"] == "0.50×"
    assert row.loc["b", "ours: full data"] == "–"
    # A subsample's ratio to Matbench is its full-data run's, shown beside it.
    acc.loc[0, ["full_data_test_mae", "ratio_to_matbench"]] = [59.1, 1.2]
    row = study_tables.accuracy_display(acc, UNITS)[0].set_index("dataset")
    assert (row.loc["a", "ours: full data"], row.loc["a", "vs Matbench CGCNN"]) == ("59.1 meV/atom", "1.20×")
    assert (values["n_gate_pass"], values["n_gate"]) == (1, 2)
    assert "a fails: 64.8 % worse." in values["gate_sentence"]


def test_convergence_display_reads_the_doubling_in_words():
    conv = pd.DataFrame({"dataset": ["a", "a"], "ratio": [0.0, 0.8], "n_seeds": [3, 3], "mae_1x": [10.0, 20.0],
                         "mae_2x": [9.0, 20.4], "change_pct": [-10.0, 2.0], "converged": [False, True]})  # fmt: skip
    shown, values = study_tables.convergence_display(conv, UNITS)
    assert shown["doubling gives"].tolist() == ["10.0 % lower MAE", "2.0 % higher MAE"]
    assert shown["MAE at the budget"].iloc[0] == "10 meV/atom"
    assert values["n_converged"] == 1
    assert "10.0 % lower MAE" in values["convergence_sentence"]


# ----------------------------------------------------------------------------- effective size and comparisons


def _comparison() -> pd.DataFrame:
    return pd.DataFrame(
        {"dataset": ["a", "a", "a", "b"], "arch": ["x"] * 4, "ratio": [0.4, 0.8, 0.4, 0.4],
         "method": ["fusion_neg", "fusion_neg", "fusion_pos", "fusion_neg"], "n": [5, 5, 5, 5],
         "improvement_pct": [-12.0, 3.0, 5.0, 1.0], "ci_low": [-20.0, 1.0, -1.0, -2.0],
         "ci_high": [-4.0, 5.0, 11.0, 4.0], "p": [0.001, 0.01, 0.2, 0.5], "p_wilcoxon": [np.nan] * 4,
         "mae_ref_mean": [10.0, 20.0, 10.0, 1.0], "mae_mean": [11.2, 19.4, 9.5, 0.99],
         "p_holm": [0.004, 0.03, 0.4, 0.5]}
    )  # fmt: skip


def test_comparison_display_is_one_dataset_with_at_most_eight_columns():
    shown = study_tables.comparison_display(_comparison(), "a", "meV/atom")
    assert len(shown) == 3
    assert len(shown.columns) <= 8
    assert "MAE: method vs random (meV/atom)" in shown.columns
    first = shown.iloc[0]
    assert first["method"] == "FUSION (s = −1)"
    assert first["improvement, 95 % CI (%)"] == "\u221212.0 (\u221220.0 to \u22124.0)"
    assert "seeds" not in shown.columns  # every row has 5 seeds: said in the caption
    assert formatting.ci(-331.5, 323.6) == "\u2212332 to +324"
    assert first["p (Holm)"] == "0.004"
    sections = study_tables.comparison_sections(_comparison(), UNITS)
    assert list(sections) == ["a", "b"]
    assert "(eV)" in sections["b"][1]
    assert "(5 seeds)" in sections["a"][1]


def test_significance_counts_and_best_worst_sentences_for_negative_changes():
    counts = study_tables.significance_counts(_comparison()).set_index("method")
    assert counts.loc["FUSION (s = −1)", "significantly lower MAE"] == 1
    assert counts.loc["FUSION (s = −1)", "significantly higher MAE"] == 1
    assert counts.loc["FUSION (s = +1)", "not significant"] == 1
    n = study_tables.comparison_numbers(_comparison(), "fusion_neg", "neg")
    assert n["neg_worst"].startswith("12.0 % higher MAE than random on a with 40 % removed")
    assert n["neg_best"].startswith("3.0 % lower MAE than random on a with 80 % removed")
    assert study_tables.comparison_numbers(_comparison(), "matched_neg", "m")["m_best"] == "not run"


def test_effective_display_and_numbers():
    eff = pd.DataFrame(
        {"dataset": ["a"] * 4, "method": ["random", "random", "fusion_neg", "fusion_neg"], "ratio": [0, 0.4, 0.4, 0.8],
         "n_kept": [100, 60, 60, 20], "test_mae": [1, 1.2, 1.1, 2.0], "n_eff": [100, 58, 72, 10],
         "n_eff_ratio": [1.0, 58 / 60, 1.2, 0.5], "n_eff_share": [1.0, 0.58, 0.72, 0.1]}
    )  # fmt: skip
    shown = study_tables.effective_display(eff)
    assert list(shown.columns) == ["dataset", "method", "40 % removed", "80 % removed"]
    assert shown.iloc[0]["40 % removed"] == "1.20× (72\N{NO-BREAK SPACE}/\N{NO-BREAK SPACE}60)"
    assert shown.iloc[1]["80 % removed"] == "–"  # random has no 0.8 row here
    n = study_tables.effective_numbers(eff)
    assert n["eff_range"] == "from 0.50× (a with 80 % removed) to 1.20× (a with 40 % removed)"
    assert (n["eff_above"], n["eff_cells"]) == (1, 2)
    assert study_tables.effective_display(eff.iloc[:0]).empty


def test_cross_display_reads_in_words():
    cross = pd.DataFrame({"method": ["fusion_neg"], "ratio": [0.4], "k": [3], "improvement_pct": [-2.0],
                          "ci_low": [-5.0], "ci_high": [1.0]})  # fmt: skip
    shown = study_tables.cross_display(cross)
    assert shown["reads as"].iloc[0] == "2.0 % higher MAE"


# ----------------------------------------------------------------------------- checks


def test_shift_and_spearman_tables():
    shift = pd.DataFrame({"dataset": ["a", "a", "a"], "method": ["random", "fusion_neg", "fusion_neg"],
                          "ratio": [0.4, 0.4, 0.8], "ks": [0.05, 0.1, 0.3],
                          "top_decile_share": [0.1, 0.05, 0.02], "kept_mean": [1, 1, 1], "epsilon": [np.nan, 1, 2]})  # fmt: skip
    shown = study_checks.shift_display(shift)
    assert shown.set_index("method").loc["FUSION (s = −1)", "80 % removed"] == "2 % · 0.30"
    n = study_checks.shift_numbers(shift, "fusion_neg", "neg")
    assert n["neg_top_range"] == "from 2 % (a with 80 % removed) to 5 % (a with 40 % removed)"
    uvt = pd.DataFrame({"dataset": ["a", "a", "b"], "seed": [0, 1, 0], "n": [10, 10, 20],
                        "spearman_u_ale": [0.4, 0.6, -0.3], "spearman_u_epi": [0.1, 0.1, 0.0]})  # fmt: skip
    table, v = study_checks.spearman_display(uvt)
    assert table.set_index("dataset").loc["a", "ρ(U_ale, target)"] == "+0.50"
    assert v["rho_ale_strongest_dataset"] == "a"
    assert v["rho_ale_direction"] == "rises"
    assert v["rho_ale_range"] == "from \u22120.30 (b) to +0.50 (a)"


def test_protocol_optimal_and_ood_sentences_read_for_either_sign():
    protocol = pd.DataFrame({"dataset": ["a"] * 2, "method": ["fusion_neg"] * 2, "ratio": [0.4] * 2,
                             "val_protocol": ["fixed", "pruned"], "n": [3, 3], "val_mae": [5.0, 6.0],
                             "test_mae": [10.0, 12.0], "n_val": [30, 18]})  # fmt: skip
    shown, v = study_checks.protocol_display(protocol, UNITS)
    assert shown["test MAE, pruned validation"].iloc[0] == "20.0 % higher"
    assert shown["test MAE, fixed → pruned (meV/atom)"].iloc[0] == "10 → 12"  # one unit: in the header
    two = pd.concat([protocol, protocol.assign(dataset="b")])
    assert study_checks.protocol_display(two, UNITS)[0]["test MAE, fixed → pruned"].iloc[-1] == "10 → 12 eV"
    assert "20.0 % higher test MAE with the pruned validation set" in v["protocol_sentence"]
    optimal = pd.DataFrame({"dataset": ["a", "a"], "method": ["fusion_neg", "fusion_neg"],
                            "versus": ["ratio 0", "random"], "chosen_ratio": [0.04, 0.04], "n": [5, 5],
                            "improvement_pct": [-1.5, 2.0], "ci_low": [-3.0, 0.5], "ci_high": [0.0, 3.5],
                            "p": [0.05, 0.02], "p_holm": [0.05, 0.04]})  # fmt: skip
    table, v = study_checks.optimal_display(optimal)
    assert table["against"].tolist() == ["no pruning", "random"]
    assert "1.5 % higher MAE on test than no pruning" in v["optimal_sentence"]
    ood = pd.DataFrame({"dataset": ["a"], "method": ["fusion_neg"], "n": [4], "improvement_pct": [-7.0],
                        "ci_low": [-9.0], "ci_high": [-5.0], "p": [0.01], "p_holm": [0.01]})  # fmt: skip
    table, v = study_checks.ood_display(ood)  # runs from before the fold-source column: k-means
    assert v["ood_sentence"].startswith(
        "FUSION (s = −1) on a (our k-means folds): 7.0 % higher MAE than random (Holm-significant"
    )
    both = pd.concat([ood.assign(folds="paper", improvement_pct=3.0), ood.assign(folds="kmeans")])
    table, v = study_checks.ood_display(both)
    assert table["folds"].tolist() == ["our k-means folds", "the paper's LOCO folds"]
    assert "on a (the paper's LOCO folds): 3.0 % lower MAE than random" in v["ood_sentence"]
    for fn in (study_checks.optimal_display, study_checks.ood_display):
        assert fn(pd.DataFrame())[0].empty


# ----------------------------------------------------------------------------- method and paper pages


def test_method_numbers_for_both_signs_on_a_small_pool():
    scores = pd.DataFrame(
        {"id": [str(i) for i in range(5)], "y": [1.0, 2.0, 3.0, 4.0, 10.0], "d_nn": [0.1] * 5, "W": [0.99] * 5,
         "U_neg": [0.5, 0.4, 0.3, 0.2, 0.1], "U_pos": [0.5, 0.6, 0.7, 0.8, 0.9],
         "I_neg": [0.5, 0.4, 0.3, 0.2, 0.1], "I_pos": [0.5, 0.6, 0.7, 0.8, 0.9],
         "fusion_neg@0.4": [True, True, True, False, False], "fusion_pos@0.4": [False, False, True, True, True]}
    )  # fmt: skip
    summary = pd.DataFrame({"seed": [0, 0], "method": ["fusion_neg", "fusion_pos"], "ratio": [0.4, 0.4],
                            "n_pool": [5, 5], "n_kept": [3, 3], "epsilon": [0.15, 0.55]})  # fmt: skip
    n = tables.method_numbers(scores, summary, 0, 0.4)
    assert (n["n_removed_neg"], n["n_removed_pos"]) == (2, 2)
    assert n["removed_mean_neg"] == pytest.approx(7.0)
    assert n["removed_mean_pos"] == pytest.approx(1.5)
    assert n["overlap"] == 0.0
    assert n["epsilon_pos"] == pytest.approx(0.55)
    assert tables.removed_side(n["removed_mean_neg"], n["pool_mean"]) == "above"
    assert tables.removed_side(n["removed_mean_pos"], n["pool_mean"]) == "below"
    tiny = tables.method_numbers(scores.iloc[:2], summary, 0, 0.4)
    assert np.isnan(tiny["rho_U_I_neg"])  # too few records for a correlation


def test_paper_table_quotes_the_paper_and_says_higher_for_losses():
    optimal = pd.DataFrame({"dataset": ["a"], "method": ["fusion_neg"], "versus": ["ratio 0"], "chosen_ratio": [0.04],
                            "n": [5], "improvement_pct": [2.0], "ci_low": [0.0], "ci_high": [4.0], "p": [0.05],
                            "p_holm": [0.05]})  # fmt: skip
    verdict = {"beats_random": {"status": "does not hold", "reason": "r"}}
    table = tables.paper_table(_comparison(), optimal, pd.DataFrame(), verdict, "not run")
    assert list(table.columns) == ["claim", "the paper (quoted)", "this run (measured)", "verdict"]
    first = table.iloc[0]
    assert first["the paper (quoted)"].startswith("1.91 to 13.65 % lower MAE")
    assert first["this run (measured)"] == (
        "FUSION (s = −1): from 12.0 % higher MAE to 3.0 % lower MAE than random (3 comparisons)"
    )
    assert first["verdict"] == "does not hold"
    assert table.iloc[1]["this run (measured)"].startswith("not run")
    assert "2.0 % lower MAE than no pruning" in table.iloc[2]["this run (measured)"]
    assert table.iloc[3]["this run (measured)"].endswith("not run")
    assert table.iloc[4]["verdict"] == "not evaluated"
    assert table.iloc[4]["this run (measured)"] == "not run"


def test_study_status_counts_recorded_cells(tmp_path):
    from fusion.report import inputs

    params = {"datasets": {"a": {}, "b": {}}, "architectures": ["cgcnn"], "seeds": [0, 1]}
    assert inputs.study_status(params, tmp_path).startswith("in progress: 0 of 4 training cells")
    cell = tmp_path / "results" / "train" / "a" / "cgcnn-seed-0.csv"
    cell.parent.mkdir(parents=True)
    cell.write_text("x\n1\n")  # a partial CSV of a running cell does not count
    assert "0 of 4" in inputs.study_status(params, tmp_path)
    (tmp_path / "dvc.lock").write_text("stages:\n  train@a-cgcnn-0: {}\n")
    assert "1 of 4" in inputs.study_status(params, tmp_path)


def test_study_figures_draw_a_placeholder_before_the_analysis_exists():
    import pandas as pd

    from fusion.report import study

    for fig in (
        study.mae_curves(pd.DataFrame(), {}),
        study.target_shift(pd.DataFrame()),
        study.effective_size(pd.DataFrame()),
    ):
        assert fig.axes  # a figure with its explanatory text, not an exception
