"""Transfer and install: the image onto the device (resumable), then into the inactive slot by its backend."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from pathlib import Path

from siteline.core.device.slot_actions import actions_for, perform
from siteline.core.flash.context import LINK_ERRORS, Flow, Stop
from siteline.core.flash.job import Step
from siteline.core.flash.preflight import mib, minutes
from siteline.core.flash.reading import is_primary, label
from siteline.core.transports.transfer import Progress

TRANSFER_PATIENCE = 300.0  # seconds a cut link may stay cut before the upload gives up (it resumes next time)
RECONNECT_SLICE = 30.0
ANSWER_TIMEOUT = 5.0
INSTALL_TIMEOUT = 1800.0  # a large image on slow flash takes minutes
TAIL_LINES = 4
UNCHANGED = "nothing on the device changed; run it again to resume"
BUSY_PATIENCE = INSTALL_TIMEOUT  # an install begun before a link drop may take as long as one we start
BUSY_POLL = 0.5
# RAUC's Installer.Operation ("idle", "installing") on D-Bus: `rauc status` (1.8) does not print it. The rauc
# client uses the session bus when DBUS_STARTER_BUS_TYPE=session (test rigs), else the system bus; so does this.
BUSY_QUERIES = {
    "rauc": ('if [ "$DBUS_STARTER_BUS_TYPE" = session ]; then b=--session; else b=--system; fi; '
             "dbus-send $b --print-reply --reply-timeout=5000 --dest=de.pengutronix.rauc / "
             "org.freedesktop.DBus.Properties.Get string:de.pengutronix.rauc.Installer string:Operation"),
}
_OPERATION = re.compile(r'string "([a-z-]+)"')


async def transfer(flow: Flow, step: Step) -> str:
    job = flow.job
    image = Path(job.image)
    if not await asyncio.to_thread(image.is_file):
        raise Stop("failed", f"the image {image} is no longer there: {UNCHANGED} once it is back")
    step.total = job.image_size

    def progress(p: Progress) -> None:
        step.done, step.total, step.eta = p.done, p.total or job.image_size, p.eta
        left = f", {minutes(p.eta)} left" if p.eta is not None else ""
        step.detail = f"{mib(p.done)} of {mib(step.total)}{left}"
        flow.progress(step)

    deadline = time.monotonic() + TRANSFER_PATIENCE
    wait = 1.0
    kind = flow.link.kind  # the path the upload began on: an answer over another path says nothing about it
    while True:
        try:
            result = await flow.link.put(image, job.remote_path, progress)
            break
        except LINK_ERRORS as exc:
            why = str(exc) or type(exc).__name__
            # The link is fine on the upload's own path: the upload itself was refused (path, space, tools).
            if flow.link.kind == kind and await _answers(flow):
                raise Stop("failed", f"the upload failed: {why}; {UNCHANGED}") from exc
            if time.monotonic() >= deadline:
                raise Stop("failed", f"the upload stopped ({why}) and the link did not come back within "
                           f"{TRANSFER_PATIENCE:.0f} s: {UNCHANGED}") from exc
            step.detail = f"link lost at {mib(step.done)} ({why}); trying again, the upload resumes"
            flow.save()
            await asyncio.sleep(min(wait, max(deadline - time.monotonic(), 0)))
            wait = min(wait * 2, 15.0)
            try:
                await flow.link.reconnect(min(RECONNECT_SLICE, max(deadline - time.monotonic(), 0.1)))
            except TimeoutError:
                continue
    if result.sha256 and result.sha256 != job.image_sha256:
        raise Stop("failed", f"the uploaded image's SHA-256 is not the one checked at preflight: {UNCHANGED}")
    step.done = step.total = job.image_size
    kept = f", resumed from {mib(result.resumed_from)}" if result.resumed_from else ""
    return f"{mib(job.image_size)} sent to {job.remote_path} in {result.seconds:.0f} s{kept}; SHA-256 checked"


async def _answers(flow: Flow) -> bool:
    """Whether the device still answers a command on the link as it is (no reconnect)."""
    try:
        return bool((await flow.link.run("true", ANSWER_TIMEOUT)).ok)
    except LINK_ERRORS:
        return False


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-TAIL_LINES:])


async def install(flow: Flow, step: Step, resumed: bool) -> str:
    job = flow.job
    if resumed:  # Siteline stopped while it ran: the device says whether it got there
        # RAUC goes on installing after the SSH client died: wait for that install before judging or repeating it.
        await _wait_idle(flow, step)
        done = await _installed(flow)
        if done:
            await _remove_upload(flow)
            return f"{done} (found on resume)"
    backend = next((b for b in flow.backends if b.name == job.backend), None)
    if backend is None:
        raise Stop("failed", f"the update backend {job.backend!r} chosen at preflight is not installed any more; "
                   "the running slot is unchanged")
    slots = await flow.reader.slots()
    target = slots.slot(job.to_slot or "")
    command = backend.install_command(job.remote_path, target.device if target is not None else None)
    step.detail = f"running {command}"
    flow.save()
    result = await flow.reader.run(command, INSTALL_TIMEOUT)
    said = _tail(result.stdout + "\n" + result.stderr) or "no output"
    if result.exit_code != 0 and await _wait_idle(flow, step):  # refused: an earlier install of ours still ran
        done = await _installed(flow)
        if done:
            await _remove_upload(flow)
            return f"{done} (the install begun before the link dropped finished; this one said: {said})"
    if result.exit_code != 0:
        raise Stop("failed", f"the install failed (exit {result.exit_code}: {said}); the device still runs "
                   f"{job.from_slot} ({job.from_version or '?'}) and nothing switched; the uploaded image is kept "
                   f"at {job.remote_path} for another try", detail=f"exit {result.exit_code}: {said}")
    done = await _installed(flow)
    device = target.device if target is not None else None
    if not done and not getattr(backend, "switches_slot", lambda _slot: True)(device):
        done = await _switch_to_target(flow)  # a raw write only wrote: the slot is made the next boot here
    if not done:
        slots = await flow.reader.slots()
        seen = slots.slot(job.to_slot or "")
        raise Stop("failed", f"{command} exited 0 but slot {job.to_slot} is not set to boot {job.image_version} "
                   f"(it holds {seen.bundle_version if seen else '?'}, next boot: {slots.primary or '?'}); the "
                   f"device still runs {job.from_slot}", detail=f"exit 0: {said}")
    await _remove_upload(flow)
    return f"exit 0: {said}; {done}"


async def _installer_operation(flow: Flow) -> str | None:
    """What the device's installer is doing ("idle", "installing"); None when it cannot be told (no such query
    for this backend, no dbus-send, no service): the caller then judges by the slots alone, as before."""
    query = BUSY_QUERIES.get(flow.job.backend)
    if query is None:
        return None
    try:
        result = await flow.reader.run(query, ANSWER_TIMEOUT + 5.0)
    except LINK_ERRORS:
        return None
    found = _OPERATION.search(result.stdout) if result.exit_code == 0 else None
    return found.group(1) if found else None


async def _wait_idle(flow: Flow, step: Step) -> bool:
    """Wait (at most BUSY_PATIENCE) while the installer is busy; True when it was busy at first."""
    operation = await _installer_operation(flow)
    if operation in (None, "idle"):
        return False
    deadline = time.monotonic() + BUSY_PATIENCE
    flow.note(f"{flow.job.backend} was {operation} (an install begun before the link dropped): waited for it")
    while operation not in (None, "idle"):
        if time.monotonic() >= deadline:
            raise Stop("needs-attention", f"{flow.job.backend} on the device is still {operation} after "
                       f"{BUSY_PATIENCE:.0f} s (an install Siteline started before the link dropped). Wait for it "
                       "to finish (its Slots tab shows the result), then flash again or roll back")
        step.detail = f"{flow.job.backend} is still {operation} (the install begun before the link dropped)"
        flow.progress(step)
        await asyncio.sleep(BUSY_POLL)
        operation = await _installer_operation(flow)
    return True


async def _switch_to_target(flow: Flow) -> str:
    """Make the written slot the next one booted (slot_actions' mark-active, read back), then check again."""
    slots = await flow.reader.slots()
    target = slots.slot(flow.job.to_slot or "")
    if target is None:
        return ""
    outcome = await perform(actions_for(slots, target)["mark-active"], flow.reader.ctx.run, flow.audit)
    flow.note(f"switched to {label(target)} after the raw write: {outcome}")
    return await _installed(flow) if outcome.ok else ""


async def _installed(flow: Flow) -> str:
    """What shows the install is there (target primary with the new version), or "" when it is not."""
    job = flow.job
    slots = await flow.reader.slots()
    target = slots.slot(job.to_slot or "")
    if target is None or not is_primary(slots, target):
        return ""
    if job.image_version and target.bundle_version not in (None, job.image_version):
        return ""
    flow.note(f"installed {job.image_version} in {label(target)}, which boots next")
    return f"{label(target)} holds {target.bundle_version or job.image_version} and boots next"


async def _remove_upload(flow: Flow) -> None:
    path = shlex.quote(flow.job.remote_path)
    with contextlib.suppress(*LINK_ERRORS):  # only space on the device: never a reason to stop
        await flow.reader.run(f"rm -f {path} {path}.part")
