"""The log table: whole-line copy with Ctrl+C, fixed-height rows, the highlighting delegate on messages."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from siteline.ui.logs.highlight import HighlightDelegate
from siteline.ui.logs.log_model import MESSAGE, LogModel


class LogTable(QTableView):
    """The table; Ctrl+C copies whole selected lines (Qt's own copy takes one cell)."""

    sig_copy_requested = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.sig_copy_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)


def make_table(model: LogModel, parent: QWidget) -> tuple[LogTable, HighlightDelegate]:
    """The table over `model`: fixed row height (never measures millions of rows), columns sized once."""
    table = LogTable(parent)
    table.setObjectName("logTable")
    table.setModel(model)
    table.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    table.setWordWrap(False)
    table.setTextElideMode(Qt.TextElideMode.ElideRight)
    table.setShowGrid(False)
    table.setAlternatingRowColors(True)
    table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    metrics = table.fontMetrics()
    rows = table.verticalHeader()
    rows.hide()
    rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)  # never measure millions of rows
    rows.setDefaultSectionSize(max(26, metrics.height() + 10))
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    for column, sample in enumerate(("2026-11-27 14:02:11.123", "gw-site-a-01", "NetworkManager.service",
                                     "emergency")):
        table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 24)
    highlighter = HighlightDelegate(table)
    table.setItemDelegateForColumn(MESSAGE, highlighter)
    return table, highlighter
