"""Keepalive against real sshd through the fault proxy: a black-holed link goes DOWN with a reason, never hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle
from tests.peers.stall import STALL_BOUND

from siteline.core.errors import TransportError
from siteline.core.loopwatch import LoopWatch
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials
from siteline.core.transports.ssh import SshTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd"), pytest.mark.timeout(20)]


@pytest.fixture
def proxy(sshd: SshdHandle) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        yield p


async def _black_hole_goes_down(t: SshTransport, proxy: FaultProxy) -> None:
    """Black-hole the link under a running command; assert the reason, the time taken and the loop's health."""
    down = asyncio.Event()
    t.add_state_listener(lambda s: down.set() if s.state is ConnState.DOWN else None)
    await t.connect()
    watch = LoopWatch(interval=0.02)
    try:
        assert (await t.run("echo up")).stdout == "up\n"
        command = asyncio.create_task(t.run("sleep 30", timeout=25))
        await asyncio.sleep(0.2)
        watch.start()
        proxy.black_hole()
        began = time.monotonic()
        await asyncio.wait_for(down.wait(), 8)
        took = time.monotonic() - began
        with pytest.raises(TransportError):
            await asyncio.wait_for(command, 3)
        assert time.monotonic() - began < 6
        await watch.stop()
    finally:
        await watch.stop()
        await t.close()
    assert 2.5 < took < 5.5, f"keepalive=1 x 3 misses should end the link in about 4 s, took {took:.1f} s"
    assert watch.worst_stall < STALL_BOUND, watch.stats.describe()  # a hang, not load


async def test_black_holed_link_goes_down_after_three_missed_keepalives(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{proxy.port}?keepalive=1")
    t = SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False), tmp_path / "kh",
                     accept_new_host_key=True)
    assert t.keepalive_interval == 1
    reasons: list[str] = []
    t.add_state_listener(lambda s: reasons.append(s.reason) if s.state is ConnState.DOWN else None)
    await _black_hole_goes_down(t, proxy)
    assert reasons[0] == "the device stopped answering (3 keepalives missed)", reasons


async def test_black_holed_bastion_goes_down_too(
    sshd: SshdHandle, sshd_bastion: SshdHandle, tmp_path: Path
) -> None:
    sshd_bastion.authorize(sshd.client_key)
    with FaultProxy(sshd_bastion.port) as to_bastion:
        jump = f"{sshd_bastion.user}@127.0.0.1:{to_bastion.port}"
        target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}?jump={jump}&keepalive=1")
        t = SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False), tmp_path / "kh",
                         accept_new_host_key=True)
        reasons: list[str] = []
        t.add_state_listener(lambda s: reasons.append(s.reason) if s.state is ConnState.DOWN else None)
        await _black_hole_goes_down(t, to_bastion)
    # The device's own keepalives travel through the bastion, so they notice first (or the bastion's do).
    assert reasons[0] == "the device stopped answering (3 keepalives missed)", reasons
