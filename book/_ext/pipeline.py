"""Sphinx extension of the book: the pipeline record, titled by cell and tolerant of stages not run yet.

The executed stage notebooks (``book/pipeline`` -> ``notebooks/executed/``) all
open with the heading of their stage notebook (``# Stage `train`: ...``), so 96
train pages would share one title. Their file names name the cell
(``train-phonons-cgcnn-2.ipynb``); this extension titles each page from it
(``train · phonons · cgcnn · seed 2``) and keeps the stage's heading as the
page's first paragraph.

``book/_toc.yml`` lists one page per stage (``book/stages/<stage>.md``), in run
order, whose sections are a glob over that stage's notebooks. A stage that has
not run yet (a study in progress, a profile that skips it) has no notebook: its
glob is dropped from the table of contents instead of failing the build
(``-W``), and its page says so. Loaded by ``book/_config.yml``
(``sphinx: local_extensions``); part of the book, not of the ``fusion`` package.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

PIPELINE = "pipeline/"  # the docname prefix of the executed stage notebooks
_SEED = re.compile(r"\d+")


def cell_title(docname: str) -> str:
    """The sidebar title of an executed stage notebook, from its file name.

    Args:
        docname: ``pipeline/<stage>[-<dataset>[-<arch>-<seed>]]`` (with or
            without folder and suffix).

    Returns:
        The stage and the cell's parts joined by `` · ``, the seed written
        ``seed <s>``: ``train-phonons-cgcnn-2`` -> ``train · phonons · cgcnn · seed 2``,
        ``transfer-phonons-megnet`` -> ``transfer · phonons · megnet``,
        ``prune-jdft2d`` -> ``prune · jdft2d``, ``analyze`` -> ``analyze``.
    """
    stem = Path(docname).name.removesuffix(".ipynb")
    stage, *rest = stem.split("-")
    if len(rest) >= 3 and _SEED.fullmatch(rest[-1]):  # <dataset>-<arch>-<seed>
        rest = ["-".join(rest[:-2]), rest[-2], f"seed {rest[-1]}"]
    elif stage == "transfer" and len(rest) >= 2:  # <dataset>-<arch>
        rest = ["-".join(rest[:-1]), rest[-1]]
    elif rest:
        rest = ["-".join(rest)]
    return " · ".join([stage, *rest])


def _source_docnames(srcdir: Path, suffixes: list[str]) -> list[str]:
    return [
        f"{PIPELINE}{path.name.removesuffix(suffix)}"
        for suffix in suffixes
        for path in (srcdir / PIPELINE).glob(f"*{suffix}")
    ]


def _drop_stages_not_run(app: Any, config: Any) -> None:
    """Remove the pipeline globs that match no executed notebook; remember their stage pages."""
    from sphinx_external_toc.api import GlobItem

    site_map = getattr(config, "external_site_map", None)
    if site_map is None:
        return
    docs = _source_docnames(Path(app.srcdir), list(config.source_suffix))
    not_run: dict[str, list[str]] = {}
    for docname in list(site_map):
        doc = site_map[docname]
        for tree in doc.subtrees:
            empty = [
                item
                for item in tree.items
                if isinstance(item, GlobItem)
                and str(item).startswith(PIPELINE)
                and not fnmatch.filter(docs, str(item))
            ]
            for item in empty:
                tree.items.remove(item)
                not_run.setdefault(doc.docname.removesuffix(".md"), []).append(str(item))
        doc.subtrees = [tree for tree in doc.subtrees if tree.items]
    config.fusion_stages_not_run = not_run


def _retitle(app: Any, doctree: Any) -> None:
    """Title a stage notebook's page by its cell; note on a stage's page that it has not run."""
    from docutils import nodes

    docname = app.env.docname
    if docname.startswith(PIPELINE):
        section = next(iter(doctree.findall(nodes.section)), None)
        if section is None or not isinstance(section[0], nodes.title):
            return
        title = section[0]
        lead = nodes.paragraph("", "", *[child.deepcopy() for child in title.children], classes=["lead"])
        title.children = []
        title += nodes.Text(cell_title(docname))
        section.insert(1, lead)
        return
    globs = getattr(app.config, "fusion_stages_not_run", {}).get(docname)
    if globs:
        section = next(iter(doctree.findall(nodes.section)), doctree)
        text = nodes.paragraph("", "This stage has not run yet: ")
        text += nodes.literal(text="notebooks/executed/")
        text += nodes.Text(" holds no ")
        for k, glob in enumerate(globs):
            text += nodes.Text(", " if k else "")
            text += nodes.literal(text=f"{glob.removeprefix(PIPELINE)}.ipynb")
        text += nodes.Text(".")
        section += nodes.note("", text)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: titles of the pipeline record's pages, and stages that have not run yet.

    Connected after ``sphinx_external_toc`` has parsed ``_toc.yml``
    (``config-inited`` at priority 900) and before Sphinx's title collector
    reads the first heading of each page (``doctree-read`` at priority 500).
    """
    app.add_config_value("fusion_stages_not_run", {}, "env")
    app.connect("config-inited", _drop_stages_not_run, priority=950)
    app.connect("doctree-read", _retitle, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
