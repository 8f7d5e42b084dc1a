"""Slot actions: which ones a snapshot offers, their exact commands, confirmation rules, and perform()."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.device.slot_actions import (
    GRUB_ENV,
    SlotAction,
    actions_for,
    available_actions,
    perform,
    slot_actions,
)
from siteline.core.device.slots import Slot, Slots
from siteline.core.errors import TransportError
from siteline.core.transports.base import Result
from siteline_slots.parsers import merge, parse_fw_printenv, parse_grub_editenv, parse_rauc_status

DATA = Path(__file__).resolve().parents[1] / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def rauc_uboot(env: str = "fw_printenv/rauc-factory-a.txt") -> Slots:
    return merge(parse_rauc_status(read("rauc/status-1.8.json")), parse_fw_printenv(read(env)))


def uboot_only(env: str, booted: str = "A") -> Slots:
    return merge(None, parse_fw_printenv(read(env)), booted)


def grub_only(env: str, booted: str = "A") -> Slots:
    return merge(None, parse_grub_editenv(read(env)), booted)


def pick(slots: Slots, slot: str, verb: str) -> SlotAction:
    found = slots.slot(slot)
    assert found is not None
    return actions_for(slots, found)[verb]  # type: ignore[index]


# --- what is offered, with which command -------------------------------------------------------------------


def test_rauc_factory_device_offers_switch_and_mark_bad_of_the_other_slot() -> None:
    slots = rauc_uboot()
    offered = {(a.slot, a.verb): a.command for a in available_actions(slots)}
    assert offered == {
        ("A", "mark-bad"): "rauc status mark-bad rootfs.0",
        ("B", "mark-bad"): "rauc status mark-bad rootfs.1",
        ("B", "mark-active"): "rauc status mark-active rootfs.1",
    }
    assert pick(slots, "A", "mark-good").blocked == "Slot A is already marked good."
    assert pick(slots, "A", "mark-active").blocked == "Slot A already boots next."


def test_effects_say_what_happens_in_plain_words() -> None:
    slots = rauc_uboot()
    switch = pick(slots, "B", "mark-active")
    assert switch.effect.startswith("The device will boot slot B (1.2.0) at the next reboot")
    assert "A (1.1.0) stays as fallback" in switch.effect
    assert (switch.risk, switch.typed_confirmation) == ("medium", False)
    bad = pick(slots, "A", "mark-bad")
    assert "at the next reboot the device boots B (1.2.0)" in bad.effect
    assert (bad.risk, bad.typed_confirmation) == ("high", True)
    other_bad = pick(slots, "B", "mark-bad")
    assert (other_bad.risk, other_bad.typed_confirmation) == ("medium", False)


def test_trial_boot_offers_mark_good_of_the_booted_slot() -> None:
    slots = merge(_booted_b_status(), parse_fw_printenv(read("fw_printenv/rauc-booted-b-trial.txt")))
    good = pick(slots, "B", "mark-good")
    assert good.available
    assert good.command == "rauc status mark-good rootfs.1"
    assert good.risk == "low"
    assert "will not roll back" in good.effect


def _booted_b_status() -> Slots:
    text = read("rauc/status-1.8.json").replace('"booted":"A"', '"booted":"B"')
    text = text.replace('"state":"inactive"', '"state":"X"').replace('"state":"booted"', '"state":"inactive"')
    return parse_rauc_status(text.replace('"state":"X"', '"state":"booted"'))


def test_uboot_without_rauc_uses_fw_setenv() -> None:
    slots = uboot_only("fw_printenv/rauc-booted-b-trial.txt", booted="B")
    good = pick(slots, "B", "mark-good")
    assert good.commands == ("fw_setenv BOOT_B_LEFT 3", "fw_setenv upgrade_available 0", "fw_setenv bootcount 0")
    assert good.command == "fw_setenv BOOT_B_LEFT 3 && fw_setenv upgrade_available 0 && fw_setenv bootcount 0"
    back = pick(slots, "A", "mark-active")
    assert back.commands == ("fw_setenv BOOT_A_LEFT 3", "fw_setenv BOOT_ORDER 'A B'")
    assert back.check is not None
    assert back.check.want == (("BOOT_A_LEFT", "3"), ("BOOT_ORDER", "A B"))
    assert pick(slots, "A", "mark-bad").commands == ("fw_setenv BOOT_A_LEFT 0",)
    # Marking the other slot good does not touch the running boot's bootcount scheme.
    assert pick(slots, "A", "mark-good").blocked == "Slot A is already marked good."


def test_exhausted_slot_activation_needs_the_typed_name() -> None:
    slots = uboot_only("fw_printenv/rauc-b-exhausted-rolled-back.txt", booted="A")
    back_to_b = pick(slots, "B", "mark-active")
    assert back_to_b.available
    assert (back_to_b.risk, back_to_b.typed_confirmation) == ("high", True)
    assert "does not know that this slot holds a working system" in back_to_b.effect
    assert pick(slots, "B", "mark-bad").blocked == "Slot B is already marked bad."
    # A is the only good slot left: marking it bad would leave nothing to boot.
    assert "only good slot" in (pick(slots, "A", "mark-bad").blocked or "")
    assert pick(slots, "B", "mark-good").commands == ("fw_setenv BOOT_B_LEFT 3",)


def test_grub_env_commands() -> None:
    slots = grub_only("grub-editenv/rauc-trying-b.txt", booted="B")
    assert pick(slots, "B", "mark-good").command == f"grub-editenv {GRUB_ENV} set B_OK=1 B_TRY=0"
    # B is on its one GRUB try (B_TRY=1): the next boot falls back to A, so "boot A next" is already so.
    assert pick(slots, "A", "mark-active").blocked == "Slot A already boots next."
    bad = grub_only("grub-editenv/rauc-b-bad.txt")
    act = pick(bad, "B", "mark-active")
    assert act.command == f"grub-editenv {GRUB_ENV} set 'ORDER=B A' B_OK=1 B_TRY=0"
    assert act.typed_confirmation
    assert act.check is not None
    assert act.check.command == f"grub-editenv {GRUB_ENV} list"
    assert pick(bad, "B", "mark-good").command == f"grub-editenv {GRUB_ENV} set B_OK=1 B_TRY=0"


def test_unknown_booted_slot_makes_every_mark_bad_a_typed_one() -> None:
    slots = uboot_only("fw_printenv/rauc-factory-a.txt", booted="Z")
    assert slots.booted_slot is None
    assert all(a.typed_confirmation for a in slot_actions(slots) if a.verb == "mark-bad")


def test_barebox_and_odd_names_are_not_offered() -> None:
    barebox = Slots(source="barebox", slots=(Slot(name="system0", bootname="system0", health="good"),))
    assert available_actions(barebox) == []
    assert "cannot change barebox" in (slot_actions(barebox)[0].blocked or "")
    odd = Slots(source="rauc", slots=(Slot(name="rootfs 0; reboot", bootname="A", health="bad"),
                                      Slot(name="rootfs.1", bootname="B", health="good")))
    blocked = pick(odd, "A", "mark-good")
    assert not blocked.available
    assert "cannot take" in (blocked.blocked or "")
    evil = Slots(source="uboot", slots=(Slot(name="A;rm", bootname="A;rm", health="bad"),))
    assert available_actions(evil) == []


def test_slots_without_bootname_get_no_actions() -> None:
    assert slot_actions(Slots(source="rauc", slots=(Slot(name="appfs.0"),))) == []
    assert slot_actions(Slots(source="rauc")) == []


_text = st.text(max_size=12)
_slot = st.builds(Slot, name=_text, bootname=st.none() | _text, booted=st.booleans(), primary=st.booleans(),
                  health=st.sampled_from([None, "good", "bad"]), attempts_left=st.none() | st.integers(-5, 9),
                  bundle_version=st.none() | _text, install_status=st.none() | _text)


@settings(max_examples=200, deadline=None)
@given(source=st.sampled_from(["rauc", "rauc+uboot", "uboot", "grub", "barebox", "?"]),
       slots=st.lists(_slot, max_size=4))
def test_garbage_snapshots_never_raise(source: str, slots: list[Slot]) -> None:
    for action in slot_actions(Slots(source=source, slots=tuple(slots))):
        assert action.title
        if action.available:
            assert action.commands
            assert "\n" not in action.command


# --- perform -------------------------------------------------------------------------------------------------


class Device:
    """A scripted device: each command's Result (or exception) in order."""

    def __init__(self, *answers: Result | Exception) -> None:
        self.answers = list(answers)
        self.ran: list[str] = []

    async def run(self, command: str, timeout: float) -> Result:
        self.ran.append(command)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any], str]] = []

    def __call__(self, action: str, detail: dict[str, Any], result: str) -> None:
        self.records.append((action, detail, result))


STATUS_B_PRIMARY = read("rauc/status-1.8.json").replace('"boot_primary":"rootfs.0"', '"boot_primary":"rootfs.1"')


def run_perform(action: SlotAction, device: Device) -> tuple[Any, Audit]:
    audit = Audit()
    outcome = asyncio.run(perform(action, device.run, audit))
    assert len(audit.records) == 1
    return outcome, audit


def test_perform_success_needs_exit_0_and_the_change_read_back() -> None:
    action = pick(rauc_uboot(), "B", "mark-active")
    device = Device(Result(0, "rauc status: activated slot rootfs.1\n"), Result(0, STATUS_B_PRIMARY))
    outcome, audit = run_perform(action, device)
    assert outcome.ok
    assert outcome.result == "ok"
    assert device.ran == ["rauc status mark-active rootfs.1", "rauc status --output-format=json"]
    name, detail, result = audit.records[0]
    assert (name, result) == ("slot-mark", "ok")
    assert detail["verb"] == "mark-active"
    assert detail["slot"] == "B"
    assert detail["command"] == "rauc status mark-active rootfs.1"
    assert detail["exit_code"] == 0


def test_exit_0_without_the_change_is_not_claimed() -> None:
    action = pick(rauc_uboot(), "B", "mark-active")
    device = Device(Result(0, "rauc status: activated slot rootfs.1\n"), Result(0, read("rauc/status-1.8.json")))
    outcome, audit = run_perform(action, device)
    assert not outcome.ok
    assert outcome.result == "unverified"
    assert "does not show the change" in outcome.message
    assert "'rootfs.0', expected 'rootfs.1'" in outcome.message
    assert audit.records[0][2] == "unverified"
    assert "reason" in audit.records[0][1]


@pytest.mark.parametrize(
    ("result", "message", "hint"),
    [
        (Result(127, "", "sh: rauc: not found\n"), "not installed", "Refresh"),
        (Result(1, "", "rauc mark: Failed marking slot rootfs.1 as bad: Failed to run fw_setenv: Child process "
                       "exited with code 243\n"), "exit 1", "fw_env.config"),
        (Result(1, "", "rauc mark: error creating proxy: Could not connect: No such file or directory\n"),
         "error creating proxy", "systemctl start rauc"),
        (Result(1, "", "rauc mark: GDBus.Error:org.freedesktop.DBus.Error.AccessDenied: Permission denied\n"),
         "Permission denied", "log in as root"),
        (Result(124, "", "timed out"), "did not finish in time", "Refresh"),
    ],
)
def test_failures_are_explained_and_audited(result: Result, message: str, hint: str) -> None:
    action = pick(rauc_uboot(), "B", "mark-bad")
    outcome, audit = run_perform(action, Device(result))
    assert not outcome.ok
    assert message in outcome.message
    assert hint in outcome.hint
    name, detail, res = audit.records[0]
    assert (name, res) == ("slot-mark", "failed")
    assert detail["exit_code"] == result.exit_code
    assert detail["reason"]


def test_link_dropping_mid_action_is_unknown_not_failed() -> None:
    action = pick(rauc_uboot(), "B", "mark-active")
    outcome, audit = run_perform(action, Device(TransportError("gw-01: the SSH connection was lost.")))
    assert (outcome.ok, outcome.result) == (False, "unknown")
    assert "may or may not have been applied" in outcome.message
    assert audit.records[0][2] == "unknown"


def test_reread_failing_is_unverified() -> None:
    action = pick(uboot_only("fw_printenv/rauc-factory-a.txt"), "B", "mark-active")
    outcome, _ = run_perform(action, Device(Result(0, ""), TransportError("link down")))
    assert outcome.result == "unverified"
    assert "could not be read back" in outcome.message


def test_env_reread_checks_every_variable() -> None:
    action = pick(uboot_only("fw_printenv/rauc-factory-a.txt"), "B", "mark-active")
    after = read("fw_printenv/rauc-factory-a.txt").replace("BOOT_ORDER=A B", "BOOT_ORDER=B A")
    outcome, _ = run_perform(action, Device(Result(0, ""), Result(0, after)))
    assert outcome.ok, outcome
    half = read("fw_printenv/rauc-factory-a.txt")
    outcome, _ = run_perform(action, Device(Result(0, ""), Result(0, half)))
    assert outcome.result == "unverified"
    assert "BOOT_ORDER is 'A B', expected 'B A'" in outcome.message


def test_blocked_action_is_refused_and_recorded_without_running() -> None:
    action = pick(rauc_uboot(), "A", "mark-good")
    device = Device()
    outcome, audit = run_perform(action, device)
    assert outcome.result == "refused"
    assert device.ran == []
    assert audit.records[0][2] == "refused"


def test_cancel_while_running_is_recorded() -> None:
    action = pick(rauc_uboot(), "B", "mark-active")
    audit = Audit()

    async def hang(command: str, timeout: float) -> Result:
        await asyncio.sleep(10)
        raise AssertionError

    async def main() -> None:
        task = asyncio.ensure_future(perform(action, hang, audit))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert audit.records[0][2] == "unknown"


def test_rauc_reread_garbage_is_unverified() -> None:
    action = pick(rauc_uboot(), "B", "mark-bad")
    outcome, _ = run_perform(action, Device(Result(0, "ok"), Result(0, "{not json")))
    assert outcome.result == "unverified"
    assert "no readable status" in outcome.message
