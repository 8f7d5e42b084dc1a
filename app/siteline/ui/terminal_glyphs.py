"""Box-drawing and block characters drawn as lines and rectangles on the cell grid.

A font's glyphs for ─│┌┐ are shorter than a terminal row (line spacing), so boxes drawn by mc,
dialog or tmux show gaps between rows; xterm, VTE and kitty draw these themselves for the same reason.
"""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QPainter

# char -> line weights (left, right, up, down): 1 light, 2 heavy, 3 double.
_L, _H, _D = 1, 2, 3
BOX: dict[str, tuple[int, int, int, int]] = {
    "─": (_L, _L, 0, 0), "━": (_H, _H, 0, 0), "│": (0, 0, _L, _L), "┃": (0, 0, _H, _H),
    "┌": (0, _L, 0, _L), "┐": (_L, 0, 0, _L), "└": (0, _L, _L, 0), "┘": (_L, 0, _L, 0),
    "╭": (0, _L, 0, _L), "╮": (_L, 0, 0, _L), "╰": (0, _L, _L, 0), "╯": (_L, 0, _L, 0),
    "┏": (0, _H, 0, _H), "┓": (_H, 0, 0, _H), "┗": (0, _H, _H, 0), "┛": (_H, 0, _H, 0),
    "├": (0, _L, _L, _L), "┤": (_L, 0, _L, _L), "┬": (_L, _L, 0, _L), "┴": (_L, _L, _L, 0),
    "┼": (_L, _L, _L, _L), "┣": (0, _H, _H, _H), "┫": (_H, 0, _H, _H), "┳": (_H, _H, 0, _H),
    "┻": (_H, _H, _H, 0), "╋": (_H, _H, _H, _H),
    "═": (_D, _D, 0, 0), "║": (0, 0, _D, _D), "╔": (0, _D, 0, _D), "╗": (_D, 0, 0, _D),
    "╚": (0, _D, _D, 0), "╝": (_D, 0, _D, 0), "╠": (0, _D, _D, _D), "╣": (_D, 0, _D, _D),
    "╦": (_D, _D, 0, _D), "╩": (_D, _D, _D, 0), "╬": (_D, _D, _D, _D),
}  # fmt: skip
# char -> (x0, y0, x1, y1) as eighths of the cell, and an alpha for the shades.
BLOCKS: dict[str, tuple[int, int, int, int, int]] = {
    "█": (0, 0, 8, 8, 255), "▀": (0, 0, 8, 4, 255), "▄": (0, 4, 8, 8, 255), "▌": (0, 0, 4, 8, 255),
    "▐": (4, 0, 8, 8, 255), "░": (0, 0, 8, 8, 64), "▒": (0, 0, 8, 8, 128), "▓": (0, 0, 8, 8, 192),
    "▁": (0, 7, 8, 8, 255), "▂": (0, 6, 8, 8, 255), "▃": (0, 5, 8, 8, 255), "▅": (0, 3, 8, 8, 255),
    "▆": (0, 2, 8, 8, 255), "▇": (0, 1, 8, 8, 255),
}  # fmt: skip


def is_drawn(char: str) -> bool:
    return char in BOX or char in BLOCKS


def draw_cell(painter: QPainter, char: str, cell: QRect, colour: QColor) -> None:
    """Draw ``char`` (one of BOX or BLOCKS) filling ``cell``."""
    block = BLOCKS.get(char)
    if block is not None:
        x0, y0, x1, y1, alpha = block
        fill = QColor(colour)
        fill.setAlpha(alpha)
        w, h = cell.width(), cell.height()
        painter.fillRect(QRect(cell.x() + x0 * w // 8, cell.y() + y0 * h // 8,
                               (x1 - x0) * w // 8, (y1 - y0) * h // 8), fill)
        return
    left, right, up, down = BOX[char]
    thin = max(1, cell.width() // 8)
    cx, cy = cell.x() + cell.width() // 2, cell.y() + cell.height() // 2
    for weight, (x0, y0, x1, y1) in (
        (left, (cell.left(), cy, cx, cy)), (right, (cx, cy, cell.right() + 1, cy)),
        (up, (cx, cell.top(), cx, cy)), (down, (cx, cy, cx, cell.bottom() + 1)),
    ):
        if weight:
            _stroke(painter, colour, (x0, y0, x1, y1), weight, thin)


def _stroke(painter: QPainter, colour: QColor, line: tuple[int, int, int, int], weight: int, thin: int) -> None:
    x0, y0, x1, y1 = line
    horizontal = y0 == y1
    if weight == _D:  # two thin lines either side of the centre
        offsets: tuple[int, ...] = (-thin, thin)
        width = thin
    else:
        offsets = (0,)
        width = thin * weight
    for off in offsets:
        if horizontal:
            painter.fillRect(QRect(min(x0, x1), y0 + off - width // 2, abs(x1 - x0) + 1, width), colour)
        else:
            painter.fillRect(QRect(x0 + off - width // 2, min(y0, y1), width, abs(y1 - y0) + 1), colour)
