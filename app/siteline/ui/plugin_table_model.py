"""Plugins as a table: name, version, source, status, and an Enabled checkbox that switches one on or off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from siteline.core.plugins import PluginHost, PluginInfo
from siteline.ui.table_model import RowTableModel

HEADERS = ("Plugin", "Version", "Source", "Status", "Enabled")
NAME, VERSION, SOURCE, STATUS, ENABLED = range(len(HEADERS))
AnyIndex = QModelIndex | QPersistentModelIndex


class PluginTableModel(RowTableModel[PluginInfo]):
    """Rows are the host's plugins. Unticking Enabled switches a plugin off in the host (and its settings).
    For a built-in plugin ``confirm_disable`` (set by the dialog) is asked first: True switches it now; False
    leaves it on (the dialog may ask the person and call :meth:`switch` later)."""

    sig_plugin_switched = Signal(str, str)
    """A plugin was switched on or off: its name and what happened, in words for the person."""

    def __init__(self, host: PluginHost, parent: QObject | None = None) -> None:
        super().__init__(HEADERS, parent)
        self._host = host
        self._rows = host.plugins
        self.confirm_disable: Callable[[PluginInfo], bool] | None = None

    def reload(self) -> None:
        self.beginResetModel()
        self._rows = self._host.plugins
        self.endResetModel()

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        info = self.row_at(index.row()) if index.isValid() else None
        if info is None:
            return None
        column = index.column()
        if column == ENABLED:
            if role == Qt.ItemDataRole.CheckStateRole and info.toggleable:
                return Qt.CheckState.Unchecked if info.disabled_by_user else Qt.CheckState.Checked
            if role == Qt.ItemDataRole.ToolTipRole:
                return _enabled_tip(info)
            return None
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return (info.name, info.version or "?", info.source, info.status)[column]
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        flags = super().flags(index)
        info = self.row_at(index.row()) if index.isValid() else None
        if info is not None and index.column() == ENABLED and info.toggleable:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index: AnyIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        info = self.row_at(index.row()) if index.isValid() else None
        if info is None or role != Qt.ItemDataRole.CheckStateRole or index.column() != ENABLED or not info.toggleable:
            return False
        enabled = Qt.CheckState(value) == Qt.CheckState.Checked
        if enabled == (not info.disabled_by_user):
            return False
        if not enabled and info.core and self.confirm_disable is not None and not self.confirm_disable(info):
            return False  # not now: the dialog asks, and calls switch() if the person agrees
        return self.switch(info.name, enabled)

    def switch(self, name: str, enabled: bool) -> bool:
        """Switch the plugin in the host (no question asked) and show the result."""
        try:
            message = self._host.set_enabled(name, enabled)
        except OSError as exc:  # the settings file could not be written: say so, change nothing shown
            self.sig_plugin_switched.emit(name, f"Could not save the change for '{name}': {exc}")
            return False
        self._refresh_rows()
        self.sig_plugin_switched.emit(name, message)
        return True

    def _refresh_rows(self) -> None:
        """Switching changes rows in place (the same plugins, in the same order): keep the selection."""
        rows = self._host.plugins
        if len(rows) != len(self._rows):
            self.reload()
            return
        self._rows = rows
        self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(HEADERS) - 1))


def _enabled_tip(info: PluginInfo) -> str:
    if not info.toggleable:
        return "Not loaded: another plugin has this name. Rename the file to load it."
    if info.disabled_by_user:
        return "Switched off. Tick to use this plugin again."
    return "Untick to stop using this plugin (remembered across restarts)."
