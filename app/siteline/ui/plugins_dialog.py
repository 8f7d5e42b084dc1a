"""Help ▸ Plugins: which plugins are loaded, their versions, why any failed; switch one off; the plugin folder.

The dialog shows what the host knows and asks it to switch plugins; it never imports plugin code itself.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.plugin_settings import CORE_PLUGINS
from siteline.core.plugins import PluginHost, PluginInfo
from siteline.core.user_plugins import user_plugin_folder
from siteline.ui.plugin_table_model import ENABLED, NAME, SOURCE, STATUS, VERSION, PluginTableModel

NO_DETAILS = "Select a failed plugin to see what went wrong (the text can be copied for the plugin's vendor)."


class PluginsDialog(QDialog):
    sig_plugins_changed = Signal()
    """A plugin was switched on or off (the status bar recounts failures)."""

    def __init__(self, host: PluginHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(960, 600)
        self._host = host
        self.folder = user_plugin_folder()
        self.confirm_box: QMessageBox | None = None
        self.model = PluginTableModel(host, self)
        self.model.confirm_disable = self._confirm_core_disable
        self.model.sig_plugin_switched.connect(self._on_model_plugin_switched)
        self.table = self._build_table()
        self.failures = QLabel("\n".join(f.describe() for f in host.failures) or "Every plugin loaded.")
        self.failures.setTextFormat(Qt.TextFormat.PlainText)  # plugin errors are third-party text
        self.failures.setWordWrap(True)
        self.failures.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QPlainTextEdit(readOnly=True)
        self.details.setPlaceholderText(NO_DETAILS)
        self.details.setMaximumHeight(160)
        self.copy_button = QPushButton("Copy details")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self._on_copy_clicked)
        self.message = QLabel("\n".join(host.notices))
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setWordWrap(True)
        self.message.setVisible(bool(host.notices))
        self.open_folder_button = QPushButton("Open plugin folder")
        self.open_folder_button.clicked.connect(self.open_plugin_folder)
        self.folder_label = QLabel(f"User plugin folder: {self.folder}")
        self.folder_label.setTextFormat(Qt.TextFormat.PlainText)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.folder_label.setToolTip("Each NAME.py or NAME/__init__.py in this folder is loaded as plugin NAME.")
        self._lay_out()

    def _build_table(self) -> QTableView:
        table = QTableView()
        table.setModel(self.model)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.verticalHeader().hide()
        header = table.horizontalHeader()
        header.setStretchLastSection(False)
        for column in (NAME, VERSION, ENABLED):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(SOURCE, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(SOURCE, 300)  # paths are long: the tooltip has the whole of it
        header.setSectionResizeMode(STATUS, QHeaderView.ResizeMode.Stretch)  # errors need the room
        table.setWordWrap(False)
        table.selectionModel().selectionChanged.connect(self._on_table_selection_changed)
        return table

    def _lay_out(self) -> None:
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_label, 1)
        folder_row.addWidget(self.open_folder_button)
        details_row = QHBoxLayout()
        details_row.addWidget(self.details, 1)
        details_row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(folder_row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.failures)
        layout.addLayout(details_row)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

    # -- actions -----------------------------------------------------------------------------

    def select_plugin(self, name: str) -> None:
        for row in range(self.model.rowCount()):
            if self.model.index(row, NAME).data() == name:
                self.table.selectRow(row)
                return

    def set_plugin_enabled(self, name: str, enabled: bool) -> bool:
        """What ticking the row's Enabled box does (for keyboard users and tests)."""
        for row in range(self.model.rowCount()):
            info = self.model.row_at(row)
            if info is not None and info.name == name and info.toggleable:
                state = Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked
                return self.model.setData(self.model.index(row, ENABLED), state, Qt.ItemDataRole.CheckStateRole)
        return False

    def open_plugin_folder(self) -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            self._say(f"Cannot create {self.folder}: {exc}")
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.folder))):
            self._say(f"No file manager opened {self.folder}; open it yourself (the path above can be copied).")

    # -- slots -------------------------------------------------------------------------------

    def _confirm_core_disable(self, info: PluginInfo) -> bool:
        """Ask before a built-in plugin goes (a box that does not block the event loop); False: not yet."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Disable a built-in plugin?",
                          f"Disable '{info.name}'? It is part of Siteline.", parent=self)
        box.setObjectName("confirmCoreDisable")
        box.setInformativeText(
            f"What stops working without it: {CORE_PLUGINS.get(info.name, info.name)}.\n\n"
            f"You can switch it on again here or with 'siteline plugins enable {info.name}'."
        )
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
        box.button(QMessageBox.StandardButton.Yes).setText("Disable")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.accepted.connect(lambda: self.model.switch(info.name, False))  # Yes is an AcceptRole button
        self.confirm_box = box
        box.open()
        return False

    def _on_model_plugin_switched(self, _name: str, message: str) -> None:
        self._say(message)
        self._show_details()
        self.sig_plugins_changed.emit()

    def _on_table_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self._show_details()

    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.details.toPlainText())

    def _show_details(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        info = self.model.row_at(rows[0].row()) if rows else None
        text = ""
        if info is not None and info.failed:
            text = f"{info.name} {info.version} ({info.source})\n{info.error}\n\n{info.details}".rstrip()
        self.details.setPlainText(text)
        self.copy_button.setEnabled(bool(text))

    def _say(self, message: str) -> None:
        self.message.setText(message)
        self.message.setVisible(True)
