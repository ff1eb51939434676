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
from fusion.report import benchmarks, crystals, figures, inputs, palette, tables

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


def _summary() -> pd.DataFrame:
    rows = []
    for arch, base in (("cgcnn", 1.0), ("schnet", 2.0)):
        for method, factor in (("random", 1.0), ("fusion", 0.9), ("diversity", 1.2)):
            for ratio in (0.0, 0.8):
                mean = base if ratio == 0 else base * factor
                rows.append(
                    {
                        "dataset": "jdft2d",
                        "arch": arch,
                        "method": method,
                        "ratio": ratio,
                        "mean": mean,
                        "std": 0.01,
                        "n": 3,
                    }
                )
    return pd.DataFrame(rows)


def test_main_table_and_paper_numbers():
    summary = _summary()
    tests = pd.DataFrame(
        [
            {
                "dataset": "jdft2d",
                "arch": "cgcnn",
                "ratio": 0.8,
                "method": "fusion",
                "n": 3,
                "mean_diff": -0.1,
                "t_pvalue": 0.01,
                "wilcoxon_pvalue": np.nan,
            }
        ]
    )
    table = tables.main_table(summary, tests)
    assert len(table) == 4
    assert {"fusion", "random", "diversity", "seeds"} <= set(table.columns)
    row = table[(table["arch"] == "cgcnn") & (table["ratio"] == 0.8)].iloc[0]
    assert row["fusion"] == "0.9 ± 0.01"
    assert row["p (t, fusion vs random)"] == pytest.approx(0.01)
    # FUSION 0.9 vs diversity 1.2 on both architectures: 25 % lower.
    assert tables.jdft2d_vs_diversity(summary) == pytest.approx(25.0)
    assert np.isnan(tables.jdft2d_vs_diversity(summary, ratio=0.4))


def test_result_numbers_and_paper_table_label_quotes():
    improvement = pd.DataFrame(
        {
            "dataset": ["a", "a", "b", "b"],
            "arch": ["x", "x", "x", "x"],
            "ratio": [0.4, 0.8, 0.4, 0.8],
            "method": ["fusion"] * 4,
            "improvement_pct": [2.0, 4.0, -1.0, 1.0],
        }
    )
    optimal = pd.DataFrame(
        {
            "dataset": ["a"] * 3,
            "seed": [0] * 3,
            "ratio": [0.0, 0.05, 0.1],
            "test_mae": [1.0, 0.97, 0.99],
            "improvement_pct": [0.0, 3.0, 1.0],
        }
    )
    ood = pd.DataFrame({"method": ["fusion", "random"], "test_mae": [0.8, 1.0]})
    n = tables.result_numbers(improvement, optimal, ood)
    assert n["imp_mean"] == pytest.approx(1.5)
    assert (n["imp_min"], n["imp_max"]) == (pytest.approx(0.0), pytest.approx(3.0))
    assert n["imp_cells_pos"] == 3
    assert n["opt_ratio_pct"] == pytest.approx(5.0)
    assert n["opt_imp"] == pytest.approx(3.0)
    assert n["ood_imp"] == pytest.approx(20.0)
    cmp = tables.paper_comparison(n, 12.0)
    assert "quoted" in cmp.columns[1]
    assert cmp.iloc[1, 1] == f"{tables.PAPER_CLAIMS['improvement_mean_pct']:.2f}"
    assert cmp.iloc[1, 2] == "1.50"


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


def test_reference_table_sets_models_beside_the_mean_predictor():
    summary = pd.DataFrame(
        {
            "dataset": ["d1", "d1", "d1", "d2"],
            "arch": ["a", "b", "a", "a"],
            "method": ["fusion", "fusion", "fusion", "fusion"],
            "ratio": [0.0, 0.0, 0.4, 0.0],
            "mean": [5.0, 9.5, 1.0, 2.0],
        }
    )
    baseline = pd.DataFrame({"dataset": ["d1", "d1", "d2"], "seed": [0, 1, 0], "test_mae": [9.0, 11.0, 4.0]})
    table, values = tables.reference_table(summary, baseline)
    row = table.set_index("dataset").loc["d1"]
    assert row["mean predictor"] == "10"
    assert row["a"] == "5 (0.50)"  # ratio 0 only: the 0.4 row is ignored
    assert row["b"] == "9.5 (0.95)"
    assert values == {"n_ref_cells": 3, "n_ref_below": 2}  # d1/b is within 10 %; d2/b does not exist
    assert tables.reference_table(pd.DataFrame(), baseline)[1] == {"n_ref_cells": 0, "n_ref_below": 0}


def test_uncertainty_target_summary_names_the_strongest_dataset_and_the_end_pruned_first():
    table = pd.DataFrame(
        {
            "dataset": ["d1", "d1", "d2"],
            "seed": [0, 1, 0],
            "spearman_target_u_ale": [0.2, 0.4, 0.9],
            "spearman_target_u_epi": [0.1, 0.1, 0.8],
            "spearman_target_U": [-0.2, -0.4, -0.9],
        }
    )
    shown, values = tables.uncertainty_target_summary(table, sign=-1)
    assert shown.set_index("dataset").loc["d1", "ρ(target, U_ale)"] == "+0.30"
    assert values["rho_ale_max_dataset"] == "d2"
    assert values["rho_ale_max"] == pytest.approx(0.9)
    assert values["prefix_end"] == "large"
    assert tables.uncertainty_target_summary(table, sign=1)[1]["prefix_end"] == "small"


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
    assert settings["sign_source"] in {"the paper's text", "the paper's code"}


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


def test_plot_ood_draws_methods_in_their_palette_colours():
    from matplotlib.colors import to_hex

    ood = pd.DataFrame(
        {
            "dataset": ["d"] * 4,
            "cluster": [0, 0, 1, 1],
            "method": ["random", "fusion"] * 2,
            "test_mae": [1.0, 0.8, 1.2, 0.9],
        }
    )
    fig = figures.plot_ood(ood)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == [palette.label("fusion"), palette.label("random")]
    assert [to_hex(h.patches[0].get_facecolor()) for h in handles] == [
        palette.color("fusion").lower(),
        palette.color("random").lower(),
    ]


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
    for page in ("index", "pages/results", "pages/method"):
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
                    "--window-size=1200,1800",
                    (built_book / f"{page}.html").as_uri(),
                ],
                capture_output=True,
                timeout=120,
                check=False,
            )
        assert png.exists(), f"no screenshot of {page}"
        assert png.stat().st_size > 20_000, f"blank screenshot of {page}"
