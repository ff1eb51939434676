"""Sphinx extension of the book: an offline book, with MathJax 3 from ``book/node_modules``.

Loaded by ``book/_config.yml`` (``sphinx: local_extensions: {offline: _ext}``,
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


def _check_mathjax(app: Any, config: Any) -> None:
    from sphinx.errors import ConfigError

    src = _mathjax_source(Path(app.srcdir))
    if not (src / "tex-chtml.js").exists():
        raise ConfigError(f"MathJax not found at {src}: run `npm ci --prefix book` (see book/package.json)")
    # A relative mathjax_path is resolved against _static/ of the output.
    config.mathjax_path = "mathjax/tex-chtml.js"


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
    """Sphinx extension: an offline book, with MathJax 3 from ``book/node_modules``.

    The book is read offline, so the MathJax tree (npm ``mathjax``, pinned in
    ``book/package.json``, installed by ``npm ci --prefix book``) is copied to
    ``_static/mathjax/`` of the HTML output after the build and ``mathjax_path``
    points there. It is not put in the book's source ``_static`` folder, where
    Sphinx would add a script tag for every ``.js`` file. Inline scripts that
    name a remote URL (sphinx-thebe's CDN address) are removed from every page.
    """
    app.connect("config-inited", _check_mathjax)
    app.connect("html-page-context", _drop_remote_scripts)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
