"""An interactive shell on a serial console, as raw bytes (the terminal widget decodes them).

Keeps the duck-typed protocol of :class:`siteline.core.transports.shell.ShellChannel`: ``write``,
``resize``, output and closed listeners, ``closed``/``close_reason``, ``close()`` and
``async for chunk in shell`` (both through :class:`~siteline.core.transports.shell.OutputFanout`).
The serial transport owns the port: it hands received bytes to :meth:`SerialShell.feed` while the
shell is open and calls :meth:`SerialShell.end` when the line is lost; ``close()`` gives the line
back to the transport, which asks :meth:`SerialShell.shows` whether the console is at a prompt
before it types anything (a person may have left vi or ``tail -f`` running).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from siteline.core.errors import TransportError
from siteline.core.transports.console import ConsoleState, classify
from siteline.core.transports.shell import MAX_QUEUED, TAIL_BYTES, FannedOutShell, OutputFanout

__all__ = ["MAX_QUEUED", "ScreenWatch", "SerialShell", "TypedLine", "cursor_line", "shown_at_hand_back"]

log = logging.getLogger(__name__)

Writer = Callable[[bytes], Awaitable[None]]


# -- what a console shows when a person hands it back -------------------------------------------

# xterm's alternate-screen switches: full-screen programs (vi, less, top) enter with h and leave with l.
_ALT_SCREEN = re.compile(rb"\x1b\[\?(?:1049|1047|47)([hl])")
_LINE_RESETS = {"\r", "\n", "\x03", "\x15"}  # Enter, Ctrl-C, Ctrl-U: the line starts afresh
_BRACKETED_PASTE = ("\x1b[200~", "\x1b[201~")
MAX_TYPED = 4096
HAND_BACK_TAIL = 4096  # output bytes judged: holds a prompt line many times over; pyte costs ~3 µs a byte


class ScreenWatch:
    """Whether a full-screen program holds the alternate screen, from output bytes fed chunk by chunk."""

    def __init__(self) -> None:
        self.alternate = False
        self._carry = b""  # a switch split across two chunks is found in carry + chunk

    def feed(self, data: bytes) -> None:
        joined = self._carry + data
        switches = _ALT_SCREEN.findall(joined)
        if switches:  # only the last switch counts
            self.alternate = switches[-1] == b"h"
        self._carry = joined[-7:]


class TypedLine:
    """What a person typed on the command line since the last Enter, from the keystrokes sent.

    ``text`` is None once the line cannot be known from keystrokes alone (cursor keys, Tab
    completion, Ctrl-W ...): then only a bare prompt proves the console is at a shell.
    """

    def __init__(self) -> None:
        self.text: str | None = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, keys: bytes) -> None:
        typed = self._decoder.decode(keys)
        for marker in _BRACKETED_PASTE:  # a paste is plain text between these
            typed = typed.replace(marker, "")
        for ch in typed:
            if ch in _LINE_RESETS:
                self.text = ""
            elif self.text is None:
                continue
            elif ch in ("\x7f", "\x08"):
                self.text = self.text[:-1]
            elif ch == "\x04":
                continue  # Ctrl-D: at the end of a line it changes nothing; on an empty one the screen shows the logout
            elif ch < " " or "\x80" <= ch <= "\x9f" or len(self.text) >= MAX_TYPED:
                self.text = None
            else:
                self.text += ch


def cursor_line(raw: bytes, cols: int = 80, rows: int = 24) -> tuple[str, bool]:
    """The text left of the cursor on its row, as a terminal of ``cols`` x ``rows`` shows ``raw``; and
    whether the cursor was placed (absolute move, as vi and top do) after the last text was drawn.

    A shell leaves the cursor where its prompt (and the echo) ended; full-screen programs position it.
    """
    import pyte  # only when a shell is handed back: the command path never needs a screen

    class Screen(pyte.Screen):
        placed = False

        def draw(self, data: str) -> None:
            super().draw(data)
            self.placed = False

        def cursor_position(self, line: int | None = None, column: int | None = None) -> None:
            super().cursor_position(line, column)
            self.placed = True

        def cursor_to_line(self, line: int | None = None) -> None:
            super().cursor_to_line(line)
            self.placed = True

    try:
        screen = Screen(max(2, min(cols, 1000)), max(2, min(rows, 500)))
        pyte.Stream(screen).feed(raw.decode("utf-8", errors="replace"))
        row = screen.buffer[screen.cursor.y]
        text = "".join(str(row[x].data) for x in range(min(int(screen.cursor.x), screen.columns)))
        return text, bool(screen.placed)
    except Exception:  # pyte on garbage: nothing recognisable is shown, which is the safe answer
        return "", True


def shown_at_hand_back(tail: bytes, typed: str | None, cols: int = 80, rows: int = 24,
                       alternate: bool = False) -> ConsoleState:
    """What the console shows when a person's shell is closed: SHELL only for a prompt the cursor sits at.

    ``tail`` is the last output the person's terminal got, ``typed`` what they typed since the last
    Enter (that echo may follow the prompt), ``alternate`` whether a full-screen program holds the
    screen. Anything but a prompt (a program, a pager, a command still running) must not be typed into.
    """
    if alternate:
        return ConsoleState.UNKNOWN
    line, placed = cursor_line(tail[-HAND_BACK_TAIL:], cols, rows)
    if placed:  # some vi and less builds draw without the alternate screen; a "#" in the text is no prompt
        return ConsoleState.UNKNOWN
    if typed and line.endswith(typed):
        # What the person typed is echoed after whatever was there: only that part can be the prompt
        # ("price 5$" typed into `cat > notes` ends in $ but follows no prompt).
        return _shown(line[: len(line) - len(typed)])
    # Keys that went to a program that has ended (a 'q' for less) are not echoed: a bare prompt counts too.
    return _shown(line)


# A progress display ends in "%" or "#" too ("45.2%", "[=====>   ]", "######"): no prompt looks like that,
# and Ctrl-C at the hand-back would kill the person's download or fsck.
_PROGRESS = re.compile(r"\d\s*%\s*$|#{3,}|\[[=#>\- ]{3,}")


def _shown(line: str) -> ConsoleState:
    if not line.strip():
        return ConsoleState.UNKNOWN  # a cursor at the start of a line: a command runs (or is silent)
    if _PROGRESS.search(line):
        return ConsoleState.UNKNOWN
    state = classify(line.encode())
    return state if state is not ConsoleState.GARBAGE else ConsoleState.UNKNOWN


class SerialShell(FannedOutShell):
    """The console's shell handed to a person: keystrokes in, raw output bytes out."""

    def __init__(self, write: Writer, release: Callable[[SerialShell], Awaitable[None]], first: bytes = b"",
                 cols: int = 80, rows: int = 24, alternate: bool = False) -> None:
        self._send = write
        self._release = release
        self.cols, self.rows = cols, rows  # as set on the device when the shell opened
        # The reader thread hands over up to 4 KiB a chunk: MAX_QUEUED of them is ~16 MiB at most.
        self.output = OutputFanout("serial shell")
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        # What the person's terminal shows and what they typed: judged when the line is handed back.
        self._screen = ScreenWatch()
        self._screen.alternate = alternate  # a console reopened inside vi is still on vi's screen
        self._typed = TypedLine()
        # One writer task keeps keystrokes in order (executor writes could overtake each other).
        self._writer = asyncio.ensure_future(self._write_loop())
        if first:  # the prompt that followed the setup: delivered once the caller has attached its listeners
            asyncio.get_running_loop().call_soon(self.feed, first)

    def feed(self, chunk: bytes) -> None:
        """Bytes the console sent (called by the transport on the event loop)."""
        if self.closed or not chunk:
            return
        self._screen.feed(chunk)
        self.output.deliver(chunk)

    def shows(self, later: bytes = b"") -> ConsoleState:
        """What the console shows now: the shell's output plus ``later`` (what came after it closed).

        SHELL only when a shell prompt is the last thing on it (maybe followed by the echo of what
        the person typed since their last Enter); anything else must not be typed into.
        """
        self._screen.feed(later)
        tail = (self.output.tail + later)[-TAIL_BYTES:]  # bounded: a screen emulator costs ~µs a byte
        return shown_at_hand_back(tail, self._typed.text, self.cols, self.rows, self._screen.alternate)

    @property
    def alternate(self) -> bool:
        """Whether a full-screen program held the alternate screen at the last output."""
        return self._screen.alternate

    def end(self, reason: str) -> None:
        """The shell is over (closed, or the line was lost): tell the listeners once."""
        if self.output.finish(reason):
            self._writer.cancel()

    def write(self, data: bytes) -> None:
        """Send keystrokes; ignored once the shell has ended (the UI shows that it ended)."""
        if not self.closed and data:
            self._typed.feed(data)
            self._outgoing.put_nowait(data)

    def resize(self, cols: int, rows: int) -> None:
        """A no-op: a serial line has no window-size signal.

        Typing ``stty cols C rows R`` now would land in whatever program runs (vi, top) as input.
        The size is set once when the shell opens; a person can run ``stty`` again at the prompt.
        """

    async def _write_loop(self) -> None:
        while True:
            data = await self._outgoing.get()
            while not self._outgoing.empty():  # a paste arrives as many small writes: send them as one
                data += self._outgoing.get_nowait()
            try:
                await self._send(data)
            except TransportError as exc:
                log.info("serial shell write failed: %s", exc)
                self.end(f"the serial line failed: {exc}")
                return

    async def close(self) -> None:
        """End the shell and give the console back: to command mode if it shows a prompt, else untouched."""
        if not self.closed:
            # Keystrokes already typed go out first: the person saw them echoed as typed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed(), 2.0)
        self.end("closed")
        await asyncio.gather(self._writer, return_exceptions=True)
        await self._release(self)

    async def _flushed(self) -> None:
        while not self._outgoing.empty():  # noqa: ASYNC110 - the writer task empties it
            await asyncio.sleep(0.01)
