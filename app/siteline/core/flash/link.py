"""A FlashLink over any Transport the caller can (re)open: SFTP for SSH, checked console chunks otherwise.

``connect`` opens and returns a connected transport; it is called again after a reboot or a cut link
(a transport that lost its device is not reused: the old one is closed and a new one opened), so the
caller decides how to reach the device (host key pinning, credentials) once, in that function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from siteline.core.errors import SitelineError
from siteline.core.targets import Target
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import Result, Transport
from siteline.core.transports.console_transfer import put_over_console
from siteline.core.transports.transfer import Progress, TransferResult

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 10.0  # the command that proves a reopened link carries commands
RETRY_FIRST, RETRY_MAX = 0.05, 1.0  # seconds between tries to reopen, doubling: a device back is seen within 1 s


def kind_of(transport: Transport) -> str:
    """"ssh" | "serial" | "mqtt" from the transport's target (``ssh`` when it has none)."""
    target = getattr(transport, "target", None)
    if isinstance(target, Target):
        return "serial" if target.is_serial else "mqtt" if target.is_mqtt else "ssh"
    return "ssh"


class TransportLink:
    """``FlashLink`` over transports made by ``connect``; ``close`` closes the one it holds."""

    def __init__(self, connect: Callable[[], Awaitable[Transport]], *, kind: str = "ssh") -> None:
        self._connect = connect
        self._transport: Transport | None = None
        self._lock = asyncio.Lock()
        self.kind = kind  # until the first transport says otherwise
        self.line_bps: int | None = None  # a serial line's rate: the transfer estimate uses it

    async def transport(self) -> Transport:
        async with self._lock:
            if self._transport is None:
                transport = await self._connect()
                self._transport = transport
                self.kind = kind_of(transport)
                target = getattr(transport, "target", None)
                if isinstance(target, Target) and target.is_serial and not target.autobaud:
                    self.line_bps = target.baud
        return self._transport

    async def run(self, command: str, timeout: float) -> Result:
        transport = await self.transport()
        return await transport.run(command, timeout)

    async def put(self, local: Path, remote: str, progress: Callable[[Progress], None]) -> TransferResult:
        transport = await self.transport()
        own_put = getattr(transport, "put", None)
        if self.kind == "ssh" and own_put is not None:  # SFTP: resumable from .part, SHA-256 checked
            result: TransferResult = await own_put(local, remote, progress)
            return result
        max_line = cmds.MAX_TYPED_LINE if self.kind == "serial" else cmds.LONG_LINE
        return await put_over_console(transport.run, local, remote, progress, line_bps=self.line_bps,
                                      max_line=max_line)

    async def reconnect(self, timeout: float) -> None:
        """Drop the transport held and open new ones until the device answers; TimeoutError after ``timeout``."""
        await self.close()
        deadline = time.monotonic() + timeout
        wait, last = RETRY_FIRST, "no answer yet"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the device did not answer within {timeout:.0f} s ({last})")
            try:
                async with asyncio.timeout(left):
                    result = await self.run("true", min(left, ANSWER_TIMEOUT))
                if result.ok:
                    return
                last = f"`true` exited {result.exit_code}"
            except (SitelineError, OSError, TimeoutError, EOFError) as exc:
                last = str(exc) or type(exc).__name__
            await self.close()
            await asyncio.sleep(min(wait, max(deadline - time.monotonic(), 0.0)))
            wait = min(wait * 2, RETRY_MAX)

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(SitelineError, OSError, TimeoutError, EOFError):
                await transport.close()

