"""Bring a device whose slots ran out of boot attempts back: reset the boot counters, read back, record it.

A device power-cut again and again while it boots burns an attempt each time (the counter is saved before the
kernel runs) until no slot has any left. Nothing is wrong with its images, only with its counters, and the fix
is the one the flash job's "needs attention" message gives: every slot's counter back to the default, the slot
known to boot first. ``reset_plan`` makes those words and commands once, so the message (boot.recovery) and the
action here are the same; ``reset_boot_counters`` runs them over whatever link reaches the device — usually the
serial console, since a device in that state may never get as far as SSH.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from siteline.core.device.slot_actions import (
    DEFAULT_ATTEMPTS,
    GRUB_ENV,
    ActionOutcome,
    Check,
    run_or_reason,
    verify,
)
from siteline.core.device.slots import Slots
from siteline.core.transports.base import Result

Run = Callable[[str, float], Awaitable[Result]]
Record = Callable[[str, dict[str, Any], str], None]
EnvKind = Literal["uboot", "grub"]

BOOT_COUNTERS_RESET = "boot-counters-reset"  # the audit action (one record per attempt, whatever the outcome)
TIMEOUT = 30.0
UBOOT_READ = "fw_printenv"
GRUB_READ = f"grub-editenv {GRUB_ENV} list"
_NAME = re.compile(r"[A-Za-z0-9_]+")  # safe inside BOOT_<x>_LEFT / <x>_OK and in the U-Boot prompt line
_UBOOT_LEFT = re.compile(r"BOOT_([A-Za-z0-9_]+)_LEFT")
_GRUB_OK = re.compile(r"([A-Za-z0-9_]+)_OK")


@dataclass(frozen=True)
class ResetPlan:
    """Every slot's counter back to DEFAULT_ATTEMPTS and ``order`` (the slot known to boot first)."""

    kind: EnvKind
    names: tuple[str, ...]
    order: str
    linux: str  # the one line a Linux shell on the device runs (stops at the first failure)
    uboot: str  # what to type at the U-Boot prompt (U-Boot only; "" for GRUB)
    check: Check  # the read-back and what it must show

    @property
    def text(self) -> str:
        """The recovery in words, as the flash job's "needs attention" message gives it."""
        if self.kind == "grub":
            return ("Make the slots bootable again over the serial console: log in (or boot a rescue shell from the "
                    f"GRUB menu) and run `{self.linux}` then `reboot`.")
        return ("Reset the boot counters over the serial console (115200 8N1): at the U-Boot prompt (press a key "
                f"while it counts down) type `{self.uboot}`; or, if Linux comes up, log in and run `{self.linux}` "
                "then `reboot`.")


def plan(kind: EnvKind, names: list[str], first: str | None) -> ResetPlan:
    """The reset for slots ``names`` (A, B when none are known), ``first`` tried first when it is one of them."""
    names = names or ["A", "B"]
    order = " ".join([first, *(n for n in names if n != first)] if first in names else names)
    if kind == "grub":
        sets = [("ORDER", order), *((k, v) for n in names for k, v in ((f"{n}_OK", "1"), (f"{n}_TRY", "0")))]
        words = " ".join([f"ORDER='{order}'", *(f"{n}_OK=1 {n}_TRY=0" for n in names)])
        return ResetPlan(kind, tuple(names), order, f"grub-editenv {GRUB_ENV} set {words}", "",
                         Check(GRUB_READ, "env", tuple(sets)))
    counters = [(f"BOOT_{n}_LEFT", str(DEFAULT_ATTEMPTS)) for n in names]
    linux = " && ".join([*(f"fw_setenv {k} {v}" for k, v in counters), f"fw_setenv BOOT_ORDER '{order}'"])
    uboot = "; ".join([*(f"setenv {k} {v}" for k, v in counters), f"setenv BOOT_ORDER '{order}'", "saveenv", "reset"])
    return ResetPlan(kind, tuple(names), order, linux, uboot, Check(UBOOT_READ, "env",
                                                                    (*counters, ("BOOT_ORDER", order))))


def reset_plan(slots: Slots | None, first: str | None) -> ResetPlan:
    """The plan for a Slots snapshot (U-Boot words when nothing could be read: the likeliest on such devices)."""
    names = [s.bootname for s in slots.slots if s.bootname] if slots is not None else []
    kind: EnvKind = "grub" if slots is not None and slots.env is not None and slots.env.kind == "grub" else "uboot"
    return plan(kind, names, first)


def recovery_text(slots: Slots | None, first: str | None) -> str:
    """The serial-console recovery for a device whose slots ran out of boot attempts (boot.recovery's words)."""
    return reset_plan(slots, first).text


def exhausted(slots: Slots) -> bool:
    """Every A/B slot out of attempts (GRUB: none marked OK): the next boot may find nothing to boot."""
    ab = [s for s in slots.slots if s.bootname]
    if not ab:
        return False
    if slots.env is not None and slots.env.kind == "grub":
        return all(slots.env.good.get(s.bootname or "") is False or s.attempts_left == 0 for s in ab)
    return all(s.attempts_left == 0 for s in ab)


def needs_reset(slots: Slots) -> str | None:
    """Why the counters need a reset, in words; None when they are fine (nothing to do)."""
    booted = slots.booted_slot
    if exhausted(slots):
        return "every slot is out of boot attempts: the next boot may find no slot to boot"
    if booted is not None and booted.bootname and booted.attempts_left == 0:
        return (f"the running slot {booted.bootname} has no boot attempts left: one more reboot or power cut "
                "and the bootloader leaves it")
    return None


def first_slot(slots: Slots | None, preferred: str | None = None) -> str | None:
    """Which slot should boot first after the reset: the running one (it is known to boot), else ``preferred``,
    else the one the bootloader tries first now."""
    if slots is not None and slots.booted_slot is not None and slots.booted_slot.bootname:
        return slots.booted_slot.bootname
    if preferred:
        return preferred
    if slots is not None and slots.env is not None and slots.env.order:
        return slots.env.order[0]
    return None


# --- doing it ------------------------------------------------------------------------------------------------


def _env_names(kind: EnvKind, text: str) -> list[str]:
    pattern = _UBOOT_LEFT if kind == "uboot" else _GRUB_OK
    names = [m.group(1) for line in text.splitlines() if (m := pattern.match(line.partition("=")[0].strip()))]
    return sorted(set(names))


async def read_env(run: Run, timeout: float = TIMEOUT, prefer: EnvKind = "uboot") -> tuple[EnvKind, str] | str:
    """(kind, what the env tool printed), or in words why no boot env could be read. ``prefer`` is asked
    first (the kind the slots probe saw): a device may carry both tools while only one env is the real one."""
    said: list[str] = []
    tools = (("uboot", UBOOT_READ), ("grub", GRUB_READ))
    for kind, command in tools if prefer == "uboot" else tools[::-1]:
        result = await run_or_reason(run, command, timeout)
        if isinstance(result, str):
            return f"the link broke while `{command}` ran ({result})"
        if result.exit_code == 0 and result.stdout.strip():
            return ("uboot" if kind == "uboot" else "grub"), result.stdout
        said.append(f"`{command}` exit {result.exit_code}")
    return "no boot environment could be read (" + "; ".join(said) + ")"


async def reset_boot_counters(run: Run, slots: Slots | None, record: Record, *, first: str | None = None,
                              force: bool = False, timeout: float = TIMEOUT) -> ActionOutcome:
    """Read the env, reset every slot's counter (the running slot first), read back, and record it once.

    ``slots`` is the latest reading (None when the probe could not read the device: the env alone decides).
    Refused, changing nothing, when the counters are fine, unless ``force``."""
    detail: dict[str, Any] = {"first": first}
    try:
        outcome = await _reset(run, slots, first, force, timeout, detail)
    except asyncio.CancelledError:
        record(BOOT_COUNTERS_RESET, {**detail, "reason": "stopped while the reset ran: the counters may or may not "
                                     "have changed"}, "unknown")
        raise
    detail["message"] = str(outcome)
    if outcome.reread:
        detail["after"] = outcome.reread.strip()[:500]
    record(BOOT_COUNTERS_RESET, detail, outcome.result)
    return outcome


async def _reset(run: Run, slots: Slots | None, first: str | None, force: bool, timeout: float,
                 detail: dict[str, Any]) -> ActionOutcome:
    if slots is not None and not force:
        why = needs_reset(slots)
        if why is None:
            return ActionOutcome(False, "refused", "Nothing to reset: the boot counters are fine "
                                 f"({_counters(slots)}).", "Use the Slots tab's actions to change slots.")
        detail["reason"] = why
    found = await read_env(run, timeout, reset_plan(slots, None).kind)
    if isinstance(found, str):
        return ActionOutcome(False, "failed", f"The boot counters were not reset: {found}.",
                             "Log in on the serial console and run the recovery by hand, or at the U-Boot prompt.")
    kind, before = found
    detail["before"] = before.strip()[:500]
    names = [s.bootname for s in slots.slots if s.bootname] if slots is not None else []
    names = names or _env_names(kind, before)
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad:
        return ActionOutcome(False, "refused", f"The bootloader names a slot {bad[0]!r}, which Siteline will not "
                             "write into the env.", "Reset the counters by hand over the serial console.")
    todo = plan(kind, names, first_slot(slots, first))
    detail.update({"backend": kind, "command": todo.linux, "order": todo.order})
    return await _apply(run, todo, timeout)


async def _apply(run: Run, todo: ResetPlan, timeout: float) -> ActionOutcome:
    result = await run_or_reason(run, todo.linux, timeout)
    if isinstance(result, str):
        return ActionOutcome(False, "unknown", f"The link to the device broke while it ran `{todo.linux}` "
                             f"({result}): the counters may or may not have been reset.",
                             "Reconnect and read the slots again before retrying.")
    if result.exit_code != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        return ActionOutcome(False, "failed", f"The boot counters were not reset: `{todo.linux}` exited "
                             f"{result.exit_code} ({said[0][:200] if said else 'it printed nothing'}).",
                             "Check that the env is writable (fw_env.config), or reset them at the U-Boot prompt: "
                             f"`{todo.uboot}`" if todo.uboot else "Run it by hand on the serial console.",
                             result.exit_code, result.stdout, result.stderr)
    reread = await run_or_reason(run, todo.check.command, timeout)
    if isinstance(reread, str) or reread.exit_code != 0:
        why = reread if isinstance(reread, str) else f"exit {reread.exit_code}"
        return ActionOutcome(False, "unverified", f"`{todo.linux}` exited 0, but the env could not be read back "
                             f"({why}).", "Read the slots again before rebooting.", 0, result.stdout, result.stderr)
    missing = verify(todo.check, reread.stdout)
    if missing:
        return ActionOutcome(False, "unverified", f"`{todo.linux}` exited 0, but the env does not show it: "
                             f"{missing}.", "The env may be read from another place than it is written to "
                             "(fw_env.config).", 0, result.stdout, result.stderr, reread.stdout)
    return ActionOutcome(True, "ok", f"Done: every slot has {DEFAULT_ATTEMPTS} boot attempts again, "
                         f"{todo.order.split()[0]} first (order {todo.order}).",
                         "Reboot the device when ready: it boots the first slot.", 0, result.stdout, result.stderr,
                         reread.stdout)


def _counters(slots: Slots) -> str:
    parts = []
    for s in slots.slots:
        if s.bootname:
            left = "?" if s.attempts_left is None else str(s.attempts_left)
            parts.append(f"{s.bootname}: {left} left{' (booted)' if s.booted else ''}")
    return ", ".join(parts) or "no A/B slots"
