"""Item delegates shared by the views."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QSize
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

MIN_ROW_HEIGHT = 30  # a gloved finger on a touch-pad still hits the row


class TallRowDelegate(QStyledItemDelegate):
    """Rows at least MIN_ROW_HEIGHT pixels high (scaled by Qt on high-DPI screens), whatever the style."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        return size.expandedTo(QSize(0, MIN_ROW_HEIGHT))
