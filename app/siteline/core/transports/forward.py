"""Local port forward over SSH: the device's web UI (or any TCP service on it) at a localhost port.

Why not asyncssh's ``forward_local_port``: it drops a connection the device cannot complete
without a word. Here each such failure is logged with what to check and counted, and the
forward keeps serving; the listener binds to loopback unless the caller asks otherwise, because
a technician's laptop on a customer's network must not expose the device to that network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from types import TracebackType
from typing import Any

import asyncssh

from siteline.core.errors import TransportError

log = logging.getLogger(__name__)

CHUNK = 65536


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _pump(reader: Any, writer: Any) -> None:
    """Copy one direction until end of stream, then pass the end on (half-close, as TCP does)."""
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class Forward:
    """One listening local port whose connections are carried to ``remote_host:remote_port`` on the device.

    ``async with await transport.forward_local(80) as fwd: open(fwd.url)`` or call :meth:`close`.
    ``connections`` counts accepted local connections; ``failures`` those the device could not complete.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, remote_host: str, remote_port: int, label: str) -> None:
        self._conn = conn
        self.remote_host, self.remote_port = remote_host, remote_port
        self.listen_host = ""
        self.local_port = 0
        self.connections = 0
        self.failures = 0
        self._label = label
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/``: what to open in a browser for a device's web UI."""
        return f"http://{_url_host(self.listen_host)}:{self.local_port}/"

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def start(self, listen_host: str, local_port: int) -> None:
        if not _is_loopback(listen_host):
            log.warning("forward to %s listens on %s: other machines on that network can reach the device through it",
                        self._label, listen_host)
        try:
            self._server = await asyncio.start_server(self._serve, listen_host, local_port)
        except OSError as exc:
            raise TransportError(
                f"Cannot listen on {listen_host}:{local_port} for the forward to {self._label}: {exc.strerror or exc}.",
                "Pick another local port, or 0 for any free one.",
            ) from exc
        sockname = self._server.sockets[0].getsockname()
        self.listen_host, self.local_port = str(sockname[0]), int(sockname[1])
        log.info("forwarding %s to %s:%d on %s", self.url, self.remote_host, self.remote_port, self._label)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        try:
            await self._carry(client_r, client_w)
        except Exception:  # one broken connection must never take the forward (or the loop's log) down
            log.exception("forward %s: a connection failed", self.url)
        finally:
            client_w.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await client_w.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _carry(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            dev_r, dev_w = await self._conn.open_connection(self.remote_host, self.remote_port)
        except (asyncssh.Error, OSError) as exc:
            self.failures += 1
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            log.warning(
                "forward %s: %s could not connect to %s:%d (%s); is that service running on the device, "
                "and does its sshd allow TCP forwarding?",
                self.url, self._label, self.remote_host, self.remote_port, reason,
            )
            return
        try:
            await asyncio.gather(_pump(client_r, dev_w), _pump(dev_r, client_w))
        finally:
            dev_w.close()
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(dev_w.channel.wait_closed(), 2.0)

    async def close(self) -> None:
        """Stop listening and end the connections in flight."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        log.info("closed the forward %s", self.url)

    async def __aenter__(self) -> Forward:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def open_forward(
    conn: asyncssh.SSHClientConnection,
    remote_host: str,
    remote_port: int,
    local_port: int,
    listen_host: str,
    label: str,
) -> Forward:
    """Listen on ``listen_host:local_port`` (0: any free port) and carry connections to the device's side."""
    if not 0 < remote_port < 65536 or not 0 <= local_port < 65536:
        raise TransportError(
            f"Port {remote_port if not 0 < remote_port < 65536 else local_port} is not a TCP port.",
            "Use 1-65535 (0 for any free local port).",
        )
    fwd = Forward(conn, remote_host, remote_port, label)
    await fwd.start(listen_host, local_port)
    return fwd
