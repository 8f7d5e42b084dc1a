"""TransportLink: commands, SFTP uploads and reconnecting after a reboot, over the simulator's real SSH server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.integration.flash_worker import ssh_link
from tests.peers import free_port
from tests.peers.sim import make_state, running_device

from siteline.core.transports.transfer import Progress


@pytest.mark.asyncio
async def test_run_put_and_reconnect_after_a_reboot(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", boot_delay=0.2)
    local = tmp_path / "payload.bin"
    local.write_bytes(b"x" * 300_000)
    seen: list[Progress] = []
    async with running_device(state) as device:
        assert device.ssh_port is not None
        link = ssh_link(device.ssh_port, tmp_path / "known_hosts")
        try:
            assert (await link.run("echo hi", 10)).stdout == "hi\n"
            assert link.kind == "ssh"
            result = await link.put(local, "/data/payload.bin", seen.append)
            assert result.size == 300_000
            assert seen
            assert seen[-1].done == 300_000
            await link.run("reboot", 10)
            await link.reconnect(15)
            assert device.boots == 1
            assert (await link.run("echo back", 10)).stdout == "back\n"
        finally:
            await link.close()


@pytest.mark.asyncio
async def test_reconnect_gives_up_after_the_timeout(tmp_path: Path) -> None:
    link = ssh_link(free_port(), tmp_path / "known_hosts")  # nothing listens there
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="did not answer within 1 s"):
        await link.reconnect(0.6)
    assert time.monotonic() - began < 5
    await link.close()
