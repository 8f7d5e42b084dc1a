"""Streamed commands and link faults over SSH, through the fault proxy in front of real sshd."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.ssh import SshTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd"), pytest.mark.timeout(15)]


@pytest.fixture
def proxy(sshd: SshdHandle) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        yield p


def _transport(sshd: SshdHandle, proxy: FaultProxy, tmp: Path, keepalive: float = 0.3) -> SshTransport:
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{proxy.port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    return SshTransport(target, creds, tmp / "known_hosts", keepalive_interval=keepalive, connect_timeout=5,
                        accept_new_host_key=True)


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


async def test_lines_arrive_as_they_are_printed_and_exit_code_is_kept(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        stamps: list[tuple[str, float]] = []
        began = time.monotonic()
        async with t.stream("for i in 1 2 3; do echo line$i; sleep 0.3; done; printf 'tail\\377'; exit 3") as lines:
            async for line in lines:
                stamps.append((line, time.monotonic() - began))
        assert [s for s, _ in stamps] == ["line1", "line2", "line3", "tail\ufffd"]
        assert stamps[0][1] < stamps[-1][1] - 0.5  # the first line came as printed, not when the command ended
        assert lines.exit_code == 3
    finally:
        await t.close()


async def test_leaving_the_stream_stops_the_remote_command(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        async with t.stream(f"echo $$ > {pidfile}; while true; do echo tick; sleep 0.05; done") as lines:
            got: list[str] = []
            async for line in lines:
                got.append(line)
                if len(got) == 3:
                    break
        assert got == ["tick"] * 3
        pid = int(pidfile.read_text())
        assert await asyncio.to_thread(_gone, pid, 3.0), "the remote loop kept running after the stream closed"
        assert (await t.run("echo still-usable")).stdout == "still-usable\n"
    finally:
        await t.close()


async def test_cancelling_the_reader_task_closes_the_channel(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        stream = t.stream("sleep 30")

        async def consume() -> None:
            async with stream as lines:
                async for _ in lines:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.exit_code is None
    finally:
        await t.close()


async def test_cut_mid_stream_gives_transport_error_quickly(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        async with t.stream("echo first; sleep 30") as lines:
            assert await lines.__anext__() == "first"
            proxy.cut()
            began = time.monotonic()
            with pytest.raises(TransportError, match="broke"):
                await lines.__anext__()
            assert time.monotonic() - began < 3
    finally:
        await t.close()


async def test_cut_mid_command_gives_transport_error_quickly(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    t = _transport(sshd, proxy, tmp_path)
    await t.connect()
    try:
        asyncio.get_running_loop().call_later(0.3, proxy.cut)
        began = time.monotonic()
        with pytest.raises(TransportError):
            await t.run("sleep 30", timeout=20)
        assert time.monotonic() - began < 3
    finally:
        await t.close()


async def test_black_holed_link_ends_in_bounded_time(sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path) -> None:
    t = _transport(sshd, proxy, tmp_path, keepalive=0.3)  # 3 missed keepalives: about a second
    await t.connect()
    try:
        async with t.stream("while true; do echo tick; sleep 0.1; done") as lines:
            assert await lines.__anext__() == "tick"
            proxy.black_hole()
            began = time.monotonic()
            with pytest.raises(TransportError):
                async for _ in lines:
                    pass
            assert time.monotonic() - began < 5
    finally:
        await t.close()
