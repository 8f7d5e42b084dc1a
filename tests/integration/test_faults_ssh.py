"""SSH on a bad link: cuts in the middle of flowing output, of a command's reply, of the handshake.

Real OpenSSH sshd behind the tests' fault proxy. Each fault must end in a clear TransportError within
a few seconds (never a hang, never a silently truncated result), and the event loop must not stall.
Keepalive and black holes are covered in test_ssh_stream.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle
from tests.peers.stall import assert_no_stall, measure_stalls

from siteline.core.backoff import Backoff
from siteline.core.errors import TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnState, Credentials, Transport
from siteline.core.transports.ssh import SshTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd"), pytest.mark.timeout(30)]
FLOOD = "i=0; while :; do i=$((i+1)); echo line-$i; done"  # output as fast as the link takes it
MEGABYTE = "head -c 1000000 /dev/zero | tr '\\0' x"


@pytest.fixture
def proxy(sshd: SshdHandle) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        yield p


def _transport(sshd: SshdHandle, port: int, tmp: Path) -> SshTransport:
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    return SshTransport(target, creds, tmp / "known_hosts", keepalive_interval=1.0, connect_timeout=5,
                        accept_new_host_key=True)


async def _until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def _drain(lines: AsyncIterator[str], into: list[str]) -> None:
    async for line in lines:
        into.append(line)


async def test_cut_while_a_stream_is_flowing(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    t = _transport(sshd, proxy.port, tmp_path)
    await t.connect()
    try:
        received: list[str] = []
        async with measure_stalls() as watch, t.stream(FLOOD) as lines:
            assert (await lines.__anext__()).startswith("line-")
            proxy.cut_after(down=200_000)  # lands inside an SSH packet, mid-line
            began = time.monotonic()
            with pytest.raises(TransportError, match="broke while"):
                await _drain(lines, received)
            took = time.monotonic() - began
        assert_no_stall(watch, "cut mid-stream")
        assert len(received) > 1000
        assert all(line.startswith("line-") for line in received)  # whole lines only, never a half line
        assert took < 3
        await _until(lambda: t.state.state is ConnState.DOWN, 3, "DOWN")
        assert "connection" in t.state.reason
    finally:
        await t.close()


async def test_cut_in_the_middle_of_a_commands_output(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    t = _transport(sshd, proxy.port, tmp_path)
    await t.connect()
    try:
        assert len((await t.run(MEGABYTE)).stdout) == 1_000_000  # whole over a healthy link
        async with measure_stalls() as watch:
            proxy.cut_after(down=300_000)
            began = time.monotonic()
            # A truncated stdout must never come back as a Result: it would look like a success.
            with pytest.raises(TransportError):
                await t.run(MEGABYTE, timeout=20)
            took = time.monotonic() - began
        assert_no_stall(watch, "cut mid-run")
        assert took < 3
        proxy.heal()
        await t.connect()
        assert (await t.run("echo again")).stdout == "again\n"
    finally:
        await t.close()


async def test_cut_during_the_handshake(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    t = _transport(sshd, proxy.port, tmp_path)
    async with measure_stalls() as watch:
        proxy.cut_after(down=600)  # the server's banner and part of its key exchange, then nothing
        began = time.monotonic()
        with pytest.raises(TransportError):
            await t.connect()
        took = time.monotonic() - began
    assert_no_stall(watch, "cut mid-handshake")
    assert took < 5
    assert t.state.state is ConnState.DOWN


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_session_survives_a_cut_and_says_why(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path,
                                                   reset: bool) -> None:
    def factory(target: Target, creds: Credentials) -> Transport:
        return SshTransport(target, creds, tmp_path / "known_hosts", keepalive_interval=1.0, connect_timeout=5,
                            accept_new_host_key=True)

    entry = DeviceEntry("dev", f"ssh://{sshd.user}@127.0.0.1:{proxy.port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    session = DeviceSession(entry, factory, creds, PluginHost(), backoff=Backoff(initial=0.1, maximum=0.3))
    session.start()
    try:
        await _until(lambda: session.state.state is ConnState.UP, what="UP")
        async with measure_stalls() as watch:
            running = asyncio.create_task(session.run("sleep 20", timeout=30))
            await asyncio.sleep(0.3)
            proxy.cut(reset=reset)
            with pytest.raises(TransportError):
                await asyncio.wait_for(running, 5)
            await _until(lambda: session.state.state is not ConnState.UP, 5, "the session noticing")
            await _until(lambda: session.state.state is ConnState.UP, 10, "UP again")
            assert (await session.run("echo back")).stdout == "back\n"
        assert_no_stall(watch, "session over a cut")
    finally:
        await session.stop()
