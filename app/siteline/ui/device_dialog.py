"""Add or edit a device: name, site, target URL (checked as it is typed) and a serial login name."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError, TargetError
from siteline.core.inventory import DeviceEntry
from siteline.core.targets import Target, parse_target

EXAMPLES = "ssh://root@10.0.0.5:22   ·   serial:///dev/ttyUSB0?baud=115200   ·   mqtt://broker:1883/edge/site-a/gw1"


def check_target(text: str) -> tuple[Target | None, str]:
    """The parsed target and a one-line explanation for the person typing it."""
    try:
        target = parse_target(text)
    except TargetError as exc:
        return None, str(exc)
    kind = {"serial": "Serial console", "ssh": "SSH", "mqtt": "MQTT", "mqtts": "MQTT over TLS"}[target.scheme]
    where = target.device if target.is_serial else f"{target.host}:{target.effective_port}"
    return target, f"{kind} to {where}"


class DeviceDialog(QDialog):
    """``entry`` is the validated result after ``accepted``; ``original`` is the name being edited."""

    def __init__(
        self,
        sites: list[str],
        existing_names: set[str],
        entry: DeviceEntry | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit device" if entry else "Add device")
        self.setMinimumWidth(560)
        self.original = entry.name if entry else None
        self.entry: DeviceEntry | None = None
        self._existing = existing_names - ({entry.name} if entry else set())

        self.name = QLineEdit(entry.name if entry else "")
        self.name.setPlaceholderText("gw-01")
        self.site = QComboBox()
        self.site.setEditable(True)
        self.site.addItems(sorted(set(sites)) or ["Unsorted"])
        self.site.setCurrentText(entry.site if entry else (sites[0] if sites else "Unsorted"))
        self.target = QLineEdit(entry.target if entry else "")
        self.target.setPlaceholderText("ssh://root@10.0.0.5")
        self.username = QLineEdit(entry.username or "" if entry else "")
        self.username.setPlaceholderText("root")
        self.message = QLabel()
        self.message.setObjectName("validation")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("&Name:", self.name)
        form.addRow("&Site:", self.site)
        form.addRow("&Target URL:", self.target)
        examples = QLabel(EXAMPLES)
        examples.setWordWrap(True)
        examples.setEnabled(False)
        form.addRow("", examples)
        form.addRow("Serial &login:", self.username)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)

        for edit in (self.name, self.target, self.username):
            edit.textChanged.connect(self._on_input_changed)
        self.site.currentTextChanged.connect(self._on_input_changed)
        self._on_input_changed()

    @property
    def ok_button(self):
        return self.buttons.button(QDialogButtonBox.StandardButton.Ok)

    def problem(self) -> str | None:
        """Why the input cannot be saved yet, or None when it can."""
        name = self.name.text().strip()
        if not name:
            return "Give the device a name."
        if name in self._existing:
            return f"There is already a device called '{name}'. Pick another name."
        target, text = check_target(self.target.text())
        if target is None:
            return text
        try:
            self._build().validated()
        except SitelineError as exc:
            return str(exc)
        return None

    def _build(self) -> DeviceEntry:
        target, _ = check_target(self.target.text())
        username = self.username.text().strip() or None
        return DeviceEntry(
            name=self.name.text().strip(),
            target=self.target.text().strip(),
            site=self.site.currentText().strip() or "Unsorted",
            username=username if target is not None and target.is_serial else None,
        )

    def _on_input_changed(self, *_args: object) -> None:
        target, description = check_target(self.target.text())
        self.username.setEnabled(target is None or target.is_serial)
        problem = self.problem()
        self.ok_button.setEnabled(problem is None)
        if self.target.text().strip() == "" and problem is not None:
            self._show(problem if self.name.text().strip() else "Type a name and the device's target URL.", bad=False)
        elif problem is not None:
            self._show(problem, bad=True)
        else:
            self._show(f"✓ {description}", bad=False)

    def _show(self, text: str, bad: bool) -> None:
        self.message.setText(text)
        self.message.setProperty("valid", not bad)
        pal = self.message.palette()
        colour = QColor("#c0392b") if bad else self.palette().color(QPalette.ColorRole.WindowText)
        pal.setColor(QPalette.ColorRole.WindowText, colour)
        self.message.setPalette(pal)

    def accept(self) -> None:
        if self.problem() is not None:
            return
        self.entry = self._build().validated()
        super().accept()
