"""A raw image written to the simulated device's inactive slot over its real SSH server, as Siteline does it.

Siteline's SshTransport.put uploads the image (SFTP into the device's files: /var/tmp there is the device's
own), then the raw backend's install command runs in the device's shell: gzip | dd to /dev/mmcblk0p3, which
the host guard makes the slot's file in the state directory. The host's /dev and /var/tmp never change.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from tests.integration.test_sim_hostguard import require_guard
from tests.peers import require_tool
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.ssh import SshTransport
from siteline.simulator import slots
from siteline.simulator.state import DeviceState
from siteline_slots.update import RawBackend

pytestmark = pytest.mark.timeout(60)
SLOT = slots.SLOT_TABLE[1]  # B, /dev/mmcblk0p3: the inactive slot of a new device


@dataclass
class Bench:
    state: DeviceState
    ssh: SshTransport
    tmp: Path

    def slot_bytes(self) -> bytes:
        return slots.slot_file(self.state.root, SLOT).read_bytes()


@pytest_asyncio.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    require_guard()  # without the namespace the device's shell would see the host's /var/tmp and /dev
    state = make_state(tmp_path / "device", name="gw-raw")
    async with running_device(state) as device:
        assert device.ssh_port is not None
        ssh = SshTransport(parse_target(f"ssh://root@127.0.0.1:{device.ssh_port}"),
                           Credentials(username="root", password=PASSWORD, use_agent=False), tmp_path / "known_hosts",
                           accept_new_host_key=True, connect_timeout=5.0)
        await ssh.connect()
        try:
            yield Bench(state, ssh, tmp_path)
        finally:
            await ssh.close()


def _image(bench: Bench, size: int = 300_000) -> tuple[Path, bytes]:
    raw = os.urandom(size // 2) + bytes(size - size // 2)  # half noise, half zeros: a filesystem image's shape
    path = bench.tmp / f"update-{hashlib.sha256(raw).hexdigest()[:8]}.img.gz"
    path.write_bytes(gzip.compress(raw))
    return path, raw


def _bmap(plain: Path, raw: bytes, out: Path) -> None:
    """The block map of ``raw`` (bmaptool create reads the uncompressed image), written to ``out``."""
    plain.write_bytes(raw)
    done = subprocess.run([require_tool("bmaptool"), "create", "-o", str(out), str(plain)], capture_output=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def _host_snapshot(remote: str) -> tuple[bool, bool]:
    return Path(SLOT.device).exists(), Path(remote).exists()


@pytest.mark.asyncio
async def test_raw_gz_image_lands_in_the_slot_file(bench: Bench) -> None:
    image, raw = _image(bench)
    remote = f"/var/tmp/{image.name}"
    host_before = _host_snapshot(remote)
    assert host_before[1] is False
    sent = await bench.ssh.put(image, remote)
    assert sent.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert (bench.state.root / "rootfs" / remote.lstrip("/")).read_bytes() == image.read_bytes()
    result = await bench.ssh.run(RawBackend().install_command(remote, SLOT.device), 30)
    assert result.exit_code == 0, result.stderr
    assert bench.slot_bytes() == raw
    # RAUC's slot table names the written device: the backend switched with `rauc status mark-active`.
    assert "RAUC slot rootfs.1 boots next" in result.stdout
    assert _host_snapshot(remote) == host_before


@pytest.mark.asyncio
async def test_a_truncated_archive_writes_nothing(bench: Bench) -> None:
    image, _raw = _image(bench)
    image.write_bytes(image.read_bytes()[:-5000])
    remote = f"/var/tmp/{image.name}"
    await bench.ssh.put(image, remote)
    before = bench.slot_bytes()
    result = await bench.ssh.run(RawBackend().install_command(remote, SLOT.device), 30)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "not a valid gzip archive" in result.stderr
    assert bench.slot_bytes() == before


@pytest.mark.asyncio
async def test_a_device_the_slot_table_does_not_have_is_refused(bench: Bench) -> None:
    image, _raw = _image(bench, 20_000)
    remote = f"/var/tmp/{image.name}"
    await bench.ssh.put(image, remote)
    # /dev/mmcblk1p3 is nothing on the device (its /dev is its own): refused before a byte is written.
    result = await bench.ssh.run(RawBackend().install_command(remote, "/dev/mmcblk1p3"), 30)
    assert result.exit_code == 2
    assert "target slot /dev/mmcblk1p3 does not exist on the device" in result.stderr


@pytest.mark.asyncio
async def test_flash_machine_writes_a_raw_image_without_reboot(bench: Bench) -> None:
    """The whole flash job (preflight, SFTP transfer, install) for a signed raw image, reboot left to later."""
    from tests.integration.flash_worker import fast_options, make_signer, openssl, ssh_link

    from siteline.core.flash.machine import prepare_flash, run_job
    from siteline.core.flash.store import JobStore

    key, _cert, keys = make_signer(bench.tmp / "keys")
    image, raw = _image(bench)
    openssl("dgst", "-sha256", "-sign", key, "-out", f"{image}.sig", image)
    port = int(bench.ssh.target.port or 22)
    options = fast_options(reboot=False, remote_dir="/var/tmp", raw_compatible=slots.COMPATIBLE)
    job = prepare_flash(image, None, device="gw-raw", site="test-site", target=f"ssh://root@127.0.0.1:{port}",
                        options=options)
    records: list[tuple[str, dict[str, object], str]] = []
    link = ssh_link(port, bench.tmp / "known_hosts")
    try:
        done = await run_job(job, link, store=JobStore(bench.tmp / "jobs"), backends=[RawBackend()], keys=keys,
                             record=lambda action, detail, result: records.append((action, dict(detail), result)))
    finally:
        await link.close()
    steps = {s.name: s.state for s in done.steps}
    assert done.status == "installed", (done.status, done.message, steps)  # what reboot=False ends in
    assert steps == {"preflight": "done", "transfer": "done", "install": "done", "reboot": "skipped",
                     "health": "skipped", "mark-good": "skipped"}
    assert (done.backend, done.from_slot, done.to_slot) == ("raw", "A", "B")
    assert bench.slot_bytes() == raw
    assert _host_snapshot(f"/var/tmp/{image.name}")[1] is False  # the host's /var/tmp never saw it
    assert bench.state.booted_slot() == "A"  # not rebooted: B boots next time


@pytest.mark.asyncio
async def test_bmaptool_writes_the_slot_file_when_a_bmap_came_along(bench: Bench) -> None:
    image, raw = _image(bench)
    _bmap(bench.tmp / "plain.img", raw, Path(f"{image}.bmap"))
    remote = f"/var/tmp/{image.name}"
    await bench.ssh.put(image, remote)
    await bench.ssh.put(Path(f"{image}.bmap"), f"{remote}.bmap")
    result = await bench.ssh.run(RawBackend().install_command(remote, SLOT.device), 30)
    assert result.exit_code == 0, result.stderr
    assert "bmaptool: info: copying image" in result.stderr
    written = bench.slot_bytes()
    assert written[: len(raw)] == raw
