"""Painting one terminal row: colours, runs of same-looking cells, selection and search highlights."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter

from siteline.ui.terminal_glyphs import draw_cell, is_drawn

# xterm's 16 colours, blue lifted to read on a dark background. pyte names the 16 ANSI colours
# ("brown" is yellow) and gives 256-colour / true-colour cells as six hex digits.
ANSI = {
    "black": "#000000", "red": "#cd0000", "green": "#00cd00", "brown": "#cdcd00",
    "blue": "#3b78ff", "magenta": "#cd00cd", "cyan": "#00cdcd", "white": "#e5e5e5",
    "brightblack": "#7f7f7f", "brightred": "#ff0000", "brightgreen": "#00ff00", "brightbrown": "#ffff00",
    "brightblue": "#7aa2ff", "brightmagenta": "#ff00ff", "brightcyan": "#00ffff", "brightwhite": "#ffffff",
}  # fmt: skip
DEFAULT_FG = QColor("#d0d0d0")
DEFAULT_BG = QColor("#1e1e1e")
MATCH_BG = QColor("#806000")  # every match: dark amber, text stays readable
CURRENT_BG = QColor("#ff9f1a")  # the match the find bar points at
CURRENT_FG = QColor("#000000")
SELECTION_BG = QColor("#3d5a80")

Geometry = tuple[int, int, int, int]  # cell width, cell height, font ascent, row


@lru_cache(maxsize=512)
def colour(name: str, default_name: str) -> QColor:
    default = QColor(default_name)
    if name == "default":
        return default
    if name in ANSI:
        return QColor(ANSI[name])
    if len(name) == 6:
        parsed = QColor(f"#{name}")
        if parsed.isValid():
            return parsed
    return default


def _colours(char: Any, selected: bool, mark: int) -> tuple[QColor, QColor]:
    fg = colour(char.fg, DEFAULT_FG.name())
    bg = colour(char.bg, DEFAULT_BG.name())
    if char.reverse:
        fg, bg = bg, fg
    if mark == 2:
        return CURRENT_FG, CURRENT_BG
    if mark == 1:
        return fg, MATCH_BG
    if selected:
        return fg, SELECTION_BG
    return fg, bg


def paint_row(painter: QPainter, line: Mapping[int, Any], columns: int, geom: Geometry, font: QFont,
              selection: tuple[int, int] | None, matches: Sequence[tuple[int, int, bool]],
              whole_runs: bool = True) -> None:
    """Paint one row. Cells are grouped into runs that look the same: one fill and few drawText calls.

    ``whole_runs``: the font's advance is exactly the cell width, so an ASCII run can be drawn in one call.
    """
    marks = [0] * columns
    for start, end, current in matches:
        for x in range(max(0, start), min(columns, end)):
            marks[x] = max(marks[x], 2 if current else 1)
    sel_start, sel_end = selection or (0, 0)
    # Cells past the last written one are blank with the default look: nothing to paint there, unless
    # selected or marked. Char is a namedtuple: char[1:] is its look (colours and attributes) in one C call.
    used = min(columns, max(line) + 1) if line else 0
    last = max(used, min(columns, sel_end), max((x for x, m in enumerate(marks) if m), default=-1) + 1)
    x = 0
    while x < last:
        start = x
        look = (line[x][1:], sel_start <= x < sel_end, marks[x])
        x += 1
        while x < last and (line[x][1:], sel_start <= x < sel_end, marks[x]) == look:
            x += 1
        _paint_run(painter, [line[i] for i in range(start, x)], start, geom, font, look, whole_runs)


def _paint_run(painter: QPainter, cells: list[Any], start: int, geom: Geometry, font: QFont,
               look: tuple[Any, ...], whole_runs: bool) -> None:
    cw, ch, ascent, row = geom
    first = cells[0]
    fg, bg = _colours(first, look[1], look[2])
    if bg != DEFAULT_BG:
        painter.fillRect(QRect(start * cw, row * ch, len(cells) * cw, ch), bg)
    text = "".join(c.data for c in cells)
    if not text.strip():
        return
    run_font = QFont(font)
    run_font.setBold(first.bold)
    run_font.setItalic(first.italics)
    run_font.setUnderline(first.underscore)
    run_font.setStrikeOut(first.strikethrough)
    painter.setFont(run_font)
    painter.setPen(fg)
    baseline = row * ch + ascent
    if whole_runs and text.isascii() and len(text) == len(cells):
        painter.drawText(start * cw, baseline, text)
        return
    for i, cell in enumerate(cells):  # per cell on the grid: box drawing and wide glyphs never drift
        if is_drawn(cell.data):
            draw_cell(painter, cell.data, QRect((start + i) * cw, row * ch, cw, ch), fg)
        elif cell.data.strip():
            painter.drawText((start + i) * cw, baseline, cell.data)


def fit_to_grid(font: QFont) -> QFont:
    """Make every glyph advance a whole number of pixels, so a run of text can be drawn in one call
    and still land on the cell grid (full hinting does it for most fonts; letter spacing for the rest)."""
    font = QFont(font)
    font.setHintingPreference(QFont.HintingPreference.PreferFullHinting)
    exact = QFontMetricsF(font).horizontalAdvance("M")
    if exact != round(exact):
        font.setLetterSpacing(QFont.SpacingType.AbsoluteSpacing, math.ceil(exact) - exact)
    return font
