"""The book: helpers of fusion.report (fast) and the built HTML (e2e).

The e2e tests build the book themselves (``jupyter-book build book/ -W -n
--keep-going`` into a temporary folder) from whatever executed pages exist:
``book/pages/*.ipynb`` from the ``book-*`` stages of ``dvc repro`` and
``notebooks/executed/``. Without those pages they skip with the command to run;
in CI they run after the pipeline's e2e test, which runs ``dvc repro``.
Screenshots are written to ``build/screenshots/`` for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from fusion.paths import ROOT
from fusion.report import benchmarks, crystals, figures, glue, inputs, palette

BOOK = ROOT / "book"
PAGES = ("data", "method", "results", "paper", "performance")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
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


def test_plot_structures_draws_every_atom():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    fig = crystals.plot_structures({"NaCl": s, "NaCl copy": s})
    axes = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(axes) == 2
    # One scatter collection per element per panel.
    assert all(len(ax.collections) == 2 for ax in axes)


def test_run_settings_from_profile():
    params = inputs.read_params(ROOT / "profiles" / "smoke.yaml")
    settings = inputs.run_settings(params)
    assert settings["n_seeds"] == len(params["seeds"])
    assert settings["lam"] == float(params["uncertainty"]["lam"])
    assert settings["val_protocol"] == params["val_protocol"]
    assert "aleatoric_sign" not in settings
    assert "sign_source" not in settings


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
def test_book_screenshots(built_book):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for page in ("index", "pages/results", "pages/paper", "pages/method"):
        png = shots / f"{page.replace('/', '-')}.png"
        png.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--virtual-time-budget=5000",
                    f"--screenshot={png}",
                    "--window-size=1300,1800",
                    (built_book / f"{page}.html").as_uri(),
                ],
                capture_output=True,
                timeout=120,
                check=False,
            )
        assert png.exists(), f"no screenshot of {page}"
        assert png.stat().st_size > 20_000, f"blank screenshot of {page}"
