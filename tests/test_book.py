"""The book: helpers of fusion.report (fast) and the built HTML (e2e).

The e2e tests build the book themselves (``jupyter-book build book/ -W -n
--keep-going`` into a temporary folder, once per session) from whatever executed
pages exist: ``book/pages/*.ipynb`` from the ``book-*`` stages of ``dvc repro``
and ``notebooks/executed/``. Without those pages they skip with the command to
run; in CI they run after the pipeline's e2e test, which runs ``dvc repro``.

They read the book as a researcher does: a sidebar where no title repeats and
the pipeline record runs in the stages' order, pages free of the machine's paths
and of Python warnings, and, in headless Chromium at 1300 px (skipped when it is
not installed), no table or figure wider than its column. Every page is
screenshotted at 1300 px into ``build/screenshots/`` for a person to look at
(CI keeps ``build/``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import html
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import MACHINE_PATH, PYTHON_WARNING

from fusion.paths import ROOT
from fusion.report import benchmarks, crystals, figures, glue, inputs, palette

BOOK = ROOT / "book"
PAGES = ("data", "method", "results", "paper", "checklist", "performance")
EXECUTED = ROOT / "notebooks" / "executed"
# The run order of the stages that leave an executed notebook: the order of dvc.yaml.
STAGES = [
    name
    for name, spec in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()
    if "notebooks/executed/" in json.dumps(spec)
]
WIDTH = 1300  # the screen width the book is read at (px)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # Debian's launcher adds this only when /dev/shm looks small, and its check breaks where
    # /dev/shm is mounted twice; a small /dev/shm then stalls the renderer.
    "--disable-dev-shm-usage",
]

# ----------------------------------------------------------------------------- helpers (fast)


def test_removal_curve_is_running_mean_of_sorted_importance():
    importance = np.array([0.5, 0.1, 0.3, 0.2])
    frac, eps = figures.removal_curve(importance)
    np.testing.assert_allclose(frac, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(eps, [0.1, 0.15, 0.2, 0.275])
    assert np.all(np.diff(eps) >= 0)


def test_pca_2d_recovers_dominant_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    X = np.outer(t, [3.0, 0.0, 0.0]) + 0.01 * rng.normal(size=(200, 3))
    coords, explained = figures.pca_2d(X)
    assert coords.shape == (200, 2)
    assert explained[0] > 0.99
    assert abs(np.corrcoef(coords[:, 0], t)[0, 1]) > 0.99


def test_middle_ratio_and_keep_column():
    assert inputs.middle_ratio([0.0, 0.2, 0.4, 0.6, 0.8]) == 0.4
    assert inputs.middle_ratio([0.0, 0.4, 0.8]) == 0.4
    assert inputs.keep_column("fusion", 0.4) == "fusion@0.4"
    with pytest.raises(ValueError, match="no pruning ratio"):
        inputs.middle_ratio([0.0])


def test_flatten_and_missing_benchmark(tmp_path):
    flat = benchmarks.flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": 3}]})
    assert flat == {"a.b": 1, "a.c": "1, 2", "d[0].e": 3}
    table = benchmarks.benchmark_table("nothing_here", tmp_path)
    assert "not run yet" in table["value"].iloc[0]


def test_denormals_table_sorts_by_speed_up_and_says_when_missing(tmp_path):
    assert "not run yet" in benchmarks.denormals_table(tmp_path).iloc[0, 1]
    rows = {
        "a": {"seconds_plain": 1.0, "seconds_flushed": 1.0, "speedup": 1.0, "bit_identical": True},
        "b": {"seconds_plain": 4.0, "seconds_flushed": 1.0, "speedup": 4.0, "bit_identical": False},
    }
    info = {"architectures": rows, "n_train": 300, "dataset": "d", "epochs": 3, "threads": 1, "rounds": 3}
    (tmp_path / "denormals.json").write_text(json.dumps({**info, "code_version": "abc"}))
    table = benchmarks.denormals_table(tmp_path)
    assert table["architecture"].tolist() == ["b", "a"]
    assert table["speed-up"].tolist() == ["4.00x", "1.00x"]
    assert table["bit-identical"].tolist() == ["no", "yes"]
    assert "300 training records of d" in benchmarks.denormals_setup(tmp_path)["denormals_setup"]


def test_benchmark_targets_read_values_and_judge_them(tmp_path):
    (tmp_path / "train_throughput.json").write_text(json.dumps({"speedup_cgcnn": 1.2}))
    (tmp_path / "selection.json").write_text(
        json.dumps(
            {"fusion": [{"n": 1_000_000, "total_seconds": 233.2}, {"n": 10_000, "total_seconds": 1.0}]}
        )
    )
    table = benchmarks.benchmark_targets(tmp_path).set_index("benchmark")
    assert table.loc["train_throughput", "met"] == "no"  # 1.2x is short of 1.5x
    assert table.loc["train_throughput", "measured"] == "1.2"
    assert table.loc["selection", "met"] == "yes"
    assert table.loc["selection", "measured"] == "233"
    assert table.loc["cgcnn_parity", "measured"] == "not run"
    assert table.loc["cgcnn_parity", "met"] == "–"
    # A run stopped at the benchmark's limit is a lower bound: it fails an upper target it already exceeds.
    stopped = {"method": "fusion", "returncode": -9, "timed_out": True, "seconds": 1800.2, "peak_rss_gb": 3.5}
    (tmp_path / "prune_scale.json").write_text(json.dumps({"runs": [stopped]}))
    rows = benchmarks.benchmark_targets(tmp_path).set_index("measure")
    seconds, memory = (
        rows.loc["fusion prune, 10^4 cells of 20-150 atoms (s)"],
        rows.loc["the same run: peak memory (GB)"],
    )
    assert (seconds["measured"], seconds["met"]) == ("at least 1,800 (stopped)", "no")
    assert (memory["measured"], memory["met"]) == ("at least 3.5 (stopped)", "–")  # under 4 GB so far
    # The targets are for default options: a run with other options does not count against them.
    done = {"method": "fusion", "returncode": 0, "timed_out": False, "seconds": 800.0, "peak_rss_gb": 2.0}
    (tmp_path / "prune_scale.json").write_text(
        json.dumps({"options": ["--max-steps", "400"], "runs": [done]})
    )
    rows = benchmarks.benchmark_targets(tmp_path).set_index("measure")
    assert rows.loc["fusion prune, 10^4 cells of 20-150 atoms (s)", "measured"] == "not run"


def test_prune_scale_steps_give_each_step_its_duration(tmp_path):
    stopped = {
        "method": "fusion", "returncode": -9, "timed_out": True, "seconds": 1500.0,
        "steps": [{"step": "structures", "ended_s": 40.0}, {"step": "fingerprints", "ended_s": 150.0}],
    }  # fmt: skip
    done = {"method": "random", "returncode": 0, "timed_out": False, "seconds": 60.0,
            "steps": [{"step": "structures", "ended_s": 41.0}]}  # fmt: skip
    (tmp_path / "prune_scale.json").write_text(json.dumps({"options": [], "runs": [stopped, done]}))
    table = benchmarks.prune_scale_steps(tmp_path)
    assert table["took (s)"].tolist() == [40.0, 110.0, 1350.0, 41.0, 19.0]
    assert table["step"].iloc[2] == "graphs (stopped at the limit)"
    assert table["step"].iloc[4] == "selection, outputs and report"
    assert benchmarks.prune_scale_steps(tmp_path / "missing").empty
    q = {"epochs_run": 3, "max_steps": 3000, "max_atom_steps": 2_500_000, "step_cap": 415, "capped": True,
         "capped_by": "--max-atom-steps", "seconds": 448.7, "val_mae": 0.25, "median_val_mae": 1.0}  # fmt: skip
    done = {"method": "fusion", "returncode": 0, "seconds": 700.0, "summary": {"surrogate": q}}
    (tmp_path / "prune_scale.json").write_text(json.dumps({"options": [], "runs": [done]}))
    surrogate = benchmarks.prune_scale_surrogate(tmp_path)
    # The run's own summary and stderr (temporary paths) stay out of the benchmark's table.
    shown = " ".join(benchmarks.benchmark_table("prune_scale", tmp_path)["measure"])
    assert "seconds" in shown
    assert "summary" not in shown
    assert surrogate.to_dict("records") == [
        {"run": "default options", "epochs": 3, "step cap": 415, "set by": "--max-atom-steps", "training (s)": 449,
         "val MAE": 0.25, "median's val MAE": 1.0, "vs median": "25 %"}
    ]  # fmt: skip
    budget = benchmarks.surrogate_budget(tmp_path)
    # 2.5e6 atoms / (64 x 3,000 steps) = 13.02: cells up to 13 atoms keep the step budget.
    assert (budget["budget_small_cells"], budget["prune_scale_step_cap"]) == ("13", "415")
    assert benchmarks.surrogate_budget(tmp_path / "missing")["prune_scale_step_cap"] == "not measured"


def test_plot_structures_draws_the_cell_as_a_chemist_does():
    from ase.data import covalent_radii
    from ase.data.colors import jmol_colors
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    numbers, xyz, extent = crystals.cell_atoms(s)
    assert sorted(numbers) == [17] + [55] * 8  # the corner atom on all 8 corners
    assert extent.tolist() == [1, 1, 1]
    np.testing.assert_allclose(np.sort(np.unique(xyz.round(6)))[[0, -1]], [0, 4.12])
    # Cl bonds to the 8 Cs around it; no Cs-Cs stick along the cell edges (two metals).
    assert len(crystals.bonds(numbers, xyz)) == 8

    fig = crystals.plot_structures({"id 7": s, "CsCl": s})
    assert [ax.get_title() for ax in fig.axes] == ["CsCl\nid 7", "CsCl"]  # formula, then id
    balls = [p for p in fig.axes[0].patches if p.get_alpha() is None]  # highlights are translucent
    assert len(balls) == 9
    assert {tuple(np.round(b.get_facecolor()[:3], 4)) for b in balls} == {
        tuple(np.round(jmol_colors[z], 4)) for z in (17, 55)
    }
    radii = sorted({round(b.get_radius(), 6) for b in balls})
    np.testing.assert_allclose(radii, crystals.BALL * covalent_radii[[17, 55]], atol=1e-6)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["Cs", "Cl"]
    assert len(fig.axes[0].lines) == 12 + 2 * 8  # cell edges, and two halves per bond
    assert crystals.formula_text("Ba2TiO4") == "Ba$_{2}$TiO$_{4}$"

    # A slab split by the cell's boundary (a layer at z = 0 in a 20 Å cell) is drawn whole, without vacuum.
    layer = Structure(
        Lattice.hexagonal(3.2, 20.0),
        ["Mo", "S", "S"],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.08], [1 / 3, 2 / 3, 0.92]],
    )
    numbers, xyz, extent = crystals.cell_atoms(layer)
    assert len(numbers) == 4 + 2  # Mo repeated on the 4 in-plane corners, not along c
    assert np.ptp(xyz[:, 2]) == pytest.approx(0.16 * 20.0)
    assert extent[2] == pytest.approx(0.16)
    fig = crystals.plot_structures({"id 1": layer})
    assert fig.axes[0].get_title() == "MoS$_{2}$\nid 1 (slab: vacuum not drawn)"


def test_run_settings_from_profile():
    params = inputs.read_params(ROOT / "profiles" / "smoke.yaml")
    settings = inputs.run_settings(params)
    assert settings["n_seeds"] == len(params["seeds"])
    assert settings["lam"] == float(params["uncertainty"]["lam"])
    assert settings["val_protocol"] == params["val_protocol"]
    assert "aleatoric_sign" not in settings
    assert "sign_source" not in settings
    assert settings["transfer_scope"] == "megnet on jdft2d (1 seed)"
    default = inputs.run_settings(inputs.read_params(ROOT / "profiles" / "default.yaml"))
    assert default["transfer_scope"] == "schnet on phonons and dielectric; crystalframer on phonons (3 seeds)"


def test_palette_gives_each_method_one_distinct_colour_blind_safe_style():
    methods = ["fusion", "random", "uncertainty", "weight", "diversity", "active"]
    methods += ["fusion_pos", "fusion_neg", "matched", "matched_pos", "matched_neg"]
    styles = [(palette.color(m), palette.marker(m)) for m in methods]
    assert len(set(styles)) == len(methods)
    assert {c for c, _ in styles} <= set(palette.OKABE_ITO.values())
    assert palette.label("fusion") == "FUSION"
    assert palette.ordered(["random", "weight", "fusion", "random"]) == ["fusion", "random", "weight"]
    with pytest.raises(KeyError, match="palette"):
        palette.color("no_such_method")


def _pool() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 12
    u_ale = rng.uniform(0.1, 2.0, n)
    u_neg, u_pos = 1 / (1 + np.exp(u_ale)), 1 / (1 + np.exp(-u_ale))
    w = rng.uniform(0.9, 1.0, n)
    pool = pd.DataFrame({"id": [str(i) for i in range(n)], "y": 10 * u_ale, "d_nn": -np.log(w) / 0.1, "W": w,
                         "U_neg": u_neg, "U_pos": u_pos, "I_neg": u_neg / w, "I_pos": u_pos / w})  # fmt: skip
    for s in ("neg", "pos"):
        order = np.argsort(pool[f"I_{s}"].to_numpy())
        keep = np.ones(n, bool)
        keep[order[: n // 2]] = False
        pool[f"fusion_{s}@0.5"] = keep
    return pool.assign(u_ale=u_ale)


def test_method_figures_draw_both_signs():
    pool = _pool()
    summary = pd.DataFrame({"seed": [0, 0], "method": ["fusion_neg", "fusion_pos"], "ratio": [0.5, 0.5],
                            "n_pool": [12, 12], "n_kept": [6, 6], "epsilon": [0.3, 0.6]})  # fmt: skip
    fig = figures.plot_u_vs_w(pool, 0.5)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["FUSION, s = −1", "FUSION, s = +1"]
    fig = figures.plot_signs(pool.drop(columns="u_ale"), pool[["id", "u_ale"]], 0.5, "eV")
    assert fig.axes[0].get_xlabel() == "target (eV)"
    # s = -1 removes the largest U_ale, which here is the largest target.
    removed = fig.axes[0].collections[1].get_offsets()[:, 0]
    assert removed.min() >= np.median(pool["y"])
    fig = figures.plot_ranking_and_epsilon(pool, summary, 0, "neg")
    assert "s = −1" in fig.axes[0].get_ylabel()


def test_glue_table_shows_an_empty_table_as_a_sentence(monkeypatch):
    import myst_nb

    seen = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, obj, display: seen.update({name: obj}))
    glue.glue_table("t", pd.DataFrame(columns=["a"]))
    assert "nothing to show" in seen["t"].data


def test_a_long_table_is_marked_for_collapsing_and_a_short_one_is_not():
    short = glue.table_html(pd.DataFrame({"a": range(glue.LONG_TABLE_ROWS)}))
    long = glue.table_html(pd.DataFrame({"a": range(glue.LONG_TABLE_ROWS + 1)}), wrap=True)
    assert "fusion-long" not in short
    assert "data-shown" not in short
    assert 'class="dataframe fusion-table fusion-wrap fusion-long"' in long
    assert f'<table data-shown="{glue.SHOWN_ROWS}" ' in long


def test_a_long_table_shows_its_first_rows_and_a_button_that_shows_all(tmp_path):
    """book/_static/collapse.js in headless Chromium, on a page with one long and one short table."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    n = glue.LONG_TABLE_ROWS + 4
    page = tmp_path / "page.html"
    page.write_text(
        "<html><body>" + glue.table_html(pd.DataFrame({"a": range(n)}))
        + glue.table_html(pd.DataFrame({"b": range(3)}))
        + f'<script src="{(ROOT / "book" / "_static" / "collapse.js").as_uri()}"></script></body></html>'
    )  # fmt: skip
    visible = "[...document.querySelectorAll('tbody tr')].filter((r) => !r.hidden).length"
    with _Chromium(exe, 800, 600) as browser:
        browser.open(page.as_uri())
        assert browser.evaluate(visible) == glue.SHOWN_ROWS + 3
        buttons = browser.evaluate(
            "[...document.querySelectorAll('button.fusion-show-all')].map((b) => b.textContent)"
        )
        assert buttons == [f"Show all {n} rows"]  # the short table gets none
        browser.evaluate("document.querySelector('button.fusion-show-all').click()")
        assert browser.evaluate(visible) == n + 3
        browser.evaluate("document.querySelector('button.fusion-show-all').click()")
        assert browser.evaluate(visible) == glue.SHOWN_ROWS + 3


def _book_extension(name: str):
    """A Sphinx extension of ``book/_ext/`` (not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"book_ext_{name}", BOOK / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_notebook_pages_are_titled_by_their_cell():
    title = _book_extension("pipeline").cell_title
    assert title("pipeline/train-phonons-cgcnn-2") == "train · phonons · cgcnn · seed 2"
    assert title("train-mp-e-form-cgcnn-11.ipynb") == "train · mp-e-form · cgcnn · seed 11"
    assert title("pipeline/prune-jdft2d") == "prune · jdft2d"
    assert title("pipeline/transfer-phonons-megnet") == "transfer · phonons · megnet"
    assert title("transfer-mp-e-form-schnet.ipynb") == "transfer · mp-e-form · schnet"
    assert title("pipeline/analyze") == "analyze"
    titles = [title(p.name) for p in EXECUTED.glob("*.ipynb")]
    assert len(set(titles)) == len(titles)


def test_offline_extension_serves_plotly_to_the_pages_with_a_plotly_figure():
    """``book/_ext/offline.py`` adds the book's own plotly.js to a page that holds a figure, and to no other."""
    offline = _book_extension("offline")
    assert offline.plotly_source().name == "plotly.min.js"
    assert offline.plotly_source().stat().st_size > 1_000_000

    class App:
        def __init__(self) -> None:
            self.js: list[str] = []

        def add_js_file(self, filename: str) -> None:
            self.js.append(filename)

    app = App()
    offline.add_plotly(app, "pages/data", "page.html", {"body": "<p>no figure</p>"}, None)
    assert app.js == []
    body = '<div id="fpmap-plot-a" class="plotly-graph-div" style="height:560px"></div>'
    offline.add_plotly(app, "pages/method", "page.html", {"body": body}, None)
    assert app.js == ["plotly/plotly.min.js"]


def test_toc_lists_every_stage_in_run_order():
    """The pipeline record of ``book/_toc.yml``: one entry per stage of dvc.yaml, in its order."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    record = next(p for p in toc["parts"] if p["caption"] == "Pipeline record")
    entries = record["chapters"][0]["sections"]
    stages = []
    for entry in entries:
        if "glob" in entry:  # a stage with one notebook (analyze, figures)
            stages.append(entry["glob"].removeprefix("pipeline/"))
        else:
            stage = entry["file"].removeprefix("stages/")
            assert entry["sections"] == [{"glob": f"pipeline/{stage}-*"}], entry
            assert (BOOK / f"{entry['file']}.md").exists(), entry["file"]
            stages.append(stage)
    assert stages == STAGES


# ----------------------------------------------------------------------------- the built book (e2e)


class _Resources(HTMLParser):
    """Collects resource URLs (script/link/img/iframe/source), inline scripts and <img> sources."""

    TAGS: ClassVar[dict[str, str]] = {
        "script": "src",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "embed": "src",
        "video": "src",
        "audio": "src",
        "link": "href",
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.TAGS and a.get(self.TAGS[tag]):
            self.urls.append(a[self.TAGS[tag]])
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline.append(data)


@pytest.fixture(scope="module")
def built_book():
    missing = [p for p in PAGES if not (BOOK / "pages" / f"{p}.ipynb").exists()]
    if missing:
        pytest.skip(f"book pages {missing} not executed: run `dvc repro` first")
    if not (BOOK / "node_modules" / "mathjax" / "es5" / "tex-chtml.js").exists():
        pytest.skip("MathJax missing: run `npm ci --prefix book`")
    out = Path(tempfile.mkdtemp(prefix="fusion-book-"))
    (out / "started").write_text(repr(time.time()))  # notebooks a running study writes later are not in it
    exe = Path(sys.executable).with_name("jupyter-book")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [str(exe), "build", str(BOOK), "-W", "-n", "--keep-going", "--path-output", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    yield out / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.e2e
def test_book_has_no_external_resources_and_images_exist(built_book):
    pages = sorted(built_book.rglob("*.html"))
    assert (built_book / "index.html").exists()
    assert {f"pages/{p}.html" for p in PAGES} <= {str(p.relative_to(built_book)) for p in pages}
    assert (built_book / "_static" / "mathjax" / "tex-chtml.js").exists()
    remote, broken, n_img = [], [], 0
    for page in pages:
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        remote += [
            f"{page.name}: {u}"
            for u in parser.urls
            if urlparse(u).scheme in {"http", "https"} or u.startswith("//")
        ]
        remote += [f"{page.name}: inline script with URL" for s in parser.inline if "://" in s]
        for src in parser.images:
            if src.startswith("data:"):
                continue
            n_img += 1
            if not (page.parent / unquote(urlparse(src).path)).resolve().exists():
                broken.append(f"{page.name}: {src}")
    assert not remote, remote[:10]
    assert not broken, broken[:10]
    assert n_img >= 5  # the pages' figures are real image files


@pytest.mark.e2e
def test_interactive_figures_load_the_books_own_plotly(built_book):
    """The fingerprint maps (Method page) run on the plotly.js the book serves: no script from the network."""
    js = built_book / "_static" / "plotly" / "plotly.min.js"
    assert js.exists()
    with_plotly = []
    for page in _content_pages(built_book):
        source = page.read_text(encoding="utf-8")
        parser = _Resources()
        parser.feed(source)
        scripts = [u for u in parser.urls if u.endswith(".js") or ".js?" in u]
        assert not [u for u in scripts if urlparse(u).scheme in {"http", "https"} or u.startswith("//")], page
        local = [u for u in scripts if "plotly" in u]
        if "plotly-graph-div" in source:
            with_plotly.append(page.relative_to(built_book).as_posix())
            assert len(local) == 1, f"{page.name}: {local}"
            assert (page.parent / unquote(urlparse(local[0]).path)).resolve() == js.resolve()
        else:
            assert not local, f"{page.name} loads plotly.js without a plotly figure"
    assert "pages/method.html" in with_plotly


class _Sidebar(HTMLParser):
    """The links of the book's navigation sidebar (``nav.bd-docs-nav``): ``[(title, href)]``."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._depth = 0  # open <nav> elements since the sidebar's
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "nav" and (self._depth or "bd-docs-nav" in (a.get("class") or "")):
            self._depth += 1
        elif self._depth and tag == "a":
            self._href, self._text = a.get("href", ""), []

    def handle_endtag(self, tag):
        if tag == "nav" and self._depth:
            self._depth -= 1
        elif tag == "a" and self._href is not None:
            self.links.append((" ".join("".join(self._text).split()), self._href))
            self._href = None

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)


class _Text(HTMLParser):
    """The text a reader sees in a page (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in {"script", "style"}

    def handle_endtag(self, tag):
        self._skip -= tag in {"script", "style"} and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _content_pages(html_root: Path) -> list[Path]:
    """The book's pages: every HTML file but the theme's, the search, the index and the redirect."""
    skip = {"search.html", "genindex.html", "index.html"}
    return sorted(
        p
        for p in html_root.rglob("*.html")
        if p.relative_to(html_root).parts[0] not in {"_static", "_sources"} and p.name not in skip
    )


@pytest.mark.e2e
def test_sidebar_titles_are_unique_and_the_pipeline_record_runs_in_order(built_book):
    parser = _Sidebar()
    parser.feed((built_book / "stages.html").read_text(encoding="utf-8"))
    links = [(title, (built_book / href).resolve()) for title, href in parser.links]
    titles = [title for title, _ in links]
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    assert not repeated, f"titles that appear more than once in the sidebar: {repeated[:10]}"
    # The whole book is in the sidebar: every page of the study and every executed stage notebook.
    pages = {href.relative_to(built_book.resolve()).as_posix() for _, href in links}
    started = float((built_book.parents[1] / "started").read_text())
    executed = [p for p in EXECUTED.glob("*.ipynb") if p.stat().st_mtime < started]
    expected = {f"pipeline/{p.stem}.html" for p in executed} | {f"pages/{p}.html" for p in PAGES}
    assert not expected - pages, f"pages missing from the sidebar: {sorted(expected - pages)[:10]}"
    # The pipeline record: stages in run order, each stage's page ("train") before its cells
    # ("train · phonons · cgcnn · seed 2").
    record = [
        (title, href.parent.name) for title, href in links if href.parent.name in {"pipeline", "stages"}
    ]
    stages = [title.split(" · ")[0] for title, _ in record]
    assert set(stages) <= set(STAGES), sorted(set(stages) - set(STAGES))
    order = [STAGES.index(stage) for stage in stages]
    assert order == sorted(order), f"pipeline record out of run order: {record[:20]}"
    for title, folder in record:
        if folder == "stages":
            assert title in STAGES
            assert record[stages.index(title)] == (title, "stages"), f"cells of {title} above its page"


@pytest.mark.e2e
def test_pages_show_no_machine_path_or_python_warning(built_book):
    """No page shows where the book was run (an absolute path) or a warning a stage printed."""
    found: dict[str, list[str]] = {}
    for page in _content_pages(built_book):
        source = page.read_text(encoding="utf-8")
        parser = _Text()
        parser.feed(source)
        for rx, text in ((MACHINE_PATH, html.unescape(source)), (PYTHON_WARNING, "".join(parser.parts))):
            for m in rx.finditer(text):
                line = text[text.rfind("\n", 0, m.start()) + 1 : text.find("\n", m.end())].strip()
                found.setdefault(page.relative_to(built_book).as_posix(), []).append(line[:160])
    summary = [f"{page}: {lines[0]}" for page, lines in sorted(found.items())]
    assert not found, f"{len(found)} pages show a machine path or a Python warning:\n" + "\n".join(
        summary[:10]
    )


class _Chromium:
    """Headless Chromium driven through its DevTools protocol over ``--remote-debugging-pipe``.

    One browser for the whole book (a launch per page would take minutes): it opens
    a page, waits for its ``load`` event, evaluates JavaScript in it and
    screenshots it at a fixed viewport. No package beyond the standard library.
    """

    def __init__(
        self, exe: str, width: int, height: int, timeout: float = 60.0, start_timeout: float = 180.0
    ) -> None:
        self.timeout = timeout
        self.proc = None
        failures = []
        # A cold first start (a fresh install building its caches on a busy machine) can
        # take long: the first answer gets start_timeout, and one failed start is retried
        # with a new profile. What Chromium printed goes into the error.
        for _attempt in range(2):
            self._launch(exe, width, height)
            try:
                target = self.call("Target.createTarget", url="about:blank", timeout=start_timeout)
                break
            except (TimeoutError, RuntimeError) as err:
                failures.append(f"{err}; chromium printed:\n{self._output_tail()}")
                self._shutdown(wait=0)
        else:
            raise TimeoutError("chromium did not start, twice:\n" + "\n---\n".join(failures))
        self._session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", page=True)
        self.call("Emulation.setDeviceMetricsOverride", page=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def _launch(self, exe: str, width: int, height: int) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="fusion-chromium-")
        self._log = Path(self._profile.name) / "chromium.log"
        to_chrome, self._to = os.pipe()
        self._from, from_chrome = os.pipe()
        # Chromium reads commands on its fd 3 and writes answers on its fd 4: a Python trampoline
        # puts the pipes' ends there (numbered 10 and up first, so that neither is already 3 or 4).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome, from_chrome)]
        trampoline = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        argv = [exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}/profile",
                f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", trampoline, *map(str, ends), *argv],
                pass_fds=ends,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        for fd in (to_chrome, from_chrome, *ends):
            os.close(fd)
        self._buffer, self._id, self._events = b"", 0, []

    def _output_tail(self, lines: int = 15) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        text = self._log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join([f"[{state}]", *text])

    def _shutdown(self, wait: float = 20) -> None:
        """Wait ``wait`` seconds for Chromium to exit, kill it if it has not, free the pipes and profile."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)
        self._profile.cleanup()
        self.proc = None

    def __enter__(self) -> _Chromium:
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call("Browser.close")
        self._shutdown()

    def _message(self, deadline: float, wait: float) -> dict:
        """The next message, or a TimeoutError at ``deadline`` (``wait`` s after the command)."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {wait} s")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited ({self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, page: bool = False, timeout: float | None = None, **params) -> dict:
        """Send one DevTools command (to the page's session if ``page``) and return its result.

        Waits ``timeout`` seconds for the answer (default: the browser's ``timeout``).
        """
        self._id += 1
        command = {"id": self._id, "method": method, "params": params}
        if page:
            command["sessionId"] = self._session
        os.write(self._to, json.dumps(command).encode() + b"\0")
        wait = timeout or self.timeout
        deadline = time.monotonic() + wait
        while True:
            message = self._message(deadline, wait)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._events.append(message.get("method"))

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its ``load`` event."""
        self._events.clear()
        self.call("Page.navigate", page=True, url=url)
        deadline = time.monotonic() + self.timeout
        while "Page.loadEventFired" not in self._events:
            self._events.append(self._message(deadline, self.timeout).get("method"))

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.call("Runtime.evaluate", page=True, expression=expression, awaitPromise=True,
                           returnByValue=True)  # fmt: skip
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", page=True, format="png")["data"]
        path.write_bytes(base64.b64decode(data))


def test_a_browser_that_never_answers_is_retried_once_and_its_output_reported(tmp_path):
    """A stuck start is not a bare timeout: the error says what the browser printed, both times."""
    stuck = tmp_path / "chromium"
    stuck.write_text('#!/bin/sh\necho "no usable GPU: stuck at start" >&2\nexec sleep 600\n')
    stuck.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as err:
        _Chromium(str(stuck), 100, 100, start_timeout=1)
    assert str(err.value).count("no usable GPU: stuck at start") == 2
    assert "did not start, twice" in str(err.value)
    assert time.monotonic() - started < 15  # a stuck start is killed, not waited on for 20 s


@pytest.fixture(scope="module")
def rendered_book(built_book):
    """Every page opened at 1300 px in headless Chromium: its overflow check, and a screenshot.

    Returns ``{page: [overflowing elements] or None}`` (None: the check did not run);
    the screenshots are ``build/screenshots/<page path with - for />.png``.
    """
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    overflow = {}
    with _Chromium(exe, WIDTH, 1800) as browser:
        for page in _content_pages(built_book):
            name = page.relative_to(built_book).as_posix()
            browser.open(page.as_uri() + "?check=overflow")  # book/_static/overflow.js
            overflow[name] = browser.evaluate("window.fusionOverflow")
            browser.screenshot(shots / f"{name.removesuffix('.html').replace('/', '-')}.png")
    return overflow


@pytest.mark.e2e
def test_book_screenshots(rendered_book):
    shots = ROOT / "build" / "screenshots"
    assert {"pages/results.html", "pages/data.html", "stages.html"} <= set(rendered_book)
    for name in rendered_book:
        png = shots / f"{name.removesuffix('.html').replace('/', '-')}.png"
        assert png.exists(), f"no screenshot of {name}"
        assert png.stat().st_size > 20_000, f"blank screenshot of {name}"


@pytest.mark.e2e
def test_no_table_or_figure_overflows_its_column(rendered_book):
    """At 1300 px, every table and figure fits the article's column (no sideways scrolling).

    Open a page with ``?check=overflow`` to see the offenders outlined in red; the
    screenshots of ``build/screenshots/`` show them so too.
    """
    not_checked = [name for name, found in rendered_book.items() if found is None]
    assert not not_checked, f"overflow check did not run (book/_static/overflow.js): {not_checked[:5]}"
    wide = [
        f"{name}: {o['element'][:70]} is {o['width']} px wide in a {o['column']} px column"
        for name, found in rendered_book.items()
        for o in found
    ]
    assert not wide, f"{len(wide)} tables or figures wider than their column at {WIDTH} px:\n" + "\n".join(
        wide
    )
