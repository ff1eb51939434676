"""Gluing values, figures and tables into the book's pages (``myst_nb.glue``).

The text refers to glued values with ``{glue:text}`key``` and places figures and
tables with ``{glue:figure}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def glue_values(values: Mapping[str, Any]) -> None:
    """Glue every value of ``values`` under its key, without displaying it.

    The text refers to them with ``{glue:text}`key``` (strings) or
    ``{glue:text}`key:.2f``` (numbers). NumPy scalars are converted to Python
    ones so their text form is a plain number.
    """
    from myst_nb import glue

    for name, value in values.items():
        glue(name, value.item() if isinstance(value, np.generic) else value, display=False)


def glue_figure(name: str, fig: Any) -> None:
    """Glue a matplotlib figure (for ``{glue:figure}``) and close it."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)


def glue_html(name: str, html: str) -> None:
    """Glue an HTML fragment (an interactive figure, say) for ``{glue:figure}``, without displaying it."""
    from IPython.display import HTML
    from myst_nb import glue

    glue(name, HTML(html), display=False)


#: A table with more rows than this is collapsed in the book ...
LONG_TABLE_ROWS = 16
#: ... to its first this many rows, with a button that shows all of them (``book/_static/collapse.js``).
SHOWN_ROWS = 12


def table_html(df: pd.DataFrame, wrap: bool = False) -> str:
    """A display table as the book's HTML, without its index.

    An empty table reads "nothing to show in this run". A table of more than
    :data:`LONG_TABLE_ROWS` rows gets the class ``fusion-long`` and
    ``data-shown``: the book shows its first :data:`SHOWN_ROWS` rows and a
    "Show all" button (without JavaScript, every row shows).

    Args:
        df: The display table.
        wrap: Let long cells wrap (class ``fusion-wrap``) instead of scrolling.

    Returns:
        The ``<table>`` element.
    """
    if df.empty:
        df = pd.DataFrame({"": ["nothing to show in this run"]})
    classes = ["fusion-table"] + (["fusion-wrap"] if wrap else [])
    long = len(df) > LONG_TABLE_ROWS
    if long:
        classes.append("fusion-long")
    html = df.to_html(index=False, na_rep="–", classes=" ".join(classes), border=0, escape=True)
    return html.replace("<table ", f'<table data-shown="{SHOWN_ROWS}" ', 1) if long else html


def glue_table(name: str, df: pd.DataFrame, wrap: bool = False) -> None:
    """Glue a table (for ``{glue:figure}``/``{glue}``) as :func:`table_html` renders it.

    Args:
        name: Glue key.
        df: The display table (an empty one renders as "nothing to show").
        wrap: Let long cells wrap (class ``fusion-wrap``) instead of scrolling.
    """
    from IPython.display import HTML
    from myst_nb import glue

    glue(name, HTML(table_html(df, wrap)), display=False)


def glue_sections(tables: Mapping[str, tuple[pd.DataFrame, str]], prefix: str, heading: str = "###") -> None:
    """Glue one table per key and display a MyST heading and ``{glue:figure}`` for each.

    For pages whose number of tables depends on the profile (one per dataset):
    each table is glued as ``<prefix>_<key>`` and labelled ``<prefix>-<key>``
    (underscores become hyphens). Needs ``nb_render_markdown_format: myst``.

    Args:
        tables: Key -> (display table, caption in MyST).
        prefix: Glue-key prefix.
        heading: Markdown heading level of each section. Defaults to ``###``.
    """
    from IPython.display import Markdown, display

    for key, (df, caption) in tables.items():
        name = f"{prefix}_{key}"
        glue_table(name, df)
        label = name.replace("_", "-")
        display(
            Markdown(f"{heading} `{key}`\n\n```{{glue:figure}} {name}\n:name: {label}\n\n{caption}\n```\n")
        )
