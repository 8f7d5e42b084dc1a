"""A technician's note about one device, typed on site (often in gloves) and kept on the laptop first.

The dialog knows nothing about the outbox: the caller passes ``save(text)``, which writes the note
(an outbox item of kind "note" plus its audit record) and raises a SitelineError when it cannot. A note
that could not be saved stays in the box, so nothing typed is ever lost to an error.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from siteline.core.errors import SitelineError
from siteline.ui.device_dialog import bad_colour
from siteline.ui.theme import STATE_COLOURS

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 20_000
SAVED_TEXT = "Saved on this laptop; it will be sent when the control plane is reachable."
# Gloved fingers and sunlight: larger than the app's body text, buttons a thumb can hit.
TEXT_POINT_SIZE = 14
BUTTON_STYLE = "QPushButton { min-height: 44px; min-width: 120px; font-size: 13pt; padding: 4px 20px; }"


def ok_colour(widget: QWidget) -> QColor:
    """The theme's green for "done", readable on the light and the dark palette."""
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return QColor(STATE_COLOURS["dark" if dark else "light"]["up"])


class NoteDialog(QDialog):
    """Write a note for ``device`` at ``site``; ``saved_text`` is what was saved (None until then)."""

    sig_note_saved = Signal(str)

    def __init__(self, site: str, device: str, save: Callable[[str], None], *, limit: int = MAX_NOTE_CHARS,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Note for {device}")
        self.setMinimumSize(640, 460)
        self.site, self.device, self.limit = site, device, limit
        self._save = save
        self.saved_text: str | None = None
        self._discard_armed = False  # a typed note is dropped only on a second Cancel/Escape

        heading = QLabel(f"Note for <b>{html.escape(device)}</b> at <b>{html.escape(site)}</b>")
        heading.setObjectName("noteHeading")
        heading.setTextFormat(Qt.TextFormat.RichText)
        font = heading.font()
        font.setPointSize(TEXT_POINT_SIZE + 2)
        heading.setFont(font)
        self.text = QPlainTextEdit()
        self.text.setObjectName("noteText")
        self.text.setPlaceholderText("What you found, what you did, what is left to do…")
        self.text.setTabChangesFocus(True)  # Tab reaches the buttons; a note needs no tab characters
        body = QFont(self.text.font())
        body.setPointSize(TEXT_POINT_SIZE)
        self.text.setFont(body)
        self.counter = QLabel()
        self.counter.setObjectName("noteCounter")
        self.counter.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.status = QLabel()
        self.status.setObjectName("noteStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        status_font = self.status.font()
        status_font.setPointSize(TEXT_POINT_SIZE - 2)
        self.status.setFont(status_font)

        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.counter)
        layout.addWidget(self.status)
        layout.addLayout(self._button_row())
        self.text.textChanged.connect(self._on_text_changed)
        self.text.setFocus()
        self._on_text_changed()

    def _button_row(self) -> QHBoxLayout:
        self.save_button = QPushButton("&Save note")
        self.save_button.setObjectName("noteSave")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self._on_save_clicked)
        self.save_button.setToolTip("Save the note (Ctrl+Enter)")
        for keys in ("Ctrl+Return", "Ctrl+Enter"):  # Enter alone starts a new line
            QShortcut(QKeySequence(keys), self, self._on_save_clicked)
        self.close_button = QPushButton("Cancel")
        self.close_button.setObjectName("noteClose")
        self.close_button.clicked.connect(self._on_close_clicked)
        row = QHBoxLayout()
        row.addStretch(1)
        for button in (self.close_button, self.save_button):
            button.setStyleSheet(BUTTON_STYLE)
            row.addWidget(button)
        return row

    def note(self) -> str:
        return self.text.toPlainText()

    def problem(self) -> str | None:
        """Why the note cannot be saved as it is, or None."""
        text = self.note()
        if not text.strip():
            return "Type the note first."
        if len(text) > self.limit:
            return f"The note is {len(text) - self.limit:,} characters too long. Shorten it, or save it in parts."
        return None

    def _on_text_changed(self) -> None:
        self._discard_armed = False
        count = len(self.note())
        self.counter.setText(f"{count:,} / {self.limit:,} characters")
        over = count > self.limit
        self._paint(self.counter, bad=over)
        self.save_button.setEnabled(self.saved_text is None and self.problem() is None)
        if over:
            self._show(self.problem() or "", bad=True)
        elif self.saved_text is None:
            self._show("", bad=False)

    def _on_save_clicked(self) -> None:
        if self.saved_text is not None or self.problem() is not None:
            return
        text = self.note()
        self.save_button.setEnabled(False)  # one click, one note
        try:
            self._save(text)
        except SitelineError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:  # a bug in the caller must not cost the technician the note
            log.exception("saving a note for %s failed", self.device)
            self._failed(f"{exc}")
            return
        self.saved_text = text
        self.text.setReadOnly(True)
        self.save_button.hide()  # a greyed "Save" next to "Close" makes people wonder whether it worked
        self.close_button.setText("&Close")
        self.close_button.setDefault(True)
        self.close_button.setFocus()
        self._show(f"✓ {SAVED_TEXT}", bad=False)
        self.status.setStyleSheet(f"color: {ok_colour(self).name()}; font-weight: 600;")
        self.sig_note_saved.emit(text)

    def _failed(self, why: str) -> None:
        self._show(f"Not saved: {why}\nYour text is still here; nothing was lost.", bad=True)
        self.save_button.setEnabled(True)

    def _on_close_clicked(self) -> None:
        if self.saved_text is not None:
            self.accept()
        else:
            self.reject()

    def reject(self) -> None:
        unsaved = self.saved_text is None and bool(self.note().strip())
        if unsaved and not self._discard_armed:
            self._discard_armed = True
            self._show("The note is not saved. Press Cancel again to throw it away, or Save note to keep it.",
                       bad=True)
            return
        super().reject()

    def _show(self, text: str, bad: bool) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))
        self._paint(self.status, bad)

    def _paint(self, label: QLabel, bad: bool) -> None:
        colour = bad_colour(self) if bad else self.palette().color(QPalette.ColorRole.WindowText)
        label.setStyleSheet(f"color: {colour.name()};")
