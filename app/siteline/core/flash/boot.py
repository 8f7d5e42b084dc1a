"""Reboot, health check, mark good, and the ways back: what the device booted decides what happens next.

The device always keeps a slot it can boot: the old slot stays good until the new one is proven (booted,
healthy, marked good); a new slot that is unhealthy is marked bad only after the old one is known good; and
when the device is lost (not back within the boot timeout, both slots out of attempts) the job says so in
plain words with the console recovery, instead of "bad".
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from siteline.core.device.slot_actions import DEFAULT_ATTEMPTS, actions_for, perform
from siteline.core.device.slots import Slot, Slots
from siteline.core.flash.context import LINK_ERRORS, Flow, Stop
from siteline.core.flash.job import Step
from siteline.core.flash.reading import attempts_words, is_primary, label, rebooted_since
from siteline.core.flash.recovery import exhausted, recovery_text

REBOOT_COMMAND = "reboot"
REBOOT_ANSWER = 10.0  # the reboot command itself: the link may drop before it answers (expected)
HEALTH_PAUSE = 2.0
REBOOT_GRACE = 20.0  # seconds after `reboot` within which a device may still be going down
REBOOT_POLL = 0.2  # at most this between health checks
LOOK_AGAIN_LIMIT = 2  # boot-id reads lost to a dropped link before the step hands the trouble to _drive


def recovery(slots: Slots | None, first: str | None) -> str:
    """The serial-console recovery for a device whose slots ran out of boot attempts (the same plan that
    `siteline recover` carries out, so the words and the deed cannot drift apart)."""
    return recovery_text(slots, first) + " Or let Siteline do it over the serial console: `siteline recover TARGET`."


async def reboot_and_wait(flow: Flow, step: Step) -> Slots:
    """Reboot (the drop is expected), wait for the device, read its slots; Stop(needs-attention) if it is lost."""
    job = flow.job
    job.boot_id = await flow.reader.boot_mark()
    step.detail = f"rebooting; waiting up to {job.options.boot_timeout:.0f} s for the device"
    flow.save()
    with contextlib.suppress(*LINK_ERRORS):  # the device may go down under the command, as it should
        await flow.link.run(REBOOT_COMMAND, REBOOT_ANSWER)
    return await _wait_back(flow)


async def _wait_back(flow: Flow) -> Slots:
    job = flow.job
    try:
        await flow.link.reconnect(job.options.boot_timeout)
    except TimeoutError as exc:
        raise Stop("needs-attention", f"the device did not come back within {job.options.boot_timeout:.0f} s after "
                   f"the reboot ({exc}). It may be stuck in the bootloader with its slots out of boot attempts. "
                   + recovery(flow.reader.last_slots, job.from_slot)) from exc
    slots = await flow.reader.slots()
    if exhausted(slots):
        flow.note(_slots_words(slots))
        raise Stop("needs-attention", f"both slots are out of boot attempts ({_slots_words(slots)}): the next "
                   f"reboot may not find a slot to boot. {recovery(slots, job.from_slot)}")
    return slots


def _slots_words(slots: Slots) -> str:
    parts = [f"{label(s)} {s.bundle_version or '?'}: {attempts_words(s)}{' (booted)' if s.booted else ''}"
             for s in slots.slots if s.bootname]
    return ", ".join(parts)


async def reboot(flow: Flow, step: Step, resumed: bool) -> str:
    job = flow.job
    slots: Slots | None = None
    if resumed and job.boot_id and await _rebooted_meanwhile(flow, step):
        slots = await _wait_back(flow)
        if _untried(flow, slots):  # the boot id could not be read and the new slot was not even tried
            slots = None
    if slots is None:
        await _expect_switched(flow)
        slots = await reboot_and_wait(flow, step)
    return await _judge_boot(flow, step, slots)


async def _rebooted_meanwhile(flow: Flow, step: Step) -> bool:
    """Whether the reboot Siteline asked for before it stopped happened (or is under way); False = send it again.

    A device takes seconds between `reboot` and going down: a resume inside that window waits to see it go
    rather than rebooting it twice."""
    job = flow.job
    deadline = (step.started or 0.0) + REBOOT_GRACE
    drops = 0
    while True:
        try:
            changed = rebooted_since(job.boot_id, await flow.reader.boot_mark())
        except LINK_ERRORS:
            drops += 1
            if drops > LOOK_AGAIN_LIMIT:  # answers, then drops again: _drive's link-trouble rule bounds it
                raise
            await _wait_back(flow)  # down, or the link flaked: once it answers, look again
            continue
        if changed is not False:
            return True
        if time.time() >= deadline:
            return False
        await asyncio.sleep(REBOOT_POLL)


def _untried(flow: Flow, slots: Slots) -> bool:
    """Still on the old slot, the new one primary with every attempt left: the reboot has not happened."""
    booted, new = slots.booted_slot, slots.slot(flow.job.to_slot or "")
    return (booted is not None and new is not None and booted.bootname == flow.job.from_slot
            and is_primary(slots, new) and new.attempts_left == DEFAULT_ATTEMPTS)


async def _expect_switched(flow: Flow) -> None:
    job = flow.job
    slots = await flow.reader.slots()
    target = slots.slot(job.to_slot or "")
    if target is None or not is_primary(slots, target):
        raise Stop("failed", f"slot {job.to_slot} is no longer set to boot next (next boot: {slots.primary or '?'}): "
                   "someone changed the slots since the install; nothing was rebooted. Flash again")


async def _judge_boot(flow: Flow, step: Step, slots: Slots) -> str:
    job = flow.job
    booted = slots.booted_slot
    new, old = slots.slot(job.to_slot or ""), slots.slot(job.from_slot or "")
    if booted is None or old is None or new is None:
        raise Stop("needs-attention", f"the device is back but does not say which slot it booted "
                   f"({_slots_words(slots) or 'no slots read'}); look at its Slots tab before doing anything else")
    if booted.bootname == new.bootname:
        words = f"booted {label(new)}, {attempts_words(new)}"
        flow.note(words)
        return words
    used = DEFAULT_ATTEMPTS - new.attempts_left if new.attempts_left is not None else None
    tries = f"its {used} attempt{'' if used == 1 else 's'}" if used else "its attempts"
    words = f"came back on {label(old)}: {label(new)} used {tries}"
    flow.note(words)
    ok, health_words = await wait_healthy(flow, step) if flow.flash else (True, "")
    # Healthy or not, the old slot stays the one that boots (its counter reset): the new one does not boot at all.
    kept = await keep_good(flow, old)
    if not ok:  # "rolled-back" means back on the old slot AND healthy
        flow.note(f"{label(old)} {health_words}")
        raise Stop("needs-attention", f"{job.image_version} did not boot on {label(new)} ({tries} used up) and the "
                   f"device came back on {label(old)}, but {label(old)} is {health_words} too; "
                   + (f"{kept}. " if kept else f"{label(old)} stays the slot that boots. ")
                   + "Look at the failing services (Logs tab) before flashing again", detail=words)
    if kept:
        raise Stop("needs-attention", f"{label(new)} did not boot ({tries} used up); the device came back on "
                   f"{label(old)} ({old.bundle_version or job.from_version or '?'}), but {kept}: make "
                   f"{label(old)} boot next and mark it good in its Slots tab", detail=words)
    if flow.flash:
        raise Stop("rolled-back", f"{job.image_version} did not boot on {label(new)} ({tries} used up); the device "
                   f"came back on {label(old)} ({old.bundle_version or job.from_version or '?'}), which is healthy, "
                   "primary and good again", detail=words)
    raise Stop("failed", f"{label(new)} ({new.bundle_version or '?'}) did not boot ({tries} used up); the device is "
               f"still on {label(old)}, which is primary and good", detail=words)


async def keep_good(flow: Flow, slot_name: Slot | str) -> str:
    """Make sure ``slot_name`` is the one booted next and is marked good (each only when it is not already).

    Returns "" when it is, else what failed in words: the caller must not claim "primary and good" then."""
    name = slot_name if isinstance(slot_name, str) else (slot_name.bootname or slot_name.name)
    failed: list[str] = []
    for verb in ("mark-active", "mark-good"):
        slots = await flow.reader.slots()
        slot = slots.slot(name)
        if slot is None:
            return f"slot {name} is not in the device's slots any more"
        action = actions_for(slots, slot)[verb]
        if action.blocked and "already" in action.blocked:
            continue
        outcome = await perform(action, flow.reader.ctx.run, flow.audit)
        if not outcome.ok:
            flow.note(f"{action.title}: {outcome}")
            failed.append(f"{action.title.lower()} failed ({outcome})")
    return "; ".join(failed)


async def wait_healthy(flow: Flow, step: Step) -> tuple[bool, str]:
    check = flow.job.options.health
    step.detail = f"waiting {check.settle:g} s for services to settle"
    flow.save()
    await asyncio.sleep(check.settle)
    deadline = time.monotonic() + check.timeout
    while True:
        ok, words = await flow.reader.health(check)
        step.detail = words
        flow.progress(step)
        if ok or time.monotonic() >= deadline:
            return ok, words
        await asyncio.sleep(min(HEALTH_PAUSE, max(check.timeout / 10, 0.01)))


async def health(flow: Flow, step: Step) -> str | None:
    """The detail when healthy; None when the step ended failed and the rollback step was queued (flash)."""
    job = flow.job
    slots = await flow.reader.slots()  # a resume, or a device that rebooted by itself: check what runs first
    if slots.booted_slot is None or slots.booted_slot.bootname != job.to_slot:
        await _judge_boot(flow, step, slots)
    ok, words = await wait_healthy(flow, step)
    if ok:
        return words
    flow.note(f"{job.to_slot} {words}")
    if not flow.flash:
        raise Stop("needs-attention", f"{job.to_slot} ({job.image_version or '?'}) is running but {words}. "
                   f"{job.from_slot} is still marked good: roll back again to return to it, or look at the services")
    def queue_rollback() -> None:  # in the same save as the failed check: a resume must never mark it good
        job.step("mark-good").state = "skipped"
        job.step("rollback")  # queued: the way back is the next step, and where a resume picks up

    flow.end(step, "failed", words, then=queue_rollback)
    return None


async def mark_good(flow: Flow, step: Step) -> str:
    job = flow.job
    slots = await flow.reader.slots()
    booted = slots.booted_slot
    if booted is None or booted.bootname != job.to_slot:
        raise Stop("needs-attention", f"the device now runs {label(booted)}, not {job.to_slot} as after the health "
                   f"check ({_slots_words(slots)}); look at its Slots tab")
    action = actions_for(slots, booted)["mark-good"]
    if action.blocked and "already" in action.blocked:
        return f"{label(booted)} was already marked good"
    outcome = await perform(action, flow.reader.ctx.run, flow.audit)
    if not outcome.ok:
        raise Stop("needs-attention", f"{label(booted)} runs and is healthy but could not be marked good "
                   f"({outcome}); it would fall back to {job.from_slot} after its boot attempts: mark it good in its "
                   "Slots tab")
    flow.note(f"{label(booted)} marked good")
    return f"{label(booted)} marked good"
