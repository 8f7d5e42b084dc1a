"""Run a provisioning job from its first step not done to the end, saving it around every step.

Before a step the job is saved "running"; after it "done" or "skipped" with the step's detail and evidence,
and the step goes to the audit trail ("provision-step"). A link that drops (TransportError, AuthError, a
timeout) leaves the job "interrupted" with what to do: run the same command again and it resumes at that
step, which is safe because every step is idempotent. Device trouble never raises out of here: the job's
status and message say it. A dry run reads for real and changes nothing, saves nothing, records nothing.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from siteline.core.errors import AuthError, HostKeyError, SitelineError, TransportError
from siteline.core.provisioning.api import (
    ProvisionLink,
    Record,
    StepContext,
    StepFailedError,
    StepOutcome,
    StepRefusedError,
)
from siteline.core.provisioning.job import STEP_TITLES, STEPS, ProvisionJob, scrub

if TYPE_CHECKING:
    from siteline.core.keep import Keep
    from siteline.core.provisioning.profile import Profile
    from siteline.core.provisioning.store import ProvisionStore

log = logging.getLogger(__name__)

Step = Callable[[StepContext], Awaitable[StepOutcome]]
StepTable = Sequence[tuple[str, Step]]
Listener = Callable[[ProvisionJob], None]
STEP_ACTION, FINAL_ACTION = "provision-step", "provision"
DRY_RUN_ITEM = "dry-run"  # what outbox_put answers in a dry run: nothing is queued


class ProfileChangedError(StepRefusedError):
    """The job was started with another version of the profile: resuming would mix two policies on one device."""


@dataclass
class KeepHooks:
    """What a run keeps on the laptop, as plain callables (tests pass their own; the app builds them from a Keep)."""

    record: Record = lambda action, detail, result: None
    vault_put: Callable[[str, str], None] | None = None  # None: no unlocked vault
    vault_get: Callable[[str], str | None] | None = None
    outbox_put: Callable[[str, Mapping[str, Any]], str] | None = None
    inbound_certificate: Callable[[], Mapping[str, Any] | None] = lambda: None


def hooks_from_keep(keep: Keep, site: str, device_getter: Callable[[], str]) -> KeepHooks:
    """Hooks over a Keep. ``device_getter`` names the device at call time (it is known only after "identify")."""
    from siteline.core.outbox.inbound import certificate_topic
    from siteline.core.outbox.model import NewItem

    def record(action: str, detail: Mapping[str, Any], result: str) -> None:
        keep.record(action, device=(device_getter() or "-")[:128], site=site, detail=detail, result=result)

    def vault_put(name: str, value: str) -> None:
        keep.vault.put(name, value, note=f"set by Siteline provisioning of {device_getter()} at {site}")

    def vault_get(name: str) -> str | None:
        return keep.secret(name)

    def outbox_put(kind: str, payload: Mapping[str, Any]) -> str:
        refs = payload.get("vault_refs", ()) if kind == "provisioning" else ()
        item = keep.outbox.put(NewItem(kind=kind, site=site, device=device_getter(), payload=payload,
                                       vault_refs=tuple(str(r) for r in refs)))
        keep.wake()
        return item.id

    def inbound_certificate() -> Mapping[str, Any] | None:
        try:
            doc = keep.inbound.get_topic(certificate_topic(keep.technician, site, device_getter()))
        except SitelineError:  # a name that cannot be a topic level: no certificate can have come back for it
            return None
        return doc.data if doc is not None else None

    return KeepHooks(record=record, vault_put=None if keep.vault.locked else vault_put, vault_get=vault_get,
                     outbox_put=outbox_put, inbound_certificate=inbound_certificate)


STEP_FUNCTIONS = (("identify", "device_steps"), ("names", "device_steps"), ("credentials", "credentials"),
                  ("identity", "identity"), ("mqtt", "device_steps"), ("firewall", "firewall"),
                  ("posture", "finish_steps"), ("record", "finish_steps"))


def default_steps() -> list[tuple[str, Step]]:
    """The eight real steps (``<module>.<step>_step``), imported now so a module still missing says so by name."""
    table: list[tuple[str, Step]] = []
    for name, module_name in STEP_FUNCTIONS:
        try:
            module = importlib.import_module(f"siteline.core.provisioning.{module_name}")
            fn: Step = getattr(module, f"{name}_step")
        except (ImportError, AttributeError) as exc:
            raise SitelineError(f"The provisioning step {name!r} is missing from this Siteline "
                                f"(siteline.core.provisioning.{module_name}.{name}_step: {exc}).",
                                "Install a complete Siteline; nothing on the device was changed.") from exc
        table.append((name, fn))
    return table


def resume_hint(step: str | None) -> str:
    where = f"it resumes at \"{STEP_TITLES.get(step, step)}\"" if step else "it finishes the job"
    return f"Reconnect the cable (or the network) and run the same command again: {where}."


async def run_provision(job: ProvisionJob, link: ProvisionLink, profile: Profile, *, store: ProvisionStore,
                        keep_hooks: KeepHooks, dry_run: bool = False, listener: Listener | None = None,
                        steps: StepTable | None = None) -> ProvisionJob:
    """Run ``job`` from its first step not done to its end (or to the first step that stops it), and return it.

    Raises ProfileChangedError before doing anything when ``profile`` is not the one the job started with,
    JobBusyError when another process drives the job, JobStoreError when it cannot be saved; re-raises
    CancelledError after saving "interrupted". A job that ended "failed" or "refused" is tried again from the
    step that stopped it (the technician fixed the cause). ``steps`` replaces the step table (tests)."""
    if job.profile_sha256 and profile.sha256 and job.profile_sha256 != profile.sha256:
        raise ProfileChangedError(
            f"The profile {profile.name} changed since job {job.id} started with it "
            f"(sha256 {job.profile_sha256[:12]}... then, {profile.sha256[:12]}... now).",
            "Put the profile back as it was to resume the job, or start a new job with the new profile.")
    table = list(steps) if steps is not None else default_steps()
    if dry_run:
        return await _dry_run(job, link, profile, keep_hooks, table, listener)
    lock = store.lock(job.id)  # JobBusyError: another Siteline drives this job now (nothing was done)
    try:
        return await _run(job, link, profile, store, keep_hooks, table, listener or (lambda j: None))
    finally:
        lock.release()


def _context(job: ProvisionJob, profile: Profile, link: ProvisionLink, hooks: KeepHooks, secrets: list[str],
             dry_run: bool, step: str) -> StepContext:
    return StepContext(job=job, profile=profile, link=link, step=step, dry_run=dry_run, record=hooks.record,
                       vault_put=hooks.vault_put, vault_get=hooks.vault_get, outbox_put=hooks.outbox_put,
                       inbound_certificate=hooks.inbound_certificate, secrets=secrets)


def _remaining(job: ProvisionJob, table: StepTable) -> list[tuple[str, Step]]:
    done = {s.name for s in job.steps if s.state in ("done", "skipped")}
    return [(name, fn) for name, fn in table if name not in done]


def _say(exc: SitelineError, ctx: StepContext) -> str:
    return ctx.mask(str(exc))


async def _run(job: ProvisionJob, link: ProvisionLink, profile: Profile, store: ProvisionStore, hooks: KeepHooks,
               table: StepTable, listener: Listener) -> ProvisionJob:
    secrets: list[str] = []  # shared by the steps: a password generated in one is masked in all later output

    def save() -> None:
        store.save(job)
        listener(job)

    job.status, job.message = "running", ""
    resumed = _identified(job)  # a serial target is a port: any box may be on it now
    for name, fn in _remaining(job, table):
        if resumed:
            fn, resumed = _checked(fn), False  # the same box first, before the step changes anything
        rec = job.step(name)
        rec.state, rec.started, rec.ended, rec.detail = "running", time.time(), None, ""
        save()
        ctx = _context(job, profile, link, hooks, secrets, False, name)
        ctx.outbox_put = _saving_put(job, name, hooks.outbox_put, save)
        ctx.save = save
        try:
            stopped = await _step(job, rec, fn, ctx)
        except asyncio.CancelledError:
            _stop(job, rec, "interrupted", "Siteline was stopped in the middle of this step.", resume_hint(name))
            save()
            _final_record(hooks, job)
            raise
        hooks.record(STEP_ACTION, {"job": job.id, "step": name, "state": rec.state, "detail": rec.detail,
                                   "evidence": rec.evidence}, job.status if stopped else "ok")
        save()
        if stopped:
            _final_record(hooks, job)
            return job
    required_failed = job.data.get("posture", {}).get("required_failed") or []
    if required_failed:
        job.status = "incomplete"
        job.message = "provisioned, but a required posture check did not pass: " + ", ".join(map(str, required_failed))
    else:
        job.status, job.message = "provisioned", ""
    save()
    _final_record(hooks, job)
    return job


def _identified(job: ProvisionJob) -> bool:
    return any(s.name == "identify" and s.state in ("done", "skipped") for s in job.steps)


async def _check_device(ctx: StepContext) -> None:
    """device_steps.check_same_device (imported late: a Siteline without it checks nothing more than before)."""
    module = importlib.import_module("siteline.core.provisioning.device_steps")
    check = getattr(module, "check_same_device", None)
    if check is not None:
        await check(ctx)


def _checked(fn: Step) -> Step:
    """``fn`` preceded by the check that the device is the one the job identified (StepRefusedError if not)."""
    async def step(ctx: StepContext) -> StepOutcome:
        await _check_device(ctx)
        return await fn(ctx)

    return step


QUEUED = "queued"  # job.data[QUEUED]["<step>:<kind>"] = outbox item id, saved the moment it is queued


def _saving_put(job: ProvisionJob, step: str, put: Callable[[str, Mapping[str, Any]], str] | None,
                save: Callable[[], None]) -> Callable[[str, Mapping[str, Any]], str] | None:
    """The outbox hook, noting each queued item in the job and saving it at once: a Siteline killed right after
    queueing leaves the id on disk, so the resumed step finds it instead of queueing a second copy."""
    if put is None:
        return None

    def queue(kind: str, payload: Mapping[str, Any]) -> str:
        item = put(kind, payload)
        job.data.setdefault(QUEUED, {})[f"{step}:{kind}"] = item
        save()
        return item

    return queue


async def _step(job: ProvisionJob, rec: Any, fn: Step, ctx: StepContext) -> bool:
    """Run one step and put its outcome in ``rec``; True when the job stops here (status and message set)."""
    name = rec.name
    try:
        outcome = await fn(ctx)
    except (StepRefusedError, HostKeyError) as exc:  # a changed host key mid-run is never retried blindly
        _stop(job, rec, "refused", _say(exc, ctx), "")
    except StepFailedError as exc:
        _stop(job, rec, "failed", _say(exc, ctx), "")
    except (TransportError, TimeoutError, ConnectionError) as exc:
        what = "the login was refused" if isinstance(exc, AuthError) else "the link to the device dropped"
        detail = _say(exc, ctx) if isinstance(exc, SitelineError) else str(exc) or type(exc).__name__
        _stop(job, rec, "interrupted", f"{what}: {detail}", resume_hint(name))
    except Exception as exc:  # a bug in a step: say so, keep the job resumable, keep the traceback in the log
        log.exception("provisioning step %s of job %s failed unexpectedly", name, job.id)
        _stop(job, rec, "interrupted", f"an unexpected error in this step: {type(exc).__name__}: "
              f"{ctx.mask(str(exc))[:300]}", resume_hint(name))
    else:
        rec.state = "skipped" if outcome.skipped else "done"
        rec.ended, rec.detail = time.time(), ctx.mask(outcome.detail)
        rec.evidence = scrub(json.loads(ctx.mask(json.dumps(dict(outcome.evidence), default=str))),
                             job.vault_names())
        return False
    return True


def _stop(job: ProvisionJob, rec: Any, status: str, message: str, hint: str) -> None:
    rec.evidence = {}
    rec.ended = time.time()
    rec.state = "pending" if status == "interrupted" else "failed"
    rec.detail = f"{status}: {message}"
    job.status = status  # type: ignore[assignment]  # one of JobStatus, chosen above
    job.message = f"{message} {hint}".strip()


def _final_record(hooks: KeepHooks, job: ProvisionJob) -> None:
    hooks.record(FINAL_ACTION, {"job": job.id, "status": job.status, "message": job.message,
                                "profile": job.profile_name, "profile_sha256": job.profile_sha256,
                                "steps": {s.name: s.state for s in job.steps}}, job.status)


async def _dry_run(job: ProvisionJob, link: ProvisionLink, profile: Profile, hooks: KeepHooks, table: StepTable,
                   listener: Listener | None) -> ProvisionJob:
    """On a copy of the job: every remaining step with dry_run (reads run, changes are only planned); nothing is
    saved, queued or recorded. The copy's ``data["plan"]`` lists every planned command, secrets masked."""
    plan_job = copy.deepcopy(job)
    planned: list[Any] = []
    dry = KeepHooks(vault_put=(lambda name, value: None) if hooks.vault_put is not None else None,
                    vault_get=hooks.vault_get,
                    outbox_put=(lambda kind, payload: DRY_RUN_ITEM) if hooks.outbox_put is not None else None,
                    inbound_certificate=hooks.inbound_certificate)
    secrets: list[str] = []
    resumed = _identified(plan_job)
    for name, fn in _remaining(plan_job, table):
        rec = plan_job.step(name)
        ctx = _context(plan_job, profile, link, dry, secrets, True, name)
        ctx.plan = planned  # one plan for the whole run, in order
        if resumed:
            fn, resumed = _checked(fn), False  # the same box first, as the real run does
        try:
            outcome = await fn(ctx)
        except (SitelineError, TimeoutError, ConnectionError) as exc:
            rec.state, rec.detail = "failed", ctx.mask(str(exc))
            plan_job.message = f"the dry run stops at \"{STEP_TITLES.get(name, name)}\": {rec.detail}"
            break
        rec.state = "skipped" if outcome.skipped else "done"
        rec.detail = ctx.mask(outcome.detail)
        if listener is not None:
            listener(plan_job)
    plan_job.status = job.status
    plan_job.data["plan"] = [asdict(p) for p in planned]
    return plan_job


__all__ = ["STEPS", "KeepHooks", "ProfileChangedError", "default_steps", "hooks_from_keep", "resume_hint",
           "run_provision"]
