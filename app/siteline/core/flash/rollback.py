"""The ways back: the automatic rollback after a failed health check, and the manual "boot the other slot" switch."""

from __future__ import annotations

from siteline.core.device.slot_actions import ActionOutcome, Verb, actions_for, perform
from siteline.core.flash.boot import keep_good, reboot_and_wait, recovery, wait_healthy
from siteline.core.flash.context import Flow, Stop
from siteline.core.flash.job import Step
from siteline.core.flash.reading import is_primary, label


async def _act(flow: Flow, slot_name: str, verb: Verb) -> ActionOutcome | None:
    """Perform ``verb`` on the slot; None when it is already so (nothing to do)."""
    slots = await flow.reader.slots()
    slot = slots.slot(slot_name)
    if slot is None:
        raise Stop("needs-attention", f"slot {slot_name} is not in the device's slots any more; look at its Slots tab")
    action = actions_for(slots, slot)[verb]
    if action.blocked and "already" in action.blocked:
        return None
    return await perform(action, flow.reader.ctx.run, flow.audit)


async def auto_rollback(flow: Flow, step: Step, resumed: bool) -> str:
    """The new slot booted but is unhealthy: mark it bad, boot the old one, prove it healthy, keep it good."""
    job = flow.job
    old, new = job.from_slot or "", job.to_slot or ""
    why = next((s.detail for s in job.steps if s.name == "health" and s.state == "failed"), "unhealthy")
    slots = await flow.reader.slots()
    back = slots.booted_slot is not None and slots.booted_slot.bootname == old
    if not (resumed and back):
        # The new slot bad first: RAUC then makes the other one primary itself; mark-active confirms (or does) it.
        switch: tuple[tuple[str, Verb], ...] = ((new, "mark-bad"), (old, "mark-active"))
        for slot_name, verb in switch:
            outcome = await _act(flow, slot_name, verb)
            if outcome is not None and not outcome.ok:
                raise Stop("needs-attention", f"{new} ({job.image_version}) is {why}, and switching back to {old} "
                           f"failed: {outcome}. The device still runs {new}; {old} is still good: switch to it in "
                           "its Slots tab (Boot slot next) and reboot")
        flow.note(f"marked {new} bad and {old} active")
        slots = await reboot_and_wait(flow, step)
    booted = slots.booted_slot
    if booted is None or booted.bootname != old:
        raise Stop("needs-attention", f"after the rollback reboot the device runs {label(booted)}, not {old}; look "
                   f"at its Slots tab. {recovery(slots, old)}")
    flow.note(f"back on {old} ({booted.bundle_version or job.from_version or '?'})")
    ok, words = await wait_healthy(flow, step)
    if not ok:
        raise Stop("needs-attention", f"rolled back to {old}, but {old} is {words} too: the device runs {old} "
                   f"({booted.bundle_version or '?'}) with {new} marked bad. Look at the failing services "
                   "(Logs tab) before flashing again")
    kept = await keep_good(flow, old)
    if kept:  # healthy, but not (yet) the slot the device keeps booting: never call that "good again"
        raise Stop("needs-attention", f"{job.image_version} booted on {new} but failed the health check ({why}); "
                   f"the device runs {old} again and it is healthy, but {kept}: make {old} boot next and mark it "
                   "good in its Slots tab", detail=f"back on {old}, {words}; {kept}")
    message = (f"{job.image_version} booted on {new} but failed the health check ({why}); rolled back: {old} "
               f"({booted.bundle_version or job.from_version or '?'}) runs again, healthy and marked good, {new} is "
               "marked bad")
    raise Stop("rolled-back", message, step_state="done", detail=f"back on {old}, {words}")


async def switch_back(flow: Flow, step: Step) -> str:
    """Manual rollback's switch: the other slot boots next (its attempts reset), the running one stays fallback."""
    job = flow.job
    target = job.to_slot or ""
    outcome = await _act(flow, target, "mark-active")
    if outcome is not None and not outcome.ok:
        raise Stop("failed", f"could not make {target} boot next: {outcome}. Nothing else was changed; the device "
                   f"stays on {job.from_slot}")
    slots = await flow.reader.slots()
    slot = slots.slot(target)
    if slot is None or not is_primary(slots, slot):
        raise Stop("failed", f"{target} is still not set to boot next after the switch; the device stays on "
                   f"{job.from_slot}")
    return f"{target} ({slot.bundle_version or '?'}) boots next; {job.from_slot} stays as fallback"
