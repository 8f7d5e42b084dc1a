"""SessionLink: the flash job's link over the window's DeviceSession, against a simulated device over SSH.

Commands and an SFTP upload go through the live session; after a reboot the link waits until the
session (which reconnects by itself) is up and answers again, and gives up with TimeoutError when the
device stays away.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.peers.sim import PASSWORD, running_device

from siteline.core.backoff import Backoff
from siteline.core.flash.session_link import SessionLink
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Transport
from siteline.core.transports.ssh import SshTransport
from siteline.core.transports.transfer import Progress
from siteline.simulator.state import DeviceState

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(40)]


def _factory(known_hosts: Path) -> Callable[[Target, Credentials], Transport]:
    def make(target: Target, creds: Credentials) -> Transport:
        return SshTransport(target, creds, known_hosts, accept_new_host_key=True, connect_timeout=2.0)

    return make


async def _until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def _session(port: int, tmp: Path, backoff: Backoff) -> DeviceSession:
    entry = DeviceEntry("gw-link", f"ssh://root@127.0.0.1:{port}", site="roof")
    return DeviceSession(entry, _factory(tmp / "known_hosts"), Credentials("root", PASSWORD, use_agent=False),
                         PluginHost(), backoff=backoff)


async def test_run_put_and_reboot_over_the_session(sim_state: DeviceState, tmp_path: Path) -> None:
    sim_state.config.boot_delay = 0.3
    sim_state.save_config()
    image = tmp_path / "update.raucb"
    image.write_bytes(os.urandom(300_000))
    async with running_device(sim_state) as device:
        assert device.ssh_port is not None
        # A slow backoff, as in the app: the link must bring the retry forward instead of sitting it out.
        session = _session(device.ssh_port, tmp_path, Backoff(initial=20.0, maximum=60.0, jitter=0.0))
        link = SessionLink(session, nudge_after=0.5)
        session.start()
        try:
            await _until(lambda: session.state.state is ConnState.UP)
            assert link.kind == "ssh"
            assert (await link.run("echo hi", 10)).stdout == "hi\n"
            seen: list[Progress] = []
            result = await link.put(image, "/root/update.raucb", seen.append)
            assert result.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
            assert seen
            assert seen[-1].done == seen[-1].total == image.stat().st_size
            remote = await link.run("sha256sum update.raucb", 10)  # the login directory: /root
            assert remote.stdout.split()[0] == result.sha256
            boots = device.boots
            await link.run("reboot", 10)
            began = time.monotonic()
            await link.reconnect(20)
            assert device.boots == boots + 1, "reconnect returned before the device had rebooted"
            assert time.monotonic() - began < 10, "the 20 s backoff was sat out"
            assert (await link.run("echo back", 10)).stdout == "back\n"
        finally:
            await link.close()
            await session.stop()


async def test_reconnect_gives_up_when_the_device_stays_away(sim_state: DeviceState, tmp_path: Path) -> None:
    async with running_device(sim_state) as device:
        assert device.ssh_port is not None
        session = _session(device.ssh_port, tmp_path, Backoff(initial=0.05, maximum=0.2, jitter=0.0))
        link = SessionLink(session)
        session.start()
        try:
            await _until(lambda: session.state.state is ConnState.UP)
            await device.stop()  # powered off for good
            began = time.monotonic()
            with pytest.raises(TimeoutError, match="did not answer again within 1 s"):
                await link.reconnect(1.0)
            assert time.monotonic() - began < 3
        finally:
            await link.close()
            await session.stop()


async def test_reconnect_waits_for_the_drop_only_after_a_command(sim_state: DeviceState, tmp_path: Path) -> None:
    """A fresh link (Siteline restarted after the reboot) returns at once; a reboot that never happens times out."""
    async with running_device(sim_state) as device:
        assert device.ssh_port is not None
        session = _session(device.ssh_port, tmp_path, Backoff(initial=0.05, maximum=0.2, jitter=0.0))
        link = SessionLink(session)
        session.start()
        try:
            await _until(lambda: session.state.state is ConnState.UP)
            await link.reconnect(2.0)  # nothing sent yet: the device is back as far as this link knows
            assert (await link.run("true", 10)).ok  # not a reboot: the device never goes away
            with pytest.raises(TimeoutError, match=r"did not go away within 0\.3 s"):
                await link.reconnect(0.3)
        finally:
            await link.close()
            await session.stop()
