"""The Logs panel's controls: follow, filters, search, time jump, copy/export/open, and the lines that talk back.

Only widgets and their layout live here; `log_view.LogView` connects them to the model.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from siteline.ui.panels import paint

TARGET = 36  # px: every control a gloved finger may have to hit
PRIORITY_CHOICES: tuple[tuple[str, int | None], ...] = (
    ("Everything", None), ("Debug and more serious", 7), ("Info and more serious", 6),
    ("Notice and more serious", 5), ("Warnings and errors", 4), ("Errors only", 3),
)
ALL_UNITS = "All units"
_BAD_FIELD = "QLineEdit { border: 2px solid #b22d28; background: #fbe3e2; color: #1b1f24; }"


def _button(text: str, tip: str, name: str, slot: Callable[[], None] | None = None) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    button.setMinimumHeight(TARGET)
    if slot is not None:
        button.clicked.connect(slot)
    return button


def _field(placeholder: str, name: str, tip: str, width: int) -> QLineEdit:
    field = QLineEdit()
    field.setObjectName(name)
    field.setPlaceholderText(placeholder)
    field.setToolTip(tip)
    field.setClearButtonEnabled(True)
    field.setMinimumHeight(TARGET)
    field.setMinimumWidth(width)
    return field


def mark_field(field: QLineEdit, bad: bool) -> None:
    """A field whose text cannot be used turns red (the message beside it says why in words)."""
    field.setStyleSheet(_BAD_FIELD if bad else "")
    field.setProperty("bad", bad)


class UnitCombo(QComboBox):
    """Editable unit filter: the known units are listed afresh each time the list opens."""

    def __init__(self, units: Callable[[], list[str]]) -> None:
        super().__init__()
        self._units = units
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.addItem(ALL_UNITS)
        edit = self.lineEdit()
        if edit is not None:
            edit.setPlaceholderText("Unit, e.g. sshd")
        self.setMinimumHeight(TARGET)
        self.setMinimumWidth(190)

    def showPopup(self) -> None:
        text = self.currentText()
        self.blockSignals(True)
        self.clear()
        self.addItem(ALL_UNITS)
        self.addItems(self._units())
        self.setEditText(text)
        self.blockSignals(False)
        super().showPopup()

    def wanted(self) -> str:
        text = self.currentText().strip()
        return "" if text == ALL_UNITS else text


class LogToolbar(QWidget):
    """Two rows of controls above the table, a paused banner and a message line under them."""

    def __init__(self, units: Callable[[], list[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.follow = _button("Following ✓", "Keep the newest line in view (switch off, or scroll up, to read)",
                              "logFollow")
        self.follow.setCheckable(True)
        self.follow.setChecked(True)
        self.priority = QComboBox()
        self.priority.setObjectName("logPriority")
        self.priority.setToolTip("Show only lines this serious or worse")
        self.priority.setMinimumHeight(TARGET)
        for text, value in PRIORITY_CHOICES:
            self.priority.addItem(text, value)
        self.unit = UnitCombo(units)
        self.unit.setObjectName("logUnit")
        self.unit.setToolTip("Show only these units or tags (several: separate with commas)")
        self.regex = _field("Filter (regex)", "logFilter", "Show only lines whose message matches this pattern", 200)
        self.search = _field("Find in messages", "logSearch", "Find text (F3 next, Shift+F3 previous)", 180)
        self.prev = _button("◀ Previous", "Previous match (Shift+F3)", "logPrev")
        self.next = _button("Next ▶", "Next match (F3)", "logNext")
        self.when = _field("Go to time (14:02)", "logWhen", "Jump to the first line at or after this time: "
                           "14:02, 14:02:30 or 2026-11-27 14:02", 150)
        self.go = _button("Go", "Jump to that time", "logGo")
        self.copy = _button("Copy", "Copy the selected lines as text (Ctrl+C)", "logCopy")
        self.export = _button("Export…", "Save the lines shown (after filters) to a text file", "logExport")
        self.open = _button("Open file…", "Open a log file from disk (journald JSON, syslog, logread, dmesg, text)",
                            "logOpen")
        first = QHBoxLayout()
        for widget in (self.follow, QLabel("Show:"), self.priority, self.unit, self.regex):
            first.addWidget(widget)
        first.setStretch(4, 1)
        second = QHBoxLayout()
        for widget in (self.search, self.prev, self.next, self.when, self.go, self.copy, self.export, self.open):
            second.addWidget(widget)
        second.setStretch(0, 1)
        self.paused = QWidget()
        self.paused.setObjectName("logPausedBar")
        self.paused_label = QLabel("")
        self.paused_label.setObjectName("logPaused")
        font = self.paused_label.font()
        font.setBold(True)
        self.paused_label.setFont(font)
        self.jump = _button("Jump to newest", "Go back to the newest line and follow again", "logJump")
        banner = QHBoxLayout(self.paused)
        banner.setContentsMargins(0, 0, 0, 0)
        banner.addWidget(self.paused_label, 1)
        banner.addWidget(self.jump)
        self.paused.hide()
        self.message = QLabel("")
        self.message.setObjectName("logMessage")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.hide()
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        for row in (first, second):
            column.addLayout(row)
        column.addWidget(self.paused)
        column.addWidget(self.message)

    def say(self, text: str, tone: str | None = None) -> None:
        """A one-line message under the controls ('' hides it); bad/warn messages carry a ⚠ as well as a colour."""
        if not text:
            self.message.hide()
            self.message.clear()
            return
        self.message.setText(f"⚠ {text}" if tone in ("bad", "warn") else text)
        paint(self.message, tone)
        self.message.show()

    def show_follow(self, following: bool, new_lines: int = 0) -> None:
        self.follow.blockSignals(True)
        self.follow.setChecked(following)
        self.follow.blockSignals(False)
        self.follow.setText("Following ✓" if following else "Follow")
        self.paused.setVisible(not following)
        noun = "line" if new_lines == 1 else "lines"
        self.paused_label.setText(f"Paused — {new_lines:,} new {noun}")
        paint(self.paused_label, "warn" if new_lines else None)
