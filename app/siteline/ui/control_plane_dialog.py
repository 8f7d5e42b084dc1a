"""Point Siteline at the control plane: broker URL, technician id, TLS files, login, metered link and data budget.

The password never reaches the settings file: it goes to the vault entry ``control-plane/password`` and the
file keeps only that name (``password_ref``). Without an unlocked vault the password field stays shut, so a
password cannot end up anywhere else. "Test connection" tries a real MQTT connect off the UI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPalette, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError
from siteline.core.mqtt_client import VERSIONS as PROTOCOLS
from siteline.core.mqtt_client import MqttClient, TlsSettings
from siteline.core.outbox.envelope import default_technician, make_technician_id, technician_problem
from siteline.core.outbox.settings import ControlPlaneSettings, SettingsError, save_settings
from siteline.ui.device_dialog import bad_colour
from siteline.ui.note_dialog import ok_colour

if TYPE_CHECKING:
    from siteline.core.vault import Vault

log = logging.getLogger(__name__)

PASSWORD_ENTRY = "control-plane/password"
PLACEHOLDER_URL = "mqtts://broker.example.com:8883"
PLAIN_REASON = "Without TLS anyone on the network path can read the queue and the login."
VERSIONS = (("MQTT 5", "5"), ("MQTT 3.1.1", "3.1.1"))
HOLD_DEFAULT: float = next(f.default for f in dataclasses.fields(ControlPlaneSettings)
                          if f.name == "hold_low_priority_at")  # type: ignore[assignment]
MB = 1_000_000  # a data plan's megabyte is decimal
# Words in a SettingsError's message that tell which field it is about, when the error does not say.
_FIELD_WORDS = (("technician", ("technician",)),
                ("url", ("url", "broker", "mqtt://", "mqtts://", "port", "host", "unencrypted")),
                ("protocol", ("version", "protocol")),
                ("ca", ("ca ", "ca:", "authority")), ("key", ("key",)), ("cert", ("certificate",)),
                ("budget", ("budget",)), ("username", ("user",)))


async def try_connection(settings: ControlPlaneSettings, password: str | None, timeout: float) -> str:
    """Connect to the control plane's broker and leave again: what worked, in words, or a SitelineError.

    A throwaway clean-session client, not the sync loop's ControlLink: that one's client id is fixed per
    installation, and the broker would drop the running sync to let a second connection with it in.
    """
    tls = TlsSettings(settings.ca, settings.cert, settings.key) if settings.tls else None
    client = MqttClient(settings.host, settings.port, tls=tls, protocol=PROTOCOLS[settings.protocol],
                        username=settings.username, password=password, connect_timeout=timeout)
    try:
        await client.connect()
    finally:
        await client.close()
    how = "over TLS" if tls else "unencrypted"
    who = f" as {settings.username}" if settings.username else ""
    return f"Connected to {settings.host}:{settings.port} {how} with MQTT {settings.protocol}{who}: the broker " \
           "accepted us."


def _note(text: str = "", name: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    if name:
        label.setObjectName(name)
    return label


def _group(title: str, form: QFormLayout) -> QGroupBox:
    box = QGroupBox(title)
    box.setLayout(form)
    return box


def _paint(label: QLabel, bad: bool) -> None:
    colour = bad_colour(label) if bad else label.palette().color(QPalette.ColorRole.PlaceholderText)
    label.setStyleSheet(f"color: {colour.name()};")


def _first_run_technician() -> str:
    """The id the first-run guide kept (working offline there are no settings to hold it), else the OS user's."""
    from siteline.ui.first_run import saved_technician

    return saved_technician() or default_technician()


class FileField(QWidget):
    """A path and a "Browse…" button; ``problem()`` says why the file cannot be used (empty is fine)."""

    sig_path_changed = Signal()

    def __init__(self, what: str, name: str, placeholder: str = "(none)", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.edit = QLineEdit()
        self.edit.setObjectName(name)
        self.edit.setPlaceholderText(placeholder)
        self.edit.textChanged.connect(self._on_text_changed)
        self.browse = QPushButton("Browse…")
        self.browse.setAccessibleName(f"Choose the {what} file")
        self.browse.clicked.connect(self._on_browse_clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)

    def _on_text_changed(self, text: str) -> None:
        self.edit.setToolTip(text)  # a long path shows only its end in the field
        self.sig_path_changed.emit()

    def path(self) -> str | None:
        return self.edit.text().strip() or None

    def problem(self) -> str | None:
        text = self.path()
        if text is None:
            return None
        path = Path(text).expanduser()
        if not path.is_file():
            return f"The {self.what} file {path} does not exist. Choose it again with Browse…"
        if not os.access(path, os.R_OK):
            return f"The {self.what} file {path} cannot be read by you. Check its permissions."
        return None

    def _on_browse_clicked(self) -> None:
        start = str(Path(self.path() or "~").expanduser().parent) if self.path() else str(Path.home())
        chosen, _filter = QFileDialog.getOpenFileName(self, f"Choose the {self.what} file", start,
                                                      "PEM files (*.pem *.crt *.key *.cer);;All files (*)")
        if chosen:
            self.edit.setText(chosen)


class ControlPlaneDialog(QDialog):
    """Edit and save the control-plane settings. ``settings()`` is the saved result after ``accepted``;
    ``work_offline`` is True when the person chose to keep everything on this laptop (the file is untouched)."""

    sig_settings_saved = Signal(object)  # the ControlPlaneSettings just written

    def __init__(self, current: ControlPlaneSettings | None = None, *, vault: Vault | None = None,
                 path: Path | None = None, connect_timeout: float = 5.0, technician: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Control plane")
        self.setMinimumWidth(900)
        self._current = current
        self._vault = vault
        self._path = path
        self._timeout = connect_timeout
        self._saved: ControlPlaneSettings | None = None
        self._test_task: asyncio.Task[None] | None = None
        self.work_offline = False
        self.errors: dict[str, QLabel] = {}
        self._build(current)
        self._fill(current, technician)
        self._on_input_changed()

    # ---- layout --------------------------------------------------------------------------------

    def _build(self, current: ControlPlaneSettings | None) -> None:
        self.url = QLineEdit()
        self.url.setObjectName("cpUrl")
        self.url.setPlaceholderText(PLACEHOLDER_URL)
        self.allow_plain = QCheckBox("Allow unencrypted MQTT (only on a network you trust)")
        self.allow_plain.setObjectName("cpAllowPlain")
        self.technician = QLineEdit()
        self.technician.setObjectName("cpTechnician")
        self.protocol = QComboBox()
        self.protocol.setObjectName("cpProtocol")
        for label, value in VERSIONS:
            self.protocol.addItem(label, value)
        self.ca = FileField("CA certificate", "cpCa", "(the system's CAs)")
        self.cert = FileField("client certificate", "cpCert")
        self.key = FileField("client key", "cpKey")
        self.key.browse.setToolTip("The client certificate's key, as an unencrypted PEM file")
        self.username = QLineEdit()
        self.username.setObjectName("cpUsername")
        self.password = QLineEdit()
        self.password.setObjectName("cpPassword")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.metered = QCheckBox("Metered link (cellular data plan): batch and compress, probe every 30 s")
        self.metered.setObjectName("cpMetered")
        self.budget = QSpinBox()
        self.budget.setObjectName("cpBudget")
        self.budget.setRange(0, 10_000_000)
        self.budget.setSingleStep(100)
        self.budget.setSuffix(" MB a month")
        self.budget.setSpecialValueText("No budget")
        self.budget.setMinimumHeight(28)  # as tall as the line edits (the app's sheet sizes those only)
        self.test_button = QPushButton("&Test connection")
        self.test_button.setObjectName("cpTest")
        self.test_button.clicked.connect(self._on_test_clicked)
        self.test_result = _note(name="cpTestResult")
        self.test_result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message = _note(name="cpMessage")
        self._lay_out(current)
        for edit in (self.url, self.technician, self.username, self.password):
            edit.textChanged.connect(self._on_input_changed)
        for field in (self.ca, self.cert, self.key):
            field.sig_path_changed.connect(self._on_input_changed)
        self.allow_plain.toggled.connect(self._on_input_changed)
        self.metered.toggled.connect(self._on_input_changed)
        self.budget.valueChanged.connect(self._on_input_changed)
        self.protocol.currentIndexChanged.connect(self._on_input_changed)

    def _lay_out(self, current: ControlPlaneSettings | None) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(_note("Siteline keeps every result on this laptop and sends it to this MQTT broker "
                               "when it can be reached."))
        # The fields scroll on a short screen (1366x768 at 125 % leaves ~600 pixels); the buttons never do.
        self.fields_area = QScrollArea()
        self.fields_area.setWidgetResizable(True)
        self.fields_area.setFrameShape(QFrame.Shape.NoFrame)
        self.fields_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        fields = QWidget()
        fields.setLayout(self._groups(current))
        self.fields_area.setWidget(fields)
        layout.addWidget(self.fields_area, 1)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button, 0, Qt.AlignmentFlag.AlignTop)
        test_row.addWidget(self.test_result, 1)
        layout.addLayout(test_row)
        layout.addWidget(self.message)
        layout.addLayout(self._buttons())

    def _with_error(self, widget: QWidget, field: str, note: str = "") -> QWidget:
        """``widget`` with a line under it for its own error (and an optional fixed note)."""
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        column.addWidget(widget)
        if note:
            fixed = _note(note)
            _paint(fixed, bad=False)
            column.addWidget(fixed)
        error = _note(name=f"cpError_{field}")
        error.hide()
        self.errors[field] = error
        column.addWidget(error)
        return box

    def _groups(self, current: ControlPlaneSettings | None) -> QGridLayout:
        """Two columns, so the dialog fits a 768-pixel laptop screen with room for error lines."""
        broker = QFormLayout()
        broker.addRow("Broker &URL:", self._with_error(self.url, "url"))
        broker.addRow("", self._with_error(self.allow_plain, "allow_plain", PLAIN_REASON))
        broker.addRow("Tech&nician id:", self._with_error(
            self.technician, "technician", f"Names your topics: siteline/v1/<id>/…  Default: {default_technician()}"))
        broker.addRow("MQTT &version:", self._with_error(self.protocol, "protocol"))
        login = QFormLayout()
        login.addRow("User n&ame:", self._with_error(self.username, "username"))
        login.addRow("&Password:", self._with_error(self.password, "password"))
        login.addRow("&CA certificate:", self._with_error(self.ca, "ca"))
        login.addRow("Client c&ertificate:", self._with_error(self.cert, "cert"))
        login.addRow("Client &key:", self._with_error(self.key, "key"))
        data = QFormLayout()
        data.addRow("", self._with_error(self.metered, "metered"))
        hold = current.hold_low_priority_at if current is not None else HOLD_DEFAULT
        self.hold_note = f"Telemetry waits once {hold:.0%} of the budget is used; audit records and results are " \
                         "always sent."
        data.addRow("Data &budget:", self._with_error(self.budget, "budget", self.hold_note))
        grid = QGridLayout()
        for column, (title, form) in enumerate((("Broker", broker), ("Login and TLS", login))):
            grid.addWidget(_group(title, form), 0, column)
            grid.setColumnStretch(column, 1)
        grid.addWidget(_group("Data plan", data), 1, 0, 1, 2)
        return grid

    def _buttons(self) -> QHBoxLayout:
        """"Work offline" apart on the left, so it is never hit instead of Save."""
        self.buttons = QDialogButtonBox()
        self.save_button = self.buttons.addButton("&Save", QDialogButtonBox.ButtonRole.AcceptRole)
        self.save_button.setObjectName("cpSave")
        self.offline_button = QPushButton("Work &offline (no control plane)")
        self.offline_button.setObjectName("cpOffline")
        self.offline_button.setToolTip("Keep everything on this laptop; nothing is sent. You can set this up later.")
        self.offline_button.clicked.connect(self._on_offline_clicked)
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setObjectName("cpCancel")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.offline_button)
        row.addStretch(1)
        row.addWidget(self.buttons)
        return row

    def _fill(self, current: ControlPlaneSettings | None, technician: str | None = None) -> None:
        self.technician.setText(current.technician if current else technician or _first_run_technician())
        if current is None:
            return
        self.url.setText(current.url)
        self.allow_plain.setChecked(current.allow_plain)
        self.protocol.setCurrentIndex(max(0, self.protocol.findData(current.protocol)))
        self.ca.edit.setText(current.ca or "")
        self.cert.edit.setText(current.cert or "")
        self.key.edit.setText(current.key or "")
        self.username.setText(current.username or "")
        self.metered.setChecked(current.metered)
        if current.monthly_budget_bytes:
            self.budget.setValue(max(1, round(current.monthly_budget_bytes / MB)))

    # ---- the vault and the password field ------------------------------------------------------------

    @property
    def vault_unlocked(self) -> bool:
        return self._vault is not None and not self._vault.locked

    def _update_password_field(self) -> None:
        kept = self._current is not None and self._current.password_ref is not None
        if not self.vault_unlocked:
            self.password.setEnabled(False)
            self.password.clear()
            self.password.setPlaceholderText("unlock the vault to keep the password")
            why = ("The password is kept in the vault: unlock the vault to change it or to test the login." if kept
                   else "Unlock the vault to keep the password; it is never stored anywhere else.")
            self._set_error("password", why, bad=False)
            return
        self.password.setEnabled(True)
        self.password.setPlaceholderText("(kept in the vault — type to replace)" if kept else "(none)")
        self._set_error("password", None)

    # ---- validation ------------------------------------------------------------------------------

    def _set_error(self, field: str, text: str | None, bad: bool = True) -> None:
        label = self.errors[field]
        label.setText(text or "")
        label.setVisible(bool(text))
        _paint(label, bad)

    def _url_ok(self) -> bool:
        """False with the URL's problem shown, for what the settings module cannot know (the tick is below)."""
        text = self.url.text().strip()
        if not text:
            self._set_error("url", f"Type the broker's URL, for instance {PLACEHOLDER_URL}", bad=False)
            return False
        if text.lower().startswith("mqtt://") and not self.allow_plain.isChecked():
            self._set_error("url", "mqtt:// is unencrypted. Use mqtts://, or tick \"Allow unencrypted MQTT\" below "
                                   "if this network is yours.")
            return False
        self._set_error("url", None)
        return True

    def _technician_ok(self) -> bool:
        """Checked on its own, so it shows even while the URL is still wrong."""
        text = self.technician.text().strip()
        problem = technician_problem(text)
        if problem:
            self._set_error("technician", f"{problem[0].upper()}{problem[1:]}. For example: {make_technician_id(text)}")
        return problem is None

    def _username_ok(self) -> bool:
        """A typed password is never dropped silently for want of the user name it belongs to."""
        if self.password.isEnabled() and self.password.text() and not self.username.text().strip():
            self._set_error("username", "Type the user name this password belongs to.")
            return False
        return True

    def _password_ref(self) -> str | None:
        if self.password.isEnabled() and self.password.text():
            return PASSWORD_ENTRY
        return self._current.password_ref if self._current is not None else None

    def build(self) -> ControlPlaneSettings | None:
        """The settings in the form, or None with every problem shown next to its field."""
        for name in ("technician", "protocol", "ca", "cert", "key", "username", "budget", "allow_plain", "metered"):
            self._set_error(name, None)
        self._update_password_field()
        checks = [self._url_ok(), self._technician_ok(), self._username_ok()]  # every problem shown at once
        for name, field in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            problem = field.problem()
            if problem is not None:
                self._set_error(name, problem)
            checks.append(problem is None)
        if not all(checks):
            return None
        try:
            return self._construct()
        except SettingsError as exc:
            self._show_settings_error(exc)
            return None

    def _construct(self) -> ControlPlaneSettings:
        """Raises SettingsError: the settings module checks everything when the object is made."""
        current = self._current
        username = self.username.text().strip() or None
        cert, key = self.cert.path(), self.key.path()
        # Kept from the file though not shown here, unless what they belong to was removed.
        passphrase_ref = current.key_passphrase_ref if current is not None and (cert or key) else None
        return ControlPlaneSettings(
            url=self.url.text().strip(),
            technician=self.technician.text().strip(),
            allow_plain=self.allow_plain.isChecked(),
            ca=self.ca.path(), cert=cert, key=key,
            username=username,
            password_ref=self._password_ref() if username else None,
            key_passphrase_ref=passphrase_ref,
            metered=self.metered.isChecked(),
            monthly_budget_bytes=self._budget_bytes(),
            hold_low_priority_at=current.hold_low_priority_at if current is not None else HOLD_DEFAULT,
            protocol=str(self.protocol.currentData()),
        )

    def _budget_bytes(self) -> int | None:
        """The budget typed, in bytes; a budget from the file that the field shows rounded is kept exact."""
        original = self._current.monthly_budget_bytes if self._current is not None else None
        if original and self.budget.value() == max(1, round(original / MB)):
            return original
        return self.budget.value() * MB or None

    def _show_settings_error(self, exc: SettingsError) -> None:
        field = getattr(exc, "field", None)
        if field not in self.errors:
            lowered = exc.message.lower()
            field = next((name for name, words in _FIELD_WORDS if any(w in lowered for w in words)), None)
        if field in self.errors:
            self._set_error(field, str(exc))
        else:
            self._show_message(str(exc), bad=True)

    def _show_message(self, text: str, bad: bool) -> None:
        self.message.setText(text)
        _paint(self.message, bad) if bad else self.message.setStyleSheet("")

    def _on_input_changed(self, *_args: object) -> None:
        self._show_message("", bad=False)
        ok = self.build() is not None
        self.save_button.setEnabled(ok)
        self.test_button.setEnabled(ok and not self._testing)
        self._fit_height()

    def _fit_height(self) -> None:
        """Show every field without scrolling when the screen has room (also after error lines appear: Qt
        sizes a window once), else as much as fits: the scroll area holds the rest."""
        inner = self.fields_area.widget()
        fields = inner.layout() if inner is not None else None
        if fields is None or not self.isVisible():
            return
        want = fields.totalHeightForWidth(self.fields_area.viewport().width())
        screen = self.screen()
        others = self.height() - self.fields_area.height()
        room = screen.availableGeometry().height() - others - 60 if screen is not None else want
        self.fields_area.setMinimumHeight(max(160, min(want, room)))

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit_height()

    # ---- test connection -------------------------------------------------------------------------

    @property
    def _testing(self) -> bool:
        return self._test_task is not None and not self._test_task.done()

    def password_for_test(self) -> str | None:
        """The typed password, else the one already in the vault (if unlocked), else none."""
        if self.password.isEnabled() and self.password.text():
            return self.password.text()
        ref = self._password_ref()
        if ref is None or not self.vault_unlocked or self._vault is None:
            return None
        try:
            return self._vault.get(ref.removeprefix("vault:"))
        except (KeyError, SitelineError):
            return None

    def _on_test_clicked(self) -> None:
        settings = self.build()
        if settings is None or self._testing:
            return
        self.test_button.setEnabled(False)
        self.test_result.setText("Connecting…")
        _paint(self.test_result, bad=False)
        self._test_task = asyncio.ensure_future(self._run_test(settings, self.password_for_test()))

    async def _run_test(self, settings: ControlPlaneSettings, password: str | None) -> None:
        try:
            text = await try_connection(settings, password, self._timeout)
        except SitelineError as exc:
            self.test_result.setText(f"✗ {exc}")
            _paint(self.test_result, bad=True)
        except Exception as exc:
            log.exception("test connection failed")
            self.test_result.setText(f"✗ The test failed unexpectedly: {exc}")
            _paint(self.test_result, bad=True)
        else:
            self.test_result.setText(f"✓ {text}")
            self.test_result.setStyleSheet(f"color: {ok_colour(self).name()};")
        finally:
            self.test_button.setEnabled(self.save_button.isEnabled())
            self._fit_height()

    async def wait_for_test(self) -> None:
        """For callers and tests: until the running connection test has finished."""
        if self._test_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._test_task

    # ---- results ----------------------------------------------------------------------------------

    def settings(self) -> ControlPlaneSettings | None:
        """What was saved (after Save), else None (cancelled, or working offline)."""
        return self._saved

    def accept(self) -> None:
        settings = self.build()
        if settings is None:
            return
        try:
            if settings.password_ref == PASSWORD_ENTRY and self.password.isEnabled() and self.password.text():
                assert self._vault is not None  # the field is enabled only with an unlocked vault
                self._vault.put(PASSWORD_ENTRY, self.password.text(), kind="password",
                                note="MQTT password for the control plane")
            save_settings(settings, self._path)
        except SitelineError as exc:  # the vault locked meanwhile, a read-only disk...: say so, stay open
            self._show_message(f"Not saved: {exc}", bad=True)
            return
        except OSError as exc:
            self._show_message(f"Not saved: {exc}. Check the disk and try again.", bad=True)
            return
        self.password.clear()
        self._saved = settings
        self.sig_settings_saved.emit(settings)
        super().accept()

    def _on_offline_clicked(self) -> None:
        self.work_offline = True
        super().accept()

    def done(self, result: int) -> None:
        if self._testing and self._test_task is not None:
            self._test_task.cancel()  # the connect's own timeout ends it; nothing waits on the result
        super().done(result)

