"""An interactive PTY shell over an SSH connection, as raw bytes (the terminal widget decodes them).

The channel pumps the remote output through an :class:`OutputFanout` (a bounded queue plus listeners),
so the UI can either ``async for chunk in channel`` or register a callback; a flood of output never
blocks the loop because reading yields to the loop on every chunk asyncssh hands us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable

import asyncssh

from siteline.core.errors import TransportError

log = logging.getLogger(__name__)

OutputListener = Callable[[bytes], None]
ClosedListener = Callable[[str], None]
READ_SIZE = 65536
# What ``async for`` readers may fall behind by: a UI that only uses listeners never drains the queue,
# and an hour of `tail -f` must not grow without end. Past either cap the oldest chunks go (``dropped``).
MAX_QUEUED = 4096
MAX_QUEUED_BYTES = 16 * 1024 * 1024
TAIL_BYTES = 8192  # the last output kept to judge what the terminal shows now (a prompt? a program?)


class OutputFanout:
    """A shell's output, handed to listeners and to a bounded queue for ``async for`` readers.

    Shared by the SSH and the serial shell: both deliver chunks on the event loop, both end once
    with a reason that closed listeners hear, both keep the last few KiB for a look at the screen.
    """

    def __init__(self, what: str, max_chunks: int = MAX_QUEUED, max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self._what = what  # for log lines: "ssh shell", "serial shell"
        self.max_chunks, self.max_bytes = max_chunks, max_bytes  # public: a test may lower them
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._listeners: list[OutputListener] = []
        self._closed_listeners: list[ClosedListener] = []
        self._tail = bytearray()
        self.dropped = 0  # chunks an iterator never saw because it fell too far behind
        self.closed = False
        self.close_reason = ""

    def add_output_listener(self, listener: OutputListener) -> Callable[[], None]:
        """Call ``listener(chunk)`` for every output chunk; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def add_closed_listener(self, listener: ClosedListener) -> None:
        self._closed_listeners.append(listener)

    @property
    def tail(self) -> bytes:
        """The last output bytes (up to TAIL_BYTES), what the terminal shows last."""
        return bytes(self._tail)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def deliver(self, chunk: bytes) -> None:
        if self.closed or not chunk:
            return
        self._tail += chunk
        if len(self._tail) > 2 * TAIL_BYTES:  # trimmed in bulk: amortized O(1) per chunk
            del self._tail[:-TAIL_BYTES]
        self._queue.append(chunk)
        self._queued_bytes += len(chunk)
        while len(self._queue) > self.max_chunks or (self._queued_bytes > self.max_bytes and len(self._queue) > 1):
            self._queued_bytes -= len(self._queue.popleft())  # the oldest goes: a late iterator sees a gap
            self.dropped += 1
        self._ready.set()
        for listener in list(self._listeners):
            try:
                listener(chunk)
            except Exception:  # a broken view must not stop the shell
                log.exception("%s output listener failed", self._what)

    def finish(self, reason: str) -> bool:
        """The shell is over: tell the closed listeners once; False if it had ended already."""
        if self.closed:
            return False
        self.closed = True
        self.close_reason = reason
        self._ready.set()
        for listener in list(self._closed_listeners):
            with contextlib.suppress(Exception):
                listener(reason)
        return True

    async def iterate(self) -> AsyncIterator[bytes]:
        """Queued chunks in order (each to one reader), until the shell ends and the queue is empty."""
        while True:
            if self._queue:
                chunk = self._queue.popleft()
                self._queued_bytes -= len(chunk)
                yield chunk
            elif self.closed:
                return
            else:
                self._ready.clear()
                await self._ready.wait()


class FannedOutShell:
    """What every interactive shell (SSH, serial) offers its readers, kept by its OutputFanout."""

    output: OutputFanout

    @property
    def closed(self) -> bool:
        return self.output.closed

    @property
    def close_reason(self) -> str:
        return self.output.close_reason

    def add_output_listener(self, listener: OutputListener) -> Callable[[], None]:
        """Call ``listener(chunk)`` for every output chunk; returns a function that unregisters it."""
        return self.output.add_output_listener(listener)

    def add_closed_listener(self, listener: ClosedListener) -> None:
        self.output.add_closed_listener(listener)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.output.iterate()


class ShellChannel(FannedOutShell):
    """One interactive shell: ``write`` keystrokes, ``resize`` the window, read output bytes."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        self.output = OutputFanout("ssh shell")
        self._pump = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        reason = "the shell ended"
        try:
            while True:
                chunk = await self._process.stdout.read(READ_SIZE)
                if not chunk:
                    break
                self.output.deliver(chunk)
        except (OSError, asyncssh.Error) as exc:
            reason = f"the link broke: {exc}"
        finally:
            self.output.finish(reason)

    def write(self, data: bytes) -> None:
        """Send keystrokes; ignored once the shell has ended (the UI shows that it ended)."""
        if self.closed or not data:
            return
        try:
            self._process.stdin.write(data)
        except (OSError, asyncssh.Error) as exc:
            log.info("shell write failed: %s", exc)

    def resize(self, cols: int, rows: int) -> None:
        """Tell the far side the new window size (it sends SIGWINCH to the foreground program)."""
        if self.closed or cols < 1 or rows < 1:
            return
        with contextlib.suppress(OSError, asyncssh.Error):
            self._process.change_terminal_size(cols, rows)

    async def close(self) -> None:
        """Hang up the shell and wait (briefly) for its channel to close."""
        self._process.close()
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            await asyncio.wait_for(self._process.wait_closed(), 2.0)
        if not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self.output.finish("closed")


async def open_ssh_shell(
    conn: asyncssh.SSHClientConnection, term: str = "xterm-256color", cols: int = 80, rows: int = 24
) -> ShellChannel:
    """Start the login shell on a PTY of ``cols`` x ``rows`` with TERM=``term``."""
    try:
        # The terminal decodes UTF-8, so ask for a UTF-8 locale as OpenSSH's SendEnv LANG would (C.UTF-8
        # exists on glibc and musl alike; a server without AcceptEnv LANG simply ignores it).
        process = await conn.create_process(
            term_type=term, term_size=(cols, rows), encoding=None, env={"LANG": "C.UTF-8"}
        )
    except (OSError, asyncssh.Error) as exc:
        raise TransportError(
            f"Cannot open a shell on the device: {exc}.", "Check that the account has a login shell."
        ) from exc
    return ShellChannel(process)
