"""Update drills over the simulator's SSH (a healthy=false bundle fails edge-agent; `swupdate -i` of a .swu made
by cpio), and the raw backend's command on a device running the real RAUC."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from tests.peers import require_tool
from tests.peers.rauc_device import RaucDevice, rauc_device_fixture
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.simulator.device import SimulatedDevice
from siteline_slots.update import RawBackend, SwupdateBackend

SICK_MANIFEST = """[update]
compatible=nwedge-gw-imx8mm
version=2024.09.1-sick
description=boots, but its agent crashes

[image.rootfs]
filename=rootfs.ext4

[siteline-sim]
healthy=false
"""


async def _run(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHCompletedProcess:
    return await conn.run(command, check=False)


def _connect(port: int) -> Any:
    return asyncssh.connect("127.0.0.1", port, username="root", password=PASSWORD, known_hosts=None,
                            client_keys=None)


async def _upload(port: int, remote: str, data: bytes) -> None:
    async with _connect(port) as conn, conn.start_sftp_client() as sftp, sftp.open(remote, "wb") as fh:
        await fh.write(data)


async def _reboot(device: SimulatedDevice, port: int, timeout: float = 15.0) -> None:
    boots = device.boots
    async with _connect(port) as conn:
        assert (await _run(conn, "reboot")).exit_status == 0
    for _ in range(int(timeout / 0.02)):
        if device.boots > boots and device.up.is_set():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the device did not come back within {timeout} s")


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.asyncio
async def test_healthy_false_bundle_fails_the_agent_until_a_healthy_slot_boots(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", mark_good_delay=60.0)
    async with running_device(state) as device:
        port = device.ssh_port
        assert port is not None
        await _upload(port, "/root/sick.raucb", _tar({"manifest.raucm": SICK_MANIFEST.encode(),
                                                       "rootfs.ext4": b"\0" * 4096}))
        async with _connect(port) as conn:
            installed = await _run(conn, "rauc install /root/sick.raucb")
            assert installed.exit_status == 0, installed.stderr
        await _reboot(device, port)
        assert device.last_boot is not None
        assert device.last_boot.slot == "B"
        async with _connect(port) as conn:
            agent = await _run(conn, "systemctl is-active edge-agent.service")
            assert (agent.exit_status, agent.stdout) == (3, "failed\n")
            status = await _run(conn, "systemctl status edge-agent.service")
            assert "unsupported config schema" in str(status.stdout)
            journal = await _run(conn, "journalctl -u edge-agent --no-pager")
            assert "FATAL" in str(journal.stdout)
            assert (await _run(conn, "rauc status mark-active other")).exit_status == 0
        await _reboot(device, port)
        async with _connect(port) as conn:
            agent = await _run(conn, "systemctl is-active edge-agent.service")
            assert (agent.exit_status, agent.stdout) == (0, "active\n")


# ---------------------------------------------------------------- swupdate -i FILE.swu
SW_DESCRIPTION = """software =
{
    version = "@VERSION@";
    description = "Northwind Edge OS root filesystem";
    hardware-compatibility: [ "@COMPATIBLE@" ];
    stable = {
        copy1 = {
            images: ( { filename = "rootfs.ext4"; device = "/dev/mmcblk0p2"; type = "raw"; } );
            bootenv: ( { name = "BOOT_ORDER"; value = "A B"; } );
        };
        copy2 = {
            images: ( { filename = "rootfs.ext4"; device = "/dev/mmcblk0p3"; type = "raw"; } );
            bootenv: ( { name = "BOOT_ORDER"; value = "B A"; } );
        };
    };
}
"""


def _swu(tmp_path: Path, version: str, *, compatible: str = "nwedge-gw-imx8mm", flags: str = "") -> bytes:
    """A .swu as SWUpdate documents it, made by the real cpio: sw-description first, then the images."""
    cpio = require_tool("cpio")
    src = tmp_path / f"swu-{version}"
    src.mkdir()
    (src / "sw-description").write_text(SW_DESCRIPTION.replace("@VERSION@", version)
                                        .replace("@COMPATIBLE@", compatible))
    (src / "rootfs.ext4").write_bytes(b"\0" * 8192)
    names = ["sw-description", "rootfs.ext4"]
    if flags:
        (src / "siteline-sim.conf").write_text(flags)
        names.append("siteline-sim.conf")
    made = subprocess.run([cpio, "-o", "-H", "newc"], input="\n".join(names).encode() + b"\n", cwd=src,
                          capture_output=True, check=True, timeout=30)
    return made.stdout


@pytest.mark.asyncio
async def test_swupdate_installs_into_the_inactive_slot_and_it_boots(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", mark_good_delay=60.0)
    async with running_device(state) as device:
        port = device.ssh_port
        assert port is not None
        await _upload(port, "/root/update 1.swu", _swu(tmp_path, "2024.09.0"))
        command = SwupdateBackend().install_command("/root/update 1.swu", "/dev/mmcblk0p3")
        assert command.endswith("-e stable,copy2")
        async with _connect(port) as conn:
            assert (await _run(conn, "command -v swupdate")).exit_status == 0  # what detect() runs
            installed = await _run(conn, command)
            assert installed.exit_status == 0, installed.stderr
            assert "SWUPDATE successful" in str(installed.stdout)
            assert "Hardware nwedge-gw-imx8mm" in str(installed.stdout)
            status = json.loads(str((await _run(conn, "rauc status --detailed --output-format=json")).stdout))
            assert status["boot_primary"] == "rootfs.1"
            slot_b = status["slots"][1]["rootfs.1"]["slot_status"]["bundle"]
            assert slot_b["version"] == "2024.09.0"
        await _reboot(device, port)
        async with _connect(port) as conn:
            assert (await _run(conn, "cat /etc/os-release")).stdout.count("VERSION_ID=2024.09.0") == 1
            assert (await _run(conn, "systemctl is-active edge-agent.service")).exit_status == 0


@pytest.mark.asyncio
async def test_swupdate_refuses_wrong_board_broken_archive_and_the_running_copy(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device")
    async with running_device(state) as device:
        port = device.ssh_port
        assert port is not None
        good = _swu(tmp_path, "2024.09.0")
        await _upload(port, "/root/other.swu", _swu(tmp_path, "9.9", compatible="other-board"))
        await _upload(port, "/root/cut.swu", good[: len(good) // 2])
        await _upload(port, "/root/good.swu", good)
        async with _connect(port) as conn:
            wrong = await _run(conn, "swupdate -v -i /root/other.swu")
            assert wrong.exit_status == 1
            assert "SW not compatible with hardware" in str(wrong.stderr)
            cut = await _run(conn, "swupdate -v -i /root/cut.swu")
            assert cut.exit_status == 1
            assert "truncated" in str(cut.stderr)
            running = await _run(conn, "swupdate -v -i /root/good.swu -e stable,copy1")
            assert running.exit_status == 1
            assert "running root filesystem" in str(running.stderr)
            for selection in ("-e stable,copy9", ""):  # a mode it lacks; no selection at all
                missing = await _run(conn, f"swupdate -v -i /root/good.swu {selection}")
                assert missing.exit_status == 1
                assert "Found nothing to install" in str(missing.stderr)
            status = json.loads(str((await _run(conn, "rauc status --output-format=json")).stdout))
            assert status["boot_primary"] == "rootfs.0"  # nothing was activated by any refusal


@pytest.mark.asyncio
async def test_swupdate_drill_flags_fail_the_health_check(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device")  # rauc-mark-good.service enabled, 50 ms after each boot
    async with running_device(state) as device:
        port = device.ssh_port
        assert port is not None
        await _upload(port, "/root/sick.swu", _swu(tmp_path, "2024.09.2", flags="[siteline-sim]\nhealthy=false\n"))
        async with _connect(port) as conn:
            assert (await _run(conn, "swupdate -i /root/sick.swu -e stable,copy2")).exit_status == 0
        await _reboot(device, port)
        async with _connect(port) as conn:
            agent = await _run(conn, "systemctl is-active edge-agent.service")
            assert (agent.exit_status, agent.stdout) == (3, "failed\n")
            await asyncio.sleep(0.3)  # past mark_good_delay: the failed agent keeps boot-complete.target away
            assert (await _run(conn, "fw_printenv BOOT_B_LEFT")).stdout == "BOOT_B_LEFT=2\n"
            journal = await _run(conn, "journalctl -t systemd --no-pager")
            assert "Dependency failed for Rauc Good-marking Service" in str(journal.stdout)


# ---------------------------------------------------------------- raw images on a device with the real RAUC
rauc_device = pytest.fixture(name="rauc_device")(rauc_device_fixture)


def test_raw_image_lands_in_the_slot_and_rauc_makes_it_primary(tmp_path: Path, rauc_device: RaucDevice) -> None:
    """/dev/... of a RAUC device names no bootname: the command finds the slot in RAUC's table and activates it."""
    payload = os.urandom(200_000)
    image = tmp_path / "new rootfs.img.gz"
    image.write_bytes(gzip.compress(payload))
    target = str(rauc_device.slot_file("B"))
    backend = RawBackend()
    assert not backend.switches_slot(target)
    done = rauc_device.run("bash", "-c", backend.install_command(str(image), target), timeout=30)
    assert done.returncode == 0, done.stderr
    assert "RAUC slot rootfs.1 boots next" in done.stdout
    assert rauc_device.slot_file("B").read_bytes()[: len(payload)] == payload
    assert rauc_device.fw_env()["BOOT_ORDER"].split()[0] == "B"
    status = rauc_device.run("rauc", "status", "--output-format=json")
    assert '"boot_primary":"rootfs.1"' in status.stdout
