"""U-Boot-style slot selection, as RAUC's U-Boot boot script does it."""

from __future__ import annotations

from siteline.simulator.boot import select


def _env(order: str = "A B", a: int = 3, b: int = 3) -> dict[str, str]:
    return {"BOOT_ORDER": order, "BOOT_A_LEFT": str(a), "BOOT_B_LEFT": str(b)}


def test_good_first_slot_boots_and_costs_one_attempt() -> None:
    env, saved = _env(), []
    outcome = select(env, {"A": {"boots": True}}, lambda e: saved.append(dict(e)))
    assert (outcome.slot, outcome.attempts, outcome.rolled_back) == ("A", ["A"], False)
    assert env["BOOT_A_LEFT"] == "2"
    assert saved[-1]["BOOT_A_LEFT"] == "2"  # persisted before the kernel ran
    assert "Found valid slot A, 3 attempts remaining" in outcome.console_lines


def test_bad_image_burns_its_attempts_then_the_old_slot_boots() -> None:
    env, saved = _env("B A"), []
    outcome = select(env, {"A": {"boots": True}, "B": {"boots": False}}, lambda e: saved.append(dict(e)))
    assert outcome.attempts == ["B", "B", "B", "A"]
    assert outcome.slot == "A"
    assert outcome.rolled_back
    assert (env["BOOT_B_LEFT"], env["BOOT_A_LEFT"]) == ("0", "2")
    assert [s["BOOT_B_LEFT"] for s in saved[:3]] == ["2", "1", "0"]  # each attempt saved as it happened
    assert sum("Kernel panic - not syncing" in line and "end" not in line for line in outcome.console_lines) == 3


def test_slot_with_no_attempts_left_is_skipped() -> None:
    env = _env("B A", b=0)
    outcome = select(env, {"A": {"boots": True}, "B": {"boots": True}}, lambda e: None)
    assert outcome.attempts == ["A"]
    assert outcome.rolled_back


def test_no_bootable_slot_resets_counters_and_boots_the_first() -> None:
    env = _env("A B", a=0, b=0)
    outcome = select(env, {"A": {"boots": True}, "B": {"boots": True}}, lambda e: None)
    assert outcome.reset_counters
    assert outcome.slot == "A"
    assert env["BOOT_A_LEFT"] == "2"
    assert env["BOOT_B_LEFT"] == "3"
    assert any("No valid slot found" in line for line in outcome.console_lines)


def test_garbage_env_still_boots() -> None:
    env = {"BOOT_ORDER": "Z ; rm -rf /", "BOOT_A_LEFT": "lots"}
    outcome = select(env, {}, lambda e: None)
    assert outcome.slot in ("A", "B")
