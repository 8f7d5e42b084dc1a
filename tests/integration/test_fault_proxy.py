"""The tests' fault proxy, checked against a plain echo server: delay, bandwidth, cuts, black hole, heal."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.stall import assert_no_stall, measure_stalls

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A threaded echo server on loopback (the proxy's peer)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    clients: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy's cuts reset it
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            clients.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    server.close()
    for c in clients:
        c.close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy(echo_port) as p:
        yield p


def _client(proxy: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _echo(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        piece = s.recv(65536)
        if not piece:
            break
        got += piece
    return got


def test_forwards_and_counts_both_ways(proxy: FaultProxy) -> None:
    with _client(proxy) as s:
        assert _echo(s, b"hello" * 1000) == b"hello" * 1000
    assert proxy.bytes_up == proxy.bytes_down == 5000
    assert proxy.connections == 1


def test_delay_is_half_the_rtt_each_way(proxy: FaultProxy) -> None:
    proxy.shape(rtt=0.2)
    with _client(proxy) as s:
        began = time.monotonic()
        assert _echo(s, b"ping") == b"ping"
        took = time.monotonic() - began
    assert 0.19 <= took < 1.5  # the lower bound is the property; the upper only catches a lost delay setting


def test_bandwidth_cap(proxy: FaultProxy) -> None:
    proxy.shape(rate=1_000_000)
    data = b"x" * 500_000
    with _client(proxy) as s:
        began = time.monotonic()
        assert _echo(s, data) == data
        took = time.monotonic() - began
    assert 0.4 <= took < 3.0  # 0.5 MB each way at 1 MB/s, pipelined; the upper bound only catches no cap


def test_cut_after_n_bytes_closes_both_sides(proxy: FaultProxy) -> None:
    proxy.cut_after(up=1000)
    with _client(proxy) as s:
        s.sendall(b"a" * 5000)
        got = b""
        with contextlib.suppress(ConnectionResetError):  # a reset or a clean close: both end the stream
            while piece := s.recv(65536):
                got += piece
    assert proxy.bytes_up == 1000
    assert len(got) <= 1000


def test_black_hole_then_heal(proxy: FaultProxy) -> None:
    with _client(proxy) as s:
        assert _echo(s, b"one") == b"one"
        proxy.black_hole()
        s.sendall(b"two")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(10)
        proxy.heal()
        s.settimeout(5)
        assert s.recv(10) == b"two"  # held, not lost: the link came back


def test_cut_now_and_new_connections_still_work(proxy: FaultProxy) -> None:
    with _client(proxy) as s:
        assert _echo(s, b"a") == b"a"
        proxy.cut()
        s.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
    with _client(proxy) as s2:
        assert _echo(s2, b"b") == b"b"



def test_reset_cut_is_an_rst(proxy: FaultProxy) -> None:
    with _client(proxy) as s:
        assert _echo(s, b"a") == b"a"
        proxy.cut(reset=True)
        s.settimeout(2)
        with pytest.raises(ConnectionResetError):
            s.recv(10)


@pytest.mark.asyncio
async def test_stall_helper_sees_a_block_right_before_it_ends() -> None:
    """tests.peers.stall, the fault tests' other tool: a stall up to the end of the block still counts."""
    async with measure_stalls() as watch:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 (the point: the loop is blocked, and the block ends at once)
    assert 0.25 < watch.worst_stall < 2.0
    with pytest.raises(AssertionError, match="worst event-loop stall"):
        assert_no_stall(watch, "a blocking sleep", bound=0.1)
