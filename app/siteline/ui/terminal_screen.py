"""The terminal's model: a pyte screen with a bounded scrollback and xterm's alternate screen. No Qt.

pyte's own HistoryScreen wraps every attribute access in a Python closure (slow under floods) and
knows nothing of the alternate screen, so full-screen programs (vi, less, top) would leave their
last frame behind and push their redraws into the scrollback. This screen keeps the history itself:
only lines that scroll off the top of the *main* screen's full-width region go into it.
"""

from __future__ import annotations

import codecs
import logging
from collections import defaultdict, deque
from collections.abc import Iterator
from typing import Any

import pyte
from pyte.screens import Char, StaticDefaultDict

log = logging.getLogger(__name__)
Line = StaticDefaultDict[int, Char]
HISTORY_LINES = 10_000
ALT_SCREEN = (47 << 5, 1047 << 5, 1049 << 5)  # pyte stores private mode N as N << 5
SAVE_CURSOR_ALT = 1049 << 5  # 1049 also saves/restores the cursor around the switch
BRACKETED_PASTE = 2004 << 5
APP_CURSOR = 1 << 5  # DECCKM: arrows send ESC O x


def line_text(line: Line, columns: int) -> str:
    """The characters of one row, trailing blanks dropped (the stub cell after a wide glyph is '')."""
    if not line:
        return ""
    end = min(columns, max(line) + 1)
    return "".join(line[x].data for x in range(end)).rstrip()


def cell_columns(line: Line, columns: int) -> list[int]:
    """The cell of each character of ``line_text`` (a wide glyph takes two cells; its stub has no text),
    and a last entry where the next glyph would start."""
    end = min(columns, max(line) + 1) if line else 0
    return [x for x in range(end) if line[x].data] + [end]


WORD_CHARS = "._-/:@~+%"  # so a path, an IP address, a MAC or user@host is one word


def word_span(text: str, col: int) -> tuple[int, int] | None:
    """First and last index of the word at ``col`` in ``text``; None on a blank."""
    def inside(char: str) -> bool:
        return char.isalnum() or char in WORD_CHARS

    if col >= len(text) or not inside(text[col]):
        return None
    start, end = col, col
    while start > 0 and inside(text[start - 1]):
        start -= 1
    while end + 1 < len(text) and inside(text[end + 1]):
        end += 1
    return start, end


class TerminalScreen(pyte.Screen):
    """pyte.Screen + scrollback (``history``) + the alternate screen + a few mode queries."""

    def __init__(self, columns: int, lines: int, history: int = HISTORY_LINES) -> None:
        self.history: deque[Line] = deque(maxlen=max(0, history))
        self.pushed = 0  # lines ever pushed into the history: absolute line numbers stay stable as it trims
        self.alternate = False
        self._main: Any = None  # the main screen's buffer while the alternate one shows
        super().__init__(columns, lines)

    # -- modes ---------------------------------------------------------------------------------

    @property
    def bracketed_paste(self) -> bool:
        return BRACKETED_PASTE in self.mode

    @property
    def app_cursor(self) -> bool:
        return APP_CURSOR in self.mode

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        shifted = [m << 5 for m in modes] if kwargs.get("private") else list(modes)
        if any(m in ALT_SCREEN for m in shifted) and not self.alternate:
            if SAVE_CURSOR_ALT in shifted:
                self.save_cursor()
            self._main, self.buffer = self.buffer, self._blank_buffer()
            self.alternate = True
            self.dirty.update(range(self.lines))
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        shifted = [m << 5 for m in modes] if kwargs.get("private") else list(modes)
        if any(m in ALT_SCREEN for m in shifted) and self.alternate:
            self.buffer, self._main = self._main, None
            self.alternate = False
            self.dirty.update(range(self.lines))
            if SAVE_CURSOR_ALT in shifted:
                self.restore_cursor()
        super().reset_mode(*modes, **kwargs)

    def select_graphic_rendition(self, *attrs: int, private: bool = False) -> None:
        if not private:  # CSI > 4;1 m (xterm's modifyOtherKeys, sent by vim) is not a colour: ignore it
            super().select_graphic_rendition(*attrs)

    def _blank_buffer(self) -> Any:
        return defaultdict(lambda: StaticDefaultDict(self.default_char))

    def reset(self) -> None:
        if getattr(self, "alternate", False):  # RIS leaves the alternate screen too
            self.buffer, self._main, self.alternate = self._main, None, False
        super().reset()

    # -- scrollback ----------------------------------------------------------------------------

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom and top == 0 and not self.alternate and self.history.maxlen:
            self.history.append(self.buffer[0])
            self.pushed += 1
        super().index()

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        super().erase_in_display(how, *args, **kwargs)
        if how == 3:  # ESC[3J ("clear" in newer ncurses) also clears the scrollback
            self.history.clear()

    def set_history_limit(self, lines: int) -> None:
        self.history = deque(self.history, maxlen=max(0, lines))

    @property
    def first_line(self) -> int:
        """Absolute number of the oldest history line; the screen's row 0 is ``self.pushed``."""
        return self.pushed - len(self.history)

    def all_lines(self) -> Iterator[tuple[int, Line]]:
        """(absolute line number, line) for the whole scrollback, then the screen."""
        start = self.first_line
        for i, line in enumerate(self.history):
            yield start + i, line
        for y in range(self.lines):
            yield self.pushed + y, self.buffer[y]

    # -- geometry ------------------------------------------------------------------------------

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """As xterm: a shorter window drops rows from the top only as far as needed to keep the cursor
        visible (into the scrollback), not blindly from the top as pyte does (that lost the prompt)."""
        lines = lines or self.lines
        drop = max(0, self.cursor.y - (lines - 1))
        if lines < self.lines and drop:
            for _ in range(drop):
                if not self.alternate and self.history.maxlen:
                    self.history.append(self.buffer[0])
                    self.pushed += 1
                for y in range(self.lines - 1):
                    self.buffer[y] = self.buffer[y + 1]
                self.buffer.pop(self.lines - 1, None)
            self.cursor.y -= drop
        for y in [y for y in self.buffer if y >= lines]:
            del self.buffer[y]
        if lines < self.lines:
            self.lines = lines  # pyte then only trims columns and resets the margins
        super().resize(lines, columns)
        self.set_margins()  # pyte skips this when only our trimming changed the height
        self.cursor.y = min(self.cursor.y, self.lines - 1)
        self.cursor.x = min(self.cursor.x, self.columns - 1)


class TerminalStream(pyte.Stream):
    """Bytes in, UTF-8 decoded here, with xterm's DEC line drawing honoured.

    pyte ignores ``ESC ( 0`` and SI/SO while in UTF-8 mode, but ncurses (top, mc, dialog) draws boxes
    with them on xterm: they would show as 'lqqqk'. Decoding ourselves lets the parser run with
    ``use_utf8`` off, which is what routes those sequences to the screen.
    """

    def __init__(self, screen: pyte.Screen) -> None:
        super().__init__(screen)
        self.use_utf8 = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed_bytes(self, data: bytes) -> None:
        self.feed(self._decoder.decode(data))

    def _send_to_parser(self, data: str) -> bool | None:
        """A sequence pyte cannot handle is dropped, not raised: the rest of the output must still show."""
        try:
            return super()._send_to_parser(data)
        except Exception:  # pyte re-created its parser already; log once per sequence and go on
            log.debug("terminal sequence ignored", exc_info=True)
            return self._taking_plain_text

    def select_other_charset(self, code: str) -> None:
        """Always UTF-8: a stray ``ESC % @`` would otherwise turn every later byte into Latin-1."""
