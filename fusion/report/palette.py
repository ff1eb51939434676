"""One style per pruning method: the same colour, marker and label in every figure.

Colours are the Okabe–Ito palette (distinguishable with the common forms of
colour blindness), plus its grey for the target-matched random controls; the
yellow is left out (too faint on white). Where two methods share a colour (a
FUSION variant and FUSION, the matched controls) their markers differ.

Usage::

    from fusion.report import palette
    ax.plot(x, y, color=palette.color(m), marker=palette.marker(m), label=palette.label(m))

A method missing here raises ``KeyError``: add it to :data:`STYLES` so that it
gets one style everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

#: Okabe–Ito colours by name (Okabe & Ito 2008, "Color Universal Design").
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "grey": "#999999",
}


class Style(NamedTuple):
    """How one method is drawn.

    Attributes:
        color: Matplotlib colour (hex).
        marker: Matplotlib marker.
        label: Legend text.
    """

    color: str
    marker: str
    label: str


_C = OKABE_ITO
#: Style of every method, in the order legends list them (FUSION first).
STYLES: dict[str, Style] = {
    "fusion": Style(_C["vermillion"], "o", "FUSION"),
    "fusion_neg": Style(_C["vermillion"], "v", "FUSION (s = −1)"),
    "fusion_pos": Style(_C["reddish_purple"], "^", "FUSION (s = +1)"),
    "random": Style(_C["black"], "s", "random"),
    "matched": Style(_C["grey"], "D", "target-matched random"),
    "matched_neg": Style(_C["grey"], "<", "matched to FUSION (s = −1)"),
    "matched_pos": Style(_C["grey"], ">", "matched to FUSION (s = +1)"),
    "uncertainty": Style(_C["sky_blue"], "P", "uncertainty only"),
    "weight": Style(_C["bluish_green"], "X", "redundancy weight only"),
    "diversity": Style(_C["blue"], "h", "diversity (k-centre)"),
    "active": Style(_C["orange"], "*", "active learning"),
}


def style(method: str) -> Style:
    """The :class:`Style` of ``method``.

    Raises:
        KeyError: If the method has no style yet.
    """
    try:
        return STYLES[method]
    except KeyError:
        raise KeyError(f"no style for method {method!r} in fusion.report.palette.STYLES") from None


def color(method: str) -> str:
    """Colour (hex) of ``method``."""
    return style(method).color


def marker(method: str) -> str:
    """Matplotlib marker of ``method``."""
    return style(method).marker


def label(method: str) -> str:
    """Legend text of ``method``."""
    return style(method).label


def ordered(methods: Iterable[str]) -> list[str]:
    """``methods`` without repeats, in legend order (that of :data:`STYLES`; unknown ones last, sorted)."""
    rank = {m: k for k, m in enumerate(STYLES)}
    return sorted(set(methods), key=lambda m: (rank.get(m, len(rank)), m))
