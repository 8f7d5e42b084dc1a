"""The vault window: its state, the entries (name, kind, dates; never a value) and every vault action.

The dialogs it opens live in vault_dialogs.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.vault import EntryInfo, KdfCost, Vault, VaultError
from siteline.ui.delegates import TallRowDelegate
from siteline.ui.device_dialog import bad_colour
from siteline.ui.table_model import RowTableModel
from siteline.ui.vault_dialogs import (
    AddEntryDialog,
    ChangePassphraseDialog,
    CreateVaultDialog,
    ExportDialog,
    ImportDialog,
    UnlockDialog,
    _plain_label,
    _WorkDialog,
    error_words,
    import_summary_text,
)

log = logging.getLogger(__name__)
HEADERS = ("Name", "Kind", "Updated", "Note")
IDLE_CHECK_MS = 5000
AnyIndex = QModelIndex | QPersistentModelIndex


class VaultEntriesModel(RowTableModel[EntryInfo]):
    """Entry names, kinds, times and notes. It is only ever given EntryInfo, which has no value."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(HEADERS, parent)

    def set_entries(self, entries: list[EntryInfo]) -> None:
        self.beginResetModel()
        self._rows = list(entries)
        self.endResetModel()

    def name(self, row: int) -> str | None:
        return self._rows[row].name if 0 <= row < len(self._rows) else None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        e = self._rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            updated = dt.datetime.fromtimestamp(e.updated).strftime("%Y-%m-%d %H:%M")
            return (e.name, e.kind, updated, e.note)[index.column()]
        return None


class VaultWindow(QDialog):
    """The vault: state, entries without values, and every action. Locks itself after the idle time."""

    sig_vault_changed = Signal(object)
    """A vault was created here (the argument): whoever holds the old locked one should take it."""
    sig_lock_changed = Signal(bool)
    """True: now locked (Lock now, or idle); False: unlocked."""
    sig_trust_changed = Signal(str, object)
    """Secrets left or entered this laptop: (audit action "vault-exported"/"vault-imported", detail dict)
    for ``AuditTrail.record`` (entry names and the file, never values)."""

    def __init__(self, vault: Vault, parent: QWidget | None = None, *, cost: KdfCost | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Vault")
        self.resize(720, 440)
        self.vault, self._cost = vault, cost
        self.dialog: QDialog | None = None
        self.confirm_box: QMessageBox | None = None
        self.model = VaultEntriesModel(self)
        self.state = _plain_label("vaultState")
        font = self.state.font()
        font.setBold(True)  # locked or not is the first thing to see
        self.state.setFont(font)
        self.message = _plain_label("vaultMessage")
        self.table = QTableView()
        self.table.setObjectName("vaultEntries")
        self.table.setModel(self.model)
        self.table.setItemDelegate(TallRowDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        for key, text, slot in (
            ("create", "&Create vault…", self._on_create_clicked), ("unlock", "&Unlock…", self._on_unlock_clicked),
            ("lock", "&Lock now", self.lock_now), ("add", "&Add…", self._on_add_clicked),
            ("delete", "&Delete…", self._on_delete_clicked), ("passphrase", "Change &passphrase…",
                                                              self._on_passphrase_clicked),
            ("export", "&Export…", self._on_export_clicked), ("import", "&Import…", self._on_import_clicked),
        ):
            button = QPushButton(text)
            button.setObjectName(f"vault_{key}")
            button.clicked.connect(slot)
            self.buttons[key] = button
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.state)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        layout.addLayout(row)
        self.idle_timer = QTimer(self)
        self.idle_timer.setInterval(IDLE_CHECK_MS)
        self.idle_timer.timeout.connect(self.check_idle)
        self.idle_timer.start()
        self.refresh()

    def refresh(self) -> None:
        v = self.vault
        exists, locked = v.exists, v.locked
        entries: list[EntryInfo] = []
        if exists and not locked:
            try:
                entries = v.entries()
            except VaultError as exc:
                self.say(error_words(exc), error=True)
        self.model.set_entries(entries)
        if not exists:
            self.state.setText(f"No vault yet. Create one to keep device passwords and keys encrypted ({v.path}).")
        elif v.locked:
            self.state.setText(f"Locked: {v.path}. Unlock it to see the entry names (values are never shown).")
        else:
            self.state.setText(f"Unlocked: {v.path} — {len(entries)} entries. Values are never shown. "
                               f"Locks after {v.idle_timeout / 60:.0f} minutes unused.")
        shown = {"create": not exists, "unlock": exists and locked}
        usable = exists and not v.locked
        for key, button in self.buttons.items():
            button.setVisible(shown.get(key, exists))
            button.setEnabled(shown.get(key, usable))
        self.buttons["passphrase"].setEnabled(usable and not v.uses_keyring)

    def say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setProperty("error", error)
        self.message.setStyleSheet(f"color: {bad_colour(self).name()};" if error else "")

    def check_idle(self) -> bool:
        if self.vault.lock_if_idle():
            self.say("Locked: the vault was not used for a while.")
            self.refresh()
            self.sig_lock_changed.emit(True)
            return True
        return False

    def lock_now(self) -> None:
        self.vault.lock()
        self.say("Locked.")
        self.refresh()
        self.sig_lock_changed.emit(True)

    def _open(self, dialog: _WorkDialog, done: Callable[[Any], None]) -> _WorkDialog:
        self.dialog = dialog
        dialog.sig_done.connect(done)
        dialog.open()
        return dialog

    def _on_create_clicked(self) -> None:
        self._open(CreateVaultDialog(self.vault.path, self, cost=self._cost), self._on_created)

    def _on_created(self, vault: Vault) -> None:
        self.vault = vault
        self.say("Vault created and unlocked.")
        self.refresh()
        self.sig_vault_changed.emit(vault)
        self.sig_lock_changed.emit(False)

    def _on_unlock_clicked(self) -> None:
        if self.vault.uses_keyring:  # nothing to type: the keyring holds the key
            dialog = UnlockDialog(self.vault, self)
            self._open(dialog, lambda _r: self._on_unlocked())
            dialog.task = asyncio.ensure_future(dialog._run(self.vault.unlock))
            return
        self._open(UnlockDialog(self.vault, self), lambda _r: self._on_unlocked())

    def _on_unlocked(self) -> None:
        self.say("Unlocked.")
        self.refresh()
        self.sig_lock_changed.emit(False)

    def _on_add_clicked(self) -> None:
        self._open(AddEntryDialog(self.vault, self), lambda _r: self._after("Entry saved."))

    def _on_passphrase_clicked(self) -> None:
        self._open(ChangePassphraseDialog(self.vault, self), lambda _r: self.say(
            "Passphrase changed; every entry was re-encrypted under a new key."
            + (" The vault agent was stopped: run siteline vault unlock again for CLI commands."
               if self.vault.agent_stopped else "")))

    def _on_export_clicked(self) -> None:
        dialog = ExportDialog(self.vault, self)
        self._open(dialog, lambda n: self._on_exported(dialog.file.edit.text(), n))

    def _on_exported(self, path: str, count: int) -> None:
        self.say(f"Exported {count} entries to {path}.")
        self.sig_trust_changed.emit("vault-exported", {"file": path, "entries": count})

    def _on_import_clicked(self) -> None:
        dialog = ImportDialog(self.vault, self)
        self._open(dialog, lambda summary: self._on_imported(dialog.file.edit.text(), summary))

    def _on_imported(self, path: str, summary: Any) -> None:
        self._after(import_summary_text(summary))
        detail = {"file": path, "added": list(summary.added), "replaced": list(summary.replaced)}
        self.sig_trust_changed.emit("vault-imported", detail)

    def _after(self, text: str) -> None:
        self.say(text)
        self.refresh()

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.name(rows[0].row()) if rows else None

    def _on_delete_clicked(self) -> None:
        name = self.selected_name()
        if name is None:
            self.say("Select the entry to delete first.", error=True)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete the vault entry",
                          f"Delete {name}? Its value is gone for good unless you have an export.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        yes = box.button(QMessageBox.StandardButton.Yes)
        yes.setText("&Delete")
        box.finished.connect(lambda _r: self.delete_entry(name) if box.clickedButton() is yes else None)
        self.confirm_box = box
        box.open()

    def delete_entry(self, name: str) -> None:
        try:
            self.vault.delete(name)
        except (VaultError, KeyError) as exc:
            self.say(f"Could not delete {name}: {error_words(exc)}", error=True)
        else:
            self.say(f"Deleted {name}.")
        self.refresh()

