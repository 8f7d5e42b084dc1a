"""Paints the message column with every match of the search marked: a yellow box behind dark text.

The box (not only a colour of the text) marks the match, so it reads in sunlight and for colour-blind eyes.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

MAX_MARKS = 50  # matches marked in one cell: enough for a line, bounded to paint
_MARK = QColor("#ffd54a")
_MARK_EDGE = QColor("#b38600")
_MARK_TEXT = QColor("#1b1f24")


class HighlightDelegate(QStyledItemDelegate):
    """Draws the cell as usual, then a box behind each match of `pattern` with the matched text over it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pattern: re.Pattern[str] | None = None

    def set_pattern(self, pattern: re.Pattern[str] | None) -> None:
        self.pattern = pattern

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        if self.pattern is None:
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        text = opt.text
        spans = _spans(self.pattern, text)
        if not spans:
            super().paint(painter, option, index)
            return
        widget = opt.widget
        style = widget.style() if widget is not None else QApplication.style()
        opt.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        rect = style.subElementRect(QStyle.SubElement.SE_ItemViewItemText, opt, widget).adjusted(3, 0, -3, 0)
        metrics = opt.fontMetrics
        shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, rect.width())
        painter.save()
        painter.setFont(opt.font)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        group = QPalette.ColorGroup.Normal
        colour = opt.palette.color(group, QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        foreground = index.data(Qt.ItemDataRole.ForegroundRole)
        if foreground is not None and not selected:
            colour = QColor(foreground)
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.setPen(colour)
        painter.drawText(rect, align, shown)
        limit = len(shown) - (1 if shown != text else 0)  # the ellipsis hides the rest
        for start, end in spans:
            if start >= limit:
                break
            end = min(end, limit)
            x = rect.x() + metrics.horizontalAdvance(text[:start])
            width = metrics.horizontalAdvance(text[start:end])
            box = QRectF(x - 1, rect.y() + 3, width + 2, rect.height() - 6)
            painter.setPen(_MARK_EDGE)
            painter.setBrush(_MARK)
            painter.drawRoundedRect(box, 2, 2)
            painter.setPen(_MARK_TEXT)
            painter.drawText(box.adjusted(1, 0, 0, 0), align, text[start:end])
        painter.restore()


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(text):
        if match.end() > match.start():
            spans.append(match.span())
            if len(spans) >= MAX_MARKS:
                break
    return spans
