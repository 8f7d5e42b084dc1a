"""Slot actions: mark a slot good, mark it bad, or make it the one the next boot tries — confirmed and audited.

``slot_actions(slots)`` lists, for each A/B slot of a Slots snapshot, the three verbs with the exact device
command, the effect in plain words, a risk level, whether the device's name must be typed to confirm, and —
when the verb makes no sense now — why not (the UI shows that as a disabled button's tooltip).
``perform(action, run, record)`` runs it, checks the exit code, reads the state back and records the attempt in
the audit trail whatever the outcome. It never says "done" without exit 0 and a re-read that shows the change.

Commands: with RAUC, ``rauc status mark-good|mark-bad|mark-active <slot>`` (RAUC keeps its own slot status and
talks to the bootloader). Without RAUC, the bootloader env directly, as RAUC's backends would write it: U-Boot
through ``fw_setenv`` (BOOT_<x>_LEFT, BOOT_ORDER; the bootcount scheme's upgrade_available/bootcount), GRUB
through ``grub-editenv FILE set`` (ORDER, <x>_OK, <x>_TRY). barebox is not offered yet.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from siteline.core.audit import SLOT_MARK
from siteline.core.device.slots import Slot, Slots
from siteline.core.errors import SitelineError
from siteline.core.transports.base import Result

Verb = Literal["mark-good", "mark-bad", "mark-active"]
Risk = Literal["low", "medium", "high"]
Backend = Literal["rauc", "uboot", "grub"]
Run = Callable[[str, float], Awaitable[Result]]
Record = Callable[[str, dict[str, Any], str], None]

VERBS: tuple[Verb, ...] = ("mark-good", "mark-bad", "mark-active")
DEFAULT_ATTEMPTS = 3  # RAUC's default boot attempts (boot-attempts / boot-attempts-primary unset)
GRUB_ENV = "/boot/grub/grubenv"  # grub-editenv's default file, the one the probe's `grub-editenv list` reads
TIMEOUT = 30.0
_RAUC_NAME = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # class.index, what `rauc status mark-*` accepts
_BOOTNAME = re.compile(r"[A-Za-z0-9_]+")  # safe inside BOOT_<x>_LEFT / <x>_OK without quoting


@dataclass(frozen=True)
class Check:
    """How to see the change afterwards: a read command and what it must then show."""

    command: str
    kind: Literal["rauc", "env"]
    # env: (variable, value); rauc: ("boot_primary", slot name) or ("boot_status:<slot name>", good|bad)
    want: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SlotAction:
    verb: Verb
    slot: str  # what the technician calls it: the bootname ("B"), else RAUC's name
    slot_name: str  # RAUC's name (rootfs.1), or the bootname without RAUC
    backend: Backend | None
    commands: tuple[str, ...]  # run in order, stopping at the first failure
    effect: str  # what will happen, in plain words
    risk: Risk
    typed_confirmation: bool  # the device's name must be typed before it runs
    check: Check | None
    blocked: str | None = None  # why it cannot be done now; None = available

    @property
    def available(self) -> bool:
        return self.blocked is None

    @property
    def command(self) -> str:
        """The one line sent to the device (one round trip; ``&&`` stops at the first failure)."""
        return " && ".join(self.commands)

    @property
    def title(self) -> str:
        return {"mark-good": f"Mark slot {self.slot} good", "mark-bad": f"Mark slot {self.slot} bad",
                "mark-active": f"Boot slot {self.slot} next"}[self.verb]

    @property
    def audit_name(self) -> str:
        return SLOT_MARK  # the audit trail's one action for all three verbs; the verb is in the detail


@dataclass(frozen=True)
class ActionOutcome:
    ok: bool
    result: Literal["ok", "failed", "unknown", "unverified", "refused"]
    message: str  # what happened
    hint: str = ""  # what to do next
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    reread: str = ""  # what the read-back printed (the caller re-probes the slots anyway)

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


# --- what makes sense ---------------------------------------------------------------------------------


def backend_of(slots: Slots) -> Backend | None:
    if slots.source.startswith("rauc"):
        return "rauc"
    kind = slots.env.kind if slots.env is not None else slots.source
    return "uboot" if kind == "uboot" else "grub" if kind == "grub" else None


def slot_actions(slots: Slots) -> list[SlotAction]:
    """Every verb for every A/B slot (those with a bootname), each with ``blocked`` set when it makes no sense."""
    ab = [s for s in slots.slots if s.bootname]
    return [_action(slots, s, verb) for s in ab for verb in VERBS]


def available_actions(slots: Slots) -> list[SlotAction]:
    """The actions that can be performed on this snapshot."""
    return [a for a in slot_actions(slots) if a.available]


def actions_for(slots: Slots, slot: Slot) -> dict[Verb, SlotAction]:
    return {verb: _action(slots, slot, verb) for verb in VERBS}


def _label(slot: Slot) -> str:
    name = slot.bootname or slot.name
    return f"{name} ({slot.bundle_version})" if slot.bundle_version else name


def _others(slots: Slots, slot: Slot) -> list[Slot]:
    return [s for s in slots.slots if s.bootname and s is not slot]


def _on_trial(slots: Slots, slot: Slot) -> bool:
    """Good for now but still counting attempts: marking it good changes something."""
    env = slots.env
    if slot.attempts_left is not None and slot.attempts_left < DEFAULT_ATTEMPTS:
        return True
    if env is not None and slot.bootname:
        if env.kind == "grub" and env.trying.get(slot.bootname):
            return True
        if env.kind == "uboot" and slot.booted and (env.upgrade_available or (env.bootcount or 0) > 0):
            return True
    return False


def good_bundle(slots: Slots, slot: Slot) -> bool:
    """Whether the slot holds something known to be fine to boot."""
    if slot.booted:
        return True
    if slot.health == "bad" or (slot.install_status not in (None, "ok")):
        return False
    # RAUC records what each slot holds; a slot it knows nothing about may be empty or half-written.
    return not (slots.source.startswith("rauc") and slot.bundle_version is None)


def _blocked(slots: Slots, slot: Slot, verb: Verb, backend: Backend | None) -> str | None:
    if backend is None:
        kind = slots.env.kind if slots.env else slots.source
        return f"Siteline cannot change {kind} slots yet: use the device's own tool."
    if verb == "mark-good" and slot.health == "good" and not _on_trial(slots, slot):
        return f"Slot {slot.bootname} is already marked good."
    if verb == "mark-bad":
        if slot.health == "bad":
            return f"Slot {slot.bootname} is already marked bad."
        if (slot.booted or slots.booted_slot is None) and all(o.health == "bad" for o in _others(slots, slot)):
            return (f"Slot {slot.bootname} is the only good slot: marking it bad would leave nothing good to boot. "
                    "Install a working update in the other slot first.")
    if verb == "mark-active" and slot.primary:
        return f"Slot {slot.bootname} already boots next."
    return None


def _action(slots: Slots, slot: Slot, verb: Verb) -> SlotAction:
    backend = backend_of(slots)
    name = slot.bootname or slot.name
    commands: tuple[str, ...] = ()
    check: Check | None = None
    blocked = _blocked(slots, slot, verb, backend)
    try:
        if backend == "rauc":
            commands, check = _rauc(slot, verb)
        elif backend == "uboot":
            commands, check = _uboot(slots, slot, verb)
        elif backend == "grub":
            commands, check = _grub(slots, slot, verb)
    except ValueError as exc:
        blocked = blocked or str(exc)
    risk, typed = _risk(slots, slot, verb)
    return SlotAction(verb=verb, slot=name, slot_name=slot.name if backend == "rauc" else name, backend=backend,
                      commands=commands, effect=_effect(slots, slot, verb), risk=risk, typed_confirmation=typed,
                      check=check, blocked=blocked)


def _risk(slots: Slots, slot: Slot, verb: Verb) -> tuple[Risk, bool]:
    if verb == "mark-bad":
        # The running slot (or, when nobody knows which one runs, any slot) bad: the next boot leaves it.
        return ("high", True) if slot.booted or slots.booted_slot is None else ("medium", False)
    if verb == "mark-active":
        if slot.booted:
            return "low", False
        return ("medium", False) if good_bundle(slots, slot) else ("high", True)
    return ("low", False) if slot.booted else ("medium", False)


def _effect(slots: Slots, slot: Slot, verb: Verb) -> str:
    me, others = _label(slot), [_label(o) for o in _others(slots, slot)]
    other = " / ".join(others) or "the other slot"
    if verb == "mark-good":
        if slot.booted:
            return (f"Slot {me} is kept: its boot attempts go back to {DEFAULT_ATTEMPTS} and this boot stops "
                    "counting as a trial, so the device will not roll back on its own.")
        return (f"Slot {me} counts as bootable again ({DEFAULT_ATTEMPTS} attempts). Nothing changes until the "
                "device is told to boot it (or falls back to it).")
    if verb == "mark-bad":
        if slot.booted:
            return (f"Slot {me} will not be booted again: at the next reboot the device boots {other}. "
                    "The running system keeps running until then.")
        return f"Slot {me} will not be booted; the device stays on {other}, with no fallback until {me} is fixed."
    if slot.booted:
        return f"The device will stay on slot {me} at the next reboot (a pending switch is cancelled)."
    warn = "" if good_bundle(slots, slot) else (" Siteline does not know that this slot holds a working system: "
                                                "if it does not boot, the device falls back after its attempts.")
    return (f"The device will boot slot {me} at the next reboot, with {DEFAULT_ATTEMPTS} attempts; "
            f"{other} stays as fallback.{warn}")


def _rauc(slot: Slot, verb: Verb) -> tuple[tuple[str, ...], Check]:
    # The slot's own name, never "booted"/"other": a device that rebooted since the probe must not get the wrong one.
    if not _RAUC_NAME.fullmatch(slot.name):
        raise ValueError(f"RAUC names this slot {slot.name!r}, which `rauc status {verb}` cannot take.")
    want = ("boot_primary", slot.name) if verb == "mark-active" else (
        f"boot_status:{slot.name}", "good" if verb == "mark-good" else "bad")
    return (f"rauc status {verb} {slot.name}",), Check("rauc status --output-format=json", "rauc", (want,))


def _bootname(slot: Slot) -> str:
    name = slot.bootname or ""
    if not _BOOTNAME.fullmatch(name):
        raise ValueError(f"The bootloader names this slot {name!r}, which Siteline will not write into the env.")
    return name


def _new_order(slots: Slots, name: str) -> str:
    order = list(slots.env.order or ()) if slots.env else []
    order += [s.bootname for s in slots.slots if s.bootname and s.bootname not in order]
    return " ".join([name, *(n for n in order if n != name)])


def _uboot(slots: Slots, slot: Slot, verb: Verb) -> tuple[tuple[str, ...], Check]:
    name = _bootname(slot)
    sets: list[tuple[str, str]] = []
    if verb == "mark-good":
        sets.append((f"BOOT_{name}_LEFT", str(DEFAULT_ATTEMPTS)))
        variables = slots.env.variables if slots.env else {}
        if slot.booted:  # U-Boot's bootcount scheme: this boot is accepted
            sets += [(k, "0") for k in ("upgrade_available", "bootcount") if k in variables]
    elif verb == "mark-bad":
        sets.append((f"BOOT_{name}_LEFT", "0"))
    else:  # attempts first: if the order change then fails, which slot boots has not changed
        sets += [(f"BOOT_{name}_LEFT", str(DEFAULT_ATTEMPTS)), ("BOOT_ORDER", _new_order(slots, name))]
    commands = tuple(f"fw_setenv {k} {shlex.quote(v)}" for k, v in sets)
    return commands, Check("fw_printenv", "env", tuple(sets))


def _grub(slots: Slots, slot: Slot, verb: Verb) -> tuple[tuple[str, ...], Check]:
    name = _bootname(slot)
    ok = "0" if verb == "mark-bad" else "1"
    sets = [(f"{name}_OK", ok), (f"{name}_TRY", "0")]
    if verb == "mark-active":
        sets.insert(0, ("ORDER", _new_order(slots, name)))
    words = " ".join(shlex.quote(f"{k}={v}") for k, v in sets)
    return (f"grub-editenv {GRUB_ENV} set {words}",), Check(f"grub-editenv {GRUB_ENV} list", "env", tuple(sets))


# --- doing it -------------------------------------------------------------------------------------------


async def perform(action: SlotAction, run: Run, record: Record, *, timeout: float = TIMEOUT) -> ActionOutcome:
    """Run ``action`` through ``run`` (a DeviceContext.run / session.run), read back, and record it.

    ``record(action_name, detail, result)`` is called once whatever happens (also when the task is cancelled).
    """
    detail: dict[str, Any] = {"verb": action.verb, "slot": action.slot, "slot_name": action.slot_name,
                              "backend": action.backend, "command": action.command, "risk": action.risk}
    try:
        outcome = await _execute(action, run, timeout)
    except asyncio.CancelledError:
        record(action.audit_name, {**detail, "reason": "stopped while the command ran: the device may or may not "
                                   "have changed"}, "unknown")
        raise
    record(action.audit_name, {**detail, **_audit_detail(outcome)}, outcome.result)
    return outcome


def _audit_detail(outcome: ActionOutcome) -> dict[str, Any]:
    detail: dict[str, Any] = {"exit_code": outcome.exit_code}
    if not outcome.ok:
        detail["reason"] = str(outcome)
    if outcome.stderr.strip():
        detail["stderr"] = outcome.stderr.strip()[:500]
    if outcome.stdout.strip():
        detail["stdout"] = outcome.stdout.strip()[:500]
    return detail


async def run_or_reason(run: Run, command: str, timeout: float) -> Result | str:
    """The command's result, or in words why there is none (the link dropped, it timed out)."""
    try:
        return await run(command, timeout)
    except (SitelineError, OSError, TimeoutError, EOFError) as exc:
        return str(exc) or type(exc).__name__


async def _execute(action: SlotAction, run: Run, timeout: float) -> ActionOutcome:
    if not action.available or action.check is None:
        return ActionOutcome(False, "refused", f"{action.title}: not done. {action.blocked or 'Nothing to run.'}")
    result = await run_or_reason(run, action.command, timeout)
    if isinstance(result, str):
        return ActionOutcome(False, "unknown", f"The link to the device broke while it ran `{action.command}` "
                             f"({result}): it may or may not have been applied.",
                             "Reconnect, let the Slots tab read the device again, then decide whether to retry.")
    if result.exit_code != 0:
        message, hint = explain(action, result)
        return ActionOutcome(False, "failed", message, hint, result.exit_code, result.stdout, result.stderr)
    reread = await run_or_reason(run, action.check.command, timeout)
    if isinstance(reread, str) or reread.exit_code != 0:
        why = reread if isinstance(reread, str) else _first_line(reread.stderr or reread.stdout)
        return ActionOutcome(False, "unverified", f"`{action.command}` exited 0, but the slots could not be read "
                             f"back ({why}), so it is not known whether the change is there.",
                             "Reconnect or refresh the Slots tab and look before trying again.",
                             0, result.stdout, result.stderr)
    missing = verify(action.check, reread.stdout)
    if missing:
        return ActionOutcome(False, "unverified", f"`{action.command}` exited 0, but the device does not show "
                             f"the change: {missing}.", "Refresh the Slots tab; if it still differs, the "
                             "bootloader env may be read from another place than it is written to (fw_env.config).",
                             0, result.stdout, result.stderr, reread.stdout)
    return ActionOutcome(True, "ok", f"Done: {action.effect}", "", 0, result.stdout, result.stderr, reread.stdout)


def verify(check: Check, text: str) -> str:
    """Empty when ``text`` (the read-back) shows every wanted value; else what differs, in words."""
    if check.kind == "env":
        seen = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
        wrong = [f"{k} is {seen.get(k, '(unset)')!r}, expected {v!r}" for k, v in check.want if seen.get(k) != v]
        return "; ".join(wrong)
    try:
        doc = json.loads(text[text.find("{"):]) if "{" in text else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return f"rauc status printed no readable status ({_first_line(text) or 'nothing'})"
    states: dict[str, Any] = {}
    for entry in doc.get("slots") or []:
        if isinstance(entry, dict):
            states.update({k: v.get("boot_status") for k, v in entry.items() if isinstance(v, dict)})
    wrong = []
    for key, want in check.want:
        have = doc.get(key) if key == "boot_primary" else states.get(key.partition(":")[2])
        if have != want:
            wrong.append(f"RAUC says {key.replace('boot_status:', 'boot status of ')} is {have!r}, expected {want!r}")
    return "; ".join(wrong)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


_PERMISSION = ("permission denied", "operation not permitted", "not authorized", "accessdenied", "access denied")
_ENV = ("cannot read environment", "environment not saved", "read-only file system", "configuration file wrong",
        "failed to run fw_setenv", "failed to start fw_setenv", "cannot open", "error: environment")
_SERVICE = ("error creating proxy", "serviceunknown", "name has no owner", "failed to connect to bus")


def explain(action: SlotAction, result: Result) -> tuple[str, str]:
    """A failed command in words, and what to do about it."""
    tool = action.commands[0].split()[0] if action.commands else "the command"
    said = _first_line(result.stderr) or _first_line(result.stdout) or "it printed nothing"
    low = (result.stderr + result.stdout).lower()
    head = f"{action.title}: not done — {tool} failed (exit {result.exit_code}: {said})."
    if result.exit_code == 127:
        return (f"{action.title}: not done — `{tool}` is not installed on the device (exit 127).",
                "Refresh the Slots tab: the actions follow the tools the device really has.")
    if result.exit_code == 124:
        return (f"{action.title}: {tool} did not finish in time; it may or may not have been applied.",
                "Refresh the Slots tab to see what the device has now.")
    if any(p in low for p in _PERMISSION):
        return head, f"The device refused: log in as root (or a user allowed to run {tool}) and try again."
    if any(p in low for p in _SERVICE):
        return head, "The RAUC service is not running on the device: start it (systemctl start rauc) and retry."
    if any(p in low for p in _ENV) or result.exit_code == 243:
        return head, ("The bootloader environment could not be written: check that /etc/fw_env.config names the "
                      "right device and that it is writable (an eMMC boot partition may need "
                      "`echo 0 > /sys/block/mmcblk0boot0/force_ro`).")
    if "no slot with" in low or "invalid slot name" in low:
        return head, "RAUC does not know this slot: refresh the Slots tab (the device may have changed)."
    return head, "Nothing was changed by Siteline's side; read the message above, then refresh the Slots tab."
