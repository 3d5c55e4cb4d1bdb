"""The Build diagram as a standalone SVG file, drawn here: no Graphviz binary needed.

It shows what `diagram.block_diagram` shows, laid out in one column: a box per block (or a
dashed "... N more" box for a stage's hidden blocks), arrows along the main path, and each
residual block's skip connection as an arc on the right side into its "+" (He et al. 2016,
Fig. 2, https://arxiv.org/abs/1512.03385). White background, so it reads on any slide.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import pandas as pd

# The DOT diagram's own choices (labels, hidden rows, colours), so the two files agree.
from resnet_core.views.diagram import (
    SHORTCUT_TEXT,
    _block_label,
    _stage_colour,
    _visible_rows,
    fmt_shape,
    shortcut_text,
)

__all__ = ["block_diagram_svg"]

BLUE = "#1f77b4"
FONT = "Helvetica, Arial, sans-serif"
BOX_X, BOX_WIDTH = 40, 300  # px
CENTRE = BOX_X + BOX_WIDTH // 2
ARC_X = BOX_X + BOX_WIDTH + 80  # the skip arcs' control points (the arcs reach ~3/4 of it)
LABEL_X = (CENTRE + 3 * ARC_X) // 4 + 8  # just right of an arc's outermost point
WIDTH = LABEL_X + 100  # room for the arc's label
LINE, PAD, GAP, RADIUS = 17, 8, 26, 13  # text line height, box padding, arrow length, "+"

_DEFS = (
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
    'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
    '<path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>'
)


def _text(x: float, y: float, text: str, size: int = 13, anchor: str = "middle", **style) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in style.items())
    return (
        f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" text-anchor="{anchor}"'
        f"{extra}>{escape(str(text))}</text>"
    )


def _arrow(y1: float, y2: float) -> str:
    return (
        f'<line x1="{CENTRE}" y1="{y1:.0f}" x2="{CENTRE}" y2="{y2:.0f}" stroke="#333" '
        'stroke-width="1.3" marker-end="url(#arrow)"/>'
    )


def _box(y: float, label: str, colour: str, dashed: bool = False) -> tuple[list[str], float]:
    """A rounded box with centred lines of text at top `y`; returns its parts and bottom."""
    lines = label.split("\n")
    height = LINE * len(lines) + 2 * PAD
    dash = ' stroke-dasharray="5,3"' if dashed else ""
    parts = [
        f'<rect x="{BOX_X}" y="{y:.0f}" width="{BOX_WIDTH}" height="{height}" rx="8" '
        f'fill="{colour}" stroke="#555"{dash}/>'
    ]
    for number, line in enumerate(lines):
        weight = {"font_weight": "bold"} if number == 0 and len(lines) > 1 else {}
        parts.append(_text(CENTRE, y + PAD + LINE * (number + 1) - 4, line, **weight))
    return parts, y + height


def _skip_arc(y_from: float, y_to: float, label: str, width: float, dashed: bool) -> list[str]:
    """A skip connection: from the main path at `y_from` round the right side to `y_to`."""
    end_x = CENTRE + (RADIUS if not dashed else BOX_WIDTH // 2)
    dash = ' stroke-dasharray="6,4"' if dashed else ""
    path = f"M{CENTRE},{y_from:.0f} C{ARC_X},{y_from:.0f} {ARC_X},{y_to:.0f} {end_x},{y_to:.0f}"
    middle = (y_from + y_to) / 2
    return [
        f'<path d="{path}" fill="none" stroke="{BLUE}" stroke-width="{width}"{dash} '
        'marker-end="url(#arrow)"/>',
        _text(LABEL_X, middle + 4, label, size=11, anchor="start", fill=BLUE),
    ]


def _add_circle(y: float) -> list[str]:
    """The "+" where a block's output meets its shortcut; `y` is its top."""
    centre = y + RADIUS
    return [
        f'<circle cx="{CENTRE}" cy="{centre:.0f}" r="{RADIUS}" fill="{BLUE}"/>',
        _text(CENTRE, centre + 6, "+", size=18, fill="white", font_weight="bold"),
    ]


def _item(parts: list[str], y: float, what: str, item: object) -> float:
    """Draw one visible row (a block, or a stage's hidden blocks) below `y`; returns its bottom."""
    entry = y + GAP / 2  # where the skip leaves the main path
    parts.append(_arrow(y, y + GAP))
    if what == "more":
        count, sample = item  # type: ignore[misc]
        label = f"... {count} more {sample['kind']} blocks ...\n{fmt_shape(sample['output_shape'])}"
        box, bottom = _box(y + GAP, label, _stage_colour(sample), dashed=True)
        parts.extend(box)
        if sample["shortcut"] not in ("", "none"):
            parts.extend(_skip_arc(entry, bottom - 10, f"{count} skips", 1.5, dashed=True))
        return bottom
    row: pd.Series = item  # type: ignore[assignment]
    box, bottom = _box(y + GAP, _block_label(row), _stage_colour(row))
    parts.extend(box)
    if row["shortcut"] not in SHORTCUT_TEXT:
        return bottom
    parts.append(_arrow(bottom, bottom + GAP - 8))
    parts.extend(_add_circle(bottom + GAP - 8))
    width = 2.5 if row["shortcut"] == "identity" else 1.5
    parts.extend(_skip_arc(entry, bottom + GAP - 8 + RADIUS, shortcut_text(row), width, False))
    return bottom + GAP - 8 + 2 * RADIUS


def block_diagram_svg(blocks: pd.DataFrame, title: str = "", keep: int | None = 2) -> str:
    """An SVG drawing of a network, one box per block, skip connections drawn.

    Args:
        blocks: a `trace_blocks` frame.
        title: a caption drawn above the drawing.
        keep: per stage, show this many blocks then one "N more" box and the last block;
            None draws every block (as `diagram.block_diagram`).

    Returns:
        The SVG document as text (UTF-8, no external references).
    """
    parts = [_text(CENTRE, 28, title, size=18, font_weight="bold")] if title else []
    y = 48 if title else 12
    parts.append(_text(CENTRE, y + 12, "input", size=13))
    y += 18
    for what, item in _visible_rows(blocks, keep):
        y = _item(parts, y, what, item)
    parts.append(_arrow(y, y + GAP))
    parts.append(_text(CENTRE, y + GAP + 16, "class scores", size=13))
    height = y + GAP + 30
    header = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="{FONT}">'
    )
    background = f'<rect width="{WIDTH}" height="{height:.0f}" fill="white"/>'
    return "\n".join(
        ['<?xml version="1.0" encoding="UTF-8"?>', header, _DEFS, background, *parts, "</svg>"]
    )
