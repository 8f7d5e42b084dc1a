"""The provisioning link and the step context over a simulated device's serial console and SSH."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.provisioning.api import StepContext
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import Profile
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.factory import open_transport
from siteline.simulator import rootfs

pytestmark = pytest.mark.asyncio


def _context(link: TransportProvisionLink, *, dry_run: bool = False) -> StepContext:
    job = ProvisionJob.new(target="serial", site="s", profile_name="p", profile_sha256="0")
    return StepContext(job=job, profile=Profile("p", ("*",)), link=link, step="names", dry_run=dry_run)


async def test_serial_link_writes_a_file_and_proves_passwords(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev")
    tty = tmp_path / "ttyGW"
    async with running_device(state, ssh=False, serial_link=tty):
        target = parse_target(f"serial://{tty}?baud=115200")
        link = TransportProvisionLink(target, Credentials("root", PASSWORD),
                                      lambda c: open_transport(target, c, tmp_path / "known_hosts"))
        try:
            ctx = _context(link)
            data = bytes(range(256)) * 40  # binary, several chunks
            await ctx.write_file("/etc/siteline/blob.bin", data, mode=0o600)
            assert (rootfs.rootfs(state.root) / "etc/siteline/blob.bin").read_bytes() == data
            assert not await link.try_login(Credentials("root", "wrong"), 10)
            assert await link.try_login(Credentials("root", PASSWORD), 10)
            assert (await link.run("echo still-here", 10)).stdout.strip() == "still-here"
            # What Siteline typed (a password for chpasswd, a key's chunks) is kept out of the shell's history.
            assert (await link.run('echo "${HISTFILE-off}"', 10)).stdout.strip() == "off"
        finally:
            await link.close()


async def test_dry_run_plans_and_masks_without_running(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev")
    async with running_device(state, ssh=False, serial_link=tmp_path / "tty"):
        target = parse_target(f"serial://{tmp_path / 'tty'}?baud=115200")
        link = TransportProvisionLink(target, Credentials("root", PASSWORD),
                                      lambda c: open_transport(target, c, tmp_path / "known_hosts"))
        try:
            ctx = _context(link, dry_run=True)
            result = await ctx.change("echo 'root:Sup3rSecret' | chpasswd", secrets=["Sup3rSecret"], what="replace")
            assert result.ok
            await ctx.write_file("/etc/siteline/x", b"abc")
            assert "Sup3rSecret" not in repr(ctx.plan)
            assert "********" in ctx.plan[0].command
            assert not (rootfs.rootfs(state.root) / "etc/siteline/x").exists()
            assert state.check_password("root", PASSWORD)
        finally:
            await link.close()
