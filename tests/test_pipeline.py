"""End to end: `dvc repro` of the smoke profile in a copy of the repository.

Checks that the pipeline runs and produces its metrics, that a second repro runs
nothing, and that changing a pruning parameter reruns only `prune` and the
stages downstream of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fusion.paths import DATA, ROOT

BIN = Path(sys.executable).parent
UPSTREAM = ("prepare@", "graphs@", "fingerprints@", "tune@", "uncertainty@")


def copy_repo(dst: Path) -> None:
    """Copy the tracked and untracked-but-not-ignored files, and the smoke dataset."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    skip = re.compile(r"^(dvc\.lock|data\.dvc|results/|cache/|notebooks/executed/|book/pages/|book/_build/)")
    for rel in filter(None, listed):
        src = ROOT / rel
        if skip.match(rel):
            continue
        if src.is_symlink():  # e.g. book/pipeline -> ../notebooks/executed
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (dst / rel).symlink_to(os.readlink(src))
            continue
        if not src.is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    smoke = yaml.safe_load((ROOT / "profiles" / "smoke.yaml").read_text())
    for entry in smoke["datasets"].values():
        shutil.copytree(DATA / entry["name"], dst / "data" / entry["name"])
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)


# The smoke profile's first `dvc repro` (every stage, the book's pages included) takes
# about 7 minutes on 2 idle cores; the limit only catches a hang.
def run(args: list[str], cwd: Path, timeout: int = 1200) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        args, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.mark.e2e
def test_smoke_pipeline_repro_is_complete_cached_and_incremental(tmp_path):
    if not (DATA / "matbench_jdft2d").exists():
        pytest.skip("data/ not pulled")
    repo = tmp_path / "repo"
    copy_repo(repo)
    run([sys.executable, "-m", "fusion.profiles", "smoke"], repo)
    dvc = str(BIN / "dvc")

    first = run([dvc, "repro"], repo)
    stages = ran(first)
    assert {
        "analyze",
        "figures",
        "tune@jdft2d",
        "prune@jdft2d",
        "train@jdft2d-cgcnn-0",
        "train@jdft2d-schnet-1",
    } <= stages
    assert {
        "converge@jdft2d",
        "protocol@jdft2d",
        "optimal@jdft2d",
        "ood@jdft2d",
        "transfer@jdft2d-megnet",
    } <= stages
    # The metrics contract.
    metrics = json.loads((repo / "results" / "metrics.json").read_text())
    assert set(metrics) >= {"study", "accuracy", "vs_random", "transfer", "optimal_point", "ood", "verdict"}
    # The transfer grid: the train matrix's architectures (cgcnn with converge) beside megnet (transfer).
    assert set(metrics["transfer"]["jdft2d"]) == {"cgcnn", "schnet", "megnet"}
    assert set(metrics["transfer"]["jdft2d"]["megnet"]["comparisons"]) == {"fusion_neg@0.4"}
    # The optimal point's seed 2 lies beyond the study's seeds: its split and surrogate come from the stage.
    optimal = pd.read_csv(repo / "results" / "optimal" / "jdft2d.csv")
    assert sorted(optimal["seed"].unique()) == [0, 1, 2]
    assert len(list((repo / "results" / "optimal" / "jdft2d-surrogates").glob("seed-2-*.csv"))) == 1
    assert set(metrics["optimal_point"]["jdft2d"]) == {"random", "fusion_neg", "fusion_pos"}
    assert "kmeans" in metrics["ood"]["jdft2d"]
    assert set(metrics["study"]) >= {
        "datasets",
        "architecture",
        "seeds",
        "val_protocol",
        "budget",
        "wall_hours",
    }
    assert metrics["study"]["val_protocol"] == "fixed"
    acc = metrics["accuracy"]["jdft2d"]
    assert set(acc) >= {"test_mae", "median_predictor_mae", "matbench_cgcnn_mae", "ratio_to_matbench"}
    cell = metrics["vs_random"]["jdft2d"]["fusion_neg"]["0.4"]
    assert set(cell) == {"improvement_pct", "ci95", "p", "p_holm", "n_eff_ratio"}
    assert {"matched_neg", "fusion_pos", "uncertainty", "weight", "diversity", "active"} <= set(
        metrics["vs_random"]["jdft2d"]
    )
    assert {"beats_random", "optimal_point"} <= set(metrics["verdict"])
    assert all(v["status"] in {"holds", "does not hold", "unresolved"} for v in metrics["verdict"].values())
    assert "vs_random" in run([dvc, "metrics", "show"], repo)
    for name in ("mae-vs-ratio", "effective-size", "target-shift"):
        assert (repo / "results" / "figures" / f"{name}.png").stat().st_size > 1000
    # random@0, 4 methods x 2 ratios, 4 baselines x 1 ratio; validation and test never pruned.
    train = pd.read_csv(repo / "results" / "train" / "jdft2d" / "cgcnn-seed-0.csv")
    assert len(train) == 1 + 4 * 2 + 4
    assert (train["n_val"] == train["n_val"].iloc[0]).all()

    # The book builds from the smoke outputs, warnings as errors.
    modules = ROOT / "book" / "node_modules"
    if not modules.exists():
        pytest.fail("book/node_modules missing: run `make setup` (npm ci --prefix book)")
    (repo / "book" / "node_modules").symlink_to(modules)
    run([str(BIN / "jupyter-book"), "build", "book/", "-W", "-n", "--keep-going"], repo)
    assert (repo / "book" / "_build" / "html" / "pages" / "results.html").exists()

    second = run([dvc, "repro"], repo)
    assert not ran(second), second
    assert "up to date" in run([dvc, "status"], repo)

    params = repo / "params.yaml"
    params.write_text(re.sub(r"(?m)^  gamma: 0\.1", "  gamma: 0.3", params.read_text()))
    third = run([dvc, "repro"], repo)
    rerun = ran(third)
    assert "prune@jdft2d" in rerun
    assert "optimal@jdft2d" in rerun
    assert "ood@jdft2d" in rerun
    assert not {s for s in rerun if s.startswith(UPSTREAM)}, rerun
    assert "up to date" in run([dvc, "status"], repo)
