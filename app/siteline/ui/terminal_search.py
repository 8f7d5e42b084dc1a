"""Search in the console's scrollback: the matching (plain functions) and the find bar (a small widget).

Matches carry *absolute* line numbers (see TerminalScreen.first_line), so they stay put while new
output scrolls the screen and old lines fall out of the bounded history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QCheckBox, QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

MAX_MATCHES = 10_000  # a one-letter search in a full scrollback: enough to step through, bounded to paint


@dataclass(frozen=True, order=True)
class Match:
    line: int  # absolute line number
    start: int  # column of the first character
    length: int


def find_matches(lines: Iterable[tuple[int, str]], query: str, case_sensitive: bool = False) -> list[Match]:
    """Every non-overlapping occurrence of ``query`` in ``lines`` ((absolute number, text) pairs), in order."""
    if not query:
        return []
    needle = query if case_sensitive else query.casefold()
    found: list[Match] = []
    for number, text in lines:
        hay = text if case_sensitive else text.casefold()
        if len(hay) != len(text):  # casefold changed the length (ß -> ss): columns would drift
            hay = text.lower()
            needle_here = query.lower()
        else:
            needle_here = needle
        at = hay.find(needle_here)
        while at >= 0:
            found.append(Match(number, at, len(needle_here)))
            if len(found) >= MAX_MATCHES:
                return found
            at = hay.find(needle_here, at + max(1, len(needle_here)))
    return found


def next_index(matches: list[Match], current: int | None, forward: bool) -> int | None:
    """The match to go to from ``current``; wraps around. Searching backwards starts from the newest."""
    if not matches:
        return None
    if current is None:
        return 0 if forward else len(matches) - 1
    return (current + (1 if forward else -1)) % len(matches)


class FindBar(QWidget):
    """Text field, previous/next, match count, case toggle; Esc closes."""

    sig_query_changed = Signal()  # text or case changed: search again
    sig_step_requested = Signal(bool)  # True for next (older to newer), False for previous
    sig_closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.field = QLineEdit()
        self.field.setPlaceholderText("Find in scrollback")
        self.field.setClearButtonEnabled(True)
        self.field.textChanged.connect(self.sig_query_changed)
        self.field.returnPressed.connect(self._on_field_return)
        self.prev_button = _button("▲", "Previous match (Shift+Enter)", lambda: self.sig_step_requested.emit(False))
        self.next_button = _button("▼", "Next match (Enter)", lambda: self.sig_step_requested.emit(True))
        self.case = QCheckBox("Match &case")
        self.case.toggled.connect(self.sig_query_changed)
        self.count = QLabel("")
        self.count.setMinimumWidth(110)
        close = _button("✕", "Close (Esc)", self.close_bar)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for widget in (QLabel("Find:"), self.field, self.prev_button, self.next_button, self.case, self.count, close):
            row.addWidget(widget)
        row.addStretch(1)
        self.hide()

    @property
    def query(self) -> str:
        return self.field.text()

    @property
    def case_sensitive(self) -> bool:
        return self.case.isChecked()

    def open_bar(self, text: str = "") -> None:
        if text:
            self.field.setText(text)
        self.show()
        self.field.setFocus()
        self.field.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.sig_closed.emit()

    def show_count(self, current: int | None, total: int) -> None:
        if not self.query:
            self.count.setText("")
        elif total == 0:
            self.count.setText("No matches")
        elif total >= MAX_MATCHES:
            self.count.setText(f"{(current or 0) + 1} of {MAX_MATCHES}+")
        else:
            self.count.setText(f"{(current or 0) + 1} of {total}" if current is not None else f"{total} matches")

    def _on_field_return(self) -> None:
        shift = bool(QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier)
        self.sig_step_requested.emit(not shift)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close_bar()
            return
        super().keyPressEvent(event)


def _button(text: str, tip: str, slot: object) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    button.setAutoRaise(True)
    button.clicked.connect(slot)
    return button
