"""Which command lines a person typed on a console, for the audit trail, and never what they typed blind.

:class:`ConsoleInputRecorder` sees both directions of an interactive console: ``typed(keys)`` with the
bytes the terminal sent and ``received(output)`` with the device's output. On Enter it rebuilds the
line as the person saw it (backspace, Ctrl-U and Ctrl-W applied, bracketed-paste markers dropped) and
reports it with ``on_line(text, False)`` once the device echoed it. A line edited with keys that
cannot be replayed from keystrokes alone (arrows, Home/End, Tab completion, history) is reported as
typed, the keys named (``ls<Left>x``), with an ``(edited)`` mark: never a guess.

Echo decides: a password prompt (``sudo``, ``passwd``, ``ssh``, ``read -s``) turns the terminal's echo
off, so the characters typed never come back. A line whose echo was not seen is withheld:
``on_line("", True)``, and the audit records "input not recorded: echo was off". So is a line typed
after a prompt that looks like a secret prompt (password, passphrase, PIN, secret ... ending in ':' or
'?'), echo or not, and one whose echo has no prompt before it (keys typed ahead, which the tty
echoes before ``sudo`` turns echo off). Echo can arrive late on a slow link: a finished line waits until its echo shows
(reported), the output ends the row without it (withheld) or ``HOLD_SECONDS`` pass (withheld). When
unsure, withhold. The withheld text is dropped as soon as the decision is made. Lines typed while a
full-screen program holds the terminal (vi, nmtui, or a ``tput smcup`` meant to hide commands) are
withheld too; ``withheld_reason`` says which case it was. Inside a bracketed paste a newline is text:
bash runs the pasted block on the next Enter, so it is one entry.

Cost: this sees every byte of a terminal flood. Output is only appended to a small tail (the row
the cursor is on); the row is rendered (pyte) only while a typed line waits for its echo.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyte

from siteline.core.audit import CONSOLE_COMMAND, INPUT_NOT_RECORDED
from siteline.core.errors import SitelineError
from siteline.core.redact import command_detail
from siteline.core.transports.serial_shell import ScreenWatch

__all__ = ["ECHO_OFF", "FULL_SCREEN", "HOLD_SECONDS", "ConsoleInputRecorder", "audit_recorder", "is_secret_prompt"]

log = logging.getLogger(__name__)

HOLD_SECONDS = 2.0
ECHO_OFF = INPUT_NOT_RECORDED  # "input not recorded: echo was off"
FULL_SCREEN = "input not recorded: typed into a full-screen program"
ROW_TAIL = 2048  # output bytes of the cursor's row kept: a prompt and a long command line, many times over
MAX_LINE = 4096  # characters of one typed line; beyond, the line is withheld (a paste of a file is no command)
MAX_PENDING = 16  # lines typed ahead waiting for their echo; beyond, the oldest is withheld

# A secret prompt: one of the words, then anything, then ':' or '?' at the end of the row.
_SECRET_PROMPT = re.compile(r"(pass ?(?:word|phrase|code)|passwd|\bpin\b|secret)[^\n]*[:?]\s*$", re.IGNORECASE)
_PASTE_START, _PASTE_END = "200", "201"
_CSI_NAMES = {"A": "Up", "B": "Down", "C": "Right", "D": "Left", "H": "Home", "F": "End"}
_TILDE_NAMES = {"1": "Home", "2": "Insert", "3": "Delete", "4": "End", "5": "PgUp", "6": "PgDn", "7": "Home",
                "8": "End"}
_SS3_NAMES = {**_CSI_NAMES, "P": "F1", "Q": "F2", "R": "F3", "S": "F4"}
# Reports the terminal itself sends back (focus in/out, cursor position for BusyBox's ESC[6n, device
# attributes, status): not the person's keys, they change no line.
_TERMINAL_REPORTS = {"I", "O", "R", "c", "n"}
_STRINGS = "]P_^"  # OSC, DCS, APC, PM: strings a terminal sends back (colour query replies ...)


def is_secret_prompt(row: str) -> bool:
    """True for "[sudo] password for root: ", "Enter passphrase for key 'k':", "PIN?" and the like."""
    return bool(_SECRET_PROMPT.search(row))


@dataclass
class _Line:
    """One line being typed, or finished and waiting for its echo."""

    chars: list[str] = field(default_factory=list)  # as shown: backspaces applied
    keys: list[str] = field(default_factory=list)  # as typed: characters and <Key> names
    edited: bool = False  # keys were used that cannot be replayed: report ``keys`` with a mark
    too_long: bool = False
    prompt: str | None = None  # the row left of the cursor at the first key (None: not known)
    out_mark: int = 0  # output bytes seen before the first key: an echo must come after it
    typed_ahead: bool = False  # finished while an earlier line still waited for its echo
    deadline: float = 0.0
    row_at_enter: str = ""
    matched: int = 0  # rows of a pasted multi-row line whose echo was seen

    def text(self) -> str:
        return "".join(self.chars)

    def shown_keys(self) -> str:
        return "".join(self.keys)

    def wipe(self) -> None:
        """Drop the typed text (strings cannot be zeroed in Python; the references go at once)."""
        self.chars.clear()
        self.keys.clear()
        self.prompt = None
        self.row_at_enter = ""


class ConsoleInputRecorder:
    """Turns keystrokes plus device output into the command lines a person entered; see the module doc.

    ``on_line(text, withheld)``: ``withheld`` True means a line was entered but not recorded (``text``
    is then ""). Deadlines are checked on every call and by :meth:`tick`; with a running asyncio loop
    the recorder schedules its own tick, otherwise the owner calls :meth:`tick` from a timer.
    """

    def __init__(self, on_line: Callable[[str, bool], None], *, hold: float = HOLD_SECONDS, cols: int = 80,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_line = on_line
        self._hold = hold
        self._clock = clock
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._esc: str | None = None  # an escape sequence being read (it may span two typed() calls)
        self._paste = False
        self._line: _Line | None = None
        self._pending: deque[_Line] = deque()
        self._row = bytearray()  # output since the last newline (its tail)
        self._out_total = 0
        self._screen = ScreenWatch()
        self._timer: asyncio.TimerHandle | None = None
        self._cols = 80
        self.resize(cols)
        self.withheld_reason = ""  # why the line just reported was withheld: ECHO_OFF or FULL_SCREEN

    # -- the two directions ---------------------------------------------------------------------

    def typed(self, data: bytes) -> None:
        """Keys the terminal sent to the device, exactly as sent."""
        self.tick()
        for ch in self._decoder.decode(data):
            if self._esc is not None:
                self._escape_char(ch)
            else:
                self._key(ch)

    def received(self, data: bytes) -> None:
        """Output of the device, chunk by chunk: O(chunk) in C and O(1) in Python unless a line waits."""
        if not data:
            return
        self._out_total += len(data)
        self._screen.feed(data)
        if not self._pending:
            self._append_row(data)
            return
        start = 0
        while self._pending:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            self._append_row(data[start:newline])
            self._row_ended()
            self._row.clear()
            start = newline + 1
        self._append_row(data[start:])
        self._check_pending()
        self.tick()

    def tick(self) -> None:
        """Withhold the lines whose echo did not come within the hold time."""
        now = self._clock()
        while self._pending and self._pending[0].deadline <= now:
            self._decide(self._pending.popleft(), None)

    def flush(self) -> None:
        """The console closes: lines still waiting for their echo are withheld; a half-typed line is dropped."""
        while self._pending:
            self._decide(self._pending.popleft(), None)
        if self._line is not None:
            self._line.wipe()
            self._line = None
        self._esc = None
        self._paste = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def waiting(self) -> int:
        """Lines entered whose echo has not been judged yet."""
        return len(self._pending)

    # -- keys -------------------------------------------------------------------------------------

    def _current(self) -> _Line:
        if self._line is None:
            self._line = _Line(out_mark=self._out_total, prompt=None if self._pending else self._cursor_text())
        return self._line

    def _key(self, ch: str) -> None:
        if ch in ("\r", "\n") and self._paste:
            self._insert("\n")  # inside a bracketed paste a newline is text: bash runs it all on the next Enter
        elif ch in ("\r", "\n"):
            self._enter()
        elif ch == "\x1b":
            self._esc = ""
        elif self._paste and ch == "\t":
            self._insert(ch)
        elif ch in ("\x7f", "\x08"):
            self._rubout()
        elif ch == "\x03":  # Ctrl-C: the line is abandoned, nothing runs
            self._drop_line()
        elif ch == "\x15":  # Ctrl-U: the whole line goes (the cursor is at its end unless edited)
            line = self._current()
            line.keys.append("<C-U>")
            line.chars.clear()
        elif ch == "\x17":  # Ctrl-W: the word before the cursor goes, as readline's unix-word-rubout
            line = self._current()
            line.keys.append("<C-W>")
            while line.chars and line.chars[-1] == " ":
                line.chars.pop()
            while line.chars and line.chars[-1] != " ":
                line.chars.pop()
        elif ch in ("\x04", "\x0c"):  # Ctrl-D at the end of a line, Ctrl-L: the line is unchanged
            return
        elif ch < " " or "\x80" <= ch <= "\x9f":
            self._named("Tab" if ch == "\t" else f"C-{chr(ord(ch) + 64)}" if ch < " " else f"x{ord(ch):02x}")
        else:
            self._insert(ch)

    def _insert(self, ch: str) -> None:
        line = self._current()
        if len(line.keys) >= MAX_LINE:
            line.too_long = True
            return
        line.chars.append(ch)
        line.keys.append(ch)

    def _rubout(self) -> None:
        line = self._current()
        if line.edited:
            line.keys.append("<BS>")
        else:
            if line.chars:
                line.chars.pop()
            if line.keys and len(line.keys[-1]) == 1:
                line.keys.pop()
            else:
                line.keys.append("<BS>")

    def _named(self, name: str) -> None:
        line = self._current()
        line.edited = True
        if len(line.keys) < MAX_LINE:
            line.keys.append(f"<{name}>")

    def _escape_char(self, ch: str) -> None:
        """ESC [ params final (CSI), ESC O final (SS3), a terminal's string reply (OSC/DCS, ignored), or ESC +
        a key (Alt)."""
        seq = self._esc or ""
        if seq[:1] in _STRINGS and seq:
            # A reply to a colour or capability query: ends with BEL or ESC \. Replies hold no other control
            # character: an Enter (or a long run) means a person pressed Alt-] or Alt-P; replay their keys.
            if ch == "\x07" or (ch == "\\" and seq.endswith("\x1b")):
                self._esc = None
            elif (ch < " " and ch != "\x1b") or len(seq) > 256:
                self._esc = None
                self._named(f"M-{seq[0]}")
                for key in seq[1:] + ch:
                    self._key(key) if self._esc is None else self._escape_char(key)
            else:
                self._esc = seq + ch
            return
        if seq == "":
            if ch in _STRINGS:
                self._current()  # the prompt is judged now, should this be a person's Alt key after all
            if ch in "[O" or ch in _STRINGS:
                self._esc = ch
                return
            self._esc = None
            if ch >= " ":
                self._named(f"M-{ch}")
            else:  # a lone Esc, then a key of its own (Enter, another Esc ...)
                self._named("Esc")
                self._key(ch)
            return
        if seq == "O":
            self._esc = None
            self._named(_SS3_NAMES.get(ch, f"SS3 {ch}"))
            return
        if "\x20" <= ch <= "\x3f" and len(seq) < 32:  # parameter and intermediate bytes
            self._esc = seq + ch
            return
        self._esc = None
        self._csi(seq[1:], ch)

    def _csi(self, params: str, final: str) -> None:
        if final == "~" and params in (_PASTE_START, _PASTE_END):
            self._paste = params == _PASTE_START  # a paste is plain text between the two markers
        elif final in _TERMINAL_REPORTS:
            return
        elif final == "~":
            self._named(_TILDE_NAMES.get(params.split(";")[0], f"Esc[{params}~"))
        else:
            self._named(_CSI_NAMES.get(final, f"Esc[{params}{final}"))

    def _drop_line(self) -> None:
        if self._line is not None:
            self._line.wipe()
        self._line = None

    def _enter(self) -> None:
        line, self._line = self._line, None
        if line is None:
            return
        if not line.edited and not line.text().strip():
            line.wipe()  # an empty line: no command
            return
        if self._screen.alternate:
            # Keys for a full-screen program (vi, nmtui): no command line to rebuild, maybe a secret in a
            # form. Withheld, so that `tput smcup` cannot hide commands: the trail shows a line was entered.
            self._decide(line, None, FULL_SCREEN)
            return
        line.typed_ahead = bool(self._pending)
        line.deadline = self._clock() + self._hold
        line.row_at_enter = self._row_text()
        self._pending.append(line)
        while len(self._pending) > MAX_PENDING:
            self._decide(self._pending.popleft(), None)
        self._check_pending()
        self._schedule()

    # -- output and decisions ----------------------------------------------------------------------

    def _append_row(self, data: bytes) -> None:
        newline = data.rfind(b"\n")
        if newline >= 0:
            self._row[:] = data[newline + 1 :][-ROW_TAIL:]
        else:
            self._row += data
            if len(self._row) > 2 * ROW_TAIL:  # trimmed in bulk: amortized O(1) per chunk
                del self._row[:-ROW_TAIL]

    def resize(self, cols: int) -> None:
        """The terminal's width: a shell wraps a long line at it (readline writes "x \\r" at the margin)."""
        self._cols = max(2, min(int(cols), 1000))

    def _logical_row(self) -> tuple[str, str]:
        """The output since the last newline as the terminal shows it, wrapped rows joined: the whole of it
        (trailing blanks dropped) and the part left of the cursor (the prompt, when typing starts at one)."""
        cols = self._cols
        screen = pyte.Screen(cols, ROW_TAIL // cols + 2)
        with contextlib.suppress(Exception):  # pyte on garbage: whatever it drew so far is the answer
            pyte.Stream(screen).feed(bytes(self._row[-ROW_TAIL:]).decode("utf-8", errors="replace"))
        y = min(int(screen.cursor.y), screen.lines - 1)
        rows = ["".join(screen.buffer[n][x].data for x in range(cols)) for n in range(y + 1)]
        left = "".join(rows[:-1]) + rows[-1][: min(int(screen.cursor.x), cols)]
        return "".join(rows).rstrip(), left

    def _row_text(self) -> str:
        return self._logical_row()[0]

    def _cursor_text(self) -> str:
        return self._logical_row()[1]

    def _row_ended(self) -> None:
        """A newline came: the first waiting line's echo is on the row just ended, or it never came."""
        line = self._pending[0]
        if "\n" in line.chars and not line.edited:
            self._pasted_row_ended(line, self._row_text())
            return
        shown = self._echo(line, self._row_text())
        if shown is not None or not line.typed_ahead:  # a line typed ahead may be echoed on a later row
            self._pending.popleft()
            self._decide(line, shown)

    def _pasted_row_ended(self, line: _Line, row: str) -> None:
        """A pasted line of several rows (bash runs them on the Enter after the paste): each row of output
        ends with its row of the paste (bash redraws them after Enter), or the last one does (a shell that
        echoed the rows while they were pasted). Anything else: withheld."""
        rows = line.text().split("\n")
        if line.matched == 0:
            if self._echo(line, row, rows[0].rstrip()) is None:
                done = self._echo(line, row, rows[-1].rstrip(), after_prompt=False) is not None
                self._pending.popleft()
                self._decide(line, line.text().strip() if done else None)
                return
        elif not row.endswith(rows[line.matched].rstrip()):
            self._pending.popleft()
            self._decide(line, None)
            return
        line.matched += 1
        if line.matched == len(rows):
            self._pending.popleft()
            self._decide(line, line.text().strip())

    def _check_pending(self) -> None:
        """The row so far: the echo is complete (report), or output that is no echo came (withhold)."""
        while self._pending:
            line = self._pending[0]
            row = self._row_text()
            shown = self._echo(line, row)
            if line.edited or "\n" in line.chars:  # judged on finished rows: the next prompt may share this one
                return
            if shown is None and (line.typed_ahead or row == line.row_at_enter
                                  or _echo_in_progress(line.text().rstrip(), row)):
                return  # wait for more output, a newline or the deadline
            self._pending.popleft()
            self._decide(line, shown)

    def _echo(self, line: _Line, row: str, part: str | None = None, after_prompt: bool = True) -> str | None:
        """What to record when ``row`` shows the line's echo (or ``part`` of it) after a prompt that asks
        for no secret (``after_prompt``: a prompt must be there); else None."""
        if line.too_long or self._out_total <= line.out_mark:
            return None  # nothing came back since the first key: that row cannot hold the echo
        if line.prompt is not None and is_secret_prompt(line.prompt):
            return None
        if line.edited:
            return _edited_echo(line, row)
        text = line.text().rstrip() if part is None else part
        if not row.endswith(text):
            return None
        before = row[: len(row) - len(text)]
        if is_secret_prompt(before) or (after_prompt and not before.strip()):
            # No prompt before it: keys typed ahead, which the tty echoes before a program (sudo) turns echo off.
            return None
        return line.text().strip()

    def _decide(self, line: _Line, shown: str | None, reason: str = ECHO_OFF) -> None:
        line.wipe()
        self.withheld_reason = "" if shown is not None else reason
        self._on_line(shown or "", shown is None)

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the owner calls tick()
        if self._timer is not None:
            self._timer.cancel()
        wait = max(0.0, self._pending[0].deadline - self._clock()) if self._pending else self._hold
        self._timer = loop.call_later(wait + 0.05, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.tick()
        if self._pending:
            self._schedule()


def _echo_in_progress(text: str, row: str) -> bool:
    """The row may still be growing into the echo: it ends with a beginning of ``text``."""
    return any(row.endswith(text[:k]) for k in range(1, len(text)))


def _edited_echo(line: _Line, row: str) -> str | None:
    """An edited line, on a finished row: the row after the prompt shows something holding the characters
    typed (as many of each; a rubout counted as at the end: a miscount only withholds)."""
    if line.prompt is None:
        return None
    prompt = line.prompt.rstrip()
    if not prompt or not row.startswith(prompt):
        return None
    rest = row[len(prompt) :].strip()
    if not rest or Counter(line.chars) - Counter(rest):
        return None
    return f"{line.shown_keys().strip()} (edited)"


class RecordSink(Protocol):
    """Where audit records go: the trail itself (the CLI), or core/audit_writer.py's queue (the window, whose
    thread must never wait on the disk)."""

    def record(self, action: str, *, device: str, site: str, detail: Mapping[str, Any] | None = None,
               result: str = "ok") -> object: ...


def audit_recorder(trail: RecordSink, *, site: str, device: str, cols: int = 80,
                   on_error: Callable[[SitelineError], None] | None = None) -> ConsoleInputRecorder:
    """A recorder whose lines become ``console-command`` audit records of ``device``.

    A line is recorded with the secrets typed into it blanked (``redact.command_detail``, best effort).
    A withheld line is recorded as the fact only: ``{"withheld": true, "note": "input not recorded: echo
    was off"}``. A record that cannot be written (disk full) goes to ``on_error`` (default: logged as an
    error) so the console keeps working; the person is told by whoever handles it.
    """

    def on_line(text: str, withheld: bool) -> None:
        detail = command_detail(text)
        if withheld:
            detail = {"withheld": True, "note": recorder.withheld_reason or INPUT_NOT_RECORDED}
        try:
            trail.record(CONSOLE_COMMAND, site=site, device=device, detail=detail, result="sent")
        except SitelineError as exc:
            if on_error is None:
                log.error("a console command on %s was not recorded in the audit trail: %s", device, exc)
            else:
                on_error(exc)

    recorder = ConsoleInputRecorder(on_line, cols=cols)
    return recorder
