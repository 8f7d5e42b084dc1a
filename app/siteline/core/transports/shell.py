"""An interactive PTY shell over an SSH connection, as raw bytes (the terminal widget decodes them).

The channel pumps the remote output into a queue and to optional listeners, so the UI can either
``async for chunk in channel`` or register a callback; a flood of output never blocks the loop
because reading yields to the loop on every chunk asyncssh hands us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import asyncssh

from siteline.core.errors import TransportError

log = logging.getLogger(__name__)

OutputListener = Callable[[bytes], None]
ClosedListener = Callable[[str], None]
READ_SIZE = 65536


class ShellChannel:
    """One interactive shell: ``write`` keystrokes, ``resize`` the window, read output bytes."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._listeners: list[OutputListener] = []
        self._closed_listeners: list[ClosedListener] = []
        self.closed = False
        self.close_reason = ""
        self._pump = asyncio.ensure_future(self._read_loop())

    def add_output_listener(self, listener: OutputListener) -> Callable[[], None]:
        """Call ``listener(chunk)`` for every output chunk; returns a function that unregisters it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def add_closed_listener(self, listener: ClosedListener) -> None:
        self._closed_listeners.append(listener)

    async def _read_loop(self) -> None:
        reason = "the shell ended"
        try:
            while True:
                chunk = await self._process.stdout.read(READ_SIZE)
                if not chunk:
                    break
                self._deliver(chunk)
        except (OSError, asyncssh.Error) as exc:
            reason = f"the link broke: {exc}"
        finally:
            self._finish(reason)

    def _deliver(self, chunk: bytes) -> None:
        self._queue.put_nowait(chunk)
        for listener in list(self._listeners):
            try:
                listener(chunk)
            except Exception:  # a broken view must not stop the shell
                log.exception("shell output listener failed")

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._queue.put_nowait(None)
        for listener in list(self._closed_listeners):
            with contextlib.suppress(Exception):
                listener(reason)

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
        """Hang up the shell and wait (briefly) for its channel to close."""
        self._process.close()
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            await asyncio.wait_for(self._process.wait_closed(), 2.0)
        if not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._finish("closed")


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
