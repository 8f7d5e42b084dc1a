"""Plugins as a table: name, version, status (enabled, or the error that disabled it), source."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from siteline.core.plugins import PluginHost, PluginInfo

HEADERS = ("Plugin", "Version", "Status", "Source")
AnyIndex = QModelIndex | QPersistentModelIndex


class PluginTableModel(QAbstractTableModel):
    def __init__(self, host: PluginHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._rows: list[PluginInfo] = host.plugins  # a snapshot: the dialog is rebuilt each time it opens

    def reload(self) -> None:
        self.beginResetModel()
        self._rows = self._host.plugins
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section] if 0 <= section < len(HEADERS) else None
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        info = self._rows[index.row()]
        status = "enabled" if info.enabled else f"disabled: {info.error}"
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return (info.name, info.version or "?", status, info.source)[index.column()]
        return None
