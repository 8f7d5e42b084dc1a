"""Ask the person about a device's SSH host key: trust an unknown one, or stop at a changed one.

An unknown key is trusted only after the person compared its fingerprint. A changed key has no
button that continues: replacing the pinned key is a separate action ("Replace pinned key…") that
asks for the device's name to be typed, so a reflex click can never accept an attacker's key.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import HostKeyProblem, SitelineError
from siteline.ui.device_dialog import bad_colour

if TYPE_CHECKING:
    from siteline.ui.sessions import SessionManager

log = logging.getLogger(__name__)
# OpenSSH key type -> the host key file name part on the device (ssh_host_<part>_key.pub).
_KEY_FILES = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ssh-dss": "dsa"}


def key_type(problem: HostKeyProblem) -> str:
    """``ED25519`` / ``RSA`` / ``ECDSA``, as OpenSSH names the key in its own prompt."""
    algorithm = problem.offered_key.split(" ", 1)[0] if problem.offered_key else ""
    if algorithm.startswith("ecdsa"):
        return "ECDSA"
    return algorithm.removeprefix("ssh-").upper() or "host"


def keygen_command(problem: HostKeyProblem) -> str:
    """What to run on the device to print the same fingerprint."""
    algorithm = problem.offered_key.split(" ", 1)[0] if problem.offered_key else ""
    part = "ecdsa" if algorithm.startswith("ecdsa") else _KEY_FILES.get(algorithm, "ed25519")
    return f"ssh-keygen -lf /etc/ssh/ssh_host_{part}_key.pub"


def _nowrap(text: str) -> str:
    """A command kept on one line in rich text, so it can be read off and typed as it is."""
    return html.escape(text).replace(" ", "&nbsp;")


def _label(text: str, rich: bool = True) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    return label


def _fingerprint_label(text: str, name: str) -> QLabel:
    """A fingerprint in a fixed-width font, selectable, so it can be read out or pasted into a chat."""
    label = QLabel(text or "(the device offered no key of the pinned type)")
    label.setObjectName(name)
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setPointSizeF(font.pointSizeF() * 1.15)
    font.setBold(True)
    label.setFont(font)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class HostKeyDialog(QDialog):
    """One device's host-key question. ``trust_button`` exists only for an unknown key."""

    def __init__(self, device: str, problem: HostKeyProblem, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self.problem = problem
        self.trust_button: QPushButton | None = None
        self.replace_button: QPushButton | None = None
        self.setMinimumWidth(560)
        self.error = _label("", rich=False)
        self.error.setObjectName("hostKeyError")
        danger = bad_colour(self).name()
        self.error.setStyleSheet(f"color: {danger};")
        self.error.hide()
        self.buttons = QDialogButtonBox()
        self.extra_row = QHBoxLayout()
        layout = QVBoxLayout(self)
        if problem.kind == "changed":
            self._build_changed(layout)
        else:
            self._build_unknown(layout)
        layout.addWidget(self.error)
        self.extra_row.addWidget(self.buttons)
        layout.addLayout(self.extra_row)

    def _build_unknown(self, layout: QVBoxLayout) -> None:
        p, name = self.problem, html.escape(self.device)
        self.setWindowTitle(f"Check the host key of {self.device}")
        layout.addWidget(_label(
            f"<b>First connection to {name}</b> ({html.escape(p.display_name)}).<br>"
            f"The device offers this {key_type(p)} host key:"
        ))
        layout.addWidget(_fingerprint_label(p.offered_fingerprint, "offeredFingerprint"))
        layout.addWidget(_label(
            "Compare it with the fingerprint on the device's label or from its owner, who can print it on "
            f"the device with:<br><code>{_nowrap(keygen_command(p))}</code><br>"
            "Trust it only if the two are the same."
        ))
        self.trust_button = self.buttons.addButton("&Trust and connect", QDialogButtonBox.ButtonRole.AcceptRole)
        self.trust_button.setAutoDefault(False)
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setDefault(True)  # Enter or Space alone never trusts a key
        self.setFocusProxy(cancel)
        self.buttons.rejected.connect(self.reject)

    def _build_changed(self, layout: QVBoxLayout) -> None:
        p, name, danger = self.problem, html.escape(self.device), bad_colour(self).name()
        self.setWindowTitle(f"WARNING: the host key of {self.device} has changed")
        banner = QFrame()
        banner.setObjectName("hostKeyWarning")
        banner.setStyleSheet(
            f"#hostKeyWarning {{ border: 2px solid {danger}; border-radius: 4px; }}"
            f" #hostKeyWarning QLabel {{ color: {danger}; }}"
        )
        inner = QVBoxLayout(banner)
        inner.addWidget(_label(
            f"<b>⚠ The SSH host key of {name} ({html.escape(p.display_name)}) has CHANGED.</b><br>"
            "This may be an attack: someone between you and the device could be listening in. "
            "It can also mean the device was reinstalled or its keys were regenerated. "
            "Siteline will not connect to it until this is settled."
        ))
        layout.addWidget(banner)
        keys = QFormLayout()
        for i, fp in enumerate(p.pinned_fingerprints or ("(none)",)):
            name_ = "pinnedFingerprint" if i == 0 else f"pinnedFingerprint{i}"
            keys.addRow("Pinned (trusted before):" if i == 0 else "", _fingerprint_label(fp, name_))
        keys.addRow(f"Offered now ({key_type(p)}):", _fingerprint_label(p.offered_fingerprint, "offeredFingerprint"))
        layout.addLayout(keys)
        layout.addWidget(_label(
            "Ask the device's owner whether it was reinstalled, and compare the new fingerprint with what "
            f"this prints on the device:<br><code>{_nowrap(keygen_command(p))}</code>"
        ))
        close = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)
        self.setFocusProxy(close)
        self.buttons.rejected.connect(self.reject)
        # Not in the button box and far from Close: it only opens a second, typed confirmation.
        self.replace_button = QPushButton("&Replace pinned key…")
        self.replace_button.setAutoDefault(False)
        self.replace_button.setToolTip("Only after the device's owner confirmed the new key")
        self.extra_row.addWidget(self.replace_button)
        self.extra_row.addStretch(1)

    def show_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.show()


class ReplaceKeyDialog(QDialog):
    """The second, separate step for a changed key: type the device's name to replace its pinned key."""

    def __init__(self, device: str, problem: HostKeyProblem, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self.problem = problem
        self.setWindowTitle(f"Replace the pinned host key of {device}?")
        self.setMinimumWidth(520)
        name = html.escape(device)
        text = _label(
            f"Only do this if the device's owner confirmed that <b>{name}</b> was reinstalled and its new "
            f"fingerprint is <code>{html.escape(problem.offered_fingerprint)}</code>.<br><br>"
            f"Type the device's name, <b>{name}</b>, to replace the pinned key and connect:"
        )
        text.setStyleSheet(f"color: {bad_colour(self).name()};")
        self.typed = QLineEdit()
        self.typed.setObjectName("confirmName")
        self.typed.setPlaceholderText(device)
        self.buttons = QDialogButtonBox()
        self.confirm_button = self.buttons.addButton("Replace &key and connect", QDialogButtonBox.ButtonRole.AcceptRole)
        self.confirm_button.setEnabled(False)
        self.confirm_button.setAutoDefault(False)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.typed.textChanged.connect(self._on_typed_changed)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.typed)
        layout.addWidget(self.buttons)

    def matches(self) -> bool:
        return self.typed.text().strip() == self.device

    def _on_typed_changed(self, _text: str) -> None:
        self.confirm_button.setEnabled(self.matches())

    def accept(self) -> None:
        if self.matches():
            super().accept()


class HostKeyPrompts(QObject):
    """One host-key dialog at a time (others wait their turn); at most one per device; gone with its device."""

    def __init__(self, sessions: SessionManager, parent: QWidget) -> None:
        super().__init__(parent)
        self._sessions = sessions
        self._window = parent
        self._queue: list[str] = []
        self.dialog: HostKeyDialog | None = None
        self.confirm: ReplaceKeyDialog | None = None
        sessions.sig_host_key_problem.connect(self.ask)
        sessions.sig_device_removed.connect(self._on_sessions_device_removed)

    def ask(self, name: str, _problem: object = None) -> None:
        """Queue ``name``'s question (the manager holds the problem itself); a shown one is raised."""
        if self._showing(name):
            if self.dialog is not None and self.dialog.problem != self._sessions.host_key_problem(name):
                self._close_current()  # the question changed (unknown became changed): ask the new one
            else:
                self.dialog.raise_()  # type: ignore[union-attr]
                return
        if name not in self._queue:
            self._queue.append(name)
        self._next()

    def review(self, name: str | None) -> None:
        """The device page's "Review…" button: ask again about a question the person closed."""
        if name and self._sessions.host_key_problem(name) is not None:
            self.ask(name)

    def _showing(self, name: str) -> bool:
        return self.dialog is not None and self.dialog.device == name and self.dialog.isVisible()

    def _next(self) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            return
        while self._queue:
            name = self._queue.pop(0)
            problem = self._sessions.host_key_problem(name)
            if problem is None:
                continue  # settled or removed meanwhile
            dialog = HostKeyDialog(name, problem, self._window)
            if dialog.trust_button is not None:
                dialog.trust_button.clicked.connect(lambda _c=False, d=dialog: self._on_trust_clicked(d))
            if dialog.replace_button is not None:
                dialog.replace_button.clicked.connect(lambda _c=False, d=dialog: self._on_replace_clicked(d))
            dialog.finished.connect(lambda _r: self._next())
            self.dialog = dialog
            dialog.open()
            return

    def _on_trust_clicked(self, dialog: HostKeyDialog) -> None:
        try:
            self._sessions.trust_host_key(dialog.device, dialog.problem)
        except (SitelineError, OSError, ValueError) as exc:
            dialog.show_error(f"The key was not pinned: {exc}")
            return
        dialog.accept()

    def _on_replace_clicked(self, dialog: HostKeyDialog) -> None:
        log.warning(
            "%s: the user opened the replacement of the changed host key of %s (offered %s)",
            dialog.device, dialog.problem.display_name, dialog.problem.offered_fingerprint,
        )
        confirm = ReplaceKeyDialog(dialog.device, dialog.problem, dialog)
        confirm.accepted.connect(lambda: self._on_replace_confirmed(dialog, confirm))
        self.confirm = confirm
        confirm.open()

    def _on_replace_confirmed(self, dialog: HostKeyDialog, confirm: ReplaceKeyDialog) -> None:
        try:
            self._sessions.replace_host_key(dialog.device, dialog.problem, confirm.typed.text())
        except (SitelineError, OSError, ValueError) as exc:
            dialog.show_error(f"The pinned key was not replaced: {exc}")
            return
        dialog.accept()

    def _close_current(self) -> None:
        dialog, self.dialog = self.dialog, None
        if self.confirm is not None:
            self.confirm.reject()
            self.confirm = None
        if dialog is not None:
            dialog.reject()

    def _on_sessions_device_removed(self, name: str) -> None:
        if name in self._queue:
            self._queue.remove(name)
        if self.dialog is not None and self.dialog.device == name:
            self._close_current()
            self._next()
