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


def glue_table(name: str, df: pd.DataFrame) -> None:
    """Glue a table (for ``{glue:figure}``/``{glue}``), rendered as HTML without its index."""
    from IPython.display import HTML
    from myst_nb import glue

    html = df.to_html(index=False, na_rep="–", classes="fusion-table", border=0, escape=True)
    glue(name, HTML(html), display=False)
