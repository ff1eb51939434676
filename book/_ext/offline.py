"""Sphinx extension of the book: an offline book, with MathJax 3 and plotly.js served by the book itself.

MathJax comes from ``book/node_modules``; plotly.js (for the interactive
figures of :mod:`fusion.report.explore`) from the installed ``plotly`` wheel,
which ships it as ``plotly/package_data/plotly.min.js``. Loaded by ``book/_config.yml`` (``sphinx: local_extensions: {offline: _ext}``,
which puts ``book/_ext`` on ``sys.path``); it is part of the book, not of the
installable ``fusion`` package.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def _mathjax_source(srcdir: Path) -> Path:
    return srcdir / "node_modules" / "mathjax" / "es5"


def _copy_mathjax(app: Any, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    # Copied after the build: Sphinx never sees these files, so it adds no script tags for them.
    shutil.copytree(
        _mathjax_source(Path(app.srcdir)), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True
    )


#: Where plotly.js goes in the HTML output, relative to ``_static/``.
PLOTLY_JS = "plotly/plotly.min.js"
#: The class of the ``<div>`` of every plotly figure (``plotly.io.to_html``).
PLOTLY_MARK = 'class="plotly-graph-div"'


def plotly_source() -> Path:
    """plotly.js as the installed ``plotly`` package ships it (the version its figures are written for)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _copy_plotly(app: Any, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / PLOTLY_JS
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plotly_source(), target)


def add_plotly(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Load the book's own plotly.js on the pages that hold a plotly figure, and only there.

    Added in ``html-page-context``, a script file belongs to this page alone (Sphinx
    resets the list for the next page). The file is copied after the build.
    """
    if PLOTLY_MARK in str(context.get("body", "")):
        app.add_js_file(PLOTLY_JS)


def _check_mathjax(app: Any, config: Any) -> None:
    from sphinx.errors import ConfigError

    src = _mathjax_source(Path(app.srcdir))
    if not (src / "tex-chtml.js").exists():
        raise ConfigError(f"MathJax not found at {src}: run `npm ci --prefix book` (see book/package.json)")
    # A relative mathjax_path is resolved against _static/ of the output.
    config.mathjax_path = "mathjax/tex-chtml.js"
    if not plotly_source().exists():
        raise ConfigError(
            f"plotly.js not found at {plotly_source()}: reinstall plotly (pinned in pyproject.toml)"
        )


def _drop_remote_scripts(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    # sphinx-thebe (always loaded by Jupyter Book) inlines the CDN address of
    # thebe on every page; the book has no launch button, so the line is dropped.
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = [
            js for js in scripts if "://" not in str(getattr(js, "attributes", {}).get("body", ""))
        ]


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: an offline book, with MathJax 3 and plotly.js served locally.

    The book is read offline, so the MathJax tree (npm ``mathjax``, pinned in
    ``book/package.json``, installed by ``npm ci --prefix book``) is copied to
    ``_static/mathjax/`` of the HTML output after the build and ``mathjax_path``
    points there. It is not put in the book's source ``_static`` folder, where
    Sphinx would add a script tag for every ``.js`` file. Inline scripts that
    name a remote URL (sphinx-thebe's CDN address) are removed from every page.
    plotly.js (from the ``plotly`` wheel) is copied to ``_static/plotly/`` the
    same way and loaded, by a script tag in the head, by the pages that hold a
    plotly figure; the figures themselves are written without it
    (:func:`fusion.report.explore.figure_html`).
    """
    app.connect("config-inited", _check_mathjax)
    # Before _drop_remote_scripts (priority 500), which copies the page's list of scripts.
    app.connect("html-page-context", add_plotly, priority=400)
    app.connect("html-page-context", _drop_remote_scripts)
    app.connect("build-finished", _copy_mathjax)
    app.connect("build-finished", _copy_plotly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
