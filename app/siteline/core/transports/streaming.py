"""Lines of a long-running command (``journalctl -f``, ``logread -f``) as they arrive over SSH.

Use it as ``async with stream_lines(conn, cmd) as lines: async for line in lines: ...``. Leaving the
block, breaking out or cancelling the task closes the channel, which stops the remote command. When
the command ends, ``lines.exit_code`` holds its code; a broken link ends the iteration with
:class:`TransportError`, never a hang (the connection's keepalive notices a silent link).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from types import TracebackType

import asyncssh

from siteline.core.errors import TransportError

CHUNK = 1 << 16


class LineStream:
    """An async iterator of decoded lines (no line ending) from one remote command."""

    def __init__(self, conn: asyncssh.SSHClientConnection, command: str) -> None:
        self.conn, self.command = conn, command
        self.exit_code: int | None = None
        self.stderr_tail = ""
        self._process: asyncssh.SSHClientProcess[bytes] | None = None
        self._closed = False
        # Read in chunks, handed out a line at a time: one readline per line capped a log flood at
        # ~150k lines/s; a chunk holds hundreds of lines.
        self._lines: deque[str] = deque()
        self._partial = b""

    async def start(self) -> LineStream:
        try:
            self._process = await self.conn.create_process(
                self.command, encoding=None, stdin=asyncssh.DEVNULL
            )
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"Cannot start '{self.command[:80]}' on the device: {exc}.") from exc
        return self

    async def __aenter__(self) -> LineStream:
        return await self.start() if self._process is None else self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> LineStream:
        return self

    async def __anext__(self) -> str:
        if self._process is None:
            await self.start()
        process = self._process
        assert process is not None
        if self._lines:
            return self._lines.popleft()
        if self._closed:
            raise StopAsyncIteration
        while True:
            try:
                raw = await process.stdout.read(CHUNK)
            except asyncio.CancelledError:
                await self.aclose()
                raise
            except (OSError, asyncssh.Error) as exc:
                await self.aclose()
                raise self._broken(exc) from exc
            if not raw:
                break
            *complete, self._partial = (self._partial + raw).split(b"\n")
            if complete:
                self._lines.extend(_text(line) for line in complete)
                return self._lines.popleft()
        if self._partial:  # the last line had no newline
            last, self._partial = self._partial, b""
            return _text(last)
        await self._finish(process)
        raise StopAsyncIteration

    async def _finish(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        """The output ended: collect the exit code, or report the link that broke."""
        try:
            err = await asyncio.wait_for(process.stderr.read(65536), 5.0)
            self.stderr_tail = err.decode("utf-8", errors="replace")[-2000:]
            await asyncio.wait_for(process.wait_closed(), 5.0)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self.aclose()
            raise self._broken(exc) from exc
        self._closed = True
        status, sig = process.exit_status, process.exit_signal
        if status is not None and status >= 0:
            self.exit_code = status
        elif sig:
            with contextlib.suppress(KeyError):
                self.exit_code = 128 + int(signal.Signals[f"SIG{sig[0]}"])
            self.exit_code = self.exit_code if self.exit_code is not None else 255
        else:
            # No exit status at the end of the output: the channel was torn down, not the command done.
            raise self._broken(None)

    def _broken(self, exc: BaseException | None) -> TransportError:
        why = f": {getattr(exc, 'reason', None) or exc}" if exc else ""
        return TransportError(
            f"The link to the device broke while '{self.command[:80]}' was running{why}.",
            "Start it again when the device is reachable.",
        )

    async def aclose(self) -> None:
        """Stop the remote command (closing the channel) and wait briefly for it to go."""
        if self._closed or self._process is None:
            self._closed = True
            return
        self._closed = True
        process = self._process
        # Closing alone leaves e.g. `sleep 30` running and sshd holding the channel open until it
        # ends; OpenSSH honours the 'signal' request, so ask the command to stop first.
        with contextlib.suppress(OSError, asyncssh.Error):
            process.send_signal("TERM")
        process.close()
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            # Without privilege separation sshd refuses the signal; a command that prints nothing
            # then holds the channel until it ends. Do not make the caller wait for that.
            await asyncio.wait_for(process.wait_closed(), 0.3)


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")


def stream_lines(conn: asyncssh.SSHClientConnection, command: str) -> LineStream:
    """Lines of ``command``'s stdout as they arrive; see :class:`LineStream`."""
    return LineStream(conn, command)
