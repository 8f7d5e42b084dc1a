"""A TCP fault proxy of the tests' own: a bad link between Siteline and a real peer.

It listens on 127.0.0.1:<free port> and forwards every connection to the peer. Faults, all changeable
while traffic flows: per-direction delay (RTT/2), a bandwidth cap (token bucket, shared by every
connection like one radio link), "cut after N more bytes" in either direction (closes both sides, like
a cellular drop), a black hole (nothing moves, sockets stay open) and :meth:`FaultProxy.heal`.

The proxy runs its own event loop in a thread, so sync tests and asyncio tests use it alike; every
public method is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

from tests.peers import free_port

CHUNK = 16384
QUEUE_LIMIT = 1 << 20  # bytes held per direction and connection: a modem's buffer, not bufferbloat


@dataclass
class _Direction:
    """One direction of the link (up: client → peer, down: peer → client)."""

    delay: float = 0.0
    rate: float | None = None  # bytes per second; None = unlimited
    cut_at: int | None = None  # absolute byte count at which every connection is cut
    sent: int = 0
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def burst(self) -> float:
        return max(float(CHUNK), (self.rate or 0.0) * 0.02)

    def wait_for(self, n: int) -> float:
        """Seconds to wait before ``n`` bytes may go (token bucket); takes the tokens when it returns 0."""
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.burst(), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class _Pipe:
    """Moves bytes one way for one connection: a reader fills a delay queue, a writer drains it."""

    def __init__(self, proxy: FaultProxy, d: _Direction, src: asyncio.StreamReader, dst: asyncio.StreamWriter):
        self.proxy, self.d, self.src, self.dst = proxy, d, src, dst
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.changed = asyncio.Event()

    async def read_loop(self) -> None:
        while True:
            while self.queued >= QUEUE_LIMIT:
                self.changed.clear()
                await self.changed.wait()
            data = await self.src.read(CHUNK)
            if not data:
                self.queue.append((0.0, b""))  # end of stream marker
                self.changed.set()
                return
            self.queue.append((time.monotonic() + self.d.delay, data))
            self.queued += len(data)
            self.changed.set()

    async def write_loop(self) -> None:
        while True:
            while not self.queue or not self.proxy._flowing.is_set():
                self.changed.clear()
                if not self.proxy._flowing.is_set():
                    await self.proxy._flowing.wait()
                else:
                    await self.changed.wait()
            due, data = self.queue[0]
            if not data:
                with contextlib.suppress(OSError):
                    self.dst.write_eof()
                return
            if (late := due - time.monotonic()) > 0:
                await asyncio.sleep(late)
                continue
            if (pause := self.d.wait_for(len(data))) > 0:
                await asyncio.sleep(pause)
                continue
            self.queue.popleft()
            self.queued -= len(data)
            self.changed.set()
            if await self._forward(data):
                return

    async def _forward(self, data: bytes) -> bool:
        """Send ``data`` (or what fits before a planned cut); True when the connection is cut."""
        cut = self.d.cut_at is not None and self.d.sent + len(data) >= self.d.cut_at
        if cut and self.d.cut_at is not None:
            data = data[: max(0, self.d.cut_at - self.d.sent)]
        self.d.sent += len(data)
        self.dst.write(data)
        await self.dst.drain()
        if cut:
            self.proxy._cut_all(graceful=True)
        return cut


class _Conn:
    def __init__(self, client: asyncio.StreamWriter, peer: asyncio.StreamWriter) -> None:
        self.writers = (client, peer)
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self, graceful: bool = False, reset: bool = False) -> None:
        # A cut sends FIN after what was already forwarded: bytes that crossed the link were delivered
        # (an RST would make the kernel discard the peer's unread buffer, which no radio drop does).
        for w in self.writers:
            sock = w.get_extra_info("socket")
            if reset and sock is not None:
                # Linger on, timeout 0: close() sends an RST instead of a FIN.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if graceful and not reset:
                w.transport.close()
            else:
                w.transport.abort()
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    """``with FaultProxy(peer_port) as p:`` then connect to ``127.0.0.1:p.port``."""

    def __init__(self, peer_port: int, peer_host: str = "127.0.0.1") -> None:
        self.peer_host, self.peer_port = peer_host, peer_port
        self.port = 0
        self.up, self.down = _Direction(), _Direction()
        self.connections = 0  # accepted so far
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def _soon(self, fn: object) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    async def _start(self) -> None:
        self._flowing.set()
        for _attempt in range(5):
            self.port = free_port()
            try:
                self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
                return
            except OSError:
                continue
        raise RuntimeError("the fault proxy found no free port")

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._cut_all()
        self._flowing.set()
        tasks = [t for c in self._conns for t in c.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            peer_r, peer_w = await asyncio.open_connection(self.peer_host, self.peer_port)
        except OSError:
            writer.transport.abort()
            return
        conn = _Conn(writer, peer_w)
        self._conns.add(conn)
        pipes = (_Pipe(self, self.up, reader, peer_w), _Pipe(self, self.down, peer_r, writer))
        conn.tasks = [asyncio.create_task(f()) for p in pipes for f in (p.read_loop, p.write_loop)]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            for w in conn.writers:
                w.close()
            for w in conn.writers:
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    def _cut_all(self, graceful: bool = False, reset: bool = False) -> None:
        for conn in list(self._conns):
            conn.abort(graceful, reset)

    # -- faults (any thread) ----------------------------------------------------------------------

    def shape(self, rtt: float = 0.0, rate: float | None = None) -> None:
        """Delay each direction by ``rtt / 2`` seconds and cap each at ``rate`` bytes per second."""
        for d in (self.up, self.down):
            d.delay, d.rate = rtt / 2, rate

    def cut_after(self, up: int | None = None, down: int | None = None) -> None:
        """Cut every connection once ``up``/``down`` more bytes have gone that way."""
        if up is not None:
            self.up.cut_at = self.up.sent + up
        if down is not None:
            self.down.cut_at = self.down.sent + down

    def cut(self, reset: bool = False) -> None:
        """Close every open connection now (both sides): with FIN, or with ``reset`` an RST (a NAT or
        firewall that forgot the connection answers the next packet so)."""
        self._soon(lambda: self._cut_all(graceful=not reset, reset=reset))

    def black_hole(self) -> None:
        """Stop forwarding in both directions; sockets stay open, data waits (like a dead radio)."""
        self._soon(self._flowing.clear)

    def heal(self) -> None:
        """Remove every fault: no delay, no cap, no planned cut, bytes flow again."""
        self.shape()
        self.up.cut_at = self.down.cut_at = None
        self._soon(self._flowing.set)

    @property
    def bytes_up(self) -> int:
        return self.up.sent

    @property
    def bytes_down(self) -> int:
        return self.down.sent

    def reset_counters(self) -> None:
        self.up.sent = self.down.sent = 0
