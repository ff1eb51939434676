"""The book's paper checklist (fusion.report.checklist): statuses derived from the run's files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fusion.paths import ROOT
from fusion.report import checklist, inputs

PAPER_ARCHS = checklist.PAPER["architectures"]


def _params(**over) -> dict:
    """A small profile on jdft2d (key ``j``) with a CPU-scale model, like the default profile."""
    params = {
        "datasets": {"j": {"name": "matbench_jdft2d", "target": "exfoliation_energy", "limit": None}},
        "architectures": ["cgcnn"],
        "seeds": [0, 1],
        "val_protocol": "fixed",
        "prepare": {"fractions": [0.7, 0.15, 0.15]},
        "fingerprints": {"compression": "off"},
        "uncertainty": {"model": "cgcnn", "size": "cpu", "epochs": 20, "lam": 0.0},
        "prune": {
            "methods": ["random", "fusion_neg"],
            "ratios": [0.2, 0.4, 0.6, 0.8],
            "gamma": 0.1,
            "baselines": ["diversity"],
            "baseline_ratios": [0.8],
        },
        "train": {"size": "cpu", "epochs": 20},
        "protocol": {"datasets": ["j"]},
        "optimal": {"datasets": ["j"], "ratios": [0.02, 0.04]},
        "ood": {"datasets": ["j"], "seeds": [0]},
    }
    params.update(over)
    return params


class Run:
    """A repository root whose ``dvc.lock`` records stages with real output files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stages: dict[str, dict] = {}

    def finish(self, *stages: str) -> None:
        for stage in stages:
            out = self.root / "out" / f"{stage.replace('@', '-')}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(stage)
            md5 = hashlib.md5(out.read_bytes()).hexdigest()
            self.stages[stage] = {
                "outs": [{"path": str(out.relative_to(self.root)), "md5": md5, "size": len(stage)}]
            }
        (self.root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": self.stages}))

    def analyse(self, verdict: dict) -> None:
        (self.root / "results").mkdir(exist_ok=True)
        (self.root / "results" / "metrics.json").write_text(json.dumps({"verdict": verdict}))
        self.finish("analyze")


def _status(table: pd.DataFrame, item: str) -> tuple[str, str]:
    row = table.set_index("item").loc[item]
    return row["status"], row["why"]


def test_every_paper_item_gets_a_status_a_reason_and_a_link(tmp_path):
    table = checklist.checklist(_params(), tmp_path)
    assert list(table.columns) == checklist.COLUMNS
    assert list(dict.fromkeys(table["group"])) == list(checklist.GROUPS)
    assert table["item"].is_unique
    assert set(table["status"]) <= set(checklist.STATUSES)
    assert table["why"].str.len().gt(0).all()
    assert table["in this book"].str.match(r"\{(numref|ref|doc)\}`").all()
    # Each claim and each dataset of METHOD.md has its row.
    items = set(table["item"])
    assert {"FUSION vs random", "Optimal point", "FUSION vs diversity", "Reference accuracies"} <= items
    assert {"dielectric", "jdft2d", "perovskites", "Architectures"} <= items
    # Nothing has run: configured items are in progress, the others say why not.
    assert _status(table, "Split") == ("in progress", "0 of 1 prepare runs (one per dataset) have finished")
    assert _status(table, "dielectric")[0] == "not run"
    assert _status(table, "Weight only")[0] == "not run"
    assert _status(table, "FUSION vs random")[0] == "in progress"
    # GPU-scale items this CPU profile cannot reach, whatever has run.
    status, why = _status(table, "Architectures")
    assert status == "not possible"
    assert "1 of 11 trained (cgcnn)" in why
    assert "GPU" in why
    assert _status(table, "Surrogate backbone")[0] == "not possible"


def test_statuses_follow_the_run_as_it_completes(tmp_path):
    params = _params()
    run = Run(tmp_path)
    run.finish("prepare@j", "fingerprints@j", "uncertainty@j", "prune@j", "train@j-cgcnn-0")
    table = checklist.checklist(params, tmp_path)
    assert _status(table, "Split") == (
        "reproduced",
        "all 1 prepare runs (one per dataset) have finished, with the paper's setting",
    )
    assert _status(table, "Importance and selection")[0] == "reproduced"
    assert _status(table, "SOAP fingerprint")[0] == "reproduced"  # compression off: the paper's spectrum
    status, why = _status(table, "Diversity")
    assert status == "in progress"
    assert why.startswith("1 of 2 training cells have finished; when done, partly: at 80 % only")
    assert _status(table, "Optimal point") == ("in progress", "0 of 1 optimal-point runs have finished")
    assert _status(table, "Transfer across architectures") == (
        "not run",
        "this profile runs no transfer grid",
    )

    run.finish("train@j-cgcnn-1", "optimal@j", "ood@j", "protocol@j")
    table = checklist.checklist(params, tmp_path)
    assert _status(table, "Random") == (
        "reproduced",
        "all 2 training cells have finished, with the paper's setting",
    )
    assert _status(table, "Diversity") == ("partly", "at 80 % only (paper: 20 to 80 %)")
    assert _status(table, "Seeds") == ("partly", "2 of 5 seeds")
    assert _status(table, "jdft2d")[0] == "reproduced"
    assert _status(table, "Pruned pool")[0] == "partly"  # fixed validation; the protocol stage ran once
    status, why = _status(table, "FUSION vs random")
    assert status == "in progress"
    assert why.startswith("all 2 training cells have finished and the analysis has not run on all of them")

    run.analyse({"beats_random": {"status": "does not hold", "reason": "worse in 3 of 4 cells"}})
    table = checklist.checklist(params, tmp_path)
    status, why = _status(table, "FUSION vs random")
    assert status == "partly"
    assert why.endswith("verdict: does not hold (worse in 3 of 4 cells)")
    assert "1 of 11 architectures (cgcnn)" in why
    assert _status(table, "FUSION vs diversity")[1].endswith("verdict: not evaluated")
    assert _status(table, "Significance") == ("reproduced", "analysed over the complete training matrix")
    assert checklist.counts(table)["n_in_progress"] == 0

    # An output rewritten after dvc.lock recorded it: the stage no longer counts.
    (tmp_path / "out" / "train-j-cgcnn-1.txt").write_text("rerun in progress")
    table = checklist.checklist(params, tmp_path)
    assert _status(table, "Random") == ("in progress", "1 of 2 training cells have finished")
    assert _status(table, "FUSION vs random")[0] == "in progress"


def test_the_paper_setting_turns_not_possible_into_a_stage_count(tmp_path):
    paper = _params(
        architectures=list(PAPER_ARCHS),
        train={"size": "paper", "epochs": 300},
        uncertainty={"model": "alignn", "size": "paper", "epochs": 300, "lam": 0.0},
        seeds=[0, 1, 2, 3, 4],
    )
    run = Run(tmp_path)
    run.finish("uncertainty@j", *inputs.train_cells(paper))
    table = checklist.checklist(paper, tmp_path)
    assert _status(table, "Architectures") == (
        "reproduced",
        "all 55 training cells have finished, with the paper's setting",
    )
    # A transfer grid adds its cells to the count, and to the claim's status.
    others = [a for a in PAPER_ARCHS if a != "cgcnn"]
    cells = {f"j-{a}": {"dataset": "j", "arch": a} for a in others}
    grid = {**paper, "architectures": ["cgcnn"], "transfer": {"cells": cells}}
    run.finish(f"transfer@j-{others[0]}")
    table = checklist.checklist(grid, tmp_path)
    assert _status(table, "Architectures")[1].startswith("6 of 15 training and transfer cells have finished")
    assert _status(table, "Transfer across architectures") == (
        "in progress",
        "1 of 10 transfer cells have finished",
    )
    assert _status(table, "Surrogate backbone")[0] == "reproduced"
    assert _status(table, "Seeds")[0] == "reproduced"
    # Other settings still differ from the paper's, and say so.
    assert "fixed validation set" in _status(table, "Retrain and evaluate")[1]
    assert _status(table, "Uncertainty score")[0] == "reproduced"
    lam = checklist.checklist({**paper, "uncertainty": {**paper["uncertainty"], "lam": 0.5}}, tmp_path)
    assert _status(lam, "Uncertainty score") == ("partly", "Λ = 0.5 (paper: 0)")


def test_markdown_is_one_list_table_per_group_with_a_badge_per_item(tmp_path):
    table = checklist.checklist(_params(), tmp_path)
    for group in checklist.GROUPS:
        text = checklist.markdown(table, group)
        part = table[table["group"] == group]
        assert text.startswith("```{list-table}")
        assert text.count("\n* - ") == len(part) + 1  # the header row and one row per item
        assert len(re.findall(r"\{bdg-\w+\}`", text)) == len(part)
    with pytest.raises(KeyError, match="no checklist item"):
        checklist.markdown(table, "Nothing")
    counts = checklist.counts(table)
    assert (
        counts["n_items"] == len(table) == sum(counts[f"n_{s.replace(' ', '_')}"] for s in checklist.STATUSES)
    )
    assert counts["checklist_summary"].startswith(f"{len(table)} items: ")


def test_every_link_of_the_checklist_exists_in_the_book(tmp_path):
    """The checklist's labels and pages exist in the book's sources (a missing one fails ``-W``)."""
    sources = "".join(p.read_text() for p in (ROOT / "book" / "src").glob("*.ipynb"))
    table = checklist.checklist(_params(), tmp_path)
    for link in set(table["in this book"]):
        role, target = re.fullmatch(r"\{(\w+)\}`[^<]*<([^>]+)>`", link).groups()
        if role == "doc":
            assert (ROOT / "book" / f"{target.lstrip('/')}.md").exists(), link
        else:
            assert f":name: {target}" in sources or f"({target})=" in sources, link


def test_run_status_names_the_cells_and_the_analysis():
    assert checklist.run_status({"done": 3, "total": 20, "analysed": False, "complete": False}) == (
        "in progress: 3 of 20 training cells (dataset × architecture × seed) have finished and the "
        "analysis has not run yet."
    )
    assert checklist.run_status({"done": 20, "total": 20, "analysed": True, "complete": True}).startswith(
        "complete"
    )


def test_finished_stages_need_their_recorded_outputs(tmp_path):
    run = Run(tmp_path)
    run.finish("prepare@a", "train@a-cgcnn-0")
    assert inputs.finished_stages(tmp_path) == {"prepare@a", "train@a-cgcnn-0"}
    (tmp_path / "out" / "prepare-a.txt").unlink()
    (tmp_path / "out" / "train-a-cgcnn-0.txt").write_text("train@a-cgcnn-X")  # same size, other content
    assert inputs.finished_stages(tmp_path) == set()
    assert inputs.study_progress({"datasets": {"a": {}}, "architectures": ["cgcnn"], "seeds": [0]}, tmp_path) == {
        "done": 0, "total": 1, "analysed": False, "complete": False,
    }  # fmt: skip
