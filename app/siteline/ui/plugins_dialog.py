"""Help ▸ Plugins: which plugins are loaded, their versions, and why any of them was disabled."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.plugins import PluginHost
from siteline.ui.plugin_table_model import PluginTableModel


class PluginsDialog(QDialog):
    def __init__(self, host: PluginHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(760, 360)
        self.model = PluginTableModel(host, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(30)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(True)
        failures = "\n".join(f.describe() for f in host.failures)
        self.failures = QLabel(failures or "Every plugin loaded.")
        self.failures.setTextFormat(Qt.TextFormat.PlainText)  # plugin errors are third-party text
        self.failures.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.failures)
        layout.addWidget(buttons)
