"""Slot actions against a simulated device: real /bin/sh, the rauc and fw_setenv shims, the real U-Boot env file,
then a reboot through the simulated boot script to see the device boot what was chosen."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.peers import require_tool
from tests.peers.sim import make_state

from siteline.api import Slots
from siteline.core.device.slot_actions import ActionOutcome, SlotAction, actions_for, perform
from siteline.core.plugin_api import make_context
from siteline.core.transports.base import Result
from siteline.simulator import ubootenv
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline_slots.probe import SlotsProbe


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    return make_state(tmp_path / "dev", name="gw-slots")


def runner(device: DeviceState) -> Any:
    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(device, command, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))

    return run


def probe(device: DeviceState) -> Slots:
    ctx = make_context("gw-slots", "sim://gw-slots", runner(device), logging.getLogger("test"))
    slots = asyncio.run(SlotsProbe().collect(ctx))
    assert isinstance(slots, Slots), slots
    return slots


def action(slots: Slots, slot: str, verb: str) -> SlotAction:
    found = slots.slot(slot)
    assert found is not None
    return actions_for(slots, found)[verb]  # type: ignore[index]


def do(device: DeviceState, act: SlotAction) -> tuple[ActionOutcome, list[tuple[str, dict[str, Any], str]]]:
    records: list[tuple[str, dict[str, Any], str]] = []
    outcome = asyncio.run(perform(act, runner(device), lambda n, d, r: records.append((n, d, r))))
    return outcome, records


def sh(device: DeviceState, command: str) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(device, command, timeout=20))
    return code, out.decode(), err.decode()


def reboot(device: DeviceState) -> str:
    assert sh(device, "reboot")[0] == 0
    assert device.take_reboot_request()
    return device.boot().slot


def test_rauc_mark_active_other_then_the_device_boots_it(device: DeviceState) -> None:
    slots = probe(device)
    assert slots.source == "rauc+uboot"
    switch = action(slots, "B", "mark-active")
    assert switch.command == "rauc status mark-active rootfs.1"
    outcome, records = do(device, switch)
    assert outcome.ok, outcome
    assert outcome.stdout == "rauc status: activated slot rootfs.1\n"
    assert records == [("slot-mark", records[0][1], "ok")]
    assert records[0][1]["command"] == "rauc status mark-active rootfs.1"
    assert probe(device).primary == "rootfs.1"
    assert reboot(device) == "B"
    after = probe(device)
    assert after.booted == "B"
    # The new boot is on trial (2 attempts left): marking it good is now offered, and works.
    good = action(after, "B", "mark-good")
    assert good.available
    assert do(device, good)[0].ok
    assert device.read_env()["BOOT_B_LEFT"] == "3"


def test_rauc_mark_bad_of_the_running_slot_moves_the_next_boot(device: DeviceState) -> None:
    slots = probe(device)
    bad = action(slots, "A", "mark-bad")
    assert bad.typed_confirmation
    outcome, records = do(device, bad)
    assert outcome.ok, outcome
    assert outcome.stdout == "rauc status: marked slot rootfs.0 as bad\n"
    assert records[0][2] == "ok"
    after = probe(device)
    assert after.slot("A").health == "bad"  # type: ignore[union-attr]
    assert reboot(device) == "B"
    # Marking the other (now not running) slot bad is refused while it is the only good one left.
    assert not action(probe(device), "B", "mark-bad").available


def test_fw_setenv_path_on_a_device_without_rauc(device: DeviceState) -> None:
    # This device has no RAUC: the shim is replaced by what a shell says for a missing command.
    stub = device.root / "bin" / "rauc"
    stub.write_text("#!/bin/sh\necho \"sh: rauc: not found\" >&2\nexit 127\n")
    slots = probe(device)
    assert slots.source == "uboot"
    switch = action(slots, "B", "mark-active")
    assert switch.commands == ("fw_setenv BOOT_B_LEFT 3", "fw_setenv BOOT_ORDER 'B A'")
    outcome, records = do(device, switch)
    assert outcome.ok, outcome
    assert records[0][1]["exit_code"] == 0
    env = device.read_env()
    assert (env["BOOT_ORDER"], env["BOOT_B_LEFT"]) == ("B A", "3")
    assert reboot(device) == "B"
    assert device.read_env()["BOOT_B_LEFT"] == "2"
    good = action(probe(device), "B", "mark-good")
    assert good.commands[0] == "fw_setenv BOOT_B_LEFT 3"
    assert do(device, good)[0].ok
    assert device.read_env()["BOOT_B_LEFT"] == "3"


@pytest.mark.peer("fw_printenv")
def test_what_fw_setenv_wrote_reads_back_with_the_real_fw_printenv(device: DeviceState) -> None:
    (device.root / "bin" / "rauc").write_text("#!/bin/sh\nexit 127\n")
    outcome, _ = do(device, action(probe(device), "B", "mark-active"))
    assert outcome.ok, outcome
    exe = require_tool("fw_printenv")
    config = str(device.root / ubootenv.CONFIG_NAME)
    real = subprocess.run([exe, "-c", config, "BOOT_ORDER", "BOOT_B_LEFT"], capture_output=True, text=True,
                          timeout=20, check=False)
    assert real.returncode == 0, real.stderr
    assert real.stdout == "BOOT_ORDER=B A\nBOOT_B_LEFT=3\n"


def test_a_failing_command_is_reported_and_audited_not_claimed(device: DeviceState) -> None:
    slots = probe(device)
    env_file = device.root / ubootenv.ENV_NAME
    env_file.unlink()
    env_file.mkdir()  # the env cannot be read or written any more (as a wrong fw_env.config would do)
    outcome, records = do(device, action(slots, "B", "mark-active"))
    assert not outcome.ok
    assert outcome.result == "failed"
    assert outcome.exit_code == 1
    assert "rauc mark: failed to activate slot rootfs.1" in outcome.stderr
    assert "fw_env.config" in outcome.hint
    name, detail, result = records[0]
    assert (name, result) == ("slot-mark", "failed")
    assert detail["exit_code"] == 1
    assert "failed to activate slot rootfs.1" in detail["stderr"]


def test_a_stale_snapshot_naming_a_missing_tool_is_reported(device: DeviceState) -> None:
    slots = probe(device)
    (device.root / "bin" / "rauc").write_text("#!/bin/sh\necho \"sh: rauc: not found\" >&2\nexit 127\n")
    outcome, records = do(device, action(slots, "B", "mark-active"))
    assert (outcome.result, outcome.exit_code) == ("failed", 127)
    assert "not installed" in outcome.message
    assert records[0][2] == "failed"


@pytest.mark.parametrize(
    ("command", "code", "out", "err"),
    [
        ("rauc status mark-good", 0, "rauc status: marked slot rootfs.0 as good\n", ""),
        ("rauc status mark-bad other", 0, "rauc status: marked slot rootfs.1 as bad\n", ""),
        ("rauc status mark-active booted", 0, "rauc status: activated slot rootfs.0\n", ""),
        ("rauc status mark-good rootfs.7", 1, "", "rauc mark: No slot with class rootfs and name rootfs.7 found\n"),
        ("rauc status mark-good B", 1, "", "rauc mark: Invalid slot name format: 'B'\n"),
    ],
)
def test_simulated_rauc_prints_what_rauc_prints(device: DeviceState, command: str, code: int, out: str,
                                                err: str) -> None:
    assert sh(device, command) == (code, out, err)
