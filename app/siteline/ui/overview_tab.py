"""The Overview tab: who the device is (os-release, kernel, uptime) from its System snapshot."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from siteline.core.device.system import System

FIELDS = (
    ("hostname", "Host name"),
    ("os", "Operating system"),
    ("version", "Version"),
    ("build", "Build"),
    ("kernel", "Kernel"),
    ("machine", "Architecture"),
    ("uptime", "Uptime"),
    ("load", "Load (1/5/15 min)"),
)
UNKNOWN = "—"


def format_uptime(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return UNKNOWN
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


def system_fields(system: System) -> dict[str, str]:
    """What each row shows; pure so it can be tested without widgets."""
    os = system.os
    return {
        "hostname": system.hostname or UNKNOWN,
        "os": os.pretty_name or os.name or UNKNOWN,
        "version": os.version or os.version_id or UNKNOWN,
        "build": os.build_id or UNKNOWN,
        "kernel": system.kernel or UNKNOWN,
        "machine": system.machine or UNKNOWN,
        "uptime": format_uptime(system.uptime_seconds),
        "load": " / ".join(f"{v:.2f}" for v in system.load) if system.load else UNKNOWN,
    }


class OverviewTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.system: System | None = None
        self._status = QLabel("Waiting for the device to answer…")
        self._status.setWordWrap(True)
        self._values: dict[str, QLabel] = {}
        box = QGroupBox("Identity")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setVerticalSpacing(10)
        for key, label in FIELDS:
            value = QLabel(UNKNOWN)
            value.setObjectName(f"overview_{key}")
            value.setTextFormat(Qt.TextFormat.PlainText)  # the device's words, never markup
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            self._values[key] = value
            form.addRow(f"{label}:", value)
        self._problems = QLabel()
        self._problems.setObjectName("overviewProblems")
        self._problems.setTextFormat(Qt.TextFormat.PlainText)
        self._problems.setWordWrap(True)
        self._problems.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self._status)
        layout.addWidget(box)
        layout.addWidget(self._problems)
        layout.addStretch(1)

    def value(self, key: str) -> str:
        return self._values[key].text()

    @property
    def filled(self) -> bool:
        return self.system is not None

    def show_waiting(self, text: str) -> None:
        self._status.setText(text)
        self._status.show()

    def show_system(self, system: System) -> None:
        self.system = system
        for key, text in system_fields(system).items():
            self._values[key].setText(text)
        self._status.hide()
        if system.problems:
            self._problems.setText("Some facts could not be read: " + "; ".join(system.problems) + ".")
            self._problems.show()
        else:
            self._problems.hide()

    def clear(self) -> None:
        self.system = None
        for label in self._values.values():
            label.setText(UNKNOWN)
        self._problems.hide()
        self.show_waiting("Waiting for the device to answer…")
