"""Ask for a device's password: kept in memory, and in the vault when the person ticks "Remember" (the vault
must be unlocked for that; a password never goes anywhere else)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from siteline.ui.sessions import SessionManager


class CredentialsDialog(QDialog):
    def __init__(self, device: str, reason: str, username: str | None, parent: QWidget | None = None,
                 vault_unlocked: bool = False) -> None:
        super().__init__(parent)
        self.device = device
        self.setWindowTitle(f"Password for {device}")
        self.setMinimumWidth(420)
        # The reason is the device's own words: escape it so it can never be read as markup.
        text = f"<b>{html.escape(device)}</b> needs a password."
        why = QLabel(f"{text}<br>{html.escape(reason)}" if reason else text)
        why.setTextFormat(Qt.TextFormat.RichText)
        why.setWordWrap(True)
        self.user = QLabel(username or "(from the target URL)")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setObjectName("password")
        self.remember = QCheckBox("&Remember in the vault")
        self.remember.setObjectName("rememberPassword")
        self.remember.setEnabled(vault_unlocked)
        note = QLabel("Kept encrypted in the vault for next time." if vault_unlocked else
                      "Kept in memory until Siteline closes. Unlock the vault (Tools → Vault) to remember it, "
                      "or to connect with a password remembered there.")
        note.setWordWrap(True)
        note.setEnabled(False)
        self.remember.toggled.connect(lambda on: note.setText(
            "Kept encrypted in the vault for next time." if on else "Kept in memory until Siteline closes."))
        self.remember.setChecked(vault_unlocked)
        form = QFormLayout()
        form.addRow("User:", self.user)
        form.addRow("&Password:", self.password)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("&Connect")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(why)
        layout.addLayout(form)
        layout.addWidget(self.remember)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.password.setFocus()

    def value(self) -> str:
        return self.password.text()


class PasswordPrompts(QObject):
    """One password dialog at a time; devices that need one meanwhile wait in a queue."""

    def __init__(self, sessions: SessionManager, parent: QWidget) -> None:
        super().__init__(parent)
        self._sessions = sessions
        self._window = parent
        self._queue: list[tuple[str, str]] = []
        self.dialog: CredentialsDialog | None = None

    def ask(self, name: str, reason: str) -> None:
        if name not in (n for n, _ in self._queue):
            self._queue.append((name, reason))
        self._next()

    def _next(self) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            return
        while self._queue:
            name, reason = self._queue.pop(0)
            session = self._sessions.get(name)
            if session is None:
                continue  # removed meanwhile
            keep = self._sessions.keep
            dialog = CredentialsDialog(name, reason, session.credentials.username or session.target.user, self._window,
                                       vault_unlocked=keep is not None and not keep.vault.locked)
            dialog.accepted.connect(lambda d=dialog: self._sessions.set_password(
                d.device, d.value(), remember=d.remember.isChecked()))
            dialog.finished.connect(lambda _r: self._next())
            self.dialog = dialog
            dialog.open()
            return
