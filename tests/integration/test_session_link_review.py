"""Review of SessionLink in a hostile field: a device with SSH preferred and its serial console as fallback.

The simulator serves both (real sshd-like SSH through the fault proxy, a real pty for the console); the
session fails over by itself. What matters is what the flash job's link does at each moment.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from tests.peers.faultproxy import FaultProxy
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.backoff import Backoff
from siteline.core.errors import SitelineError
from siteline.core.flash.preflight import SERIAL_LIMIT
from siteline.core.flash.session_link import SessionLink
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Transport
from siteline.core.transports.factory import open_transport
from siteline.core.transports.transfer import Progress
from siteline.simulator.device import SimulatedDevice

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(45)]
ROOT = Credentials("root", PASSWORD, use_agent=False)


async def _until(pred: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in time")
        await asyncio.sleep(0.02)


class Rig:
    def __init__(self, device: SimulatedDevice, proxy: FaultProxy, session: DeviceSession, link: SessionLink) -> None:
        self.device, self.proxy, self.session, self.link = device, proxy, session, link


def _session(ssh_url: str, serial_url: str, tmp: Path) -> DeviceSession:
    def factory(t: Target, c: Credentials) -> Transport:
        return open_transport(t, c, tmp / "known_hosts", connect_timeout=1.0, accept_new_host_key=True)

    entry = DeviceEntry("gw-two-paths", ssh_url, site="roof", username="root", fallbacks=(serial_url,))
    # preferred_retry as in the app (60 s): the move back to SSH is not something a flash can count on.
    return DeviceSession(entry, factory, ROOT, PluginHost(), Backoff(0.05, maximum=0.2, jitter=0.0))


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    state = make_state(tmp_path / "dev", name="gw-two-paths", boot_delay=0.3)
    tty = tmp_path / "ttyGW"
    async with running_device(state, serial_link=tty) as device:
        assert device.ssh_port is not None
        with FaultProxy(device.ssh_port) as proxy:
            session = _session(f"ssh://root@127.0.0.1:{proxy.port}", f"serial://{tty}?baud=115200", tmp_path)
            link = SessionLink(session, nudge_after=0.5)
            session.start()
            try:
                await _until(lambda: session.state.state is ConnState.UP, what="session up")
                assert link.kind == "ssh"
                yield Rig(device, proxy, session, link)
            finally:
                await link.close()
                await session.stop()


async def test_upload_cut_mid_way_resumes_over_ssh_not_the_serial_fallback(rig: Rig, tmp_path: Path) -> None:
    """A cellular hiccup mid-upload: the session fails over to the console at once; SSH is back a moment later.

    The flash's transfer step (upload.py) then calls put again after link.reconnect; when that put fails while the
    link answers a command, the job ends "failed". So the second put must resume the SFTP upload, not push a
    multi-MiB image down a 115200 baud console (refused above 16 MiB, hours below it)."""
    image = tmp_path / "big.raucb"
    image.write_bytes(os.urandom(20 << 20))
    assert image.stat().st_size > SERIAL_LIMIT
    started = asyncio.Event()

    def progress(p: Progress) -> None:
        if p.done > (2 << 20):
            started.set()

    rig.proxy.shape(rate=20_000_000)  # a good LTE link: the cut lands mid-upload
    upload = asyncio.ensure_future(rig.link.put(image, "/var/tmp/big.raucb", progress))
    await asyncio.wait_for(started.wait(), 20)
    rig.proxy.black_hole()
    rig.proxy.cut()
    with pytest.raises((SitelineError, OSError)):
        await asyncio.wait_for(upload, 20)
    await _until(lambda: rig.session.active_target is not None and rig.session.active_target.is_serial,
                 what="failover to serial")
    rig.proxy.shape()
    rig.proxy.heal()  # SSH is reachable again; the session sits on the console until its 60 s preferred retry
    await rig.link.reconnect(10)  # what transfer() does between two tries
    # BUG: put takes whatever path the session is on now: the serial console, which refuses a 20 MiB image
    # ("a console transfer is meant for files up to 16 MiB") while the link answers -> transfer() Stops "failed".
    result = await rig.link.put(image, "/var/tmp/big.raucb", lambda _p: None)
    assert result.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert rig.link.kind == "ssh"


async def test_reboot_then_back_on_the_serial_fallback_carries_commands(rig: Rig) -> None:
    """After the reboot the session may come back on the console (SSH is tried last after its drop): the link must
    still wait for the real reboot and then carry the health check's commands on whichever path is up."""
    boots = rig.device.boots
    await rig.link.run("true", 10)
    with pytest.raises((SitelineError, OSError, TimeoutError)):
        await rig.link.run("reboot; sleep 5", 10)  # the link drops under it
    await rig.link.reconnect(20)
    assert rig.device.boots == boots + 1
    assert (await rig.link.run("cat /etc/hostname", 10)).stdout.strip() == "gw-two-paths"


async def test_sftp_upload_on_a_fallback_ssh_path_survives_the_move_back(tmp_path: Path) -> None:
    """Two SSH paths (site VPN preferred, LTE as fallback): the flash starts on the fallback; the VPN comes back
    mid-upload and the session moves back to it (make-before-break: the old link closes once its commands end)."""
    state = make_state(tmp_path / "dev", name="gw-two-ssh")
    image = tmp_path / "big.raucb"
    image.write_bytes(os.urandom(12 << 20))
    async with running_device(state) as device:
        assert device.ssh_port is not None
        with FaultProxy(device.ssh_port) as vpn, FaultProxy(device.ssh_port) as lte:
            vpn.black_hole()
            lte.shape(rate=40_000_000)  # ~3 s for the image: the move back lands mid-upload

            def factory(t: Target, c: Credentials) -> Transport:
                return open_transport(t, c, tmp_path / "known_hosts", connect_timeout=0.5, accept_new_host_key=True)

            entry = DeviceEntry("gw-two-ssh", f"ssh://root@127.0.0.1:{vpn.port}", site="roof",
                                fallbacks=(f"ssh://root@127.0.0.1:{lte.port}",))
            session = DeviceSession(entry, factory, ROOT, PluginHost(), Backoff(0.05, maximum=0.2, jitter=0.0),
                                    preferred_retry=0.3)
            link = SessionLink(session)
            session.start()
            try:
                await _until(lambda: session.state.state is ConnState.UP, what="up on the fallback")
                assert session.active_target is not None
                assert session.active_target.port == lte.port
                started = asyncio.Event()
                upload = asyncio.ensure_future(
                    link.put(image, "/var/tmp/big.raucb", lambda p: started.set() if p.done > (1 << 20) else None))
                await asyncio.wait_for(started.wait(), 15)
                vpn.heal()
                await _until(lambda: session.active_target is not None and session.active_target.port == vpn.port,
                             what="moved back to the preferred path")
                # BUG: PathLinks counts only session.run commands as "running" on a link; SessionLink.put calls
                # SshTransport.put directly, so the move back closes the fallback link under the SFTP upload ->
                # link error while the (new) link answers -> the transfer step ends "failed".
                result = await asyncio.wait_for(upload, 20)
                assert result.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
            finally:
                await link.close()
                await session.stop()


async def test_waiting_for_the_reboot_does_not_retry_a_path_that_needs_a_person(tmp_path: Path) -> None:
    """The new image came with new SSH host keys: the SSH path now waits for the technician to accept the key
    (HostKeyError: "needs a person"), the flash goes on over the console. While the link waits for the console after
    the reboot, its nudges (session.reconnect) must not clear that and hammer the path: with a wrong password that is
    a login failure every few seconds for the whole boot timeout (fail2ban/pam_faillock lock the device)."""
    import asyncssh

    state = make_state(tmp_path / "dev", name="gw-two-paths", boot_delay=2.5)
    tty = tmp_path / "ttyHK"
    async with running_device(state, serial_link=tty) as device:
        assert device.ssh_port is not None
        other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{device.ssh_port} {other}\n")
        ssh_url = f"ssh://root@127.0.0.1:{device.ssh_port}"
        tries: list[float] = []

        def factory(t: Target, c: Credentials) -> Transport:
            if t.is_ssh:
                tries.append(time.monotonic())
            return open_transport(t, c, tmp_path / "known_hosts", connect_timeout=1.0, accept_new_host_key=True)

        entry = DeviceEntry("gw-two-paths", ssh_url, site="roof", username="root",
                            fallbacks=(f"serial://{tty}?baud=115200",))
        # The app's backoff grows to a minute; a slow one here so the link's nudge (after 0.5 s) has a wait to cut.
        session = DeviceSession(entry, factory, ROOT, PluginHost(), Backoff(1.5, maximum=5.0, jitter=0.0))
        link = SessionLink(session, nudge_after=0.5)
        session.start()
        try:
            await _until(lambda: session.state.state is ConnState.UP, what="up on the console")
            assert session.active_target is not None
            assert session.active_target.is_serial
            assert len(tries) == 1  # refused once for the host key: left for the technician
            with pytest.raises((SitelineError, OSError, TimeoutError)):
                await link.run("reboot; sleep 5", 10)
            before = len(tries)
            await link.reconnect(20)
            # BUG: _should_nudge -> session.reconnect() clears needs_person every nudge: the refused path is retried.
            assert len(tries) == before, f"the path that needs a person was tried {len(tries) - before} more times"
        finally:
            await link.close()
            await session.stop()
