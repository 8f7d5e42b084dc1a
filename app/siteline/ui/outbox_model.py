"""Outbox items as a table: created (local time), kind, site, device, state (coloured), attempts, last error.

The model holds a snapshot of ``Outbox.items()`` (newest first); ``reload`` reads again and keeps the
rows that did not change, so a refresh timer does not reset the view or lose the selection.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

from siteline.ui.table_model import RowTableModel

if TYPE_CHECKING:
    from siteline.core.outbox.model import Item

HEADERS = ("Created", "Kind", "Site", "Device", "State", "Attempts", "Last error")
COL_CREATED, COL_KIND, COL_SITE, COL_DEVICE, COL_STATE, COL_ATTEMPTS, COL_ERROR = range(len(HEADERS))
ItemIdRole = Qt.ItemDataRole.UserRole + 1
StateRole = Qt.ItemDataRole.UserRole + 2
SortRole = Qt.ItemDataRole.UserRole + 3  # raw values: sorting 500 rows by formatted times cost 50 ms a refresh
AnyIndex = QModelIndex | QPersistentModelIndex
# Item state -> theme state-colour key: sent is done (green), pending waits (amber), failed needs a person (red).
STATE_COLOUR_KEYS = {"sent": "up", "pending": "retrying", "failed": "down"}


def state_text(item: Item) -> str:
    return str(getattr(item.state, "value", item.state))


def local_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


class OutboxTableModel(RowTableModel["Item"]):
    def __init__(self, state_colour: Callable[[str], QColor], parent: QObject | None = None) -> None:
        super().__init__(HEADERS, parent)
        self._state_colour = state_colour

    # -- content -------------------------------------------------------------------------------

    def set_items(self, items: Sequence[Item]) -> None:
        """Show ``items``; unchanged rows stay put (same ids in the same order -> only changed cells repaint)."""
        new = list(items)
        if [i.id for i in new] == [i.id for i in self._rows]:
            changed = [r for r, (old, cur) in enumerate(zip(self._rows, new, strict=True)) if old != cur]
            self._rows = new
            if changed:
                last = len(HEADERS) - 1
                self.dataChanged.emit(self.index(min(changed), 0), self.index(max(changed), last))
            return
        self.beginResetModel()
        self._rows = new
        self.endResetModel()

    def item(self, row: int) -> Item | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def row_of(self, item_id: str) -> int:
        return next((r for r, i in enumerate(self._rows) if i.id == item_id), -1)

    @property
    def items(self) -> list[Item]:
        return list(self._rows)

    # -- Qt ------------------------------------------------------------------------------------

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self.item(index.row()) if index.isValid() else None
        if item is None:
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(item, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_ERROR and item.last_error:
                return item.last_error
            if col == COL_CREATED:
                return f"id {item.id}"
            return self._display(item, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_STATE:
            return self._state_colour(STATE_COLOUR_KEYS.get(state_text(item), "down"))
        if role == Qt.ItemDataRole.FontRole and col == COL_STATE and state_text(item) == "failed":
            font = QFont()
            font.setBold(True)  # the one state that needs a person
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_ATTEMPTS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == ItemIdRole:
            return item.id
        if role == StateRole:
            return state_text(item)
        if role == SortRole:
            return item.created if col == COL_CREATED else self._display(item, col)
        return None

    def _display(self, item: Item, col: int) -> str | int | None:
        if col == COL_CREATED:
            return local_time(item.created)
        if col == COL_STATE:
            return state_text(item)
        if col == COL_ATTEMPTS:
            return item.attempts
        if col == COL_ERROR:
            return item.last_error.splitlines()[0] if item.last_error else ""  # the tooltip has it all
        return (None, item.kind, item.site, item.device)[col] if col < COL_STATE else None
