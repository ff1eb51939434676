"""Static checks of the pipeline: notebooks, dvc.yaml and the parameter profiles agree."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import MACHINE_PATH, PYTHON_WARNING

from fusion import runner
from fusion.models import available
from fusion.paths import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book" / "src").glob("*.ipynb"))
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
# Sweep groups: their keys are dataset keys or list items, which differ between profiles.
SWEEPS = {"datasets", "architectures", "seeds", "val_protocol"}
# Groups a stage reads that are deliberately not DVC params (fusion.parallel).
UNTRACKED = {"dask"}


def code_cells(path: Path) -> list:
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def stage_notebook(name: str) -> tuple[str, str]:
    """The source notebook of a stage and the prefix of its executed copy."""
    if name.startswith("book-"):
        page = name.removeprefix("book-")
        return f"book/src/{page}.ipynb", f"book/pages/{page}"
    return f"notebooks/{name}.ipynb", f"notebooks/executed/{name}"


def notebook_stage(path: Path) -> str:
    return f"book-{path.stem}" if path.parent.name == "src" else path.stem


def paths(entries: list) -> list[str]:
    """Output/dependency paths, whether plain strings or ``{path: {options}}``."""
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def stage_bodies():
    for name, stage in DVC["stages"].items():
        yield name, stage.get("do", stage)


def test_every_stage_has_a_notebook_and_vice_versa():
    assert NOTEBOOKS, "no notebooks"
    assert {notebook_stage(p) for p in NOTEBOOKS} == set(DVC["stages"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_and_no_definitions(path):
    book = nbformat.read(path, as_version=4)
    assert book.cells[0].cell_type == "markdown", "first cell must say what the stage does"
    cells = code_cells(path)
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    defaults = ast.parse(tagged[0].source)
    assert all(isinstance(node, ast.Assign) for node in defaults.body), "parameters cell holds defaults only"
    for cell in cells:
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda), (
                f"{path.name}: {type(node).__name__} in a notebook"
            )
    assert book.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize(("name", "body"), list(stage_bodies()), ids=[n for n, _ in stage_bodies()])
def test_stage_cmd_runs_its_notebook_with_declared_parameters(name, body):
    cmd = " ".join(body["cmd"].split())
    m = re.match(r"python -m fusion\.runner (\S+) (\S+)", cmd)
    assert m, cmd
    notebook, executed = m.groups()
    source, prefix = stage_notebook(name)
    assert notebook == source
    assert (ROOT / notebook).exists()
    assert executed.startswith(prefix)
    assert notebook in paths(body["deps"])
    assert executed in paths(body["outs"])
    # Every parameter the command passes is declared by the notebook.
    declared = set()
    for node in ast.parse(
        next(c for c in code_cells(ROOT / notebook) if "parameters" in c.metadata.get("tags", [])).source
    ).body:
        declared.update(t.id for t in node.targets)
    params = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())
    groups = re.findall(r"-g (\S+)", cmd)
    whole = re.findall(r"-d (\S+)", cmd)
    passed = set(runner.notebook_parameters(params, groups, whole)) | set(re.findall(r"-p (\S+) ", cmd))
    assert passed <= declared, passed - declared
    # Every group the command reads is a declared DVC params dependency, except
    # `dask` (worker count, scheduler address), on which no output depends.
    read = {g.partition(":")[0] for g in groups + whole} - UNTRACKED
    declared = set(body["params"])
    covered = {g for g in read if any(g == p or g.startswith(p + ".") for p in declared)}
    assert read == covered, read - covered


def test_profiles_have_the_same_groups_and_keys():
    profiles = {p.stem: yaml.safe_load(p.read_text()) for p in PROFILES}
    assert {"smoke", "default", "paper"} <= set(profiles)
    used = set()
    for _, body in stage_bodies():
        used.update(p.split(".")[0] for p in body["params"])
    ref = profiles["default"]
    for name, prof in profiles.items():
        assert set(prof) == set(ref), name
        for group in used - SWEEPS:
            assert set(prof[group]) == set(ref[group]), (name, group)
        for key, entry in prof["datasets"].items():
            assert set(entry) == {"name", "target", "limit"}, (name, key)
            assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", key), f"dataset key {key!r} is not kebab-case"
        assert set(prof["architectures"]) <= set(available()), name


def test_params_yaml_is_the_default_profile():
    assert (ROOT / "params.yaml").read_text() == (ROOT / "profiles" / "default.yaml").read_text()


def test_paper_profile_follows_method():
    paper = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    assert paper["architectures"] == available()
    assert len(paper["architectures"]) == 11
    assert paper["seeds"] == [0, 1, 2, 3, 4]
    assert paper["train"]["epochs"] == 300
    assert paper["train"]["size"] == "paper"
    assert paper["uncertainty"]["model"] == "alignn"
    assert paper["uncertainty"]["size"] == "paper"
    assert paper["prune"]["ratios"] == [0.2, 0.4, 0.6, 0.8]  # ratio 0 is always run (random@0)
    assert {"fusion_neg", "random", "uncertainty", "weight", "diversity", "active"} <= set(
        paper["prune"]["methods"]
    )
    assert {e["name"] for e in paper["datasets"].values()} == {
        "matbench_jdft2d",
        "matbench_dielectric",
        "matbench_perovskites",
    }
    assert all(e["limit"] is None for e in paper["datasets"].values())
    grid = paper["optimal"]["ratios"]  # 0.5 % steps up to 10 %; ratio 0 is always run
    assert len(grid) == 20
    assert abs(grid[0] - 0.005) < 1e-12
    assert abs(grid[-1] - 0.1) < 1e-12


def test_notebook_parameters_merges_groups_and_rejects_collisions():
    params = {"a": {"x": 1, "y": [1, 2]}, "b": {"x": 2}, "seeds": [0, 1], "d": {"k": {"v": 1}}}
    assert runner.notebook_parameters(params, ["a", "seeds"]) == {"x": 1, "y": [1, 2], "seeds": [0, 1]}
    assert runner.notebook_parameters(params, ["a.y"], ["d"]) == {"y": [1, 2], "d": {"k": {"v": 1}}}
    # path:NAME renames, and a renamed group is one parameter even when it is a dict.
    assert runner.notebook_parameters(params, ["a.y:ys", "b:bb"]) == {"ys": [1, 2], "bb": {"x": 2}}
    with pytest.raises(KeyError, match="two groups"):
        runner.notebook_parameters(params, ["a", "b"])
    with pytest.raises(KeyError, match="not found"):
        runner.notebook_parameters(params, ["a.z"])


def test_profiles_switch(tmp_path):
    from fusion.profiles import available as profiles
    from fusion.profiles import use_profile

    (tmp_path / "profiles").mkdir()
    for p in PROFILES:
        (tmp_path / "profiles" / p.name).write_text(p.read_text())
    assert profiles(tmp_path) == sorted(p.stem for p in PROFILES)
    use_profile("smoke", tmp_path)
    assert (tmp_path / "params.yaml").read_text() == (ROOT / "profiles" / "smoke.yaml").read_text()
    with pytest.raises(FileNotFoundError, match="available"):
        use_profile("nope", tmp_path)


def _output_texts(path: Path) -> list[str]:
    """Every text a notebook's cells printed or displayed (streams, tracebacks, text data)."""
    texts = []
    for cell in code_cells(path):
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                texts.append(out.text)
            elif out.output_type == "error":
                texts.append("\n".join(out.traceback))
            else:
                texts += [str(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return texts


def test_committed_stage_notebooks_show_no_machine_path_or_python_warning():
    """The book renders these notebooks: a path or warning printed by a stage would reach a page.

    The same check runs on the built pages (``test_book``, end to end); this one fails in seconds.
    """
    tracked = subprocess.run(
        ["git", "ls-files", "notebooks/executed/*.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = [
        f"{name}: {m.group(0)!r} in {text[max(0, m.start() - 80) : m.end() + 80]!r}"
        for name in tracked
        for text in _output_texts(ROOT / name)
        for rx in (MACHINE_PATH, PYTHON_WARNING)
        if (m := rx.search(text))
    ]
    assert not found, "\n".join(found)
