"""Plugins as a table: name, version, status (enabled, or the error that disabled it), source."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt

from siteline.core.plugins import PluginHost, PluginInfo
from siteline.ui.table_model import RowTableModel

HEADERS = ("Plugin", "Version", "Status", "Source")
AnyIndex = QModelIndex | QPersistentModelIndex


class PluginTableModel(RowTableModel[PluginInfo]):
    def __init__(self, host: PluginHost, parent: QObject | None = None) -> None:
        super().__init__(HEADERS, parent)
        self._host = host
        self._rows = host.plugins  # a snapshot: the dialog is rebuilt each time it opens

    def reload(self) -> None:
        self.beginResetModel()
        self._rows = self._host.plugins
        self.endResetModel()

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        info = self._rows[index.row()]
        status = "enabled" if info.enabled else f"disabled: {info.error}"
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return (info.name, info.version or "?", status, info.source)[index.column()]
        return None
