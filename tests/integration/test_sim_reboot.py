"""Reboots as on hardware: unreachable, boot selection, back on the same port and link; power cuts."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import tarfile
import time
from pathlib import Path

import asyncssh
import pytest
from tests.peers.sim import PASSWORD, make_state, running_device, start_sim_process
from tests.peers.sim_clients import Console, Watcher

from siteline.core.transports import mqtt_contract as contract
from siteline.simulator.broker import BrokerHandle
from siteline.simulator.device import SimulatedDevice
from siteline.simulator.state import DeviceState

BAD_MANIFEST = """[update]
compatible=nwedge-gw-imx8mm
version=2024.09.0-bad
description=an image that panics at boot

[image.rootfs]
filename=rootfs.ext4

[siteline-sim]
boots=false
"""


async def _run(port: int, command: str) -> asyncssh.SSHCompletedProcess:
    async with asyncssh.connect("127.0.0.1", port, username="root", password=PASSWORD, known_hosts=None,
                                client_keys=None) as conn:
        return await conn.run(command, check=False)


async def _wait_unreachable(port: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0.01)


async def _wait_back(device: SimulatedDevice, boots: int, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if device.boots >= boots and device.up.is_set():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the device did not come back within {timeout} s")


@pytest.mark.asyncio
async def test_reboot_goes_dark_and_comes_back(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", boot_delay=0.4)
    link = tmp_path / "ttyGW"
    async with running_device(state, serial_link=link) as device:
        port = device.ssh_port
        assert port is not None
        console = Console(link)
        try:
            result = await _run(port, "reboot")
            assert result.exit_status == 0
            await _wait_unreachable(port)
            await _wait_back(device, 1)
            assert device.ssh_port == port  # the same port after the reboot
            assert (await _run(port, "echo back")).stdout == "back\n"
            seen = await console.expect(rb"login: ")
            assert b"reboot: Restarting system" in seen
            assert b"U-Boot" in seen
        finally:
            console.close()
        assert device.last_boot is not None
        assert not device.last_boot.rolled_back


def _bad_bundle() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("manifest.raucm", BAD_MANIFEST.encode()), ("rootfs.ext4", b"\0" * 4096)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.asyncio
async def test_bad_bundle_burns_attempts_and_rolls_back(sim_state: DeviceState) -> None:
    async with running_device(sim_state) as device:
        port = device.ssh_port
        assert port is not None
        async with (
            asyncssh.connect("127.0.0.1", port, username="root", password=PASSWORD, known_hosts=None,
                             client_keys=None) as conn,
            conn.start_sftp_client() as sftp,
            sftp.open("/root/bad.raucb", "wb") as remote,
        ):
            await remote.write(_bad_bundle())
        # A path relative to the login directory (/root), as a technician in a shell would type it.
        installed = await _run(port, "rauc install bad.raucb")
        assert installed.exit_status == 0, installed.stderr
        assert (await _run(port, "reboot")).exit_status == 0
        await _wait_back(device, 1)
        outcome = device.last_boot
        assert outcome is not None
        assert outcome.rolled_back
        assert outcome.slot == "A"
        assert outcome.attempts.count("B") == 3
        status = json.loads((await _run(port, "rauc status --output-format=json")).stdout)
        assert status["booted"] in ("A", "rootfs.0")
        env = (await _run(port, "fw_printenv BOOT_B_LEFT")).stdout
        assert env.strip() == "BOOT_B_LEFT=0"


def test_power_cut_and_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "device"
    first = start_sim_process(state_dir, "--ssh-port", "0", "--boot-delay", "0.05")
    try:
        key = (state_dir / "ssh_host_ed25519_key.pub").read_bytes()
        time.sleep(0.3)  # let it tick and write state for a moment
    finally:
        first.stop(signal.SIGKILL)  # the power cut: no shutdown at all
    again = start_sim_process(state_dir, "--ssh-port", "0")
    try:
        assert (state_dir / "ssh_host_ed25519_key.pub").read_bytes() == key
        port = int(again.ready["ssh"].rsplit(":", 1)[1])
        result = asyncio.run(_run(port, "cat /etc/hostname; fw_printenv BOOT_ORDER"))
        assert result.exit_status == 0, result.stderr
        assert result.stdout == "gw-01\nBOOT_ORDER=A B\n"
    finally:
        assert again.stop(signal.SIGTERM) == 0


@pytest.mark.asyncio
async def test_reboot_over_mqtt_goes_offline_and_back(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    state = make_state(tmp_path / "device", boot_delay=0.2)
    async with running_device(state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        prefix = device.mqtt.prefix
        watcher = Watcher(mosquitto, contract.status_topic(prefix), contract.reply_topic(prefix, "t"))
        try:
            await watcher.next("/status", state="online")
            request = contract.CommandRequest("r1", "reboot", 10.0, contract.reply_topic(prefix, "t"))
            watcher.client.publish(contract.request_topic(prefix), request.encode(), qos=1)
            assert contract.decode_reply((await watcher.next("/cmd/res/", id="r1")).payload).result.exit_code == 0
            await watcher.next("/status", state="offline")
            await watcher.next("/status", state="online")
            assert device.boots == 1
        finally:
            watcher.close()


def test_sim_command_prints_ready_and_stops_on_sigint(tmp_path: Path) -> None:
    started = time.monotonic()
    sim = start_sim_process(tmp_path / "new-device", "--serial-link", str(tmp_path / "ttyX"), "--ssh-port", "0")
    try:
        assert time.monotonic() - started < 15
        assert sim.ready["serial"] == f"serial://{tmp_path / 'ttyX'}?baud=115200"
        assert sim.ready["ssh"].startswith("ssh://root@127.0.0.1:")
        assert sim.ready["mqtt"] is None
        assert any("Ctrl-C" in line for line in sim.lines)
    finally:
        assert sim.stop(signal.SIGINT) == 0
    assert not (tmp_path / "ttyX").exists()


@pytest.mark.asyncio
async def test_a_failing_boot_still_brings_the_device_back(sim_state: DeviceState, tmp_path: Path) -> None:
    def broken_boot() -> None:
        raise OSError("slots.json: Input/output error")

    link = tmp_path / "ttyGW"
    async with running_device(sim_state, serial_link=link) as device:
        port = device.ssh_port
        assert port is not None
        sim_state.boot = broken_boot  # type: ignore[method-assign,assignment]
        console = Console(link)
        try:
            await _run(port, "reboot")
            await console.expect(rb"(?s)boot failed.*login: ", timeout=15)
            assert (await _run(port, "echo alive")).stdout == "alive\n"
        finally:
            console.close()
