"""An interactive shell on a serial console, as raw bytes (the terminal widget decodes them).

Keeps the duck-typed protocol of :class:`siteline.core.transports.shell.ShellChannel`: ``write``,
``resize``, output and closed listeners, ``closed``/``close_reason``, ``close()`` and
``async for chunk in shell``. The serial transport owns the port: it hands received bytes to
:meth:`SerialShell.feed` while the shell is open and calls :meth:`SerialShell.end` when the line
is lost; ``close()`` gives the line back to the transport, which returns it to command mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from siteline.core.errors import TransportError

log = logging.getLogger(__name__)

OutputListener = Callable[[bytes], None]
ClosedListener = Callable[[str], None]
Writer = Callable[[bytes], Awaitable[None]]
# Chunks kept for ``async for`` readers (the reader thread hands over up to 4 KiB each, so ~16 MiB): a
# UI that only uses listeners never drains the queue, and an hour of `tail -f` must not grow without end.
MAX_QUEUED = 4096


class SerialShell:
    """The console's shell handed to a person: keystrokes in, raw output bytes out."""

    def __init__(self, write: Writer, release: Callable[[SerialShell], Awaitable[None]], first: bytes = b"",
                 cols: int = 80, rows: int = 24) -> None:
        self._send = write
        self._release = release
        self.cols, self.rows = cols, rows  # as set on the device when the shell opened
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._listeners: list[OutputListener] = []
        self._closed_listeners: list[ClosedListener] = []
        self.closed = False
        self.close_reason = ""
        # One writer task keeps keystrokes in order (executor writes could overtake each other).
        self._writer = asyncio.ensure_future(self._write_loop())
        if first:  # the prompt that followed the setup: delivered once the caller has attached its listeners
            asyncio.get_running_loop().call_soon(self.feed, first)

    def add_output_listener(self, listener: OutputListener) -> Callable[[], None]:
        """Call ``listener(chunk)`` for every output chunk; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def add_closed_listener(self, listener: ClosedListener) -> None:
        self._closed_listeners.append(listener)

    def feed(self, chunk: bytes) -> None:
        """Bytes the console sent (called by the transport on the event loop)."""
        if self.closed or not chunk:
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self._queue.get_nowait()  # the oldest goes: an iterator that fell this far behind sees a gap
        self._queue.put_nowait(chunk)
        for listener in list(self._listeners):
            try:
                listener(chunk)
            except Exception:  # a broken view must not stop the shell
                log.exception("serial shell output listener failed")

    def end(self, reason: str) -> None:
        """The shell is over (closed, or the line was lost): tell the listeners once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._queue.put_nowait(None)
        self._writer.cancel()
        for listener in list(self._closed_listeners):
            with contextlib.suppress(Exception):
                listener(reason)

    def write(self, data: bytes) -> None:
        """Send keystrokes; ignored once the shell has ended (the UI shows that it ended)."""
        if not self.closed and data:
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

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                self._queue.put_nowait(None)  # later iterators end too
                return
            yield chunk

    async def close(self) -> None:
        """End the shell and give the console back to command mode (Ctrl-C, then a prompt check)."""
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
