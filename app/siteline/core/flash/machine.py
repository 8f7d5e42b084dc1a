"""The flash / rollback state machine: one job, run or resumed step by step to a final status.

Flash: preflight -> transfer -> install -> reboot -> health -> mark-good; a failed health check adds the
rollback step. Manual rollback: preflight -> rollback (switch) -> reboot -> health -> mark-good. Each step is
saved before it is reported and recorded once ("flash-step") when it ends; the job's end is recorded as
"flash" or "rollback". A job found "running" (Siteline was closed, killed, the laptop slept) resumes at the
step it was in, which first reads the device to see how far that step got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from siteline.core.flash.boot import health, mark_good, reboot, recovery
from siteline.core.flash.context import LINK_ERRORS, FlashLink, Flow, JobNotSavedError, Listener, Record, Stop
from siteline.core.flash.job import FlashJob, FlashOptions, Step
from siteline.core.flash.preflight import preflight
from siteline.core.flash.reading import DeviceReadError, Reader
from siteline.core.flash.rollback import auto_rollback, switch_back
from siteline.core.flash.store import JobStore
from siteline.core.flash.upload import UNCHANGED, install, transfer
from siteline.core.images.formats import ImageError, describe
from siteline.core.images.gate import signature_path
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.plugin_api import UpdateBackend, make_context

__all__ = ["FlashLink", "Listener", "Record", "prepare_flash", "prepare_rollback", "run_job"]

log = logging.getLogger(__name__)
LINK_TROUBLE_LIMIT = 3  # reconnect-and-resume rounds for one step before the job stops


def prepare_flash(image: Path, signature: Path | None, *, device: str, site: str, target: str,
                  options: FlashOptions) -> FlashJob:
    """A new job for ``image`` (its metadata read here, no device yet); preflight refuses what cannot go."""
    image = Path(image)
    sig = signature if signature is not None else signature_path(image)
    fields: dict[str, object] = {"image_sha256": "", "image_format": "", "image_version": "", "image_size": 0}
    try:
        info = describe(image)
        fields = {"image_sha256": info.sha256, "image_format": info.format, "image_version": info.version,
                  "image_size": info.size}
    except ImageError as exc:  # preflight's gate says why, in the same words as `siteline image info`
        log.info("image %s cannot be read: %s", image, exc)
    return FlashJob.new(device=device, site=site, target=target, image=str(image),
                        signature=str(sig) if sig.is_file() or signature is not None else "", options=options,
                        **fields)


def prepare_rollback(*, device: str, site: str, target: str, options: FlashOptions) -> FlashJob:
    """A job that boots the other slot, checks it is healthy and marks it good."""
    return FlashJob.new(device=device, site=site, target=target, image="", signature="", image_sha256="",
                        image_format="", image_version="", image_size=0, options=options, kind="rollback")


async def run_job(job: FlashJob, link: FlashLink, *, store: JobStore, record: Record,
                  backends: Sequence[UpdateBackend], keys: TrustedKeys, listener: Listener | None = None) -> FlashJob:
    """Run or resume ``job`` to a final status and return it; device and link trouble end up in its message.

    Raises JobBusyError (store.py) when another Siteline process drives the same job now: it is not touched."""
    if job.finished:
        return job
    lock = store.lock(job.id)
    try:
        if _caught_up_finished(job, store):  # another Siteline finished it meanwhile: what is on disk is the outcome
            return job
        return await _run_locked(job, link, store=store, record=record, backends=backends, keys=keys,
                                 listener=listener)
    finally:
        lock.release()


def _caught_up_finished(job: FlashJob, store: JobStore) -> bool:
    """Take the stored job when it is newer than ``job`` (another Siteline moved it on while this one showed an
    old copy: driving the old copy would redo steps the device has already been through); True when finished."""
    try:
        saved = store.load(job.id)
    except (OSError, ValueError):
        return False  # a new job (not saved yet), or an unreadable file the next save replaces
    if saved.updated > job.updated:
        vars(job).update(vars(saved))
    return job.finished


async def _run_locked(job: FlashJob, link: FlashLink, *, store: JobStore, record: Record,
                      backends: Sequence[UpdateBackend], keys: TrustedKeys, listener: Listener | None) -> FlashJob:
    ctx = make_context(job.device, job.target, link.run, log)
    flow = Flow(job, link, store, record, backends, keys, Reader(ctx), listener)
    try:
        await _drive(flow)
    except asyncio.CancelledError:
        with contextlib.suppress(JobNotSavedError):  # the cancel goes on; the last saved step is what resumes
            if job.cancellable:
                flow.finish("cancelled", "cancelled by the technician before anything on the device changed"
                            + (f"; the partial upload stays at {job.remote_path}.part to resume" if job.remote_path
                               else ""))
            else:  # not safe to stop here: saved as running, so the next start resumes and finishes it
                flow.save()
        raise
    except JobNotSavedError as exc:
        _not_saved(flow, exc)
    except Exception as exc:  # a bug must not leave the job looking alive or the technician without words
        log.exception("flash job %s stopped by an internal error", job.id)
        where = job.current.name if job.current is not None else "?"
        try:
            if job.cancellable:
                flow.finish("failed", f"Siteline hit an internal error in {where} ({exc}): {UNCHANGED}")
            else:
                flow.finish("needs-attention", f"Siteline hit an internal error in {where} ({exc}); the device's "
                            "state is not known: look at its Slots tab before anything else")
        except JobNotSavedError as unsaved:
            _not_saved(flow, unsaved)
    return job


def _not_saved(flow: Flow, exc: JobNotSavedError) -> None:
    """This computer cannot write the job: stop driving the device (nothing could resume or report it), say so.

    The file keeps the last step that was saved: `siteline jobs resume` starts there once there is room again,
    reading the device first, so the device is never left without its way back."""
    job = flow.job
    where = job.current.name if job.current is not None else "?"
    log.error("flash job %s stopped: %s", job.id, exc)
    safe = job.cancellable  # before the status changes (a finished job is never cancellable)
    job.status = "failed" if safe else "needs-attention"
    job.message = (f"Siteline stopped in {where}: {exc}. " + (UNCHANGED if safe else
                   "The device may be part way through the update: free space on this computer, then run "
                   f"`siteline jobs resume {job.id}` (it reads the device first and finishes or rolls back)"))
    flow.audit("flash" if job.kind == "flash" else "rollback", flow.final_detail(), job.status)


Handler = Callable[[Flow, Step, bool], Awaitable[str | None]]


async def _preflight(flow: Flow, step: Step, resumed: bool) -> str | None:
    try:
        return await preflight(flow)
    except DeviceReadError as exc:
        raise Stop("refused", f"{exc.message}: {UNCHANGED}") from exc
    except LINK_ERRORS as exc:
        raise Stop("failed", f"the device cannot be reached ({exc}): {UNCHANGED}") from exc


async def _transfer(flow: Flow, step: Step, resumed: bool) -> str | None:
    return await transfer(flow, step)


async def _reboot(flow: Flow, step: Step, resumed: bool) -> str | None:
    if not flow.job.options.reboot and flow.flash:
        raise Stop("installed", _installed_words(flow.job), step_state="skipped", detail="left to the technician")
    return await reboot(flow, step, resumed)


async def _health(flow: Flow, step: Step, resumed: bool) -> str | None:
    return await health(flow, step)


async def _mark_good(flow: Flow, step: Step, resumed: bool) -> str | None:
    return await mark_good(flow, step)


async def _rollback(flow: Flow, step: Step, resumed: bool) -> str | None:
    if flow.flash:
        return await auto_rollback(flow, step, resumed)
    return await switch_back(flow, step)


HANDLERS: dict[str, Handler] = {"preflight": _preflight, "transfer": _transfer, "install": install,
                                "reboot": _reboot, "health": _health, "mark-good": _mark_good, "rollback": _rollback}


def _installed_words(job: FlashJob) -> str:
    what = job.image_version or Path(job.image).name  # a raw image states no version
    return (f"{what} is installed in {job.to_slot}, which boots at the next reboot; if it does not "
            f"come up within its boot attempts the device falls back to {job.from_slot} "
            f"({job.from_version or '?'}). Nothing marks {job.to_slot} good unless the device's own mark-good "
            "service does: reboot it with Siteline (flash again, or roll back) to have it checked")


async def _drive(flow: Flow) -> None:
    job = flow.job
    trouble = 0
    while not job.finished:
        step = next((s for s in job.steps if s.state in ("running", "pending")), None)
        if step is None:
            _no_step_left(flow)
            return
        resumed = step.state == "running"
        flow.begin(step.name, step.detail if resumed else "")
        try:
            detail = await HANDLERS[step.name](flow, step, resumed)
        except Stop as stop:
            flow.conclude(step, stop.step_state, stop.detail, stop.status, stop.message)
            return
        except LINK_ERRORS as exc:
            trouble += 1
            await _link_trouble(flow, step, exc, trouble)
            continue
        trouble = 0
        if detail is not None:
            flow.end(step, "done", detail)


async def _link_trouble(flow: Flow, step: Step, exc: BaseException, trouble: int) -> None:
    """The link broke inside a step that changes the device: reconnect and resume the step, a few times."""
    job = flow.job
    why = str(exc) or type(exc).__name__
    flow.note(f"{step.name}: link lost ({why})")
    if trouble <= LINK_TROUBLE_LIMIT:
        try:
            await flow.link.reconnect(job.options.boot_timeout)
            return  # the step stays "running": the next round resumes it after reading the device
        except TimeoutError:
            pass
    flow.conclude(step, "failed", f"link lost: {why}", "needs-attention",
                  f"the link to the device broke during {step.name} ({why}) and did not come back within "
                  f"{job.options.boot_timeout:.0f} s; the device's state is not known. When it answers again, look "
                  f"at its Slots tab. {recovery(flow.reader.last_slots, job.from_slot)}")


def _no_step_left(flow: Flow) -> None:
    """Every step ended without a Stop: success only when each one is done. Anything else is a job file
    that ended a step without its status (an older Siteline, a hand edit): never claim what was not seen."""
    job = flow.job
    states = {s.name: s.state for s in job.steps}
    if all(state == "done" for state in states.values()):
        flow.finish("succeeded", _success_words(job))
    elif job.kind == "flash" and states.get("rollback") == "done":
        flow.finish("rolled-back", f"{job.image_version} did not pass on {job.to_slot}; the automatic rollback to "
                    f"{job.from_slot} ended done ({job.step('rollback').detail or 'no detail'}); Siteline stopped "
                    "before it recorded the outcome: check the Slots tab")
    else:
        ended = ", ".join(f"{name} {state}" for name, state in states.items())
        flow.finish("needs-attention", f"the job stopped without an outcome ({ended}); the device's state is not "
                    f"known: look at its Slots tab before anything else")


def _success_words(job: FlashJob) -> str:
    if job.kind == "rollback":
        return (f"rolled back: {job.to_slot} ({job.image_version or '?'}) runs, healthy and marked good; "
                f"{job.from_slot} ({job.from_version or '?'}) stays as fallback")
    return (f"{job.image_version} runs on {job.to_slot}, healthy and marked good (was {job.from_version or '?'} on "
            f"{job.from_slot}, kept as fallback)")
