"""A terminal view: renders a pyte screen, turns key presses into the bytes a terminal sends.

The widget knows nothing about transports: output bytes come in through :meth:`feed`, keystrokes
leave as ``sig_input(bytes)`` and a new window size as ``sig_resized(cols, rows)``. Output is parsed
in bounded slices on a ~60 fps timer so a flood (``cat`` of a big log) never stalls the UI loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyte
from PySide6.QtCore import QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QFontMetrics,
    QGuiApplication,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

FRAME_MS = 16  # at most ~60 repaints a second
SLICE_BYTES = 32768  # parsed per frame; pyte is pure Python, so big floods are spread over frames
HISTORY_LINES = 5000
DECCKM = 1 << 5  # pyte stores private mode 1 (application cursor keys) shifted by 5

# xterm's 16 colours, blue lifted to read on a dark background. pyte names the 16 ANSI colours
# ("brown" is yellow) and gives 256-colour / true-colour cells as six hex digits.
ANSI = {
    "black": "#000000", "red": "#cd0000", "green": "#00cd00", "brown": "#cdcd00",
    "blue": "#3b78ff", "magenta": "#cd00cd", "cyan": "#00cdcd", "white": "#e5e5e5",
    "brightblack": "#7f7f7f", "brightred": "#ff0000", "brightgreen": "#00ff00", "brightbrown": "#ffff00",
    "brightblue": "#7aa2ff", "brightmagenta": "#ff00ff", "brightcyan": "#00ffff", "brightwhite": "#ffffff",
}  # fmt: skip
DEFAULT_FG = QColor("#d0d0d0")
DEFAULT_BG = QColor("#1e1e1e")

SPECIAL_KEYS: dict[int, bytes] = {
    Qt.Key.Key_Return: b"\r", Qt.Key.Key_Enter: b"\r", Qt.Key.Key_Backspace: b"\x7f",
    Qt.Key.Key_Tab: b"\t", Qt.Key.Key_Backtab: b"\x1b[Z", Qt.Key.Key_Escape: b"\x1b",
    Qt.Key.Key_Home: b"\x1b[H", Qt.Key.Key_End: b"\x1b[F", Qt.Key.Key_PageUp: b"\x1b[5~",
    Qt.Key.Key_PageDown: b"\x1b[6~", Qt.Key.Key_Insert: b"\x1b[2~", Qt.Key.Key_Delete: b"\x1b[3~",
    Qt.Key.Key_F1: b"\x1bOP", Qt.Key.Key_F2: b"\x1bOQ", Qt.Key.Key_F3: b"\x1bOR", Qt.Key.Key_F4: b"\x1bOS",
}  # fmt: skip
ARROWS = {Qt.Key.Key_Up: b"A", Qt.Key.Key_Down: b"B", Qt.Key.Key_Right: b"C", Qt.Key.Key_Left: b"D"}


def colour(name: str, default: QColor) -> QColor:
    if name == "default":
        return default
    if name in ANSI:
        return QColor(ANSI[name])
    if len(name) == 6:
        parsed = QColor(f"#{name}")
        if parsed.isValid():
            return parsed
    return default


def key_bytes(event: QKeyEvent, app_cursor: bool) -> bytes:
    """What an xterm sends for this key press; empty for keys a terminal ignores."""
    key = event.key()
    mods = event.modifiers()
    if key in ARROWS:
        return (b"\x1bO" if app_cursor else b"\x1b[") + ARROWS[Qt.Key(key)]
    if key in SPECIAL_KEYS:
        return SPECIAL_KEYS[Qt.Key(key)]
    ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
    if ctrl and Qt.Key.Key_A <= key <= Qt.Key.Key_Z:
        return bytes([key - Qt.Key.Key_A + 1])  # Ctrl-A is 0x01 ... Ctrl-Z is 0x1a; Ctrl-C is 0x03
    if ctrl and key in (Qt.Key.Key_BracketLeft, Qt.Key.Key_Backslash, Qt.Key.Key_BracketRight):
        return bytes([key - Qt.Key.Key_BracketLeft + 0x1B])
    text = event.text()
    if not text:
        return b""
    data = text.encode("utf-8")
    return b"\x1b" + data if mods & Qt.KeyboardModifier.AltModifier else data


class TerminalWidget(QWidget):
    sig_input = Signal(bytes)
    sig_resized = Signal(int, int)  # cols, rows

    def __init__(self, cols: int = 80, rows: int = 24, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.vt = pyte.HistoryScreen(cols, rows, history=HISTORY_LINES)
        self._stream = pyte.ByteStream(self.vt)
        self._pending = bytearray()
        self._scroll = 0  # lines scrolled back into the history
        self._sel: tuple[QPoint, QPoint] | None = None  # (start, end) in cells, on the visible lines
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._on_frame)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 100)

    # -- output --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue output from the device; parsed and painted on the next frame."""
        self._pending += data
        if not self._timer.isActive():
            self._timer.start()

    def _on_frame(self) -> None:
        chunk = bytes(self._pending[:SLICE_BYTES])
        del self._pending[:SLICE_BYTES]
        self._stream.feed(chunk)
        self._scroll = 0  # new output brings the view back to the bottom, as terminals do
        self.update()
        if self._pending:
            self._timer.start()

    def flush(self) -> None:
        """Parse everything queued now (tests, and before copying)."""
        while self._pending:
            self._on_frame()

    def display_lines(self) -> list[str]:
        """The visible text, one string per row (what a person sees, scrollback included)."""
        return ["".join(line[x].data for x in range(self.vt.columns)) for line in self._visible_rows()]

    def _visible_rows(self) -> Sequence[Mapping[int, pyte.screens.Char]]:
        rows = self.vt.lines
        buffer = [self.vt.buffer[y] for y in range(rows)]
        if not self._scroll:
            return buffer
        history = list(self.vt.history.top)[-self._scroll :]
        return (history + buffer)[:rows]

    # -- geometry ------------------------------------------------------------------------------

    def cell_size(self) -> tuple[int, int]:
        metrics = QFontMetrics(self.font())
        return max(1, metrics.horizontalAdvance("M")), max(1, metrics.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        cw, ch = self.cell_size()
        cols, rows = max(2, self.width() // cw), max(1, self.height() // ch)
        if (cols, rows) != (self.vt.columns, self.vt.lines):
            self.vt.resize(rows, cols)
            self.sig_resized.emit(cols, rows)
        super().resizeEvent(event)

    # -- painting ------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), DEFAULT_BG)
        cw, ch = self.cell_size()
        ascent = QFontMetrics(self.font()).ascent()
        bold = QFont(self.font())
        bold.setBold(True)
        for y, line in enumerate(self._visible_rows()):
            self._paint_row(painter, line, y, (cw, ch, ascent), bold)
        cursor = self.vt.cursor
        if not self._scroll and not cursor.hidden and self.vt.cursor.y < self.vt.lines:
            painter.setPen(QColor("#f0f0f0"))
            painter.setCompositionMode(QPainter.CompositionMode.RasterOp_SourceXorDestination)
            painter.fillRect(QRect(cursor.x * cw, cursor.y * ch, cw, ch), QColor("#e0e0e0"))
        painter.end()

    def _paint_row(
        self, painter: QPainter, line: Mapping[int, pyte.screens.Char], y: int, geom: tuple[int, int, int], bold: QFont
    ) -> None:
        cw, ch, ascent = geom
        x = 0
        cols = self.vt.columns
        while x < cols:
            first = line[x]
            start = x
            text = []
            # Group a run of cells with the same look: one drawText per run instead of per cell.
            while x < cols and _style(line[x]) == _style(first) and self._selected(x, y) == self._selected(start, y):
                text.append(line[x].data or " ")
                x += 1
            fg, bg = colour(first.fg, DEFAULT_FG), colour(first.bg, DEFAULT_BG)
            if first.reverse != self._selected(start, y):
                fg, bg = bg, fg
            if bg != DEFAULT_BG:
                painter.fillRect(QRect(start * cw, y * ch, (x - start) * cw, ch), bg)
            run = "".join(text)
            if run.strip():
                painter.setFont(bold if first.bold else self.font())
                painter.setPen(fg)
                for i, char in enumerate(run):  # per char on the cell grid, so wide glyphs never drift
                    if char != " ":
                        painter.drawText((start + i) * cw, y * ch + ascent, char)

    # -- input ---------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        mods = event.modifiers()
        ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
        if (mods & ctrl_shift) == ctrl_shift and event.key() == Qt.Key.Key_C:
            self.copy()
            return
        if (mods & ctrl_shift) == ctrl_shift and event.key() == Qt.Key.Key_V:
            self.paste()
            return
        if mods & Qt.KeyboardModifier.ShiftModifier and event.key() in (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown):
            step = self.vt.lines // 2
            self.scroll_by(step if event.key() == Qt.Key.Key_PageUp else -step)
            return
        data = key_bytes(event, DECCKM in self.vt.mode)
        if data:
            self._scroll = 0
            self.sig_input.emit(data)
        else:
            super().keyPressEvent(event)

    def focusNextPrevChild(self, _next: bool) -> bool:
        return False  # Tab belongs to the shell (completion), not to Qt's focus chain

    def scroll_by(self, lines: int) -> None:
        self._scroll = max(0, min(len(self.vt.history.top), self._scroll + lines))
        self.update()

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.scroll_by(event.angleDelta().y() // 40)  # 120 per notch: three lines, as terminals do

    def _cell_at(self, pos: QPoint) -> QPoint:
        cw, ch = self.cell_size()
        return QPoint(min(self.vt.columns - 1, max(0, pos.x() // cw)), min(self.vt.lines - 1, pos.y() // ch))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        cell = self._cell_at(event.position().toPoint())
        self._sel = (cell, cell) if event.button() == Qt.MouseButton.LeftButton else self._sel
        self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._sel is not None:
            self._sel = (self._sel[0], self._cell_at(event.position().toPoint()))
            self.update()

    def _ordered_selection(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        if self._sel is None or self._sel[0] == self._sel[1]:
            return None
        a, b = sorted((p.y(), p.x()) for p in self._sel)
        return a, b

    def _selected(self, x: int, y: int) -> bool:
        span = self._ordered_selection()
        return span is not None and span[0] <= (y, x) <= span[1]

    def selected_text(self) -> str:
        span = self._ordered_selection()
        lines = self.display_lines()
        if span is None:
            return ""
        (y0, x0), (y1, x1) = span
        out = []
        for y in range(y0, y1 + 1):
            text = lines[y][(x0 if y == y0 else 0) : (x1 + 1 if y == y1 else None)]
            out.append(text.rstrip())
        return "\n".join(out)

    def copy(self) -> None:
        """Copy the selection, or the whole visible screen when nothing is selected."""
        text = self.selected_text() or "\n".join(line.rstrip() for line in self.display_lines()).rstrip("\n")
        QGuiApplication.clipboard().setText(text)

    def paste(self) -> None:
        text = QGuiApplication.clipboard().text()
        if text:
            self.sig_input.emit(text.replace("\r\n", "\r").replace("\n", "\r").encode("utf-8"))


def _style(char: pyte.screens.Char) -> tuple[str, str, bool, bool]:
    return char.fg, char.bg, char.bold, char.reverse
