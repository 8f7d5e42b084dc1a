"""A terminal view: paints a TerminalScreen (pyte), turns key presses into the bytes an xterm sends.

The widget knows nothing about transports: output bytes come in through :meth:`feed`, keystrokes
leave as ``sig_input(bytes)`` and a new window size as ``sig_resized(cols, rows)``. Output is parsed
on a frame timer within a time budget, so a flood (``cat`` of a big log, ``yes``) never stalls the
UI loop: one repaint per frame at most, and a backlog pyte cannot catch up with is skipped (and
said so on screen) rather than queued for minutes.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QPoint, QRect, Qt, QTimer, Signal
from PySide6.QtGui import (
    QClipboard,
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

from siteline.ui.terminal_keys import key_bytes, paste_bytes
from siteline.ui.terminal_paint import DEFAULT_BG, fit_to_grid, paint_row
from siteline.ui.terminal_screen import (
    HISTORY_LINES,
    Line,
    TerminalScreen,
    TerminalStream,
    cell_columns,
    line_text,
    word_span,
)
from siteline.ui.terminal_search import Match, find_matches, next_index

FRAME_MS = 16  # at most ~60 repaints a second
PARSE_BUDGET = 0.008  # seconds of parsing per frame: the rest of the frame belongs to the UI loop
SLICE_BYTES = 512  # pyte needs ~25 us per short line: 512 bytes stay within a few ms even for `yes`
MAX_BACKLOG = 512 * 1024  # more unparsed output than pyte handles in ~2 s: skip the middle of it
KEEP_BACKLOG = 64 * 1024
SEARCH_REFRESH_MS = 250  # while output arrives, matches are recomputed at most this often

Cell = tuple[int, int]  # (absolute line, column)


class TerminalWidget(QWidget):
    sig_input = Signal(bytes)
    sig_resized = Signal(int, int)  # cols, rows
    sig_find_requested = Signal()  # Ctrl+Shift+F
    sig_search_updated = Signal()  # matches or the current match changed

    def __init__(self, cols: int = 80, rows: int = 24, parent: QWidget | None = None,
                 history: int = HISTORY_LINES) -> None:
        super().__init__(parent)
        self.vt = TerminalScreen(cols, rows, history=history)
        self._stream = TerminalStream(self.vt)
        self._pending = bytearray()
        self.skipped_bytes = 0  # output dropped unparsed because it came faster than it can be drawn
        self._scroll = 0  # lines scrolled back into the history
        self._sel: tuple[Cell, Cell] | None = None
        self._text_cache: dict[int, str] = {}  # history lines never change: their text is kept
        self.matches: list[Match] = []
        self.current_match: int | None = None
        self._query, self._case = "", False
        self._search_timer = QTimer(self)  # output is searched again at most every SEARCH_REFRESH_MS, and at the end
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_REFRESH_MS)
        self._search_timer.timeout.connect(self._search_again)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(FRAME_MS)
        self._timer.timeout.connect(self._on_frame)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(fit_to_grid(font))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setAttribute(Qt.WidgetAttribute.WA_InputMethodEnabled)
        self.setMinimumSize(200, 100)

    # -- output --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue output from the device; parsed and painted on the next frame."""
        self._pending += data
        if len(self._pending) > MAX_BACKLOG:
            self._skip_backlog()
        if not self._timer.isActive():
            self._timer.start()

    def _skip_backlog(self) -> None:
        cut = len(self._pending) - KEEP_BACKLOG
        newline = self._pending.find(b"\n", cut)
        cut = newline + 1 if newline >= 0 else cut
        self.skipped_bytes += cut
        del self._pending[:cut]
        note = f"\r\n\x1b[0;7m[… {cut / 1e6:.1f} MB of output skipped to keep up …]\x1b[0m\r\n".encode()
        self._pending[:0] = note

    def _on_frame(self) -> None:
        self._parse(PARSE_BUDGET)
        if self._query and not self._search_timer.isActive():
            self._search_timer.start()
        self.update()
        if self._pending:
            self._timer.start()

    def _parse(self, budget: float | None) -> None:
        pushed_before = self.vt.pushed
        deadline = None if budget is None else time.monotonic() + budget
        while self._pending and (deadline is None or time.monotonic() < deadline):
            chunk = bytes(self._pending[:SLICE_BYTES])
            del self._pending[:SLICE_BYTES]
            self._stream.feed_bytes(chunk)
        if self._scroll:  # scrolled back: stay on the same lines while new output arrives
            self._scroll = min(len(self.vt.history), self._scroll + self.vt.pushed - pushed_before)
        first = self.vt.first_line
        if self._text_cache and min(self._text_cache) < first:
            self._text_cache = {n: t for n, t in self._text_cache.items() if n >= first}

    def flush(self) -> None:
        """Parse everything queued now (tests, and before copying)."""
        self._parse(None)
        if self._query:
            self._search_again()
        self.update()

    # -- what is shown -------------------------------------------------------------------------

    @property
    def top_line(self) -> int:
        """Absolute number of the line in the view's first row."""
        return self.vt.pushed - self._scroll

    def line_at(self, number: int) -> Line:
        if number >= self.vt.pushed:
            return self.vt.buffer[number - self.vt.pushed]
        return self.vt.history[number - self.vt.first_line]

    def text_of(self, number: int) -> str:
        if number >= self.vt.pushed:
            return line_text(self.vt.buffer[number - self.vt.pushed], self.vt.columns)
        cached = self._text_cache.get(number)
        if cached is None:
            cached = self._text_cache[number] = line_text(self.line_at(number), self.vt.columns)
        return cached

    def display_lines(self) -> list[str]:
        """The visible text, one string per row, padded to the width (scrollback included)."""
        cols = self.vt.columns
        return ["".join(line[x].data for x in range(cols)) for _, line in self._visible_rows()]

    def _visible_rows(self) -> list[tuple[int, Line]]:
        top = self.top_line
        return [(n, self.line_at(n)) for n in range(top, top + self.vt.lines)]

    def scroll_by(self, lines: int) -> None:
        self._scroll = max(0, min(len(self.vt.history), self._scroll + lines))
        self.update()

    # -- search --------------------------------------------------------------------------------

    def search(self, query: str, case_sensitive: bool = False) -> None:
        """Find ``query`` in the scrollback and screen; the newest match becomes current and is shown."""
        self._query, self._case = query, case_sensitive
        self._search_again()  # what is parsed so far; output still queued is searched as it is drawn
        self.current_match = next_index(self.matches, None, forward=False)
        self._reveal_current()

    def step_match(self, forward: bool) -> None:
        self.current_match = next_index(self.matches, self.current_match, forward)
        self._reveal_current()

    def clear_search(self) -> None:
        self._query, self.matches, self.current_match = "", [], None
        self.sig_search_updated.emit()
        self.update()

    def _search_again(self) -> None:
        if not self._query:
            self.matches, self.current_match = [], None
            self.sig_search_updated.emit()
            return
        current = self.matches[self.current_match] if self.current_match is not None else None
        first, end = self.vt.first_line, self.vt.pushed + self.vt.lines
        self.matches = find_matches(((n, self.text_of(n)) for n in range(first, end)), self._query, self._case)
        if current is not None and current in self.matches:
            self.current_match = self.matches.index(current)
        elif self.current_match is not None:
            self.current_match = next_index(self.matches, None, forward=False)
        self.sig_search_updated.emit()

    def _reveal_current(self) -> None:
        if self.current_match is not None:
            line = self.matches[self.current_match].line
            rows = self.vt.lines
            if not self.top_line <= line < self.top_line + rows:
                # Put the match a third down the view: the lines before it are usually the context wanted.
                self._scroll = max(0, min(len(self.vt.history), self.vt.pushed - line + rows // 3))
        self.sig_search_updated.emit()
        self.update()

    # -- geometry ------------------------------------------------------------------------------

    def cell_size(self) -> tuple[int, int]:
        metrics = QFontMetrics(self.font())
        return max(1, metrics.horizontalAdvance("M")), max(1, metrics.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        cw, ch = self.cell_size()
        cols, rows = max(2, self.width() // cw), max(1, self.height() // ch)
        if (cols, rows) != (self.vt.columns, self.vt.lines):
            self.vt.resize(rows, cols)
            self._text_cache.clear()
            self._scroll = min(self._scroll, len(self.vt.history))
            self.sig_resized.emit(cols, rows)
        super().resizeEvent(event)

    # -- painting ------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), DEFAULT_BG)
        cw, ch = self.cell_size()
        metrics = QFontMetrics(self.font())
        whole_runs = metrics.horizontalAdvance("M" * 64) == 64 * cw  # else drawn cell by cell, never drifting
        spans = self._highlights()
        for y, (number, line) in enumerate(self._visible_rows()):
            paint_row(painter, line, self.vt.columns, (cw, ch, metrics.ascent(), y), self.font(),
                      self._selection_span(number), spans.get(number, ()), whole_runs)
        self._paint_cursor(painter, cw, ch)
        painter.end()

    def _paint_cursor(self, painter: QPainter, cw: int, ch: int) -> None:
        cursor = self.vt.cursor
        if self._scroll or cursor.hidden or cursor.y >= self.vt.lines:
            return
        rect = QRect(min(cursor.x, self.vt.columns - 1) * cw, cursor.y * ch, cw, ch)
        if self.hasFocus():  # a filled block when typing goes here, an outline otherwise (as xterm)
            painter.setCompositionMode(QPainter.CompositionMode.RasterOp_SourceXorDestination)
            painter.fillRect(rect, QColor("#e0e0e0"))
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
        else:
            painter.setPen(QColor("#e0e0e0"))
            painter.drawRect(rect.adjusted(0, 0, -1, -1))

    def _highlights(self) -> dict[int, list[tuple[int, int, bool]]]:
        """Per visible absolute line: (first cell, end cell, is_current) of each match on it."""
        if not self.matches:
            return {}
        top, bottom = self.top_line, self.top_line + self.vt.lines
        spans: dict[int, list[tuple[int, int, bool]]] = {}
        for i, match in enumerate(self.matches):
            if top <= match.line < bottom:
                cells = cell_columns(self.line_at(match.line), self.vt.columns)
                first = cells[match.start] if match.start < len(cells) else match.start
                last = match.start + match.length - 1
                end = cells[last] + 1 if last < len(cells) else last + 1
                if last < len(cells) and last + 1 < len(cells) and cells[last + 1] - cells[last] == 2:
                    end += 1  # a wide glyph at the end covers its second cell too
                spans.setdefault(match.line, []).append((first, end, i == self.current_match))
        return spans

    # -- input ---------------------------------------------------------------------------------

    def event(self, event: QEvent) -> bool:
        # Keys a terminal sends (F2, F5, Ctrl+W, Ctrl+Q ...) belong to the program on the device, not to the
        # window's shortcuts: claim them before Qt's shortcut map does. Ctrl+Shift+<key> stays the app's.
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
            if (event.modifiers() & ctrl_shift) != ctrl_shift and key_bytes(event, self.vt.app_cursor):
                event.accept()
                return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self._shortcut(event):
            return
        data = key_bytes(event, self.vt.app_cursor)
        if data:
            self._scroll = 0
            self.sig_input.emit(data)
        else:
            super().keyPressEvent(event)

    def _shortcut(self, event: QKeyEvent) -> bool:
        """The terminal's own keys (Ctrl+Shift+C/V/F, Shift+PgUp/PgDn/Home/End); True when handled."""
        mods, key = event.modifiers(), event.key()
        ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
        actions = {Qt.Key.Key_C: self.copy, Qt.Key.Key_V: self.paste, Qt.Key.Key_F: self.sig_find_requested.emit}
        if (mods & ctrl_shift) == ctrl_shift and key in actions:
            actions[Qt.Key(key)]()
            return True
        if mods == Qt.KeyboardModifier.ShiftModifier and not self.vt.alternate:
            half = max(1, self.vt.lines // 2)
            steps = {Qt.Key.Key_PageUp: half, Qt.Key.Key_PageDown: -half,
                     Qt.Key.Key_Home: len(self.vt.history), Qt.Key.Key_End: -len(self.vt.history)}
            if key in steps:
                self.scroll_by(steps[Qt.Key(key)])
                return True
        return False

    def focusNextPrevChild(self, _next: bool) -> bool:
        return False  # Tab belongs to the shell (completion), not to Qt's focus chain

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.vt.alternate:  # less/vi have no scrollback: the wheel scrolls them, as xterm's alternateScroll
            arrow = b"A" if event.angleDelta().y() > 0 else b"B"
            prefix = b"\x1bO" if self.vt.app_cursor else b"\x1b["
            self.sig_input.emit((prefix + arrow) * 3)
            return
        self.scroll_by(event.angleDelta().y() // 40)  # 120 per notch: three lines, as terminals do

    # -- selection and clipboard ---------------------------------------------------------------

    def _cell_at(self, pos: QPoint) -> Cell:
        cw, ch = self.cell_size()
        row = min(self.vt.lines - 1, max(0, pos.y() // ch))
        return self.top_line + row, min(self.vt.columns - 1, max(0, pos.x() // cw))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            cell = self._cell_at(event.position().toPoint())
            self._sel = (cell, cell)
            self.update()
        elif event.button() == Qt.MouseButton.MiddleButton:
            self.paste(QClipboard.Mode.Selection)  # X11's primary selection, as every X terminal does
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._sel is not None and event.buttons() & Qt.MouseButton.LeftButton:
            self._sel = (self._sel[0], self._cell_at(event.position().toPoint()))
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        clipboard = QGuiApplication.clipboard()
        text = self.selected_text()
        if event.button() == Qt.MouseButton.LeftButton and text and clipboard.supportsSelection():
            clipboard.setText(text, QClipboard.Mode.Selection)
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        """Select the word under the pointer: a path, an IP address or a MAC counts as one word."""
        if event.button() != Qt.MouseButton.LeftButton:
            return
        number, col = self._cell_at(event.position().toPoint())
        span = word_span(self.text_of(number), col)
        if span is not None:
            self.select((number, span[0]), (number, span[1]))
        self.mouseReleaseEvent(event)  # X11: a selected word is the primary selection at once

    def select(self, start: Cell, end: Cell) -> None:
        """Select from ``start`` to ``end`` inclusive, in (absolute line, column) cells."""
        self._sel = (start, end)
        self.update()

    def _ordered_selection(self) -> tuple[Cell, Cell] | None:
        if self._sel is None or self._sel[0] == self._sel[1]:
            return None
        a, b = sorted(self._sel)
        return a, b

    def _selection_span(self, number: int) -> tuple[int, int] | None:
        """Columns [start, end) selected on absolute line ``number``."""
        span = self._ordered_selection()
        if span is None or not span[0][0] <= number <= span[1][0]:
            return None
        (l0, c0), (l1, c1) = span
        return (c0 if number == l0 else 0), (c1 + 1 if number == l1 else self.vt.columns)

    def selected_text(self) -> str:
        span = self._ordered_selection()
        if span is None:
            return ""
        out = []
        for number in range(max(span[0][0], self.vt.first_line), span[1][0] + 1):
            start, end = self._selection_span(number) or (0, 0)
            out.append(self.text_of(number)[start:end].rstrip())
        return "\n".join(out)

    def copy(self) -> None:
        """Copy the selection, or the whole visible screen when nothing is selected."""
        text = self.selected_text() or "\n".join(line.rstrip() for line in self.display_lines()).rstrip("\n")
        QGuiApplication.clipboard().setText(text)

    def paste(self, mode: QClipboard.Mode = QClipboard.Mode.Clipboard) -> None:
        text = QGuiApplication.clipboard().text(mode)
        if text:
            self.sig_input.emit(paste_bytes(text, self.vt.bracketed_paste))
