"""Power cut again and again while the device boots, until both slots are out of boot attempts.

The device is a `siteline sim` process: SIGKILL is the power cut (nothing is saved but what the boot script
saved already: its counter, before the kernel runs) and a new process on the same state dir is the power
coming back (a power-on is a boot). Siteline flashes an image that panics, the reboot burns B's attempts and
one of A's, and the power is cut each time the boot has taken an attempt, until A's last one: the device then
runs A with no attempt left anywhere. The job must say so plainly and give the recovery — not "failed" or
"rolled back" — and the recovery, run over the serial console, must make the device boot its old slot again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.integration.flash_worker import backends, bundle, fast_options, make_signer, ssh_link
from tests.peers import free_port, require_tool
from tests.peers.sim import PASSWORD, READY, SimProcess, make_state, running_device, start_siteline

from siteline.core.audit_verify import read_records
from siteline.core.flash.job import FlashJob
from siteline.core.flash.machine import prepare_flash, run_job
from siteline.core.flash.reading import Reader
from siteline.core.flash.recovery import BOOT_COUNTERS_RESET, recovery_text, reset_boot_counters, reset_plan
from siteline.core.flash.store import JobStore
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.plugin_api import make_context
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.serial import SerialTransport
from siteline.recover_cli import recover
from siteline.simulator import ubootenv
from siteline.simulator.tools.systemctl import MARK_GOOD_UNIT, set_enabled

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]
OLD = "2024.03.0"


@dataclass
class Records:
    items: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def __call__(self, action: str, detail: Any, result: str) -> None:
        self.items.append((action, dict(detail), result))


@dataclass
class PowerStrip:
    """The device's plug: power it on (a `siteline sim` process), cut it (SIGKILL), read its saved env."""

    state_dir: Path
    args: tuple[str, ...]
    sim: SimProcess | None = None
    cuts: list[dict[str, str]] = field(default_factory=list)  # the counters at each cut
    records: Records = field(default_factory=lambda: Records())  # the flash job's audit trail

    def on(self) -> SimProcess:
        self.sim = start_siteline(["sim", "--state", str(self.state_dir), "--password", PASSWORD, *self.args],
                                  self.state_dir.with_name("sim.log"))
        return self.sim

    def cut(self) -> None:
        if self.sim is not None:
            self.sim.stop(signal.SIGKILL)  # no shutdown at all
            self.sim = None

    def env(self) -> dict[str, str] | None:
        try:
            return ubootenv.load(ubootenv.EnvLocation(self.state_dir / ubootenv.ENV_NAME))
        except (OSError, ValueError, ubootenv.EnvError):
            return None  # caught mid-write: look again

    def watch(self, wanted: Callable[[dict[str, str]], bool], timeout: float) -> dict[str, str]:
        """The saved env the moment it shows ``wanted`` (polled every ms: call it in a thread); the power is
        cut right then unless both slots are out of attempts (that boot is let through)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            env = self.env()
            if env is not None and wanted(env):
                if left(env) != ("0", "0"):
                    self.cut()
                    self.cuts.append(env)
                return env
            time.sleep(0.001)
        raise AssertionError(f"the env never changed as wanted within {timeout} s: {self.env()}")


def left(env: dict[str, str]) -> tuple[str | None, str | None]:
    return env.get("BOOT_A_LEFT"), env.get("BOOT_B_LEFT")


@contextlib.contextmanager
def plugged(strip: PowerStrip) -> Iterator[PowerStrip]:
    try:
        yield strip
    finally:
        strip.cut()


@pytest.fixture
def strip(tmp_path: Path) -> Iterator[PowerStrip]:
    state = make_state(tmp_path / "device", boot_delay=0.3)
    assert set_enabled(state, MARK_GOOD_UNIT, False) == 0  # nothing on the device resets A's counter by itself
    port = free_port()
    with plugged(PowerStrip(state.root, ("--ssh-port", str(port), "--serial-link", str(tmp_path / "ttyGW")))) as s:
        s.on().wait_for(READY, 15)
        yield s


def _port(strip: PowerStrip) -> int:
    return int(strip.args[strip.args.index("--ssh-port") + 1])


def _serial(strip: PowerStrip) -> SerialTransport:
    link = strip.args[strip.args.index("--serial-link") + 1]
    return SerialTransport(parse_target(f"serial://{link}?baud=115200"),
                           Credentials(username="root", password=PASSWORD), wake_timeout=2.0)


@contextlib.asynccontextmanager
async def serial_console(strip: PowerStrip) -> AsyncIterator[SerialTransport]:
    transport = _serial(strip)
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.close()


async def _cut_during_boots(strip: PowerStrip) -> None:
    """The flash's reboot, then power-ons, each cut once its boot took an attempt, until none is left."""
    # The reboot: B (panics) uses its attempts, then A one; the power goes as soon as the env shows it.
    env = await asyncio.to_thread(strip.watch, lambda e: e.get("BOOT_B_LEFT") != "3", 20.0)
    for _ in range(6):  # A has at most 3 attempts; B's may be cut short too
        if left(env) == ("0", "0"):
            break
        before = env
        strip.on()  # power back: the boot script saves a counter before the kernel runs ...
        env = await asyncio.to_thread(strip.watch, lambda e, b=before: left(e) != left(b), 15.0)  # ... cut again
    assert strip.sim is not None, strip.cuts  # the boot that took the last attempt was let through
    await asyncio.to_thread(strip.sim.wait_for, READY, 15.0)


async def test_power_cuts_until_both_slots_run_out_then_recovery_over_the_serial_console(
    strip: PowerStrip, tmp_path: Path
) -> None:
    require_tool("rauc")
    require_tool("openssl")
    require_tool("mksquashfs")
    key, cert, keys = make_signer(tmp_path / "keys")
    done = await _flash_through_the_power_cuts(strip, tmp_path, key, cert, keys)

    assert done.status == "needs-attention", (done.status, done.message, strip.cuts)
    assert "both slots are out of boot attempts" in done.message
    assert f"A {OLD}: 0 attempts left (booted)" in done.message
    assert "B 2025.12.0-panics: 0 attempts left" in done.message
    assert "fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && fw_setenv BOOT_ORDER 'A B'" in done.message
    assert "serial console" in done.message
    assert len(strip.cuts) >= 2, strip.cuts  # the reboot's boot and at least one power-on were cut
    assert left(strip.env() or {}) == ("0", "0")
    assert [r for a, _, r in strip.records.items if a == "flash"] == ["needs-attention"]  # not "failed"
    assert done.step("reboot").state == "failed"

    records = Records()
    async with serial_console(strip) as console:  # the way in that does not need the device to get to SSH
        reader = Reader(make_context("gw-01", "serial", console.run, logging.getLogger("test")))
        slots = await reader.slots()
        outcome = await reset_boot_counters(console.run, slots, records)
        assert outcome.ok, str(outcome)
        assert "BOOT_ORDER=A B" in outcome.reread
        assert left(strip.env() or {}) == ("3", "3")
        with contextlib.suppress(Exception):  # the console may drop under the command, as it should
            await console.run("reboot", 5.0)
    assert [(a, r) for a, _, r in records.items] == [(BOOT_COUNTERS_RESET, "ok")]
    assert records.items[0][1]["before"].count("_LEFT=0") == 2
    await _booted_old_slot(strip)


async def _flash_through_the_power_cuts(strip: PowerStrip, tmp_path: Path, key: Path, cert: Path,
                                        keys: TrustedKeys) -> FlashJob:
    port = _port(strip)
    image = bundle(tmp_path / "images", key, cert, "2025.12.0-panics", boots=False)
    job = prepare_flash(image, None, device="gw-01", site="test-site", target=f"ssh://root@127.0.0.1:{port}",
                        options=fast_options(boot_timeout=25.0))
    link = ssh_link(port, tmp_path / "known_hosts")
    running = asyncio.create_task(run_job(job, link, store=JobStore(tmp_path / "jobs"), record=strip.records,
                                          backends=backends(), keys=keys))
    try:
        await _cut_during_boots(strip)
        return await asyncio.wait_for(running, 30.0)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        await link.close()


async def _booted_old_slot(strip: PowerStrip, timeout: float = 15.0) -> None:
    """After the reboot the device comes up on A, its old slot, with attempts left on both."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        env = strip.env() or {}
        if left(env) == ("2", "3"):  # A's boot took one attempt (no mark-good on this device); B untouched
            break
        last = env
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the device did not boot A after the recovery: {last}")
    async with serial_console(strip) as console:
        result = await console.run("fw_printenv BOOT_ORDER; cat /etc/os-release", 10.0)
    assert "BOOT_ORDER=A B" in result.stdout
    assert OLD in result.stdout


def _recover_args(link: Path, *, yes: bool = True) -> argparse.Namespace:
    return argparse.Namespace(target=f"serial://{link}?baud=115200", yes=yes, user="root", identity=None,
                              accept_new_host_key=False, timeout=10.0)


async def test_recover_command_over_the_serial_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`siteline recover` says what it sees, resets, reads back, records; and refuses when nothing is wrong."""
    home = tmp_path / "home"
    monkeypatch.setenv("SITELINE_HOME", str(home))
    monkeypatch.setenv("SITELINE_PASSWORD", PASSWORD)
    state = make_state(tmp_path / "device")
    assert set_enabled(state, MARK_GOOD_UNIT, False) == 0
    link = tmp_path / "ttyGW"
    async with running_device(state, ssh=False, serial_link=link):
        env = state.read_env()
        state.write_env({**env, "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0"})  # what the power cuts leave

        assert await recover(_recover_args(link, yes=False)) == 3  # a script without --yes: nothing changed
        assert "pass --yes" in capsys.readouterr().err
        assert left(state.read_env()) == ("0", "0")

        assert await recover(_recover_args(link)) == 0
        out = capsys.readouterr().out
        assert f"slot A: {OLD}, 0 attempts left (running)\n  slot B: {OLD}, 0 attempts left\n" in out
        assert "every slot is out of boot attempts" in out.lower()
        assert "fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && fw_setenv BOOT_ORDER 'A B'" in out
        assert "Done: every slot has 3 boot attempts again, A first" in out
        assert f"Read back:\n  slot A: {OLD}, 3 attempts left (running, boots first)\n" in out
        assert left(state.read_env()) == ("3", "3")

        assert await recover(_recover_args(link)) == 3  # the counters are fine now: nothing to reset
        assert "nothing to reset on" in capsys.readouterr().err
    records = [r for r in read_records(home / "data" / "outbox.sqlite3") if r.action == BOOT_COUNTERS_RESET]
    assert [r.result for r in records] == ["ok"]
    assert "fw_setenv BOOT_A_LEFT 3" in records[0].detail_obj()["command"]


async def test_a_device_that_cannot_be_read_or_written_is_not_reported_done() -> None:
    """Garbage, a missing tool or a dropped link: a typed outcome that says so, recorded once each."""
    from siteline.core.device.slots import Slot, Slots
    from siteline.core.transports.base import Result

    records = Records()

    async def no_tools(command: str, timeout: float) -> Result:
        return Result(exit_code=127, stdout="", stderr=f"sh: {command.split()[0]}: not found")

    outcome = await reset_boot_counters(no_tools, None, records)
    assert (outcome.ok, outcome.result) == (False, "failed")
    assert "no boot environment could be read" in outcome.message

    async def drops(command: str, timeout: float) -> Result:
        if command.startswith("fw_printenv"):
            return Result(exit_code=0, stdout="BOOT_A_LEFT=0\nBOOT_B_LEFT=0\nBOOT_ORDER=B A\n", stderr="")
        raise OSError("serial link closed")

    outcome = await reset_boot_counters(drops, None, records, first="A")
    assert outcome.result == "unknown"
    assert "may or may not" in outcome.message

    async def ignores(command: str, timeout: float) -> Result:
        return Result(exit_code=0, stdout="BOOT_A_LEFT=0\nBOOT_B_LEFT=0\nBOOT_ORDER=B A\n", stderr="")

    outcome = await reset_boot_counters(ignores, None, records, first="A")
    assert outcome.result == "unverified"
    assert "BOOT_A_LEFT is '0', expected '3'" in outcome.message
    fine = Slots(source="rauc+uboot", slots=(Slot(name="rootfs.0", bootname="A", booted=True, attempts_left=3),
                                             Slot(name="rootfs.1", bootname="B", attempts_left=0)))
    outcome = await reset_boot_counters(ignores, fine, records)  # B alone at 0 is a slot marked bad: kept so
    assert outcome.result == "refused"
    assert "Nothing to reset: the boot counters are fine (A: 3 left (booted), B: 0 left)" in outcome.message
    assert [r for _, _, r in records.items] == ["failed", "unknown", "unverified", "refused"]
    assert records.items[1][1]["command"] == "fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && " \
        "fw_setenv BOOT_ORDER 'A B'"


async def test_the_job_message_and_the_recover_command_give_the_same_recovery() -> None:
    from siteline.core.device.slots import BootEnv, Slot, Slots
    from siteline.core.flash.boot import recovery

    ab = (Slot(name="rootfs.0", bootname="A", booted=True), Slot(name="rootfs.1", bootname="B"))
    for slots in (None, Slots(source="rauc+uboot", slots=ab, env=BootEnv(kind="uboot")),
                  Slots(source="grub", slots=ab, env=BootEnv(kind="grub"))):
        for first in ("A", "B", None):
            assert recovery(slots, first).startswith(recovery_text(slots, first))
            assert recovery(slots, first).endswith("`siteline recover TARGET`.")
    grub = reset_plan(Slots(source="grub", slots=ab, env=BootEnv(kind="grub")), "B")
    assert grub.linux == "grub-editenv /boot/grub/grubenv set ORDER='B A' A_OK=1 A_TRY=0 B_OK=1 B_TRY=0"
    assert dict(grub.check.want) == {"ORDER": "B A", "A_OK": "1", "A_TRY": "0", "B_OK": "1", "B_TRY": "0"}


async def test_the_recover_parser_takes_the_usual_connect_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from siteline.recover_cli import add_recover_parser, recover_main

    connect = argparse.ArgumentParser(add_help=False)  # as cli.py's shared connect options
    for flag in ("--user", "--identity"):
        connect.add_argument(flag)
    connect.add_argument("--accept-new-host-key", action="store_true")
    connect.add_argument("--timeout", type=float, default=20.0)
    parser = argparse.ArgumentParser(prog="siteline")
    add_recover_parser(parser.add_subparsers(dest="command"), connect)
    args = parser.parse_args(["recover", "serial:///dev/ttyUSB0?baud=115200", "--user", "root", "--yes"])
    assert (args.target, args.user, args.yes, args.handler) == ("serial:///dev/ttyUSB0?baud=115200", "root", True,
                                                                recover_main)
    assert "7  failed" in parser._subparsers._group_actions[0].choices["recover"].format_help()  # type: ignore[union-attr]
    assert await recover(_recover_args(tmp_path / "ttyNONE")) == 4  # no such console: unreachable
    assert "ttyNONE" in capsys.readouterr().err


async def test_grub_counters_are_reset_with_grub_editenv() -> None:
    """A GRUB device (a stand-in env here: grub-editenv's real file is /boot/grub/grubenv, never the host's)."""
    import shlex

    from siteline.core.device.slots import BootEnv, Slot, Slots
    from siteline.core.transports.base import Result

    env = {"ORDER": "B A", "A_OK": "0", "A_TRY": "1", "B_OK": "0", "B_TRY": "1"}
    ran: list[str] = []

    async def grub_device(command: str, timeout: float) -> Result:
        ran.append(command)
        words = shlex.split(command)
        if words[0] != "grub-editenv":
            return Result(exit_code=127, stdout="", stderr=f"sh: {words[0]}: not found")
        if words[2] == "set":
            env.update(w.split("=", 1) for w in words[3:])
        return Result(exit_code=0, stdout="".join(f"{k}={v}\n" for k, v in env.items()))

    slots = Slots(source="grub", env=BootEnv(kind="grub", good={"A": False, "B": False}),
                  slots=(Slot(name="A", bootname="A", booted=True), Slot(name="B", bootname="B")))
    records = Records()
    outcome = await reset_boot_counters(grub_device, slots, records)
    assert outcome.ok, str(outcome)
    assert env == {"ORDER": "A B", "A_OK": "1", "A_TRY": "0", "B_OK": "1", "B_TRY": "0"}
    assert ran[0] == "grub-editenv /boot/grub/grubenv list"  # the kind the probe saw is read first
    assert records.items[0][1]["backend"] == "grub"
