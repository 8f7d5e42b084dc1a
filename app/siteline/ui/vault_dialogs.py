"""The vault in the GUI: create, unlock, change passphrase, export/import, and a window listing entries.

Entries are listed by name, kind and time only: no value ever reaches a Qt model or label. Key
derivation (Argon2id, about half a second) and every file write run in a worker thread through the
asyncio loop (qasync), so the window keeps painting; the dialog shows a busy bar meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError
from siteline.core.vault import KINDS, KdfCost, Vault, VaultError, WrongPassphrase, keyring_store
from siteline.core.vault.vault import MIN_PASSPHRASE
from siteline.ui.device_dialog import bad_colour
from siteline.ui.sync_status import default_state_colour

log = logging.getLogger(__name__)


class _FieldError(Exception):
    """A field the person must fix before anything runs: the text, and the field to focus."""

    def __init__(self, text: str, field: QWidget | None = None) -> None:
        super().__init__(text)
        self.field = field


def strength_hint(passphrase: str) -> tuple[str, str]:
    """A short hint and its tone ("bad", "fair", "good"): length matters most, variety a little."""
    n = len(passphrase)
    if n == 0:
        return f"At least {MIN_PASSPHRASE} characters; a few unrelated words are easy to type, hard to guess.", "fair"
    if n < MIN_PASSPHRASE:
        return f"Too short: {n} of at least {MIN_PASSPHRASE} characters.", "bad"
    classes = sum(any(test(c) for c in passphrase) for test in (str.islower, str.isupper, str.isdigit))
    classes += any(not c.isalnum() for c in passphrase)
    if n >= 16 or (n >= 12 and classes >= 3):
        return "Strong.", "good"
    if n >= 12 or classes >= 3:
        return "Fair: a longer passphrase is harder to guess.", "fair"
    return "Weak: add another word or two.", "bad"


def keyring_problem() -> str | None:
    """Why the OS keyring cannot hold the vault key here, or None when it can."""
    try:
        return keyring_store.keyring_problem()
    except Exception as exc:  # a broken keyring backend must not stop the dialog from opening
        return f"the keyring could not be asked: {type(exc).__name__}"


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def error_words(exc: BaseException) -> str:
    """"The passphrase is not right; the vault is unchanged. Check the passphrase (...) and try again."."""
    if isinstance(exc, SitelineError):
        return " ".join(p for p in (_sentence(exc.message), _sentence(exc.hint)) if p)
    return _sentence(str(exc))


def _secret_edit(name: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setObjectName(name)
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


def _plain_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class _WorkDialog(QDialog):
    """A form whose OK runs blocking vault work in a thread; errors stay in the dialog, which stays open."""

    sig_done = Signal(object)
    """The work finished; the argument is its result."""

    def __init__(self, title: str, ok_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setMinimumWidth(480)
        self.form = QFormLayout()
        self.error = _plain_label("vaultError")
        self.error.setStyleSheet(f"color: {bad_colour(self).name()};")
        self.error.hide()
        self.busy = QProgressBar()
        self.busy.setObjectName("vaultBusy")
        self.busy.setRange(0, 0)  # indeterminate: it moves while the key is derived
        self.busy.setTextVisible(False)
        self.busy.setToolTip("Deriving the key from the passphrase takes about a second on purpose: it slows guessing.")
        self.busy.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText(ok_text)
        self.buttons.accepted.connect(self._on_ok_clicked)
        self.buttons.rejected.connect(self.reject)
        self.intro = _plain_label("vaultIntro")
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(self.busy)
        layout.addWidget(self.buttons)
        self.task: asyncio.Future[Any] | None = None
        self.result_value: Any = None

    def job(self) -> Callable[[], Any]:
        """Check the fields (raise _FieldError) and return the blocking work, which must not touch widgets."""
        raise NotImplementedError

    def on_error(self, exc: VaultError) -> QWidget | None:
        """The field to clear and focus after ``exc`` (None: leave the fields)."""
        return None

    @property
    def working(self) -> bool:
        return self.task is not None and not self.task.done()

    def _on_ok_clicked(self) -> None:
        if self.working:
            return
        try:
            work = self.job()
        except _FieldError as bad:
            self.show_error(str(bad), bad.field)
            return
        self._set_busy(True)  # at once, not when the task first runs: no second click gets in
        self.task = asyncio.ensure_future(self._run(work))

    async def _run(self, work: Callable[[], Any]) -> None:
        self._set_busy(True)
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, work)
        except VaultError as exc:
            self._set_busy(False)
            self.show_error(error_words(exc), self.on_error(exc))
            return
        except OSError as exc:
            self._set_busy(False)
            self.show_error(f"{exc.strerror or exc}: {exc.filename or ''}. Check the path and the disk.")
            return
        self._set_busy(False)
        self.result_value = result
        self.sig_done.emit(result)
        self.accept()

    def _set_busy(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        self.ok_button.setEnabled(not busy)
        for edit in self.findChildren(QWidget):
            if isinstance(edit, QLineEdit | QCheckBox | QComboBox | QPushButton) and edit not in self.buttons.buttons():
                edit.setEnabled(not busy)
        if busy:
            self.error.hide()

    def show_error(self, text: str, field: QWidget | None = None) -> None:
        self.error.setText(text)
        self.error.show()
        if isinstance(field, QLineEdit):
            field.selectAll()
        if field is not None:
            field.setFocus()

    def reject(self) -> None:
        if not self.working:  # the thread would finish into a closed dialog; let it end first
            super().reject()


class _NewPassphraseFields:
    """Passphrase twice with a live strength hint (create, change, export)."""

    def add_new_passphrase(self, dialog: _WorkDialog, label: str) -> None:
        self.new_edit = _secret_edit("newPassphrase")
        self.repeat_edit = _secret_edit("repeatPassphrase")
        self.strength = _plain_label("passphraseStrength")
        self.new_edit.textChanged.connect(self._on_new_text_changed)
        dialog.form.addRow(label, self.new_edit)
        dialog.form.addRow("&Repeat it:", self.repeat_edit)
        dialog.form.addRow("", self.strength)
        self._on_new_text_changed("")

    def _on_new_text_changed(self, text: str) -> None:
        hint, tone = strength_hint(text)
        self.strength.setText(hint)
        self.strength.setProperty("tone", tone)
        colours = {"bad": bad_colour(self.strength).name(), "good": default_state_colour(self.strength)("up").name()}
        self.strength.setStyleSheet(f"color: {colours[tone]};" if tone in colours else "")

    def checked_new_passphrase(self) -> str:
        new = self.new_edit.text()
        if len(new) < MIN_PASSPHRASE:
            raise _FieldError(f"The passphrase needs at least {MIN_PASSPHRASE} characters.", self.new_edit)
        if new != self.repeat_edit.text():
            raise _FieldError("The two passphrases are not the same: type the second one again.", self.repeat_edit)
        return new


class CreateVaultDialog(_NewPassphraseFields, _WorkDialog):
    """A new vault at ``path``: a passphrase (twice), or the OS keyring when one works here."""

    def __init__(self, path: Path, parent: QWidget | None = None, *, cost: KdfCost | None = None,
                 keyring_available: bool | None = None) -> None:
        super().__init__("Create the vault", "&Create vault", parent)
        self.path, self._cost = path, cost
        self.intro.setText(f"The vault keeps device passwords and keys encrypted in {path}.\n"
                           "Nobody can recover a forgotten passphrase: write it down somewhere safe.")
        self.add_new_passphrase(self, "&Passphrase:")
        problem = keyring_problem() if keyring_available is None else (None if keyring_available else "not available")
        self.use_keyring = QCheckBox("Use the OS &keyring instead (no passphrase to type on this laptop)")
        self.use_keyring.setObjectName("useKeyring")
        self.use_keyring.setVisible(problem is None)
        self.use_keyring.toggled.connect(self._on_use_keyring_toggled)
        self.form.addRow("", self.use_keyring)
        self.vault: Vault | None = None
        self.new_edit.setFocus()

    def _on_use_keyring_toggled(self, on: bool) -> None:
        for edit in (self.new_edit, self.repeat_edit):
            edit.setEnabled(not on)

    def _set_busy(self, busy: bool) -> None:
        super()._set_busy(busy)
        if not busy:
            self._on_use_keyring_toggled(self.use_keyring.isChecked())

    def job(self) -> Callable[[], Vault]:
        path, cost = self.path, self._cost
        if self.use_keyring.isChecked():
            return lambda: Vault.create(path, use_keyring=True, cost=cost)
        passphrase = self.checked_new_passphrase()
        return lambda: Vault.create(path, passphrase, cost=cost)

    def accept(self) -> None:
        self.vault = self.result_value
        super().accept()


class UnlockDialog(_WorkDialog):
    """Passphrase; a wrong one says so in the dialog, which stays open with the field cleared and focused."""

    def __init__(self, vault: Vault, parent: QWidget | None = None) -> None:
        super().__init__("Unlock the vault", "&Unlock", parent)
        self.vault = vault
        self.intro.setText(f"Unlock {vault.path} to use its passwords and keys.")
        self.passphrase = _secret_edit("passphrase")
        self.form.addRow("&Passphrase:", self.passphrase)
        self.passphrase.setFocus()

    def job(self) -> Callable[[], None]:
        if not self.passphrase.text():
            raise _FieldError("Type the vault's passphrase.", self.passphrase)
        vault, passphrase = self.vault, self.passphrase.text()
        return lambda: vault.unlock(passphrase)

    def on_error(self, exc: VaultError) -> QWidget | None:
        return self.passphrase if isinstance(exc, WrongPassphrase) else None


class ChangePassphraseDialog(_NewPassphraseFields, _WorkDialog):
    def __init__(self, vault: Vault, parent: QWidget | None = None) -> None:
        super().__init__("Change the vault passphrase", "&Change", parent)
        self.vault = vault
        self.old_edit = _secret_edit("oldPassphrase")
        self.form.addRow("&Current passphrase:", self.old_edit)
        self.add_new_passphrase(self, "&New passphrase:")
        self.old_edit.setFocus()

    def job(self) -> Callable[[], None]:
        if not self.old_edit.text():
            raise _FieldError("Type the current passphrase.", self.old_edit)
        vault, old, new = self.vault, self.old_edit.text(), self.checked_new_passphrase()
        return lambda: vault.change_passphrase(old, new)

    def on_error(self, exc: VaultError) -> QWidget | None:
        return self.old_edit if isinstance(exc, WrongPassphrase) else None


class _FileField(QWidget):
    def __init__(self, save: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setObjectName("vaultFile")
        browse = QPushButton("&Browse…")
        browse.clicked.connect(lambda: self._on_browse_clicked(save))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def _on_browse_clicked(self, save: bool) -> None:
        pick = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        name, _ = pick(self, "Vault export file", self.edit.text() or str(Path.home()), "Vault export (*.siteline)")
        if name:
            self.edit.setText(name)

    def path(self) -> Path:
        text = self.edit.text().strip()
        if not text:
            raise _FieldError("Choose a file.", self.edit)
        return Path(text).expanduser()


class ExportDialog(_NewPassphraseFields, _WorkDialog):
    """Every entry, into a file under its own passphrase (tell the colleague that one, never the vault's)."""

    def __init__(self, vault: Vault, parent: QWidget | None = None, path: Path | None = None) -> None:
        super().__init__("Export the vault", "&Export", parent)
        self.vault = vault
        self.intro.setText("The export is encrypted under its own passphrase: give it to your colleague "
                           "by another way than the file (a call, not the same e-mail).")
        self.file = _FileField(save=True)
        self.file.edit.setText(str(path or Path.home() / "siteline-vault-export.siteline"))
        self.form.addRow("&File:", self.file)
        self.add_new_passphrase(self, "Export &passphrase:")

    def job(self) -> Callable[[], int]:
        vault, path, passphrase = self.vault, self.file.path(), self.checked_new_passphrase()
        return lambda: vault.export_to(path, passphrase)


class ImportDialog(_WorkDialog):
    def __init__(self, vault: Vault, parent: QWidget | None = None) -> None:
        super().__init__("Import a vault export", "&Import", parent)
        self.vault = vault
        self.file = _FileField(save=False)
        self.passphrase = _secret_edit("passphrase")
        self.overwrite = QCheckBox("&Replace entries I already have with the imported ones")
        self.overwrite.setObjectName("overwrite")
        self.form.addRow("&File:", self.file)
        self.form.addRow("Export &passphrase:", self.passphrase)
        self.form.addRow("", self.overwrite)

    def job(self) -> Callable[[], Any]:
        vault, path, passphrase = self.vault, self.file.path(), self.passphrase.text()
        if not passphrase:
            raise _FieldError("Type the export's passphrase.", self.passphrase)
        overwrite = self.overwrite.isChecked()
        return lambda: vault.import_from(path, passphrase, overwrite=overwrite)

    def on_error(self, exc: VaultError) -> QWidget | None:
        return self.passphrase if isinstance(exc, WrongPassphrase) else None


def import_summary_text(summary: Any) -> str:
    parts = [f"{len(summary.added)} added", f"{len(summary.replaced)} replaced", f"{len(summary.skipped)} kept"]
    text = "Imported: " + ", ".join(parts) + "."
    if summary.skipped:
        text += f"\nKept your own {', '.join(summary.skipped)} (tick Replace to take the imported ones)."
    return text


class AddEntryDialog(_WorkDialog):
    """Name, kind and a masked value; the value goes from the field to the vault and nowhere else."""

    def __init__(self, vault: Vault, parent: QWidget | None = None, name: str = "") -> None:
        super().__init__("Add a vault entry", "&Save", parent)
        self.vault = vault
        self.name_edit = QLineEdit(name)
        self.name_edit.setObjectName("entryName")
        self.name_edit.setPlaceholderText("device/<site>/<device>/password")
        self.kind = QComboBox()
        self.kind.setObjectName("entryKind")
        self.kind.addItems(KINDS)
        self.value_edit = _secret_edit("entryValue")
        self.note_edit = QLineEdit()
        self.note_edit.setObjectName("entryNote")
        self.note_edit.setPlaceholderText("optional, not secret (shown in the list)")
        for label, widget in (("&Name:", self.name_edit), ("&Kind:", self.kind), ("&Value:", self.value_edit),
                              ("N&ote:", self.note_edit)):
            self.form.addRow(label, widget)

    def job(self) -> Callable[[], None]:
        name, value = self.name_edit.text().strip(), self.value_edit.text()
        if not name:
            raise _FieldError("Give the entry a name, e.g. device/tower-7/gw-01/password.", self.name_edit)
        if not value:
            raise _FieldError("Type the value to keep.", self.value_edit)
        vault, kind, note = self.vault, self.kind.currentText(), self.note_edit.text()
        return lambda: vault.put(name, value, kind=kind, note=note)


