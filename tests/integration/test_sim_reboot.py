"""Reboots as on hardware: unreachable, boot selection, back on the same port and link; power cuts."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import tarfile
import time
from pathlib import Path

import asyncssh
import pytest
from tests.peers.sim import PASSWORD, make_state, running_device, start_sim_process, start_siteline
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
    """Power back on after a cut is a boot: a new boot id, and boot selection runs (a slot activated
    just before the cut is tried, its attempt counter goes down)."""
    state_dir = tmp_path / "device"
    make_state(state_dir, mark_good_delay=60.0)  # nothing marks the new boot good during the test
    first = start_sim_process(state_dir, "--ssh-port", "0", "--boot-delay", "0.05")
    try:
        key = (state_dir / "ssh_host_ed25519_key.pub").read_bytes()
        port = int(first.ready["ssh"].rsplit(":", 1)[1])
        activated = asyncio.run(_run(port, "rauc status mark-active other"))  # as after `rauc install`
        assert activated.exit_status == 0, activated.stderr
        boot_before = DeviceState.attach(state_dir).device()["boot_id"]
    finally:
        first.stop(signal.SIGKILL)  # the power cut: no shutdown at all
    again = start_sim_process(state_dir, "--ssh-port", "0")
    try:
        assert (state_dir / "ssh_host_ed25519_key.pub").read_bytes() == key
        after = DeviceState.attach(state_dir).device()
        assert after["boot_id"] != boot_before, "power-on must be a new boot"
        assert after["booted_slot"] == "B"
        port = int(again.ready["ssh"].rsplit(":", 1)[1])
        result = asyncio.run(_run(port, "cat /etc/hostname; fw_printenv BOOT_ORDER BOOT_B_LEFT"))
        assert result.exit_status == 0, result.stderr
        assert result.stdout == "gw-01\nBOOT_ORDER=B A\nBOOT_B_LEFT=2\n"  # one attempt used by the power-on
        status = json.loads(asyncio.run(_run(port, "rauc status --output-format=json")).stdout)
        assert status["booted"] == "B"
        assert status["boot_primary"] == "rootfs.1"
    finally:
        assert again.stop(signal.SIGTERM) == 0


async def _left(state: DeviceState, slot: str) -> int:
    return int(state.read_env()[f"BOOT_{slot}_LEFT"])


async def _until_left(state: DeviceState, slot: str, wanted: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while await _left(state, slot) != wanted:  # noqa: ASYNC110 - another task writes the env file
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_healthy_boots_are_marked_good_so_plain_reboots_stay_on_their_slot(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", mark_good_delay=0.05)
    async with running_device(state) as device:
        for n in range(1, 5):
            await _until_left(state, "A", 3)  # rauc-mark-good.service did its job for this boot
            state.request_reboot()
            await _wait_back(device, n)
            assert state.booted_slot() == "A"
        assert device.last_boot is not None
        assert not device.last_boot.rolled_back


@pytest.mark.asyncio
async def test_without_mark_good_plain_reboots_use_up_the_attempts(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", mark_good_delay=0.05)
    assert sh_tool(state, ["sim-scenario", "mark-good-off"]) == 0
    async with running_device(state) as device:
        assert await _left(state, "A") == 2  # the power-on used one
        for n in range(1, 3):
            state.request_reboot()
            await _wait_back(device, n)
        assert state.booted_slot() == "A"
        await asyncio.sleep(0.2)  # longer than mark_good_delay: still nothing marked it good
        assert await _left(state, "A") == 0
        state.request_reboot()
        await _wait_back(device, 3)
        assert state.booted_slot() == "B"  # A is used up: U-Boot falls through to B


def sh_tool(state: DeviceState, argv: list[str]) -> int:
    from siteline.simulator.tools import scenario

    return scenario.main(argv[0], argv[1:], state)


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
    sim = start_sim_process(tmp_path / "new-device", "--serial-link", str(tmp_path / "ttyX"), "--ssh-port", "0")
    try:
        assert sim.ready["serial"] == f"serial://{tmp_path / 'ttyX'}?baud=115200"
        assert sim.ready["ssh"].startswith("ssh://root@127.0.0.1:")
        assert sim.ready["mqtt"] is None
        assert any("Ctrl-C" in line for line in sim.lines)
    finally:
        assert sim.stop(signal.SIGINT) == 0
    assert not (tmp_path / "ttyX").exists()


def test_sim_listens_within_5_s(tmp_path: Path) -> None:
    """The spec's contract: `siteline sim` on a new state dir (host key generation included) is
    listening on 127.0.0.1 within 5 s of the process starting."""
    started = time.monotonic()
    sim = start_sim_process(tmp_path / "new-device", "--ssh-port", "0", timeout=30)
    try:
        ready_after = time.monotonic() - started
        port = int(sim.ready["ssh"].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert conn.recv(4).startswith(b"SSH-")
        listening_after = time.monotonic() - started
    finally:
        sim.stop(signal.SIGINT)
    assert listening_after <= 5.0, (
        f"`siteline sim` took {listening_after:.2f} s from process start to an SSH banner (READY after "
        f"{ready_after:.2f} s); the spec requires listening within 5 s")


def test_serial_link_never_replaces_a_file(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("a user's file\n")
    sim = start_siteline(["sim", "--state", str(tmp_path / "dev"), "--serial-link", str(precious)],
                         tmp_path / "sim.log")
    try:
        code = sim.proc.wait(30)
    finally:
        sim.stop(signal.SIGKILL)
    assert code != 0
    assert precious.read_text() == "a user's file\n"
    assert "not a symlink" in (tmp_path / "sim.log").read_text()


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
