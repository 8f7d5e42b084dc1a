"""Device panels (Modem, Network, Slots): plain widgets fed with typed snapshots, no I/O of their own.

This module holds what every panel shares: the colours of good/fair/bad that read on both palettes,
the "what could not be read" line, and the raw output one click away. The panels themselves live in
``modem_panel``, ``network_panel`` and ``slots_panel`` (imported from there, so this stays import-light).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontDatabase, QPalette
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from siteline.ui.theme import STATE_COLOURS

UNKNOWN = "—"

# Quality words -> the state colour that carries them (theme.STATE_COLOURS), so panels match the device tree.
_TONE_STATE = {"good": "up", "warn": "retrying", "bad": "down", "info": "connecting"}


def is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Window).lightness() < 128


def tone_colour(widget: QWidget, tone: str) -> QColor:
    """good / warn / bad / info as a text colour readable on the widget's palette; anything else: plain text."""
    scheme = "dark" if is_dark(widget) else "light"
    state = _TONE_STATE.get(tone)
    if state is None:
        return widget.palette().color(QPalette.ColorRole.WindowText)
    return QColor(STATE_COLOURS[scheme][state])


def paint(label: QLabel, tone: str | None) -> None:
    """Colour a label's text by tone (None: the palette's own text colour)."""
    pal = label.palette()
    parent = label.parentWidget() or label
    colour = tone_colour(label, tone) if tone else parent.palette().color(QPalette.ColorRole.WindowText)
    pal.setColor(QPalette.ColorRole.WindowText, colour)
    label.setPalette(pal)


def plain_label(text: str = "", name: str | None = None, selectable: bool = True) -> QLabel:
    """A label for the device's words: plain text (never markup), wrapped, selectable to copy into a ticket."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    if selectable:
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if name:
        label.setObjectName(name)
    return label


def fmt(value: float | int | None, unit: str, digits: int = 0) -> str:
    """A figure with its unit, or the dash when unknown (never 0: unknown is not zero)."""
    if value is None:
        return UNKNOWN
    return f"{value:.{digits}f} {unit}".replace("-", "\u2212")  # a real minus sign reads better than a hyphen


class ProblemsLabel(QLabel):
    """The snapshot's ``problems`` in words, in the warning colour; hidden when there are none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panelProblems")
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_problems(self, problems: tuple[str, ...] | list[str], lead: str = "Could not read everything") -> None:
        if not problems:
            self.clear()
            self.hide()
            return
        lines = [f"⚠ {lead}:"] + [f"  • {p}" for p in problems]
        self.setText("\n".join(lines))
        paint(self, "warn")
        self.show()

    def show_error(self, text: str) -> None:
        self.setText(f"⚠ {text}")
        paint(self, "bad")
        self.show()


class RawOutput(QWidget):
    """A "Show raw output" toggle over a read-only monospace view of what the device printed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QPushButton("Show raw output")
        self.toggle.setObjectName("rawToggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolTip("What the device printed, exactly as it came")
        self.toggle.toggled.connect(self._on_toggle_toggled)
        self.view = QPlainTextEdit()
        self.view.setObjectName("rawOutput")
        self.view.setReadOnly(True)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setMinimumHeight(120)
        self.view.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.view)

    def set_text(self, text: str) -> None:
        self.view.setPlainText(text or "(the device printed nothing)")

    def text(self) -> str:
        return self.view.toPlainText()

    def _on_toggle_toggled(self, shown: bool) -> None:
        self.view.setVisible(shown)
        self.toggle.setText("Hide raw output" if shown else "Show raw output")
