"""The pieces every flash step shares: the link protocol, the audit callback, and one running job's context.

``Flow`` saves the job before anyone hears of a change (listener, audit trail), so what the technician was
told is always on disk; a step ends by ``end`` (recorded once as "flash-step") or by raising ``Stop``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from siteline.core.errors import SitelineError
from siteline.core.flash.job import FlashJob, JobStatus, Step, StepName, StepState
from siteline.core.flash.reading import Reader
from siteline.core.flash.store import JobStore
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.plugin_api import UpdateBackend
from siteline.core.transports.base import Result
from siteline.core.transports.transfer import Progress, TransferResult

log = logging.getLogger(__name__)
PROGRESS_SAVE = 0.1  # seconds: progress is saved and shown at most ten times a second
# What a broken link looks like from here; never a reason to raise out of run_job.
LINK_ERRORS: tuple[type[BaseException], ...] = (SitelineError, OSError, TimeoutError, EOFError)


class FlashLink(Protocol):
    @property
    def kind(self) -> str:  # "ssh" | "serial" | "mqtt"
        ...

    async def run(self, command: str, timeout: float) -> Result: ...

    async def put(self, local: Path, remote: str, progress: Callable[[Progress], None]) -> TransferResult: ...

    async def reconnect(self, timeout: float) -> None:  # until the device answers again, else TimeoutError
        ...

    async def close(self) -> None: ...


Record = Callable[[str, Mapping[str, Any], str], None]  # (action, detail, result) -> audit trail/outbox
Listener = Callable[[FlashJob], None]  # after each saved change (progress <= 10/s)


class JobNotSavedError(Exception):
    """The job could not be written to this computer's disk (full, read-only): not link trouble, never retried."""


class Stop(Exception):  # noqa: N818 (control flow: the job ends here)
    """Ends the job: the current step takes ``step_state``, later steps are skipped, the job gets ``status``."""

    def __init__(self, status: JobStatus, message: str, *, step_state: StepState = "failed", detail: str = "") -> None:
        super().__init__(message)
        self.status: JobStatus = status
        self.message = message
        self.step_state: StepState = step_state
        self.detail = detail or message


@dataclass
class Flow:
    job: FlashJob
    link: FlashLink
    store: JobStore
    record: Record
    backends: Sequence[UpdateBackend]
    keys: TrustedKeys
    reader: Reader
    listener: Listener | None = None
    _saved_at: float = field(default=0.0, repr=False)

    @property
    def flash(self) -> bool:
        return self.job.kind == "flash"

    def save(self) -> None:
        self.job.updated = time.time()
        try:
            self.store.save(self.job)
        except OSError as exc:  # an OSError would look like a broken link (LINK_ERRORS) and be retried
            raise JobNotSavedError(f"the job could not be saved in {self.store.root} ({exc})") from exc
        self._saved_at = time.monotonic()
        if self.listener is not None:
            try:
                self.listener(self.job)
            except Exception:  # a window's bug must not stop a job half way through a device change
                log.exception("flash job listener failed")

    def audit(self, action: str, detail: Mapping[str, Any], result: str) -> None:
        """Record in the audit trail; a record that cannot be written is logged, the job goes on (it is saved)."""
        try:
            self.record(action, detail, result)
        except Exception:
            log.exception("flash job %s: the %s record could not be written", self.job.id, action)

    def progress(self, step: Step) -> None:
        """Save a progress change unless one was saved less than PROGRESS_SAVE ago."""
        if time.monotonic() - self._saved_at >= PROGRESS_SAVE:
            self.save()

    def begin(self, name: StepName, detail: str = "") -> Step:
        step = self.job.step(name)
        if step.state != "running" or step.started is None:  # a resumed step keeps when it began
            step.started = time.time()
        step.state, step.ended = "running", None
        step.detail = detail
        self.save()
        return step

    def end(self, step: Step, state: StepState, detail: str, *, then: Callable[[], None] | None = None) -> None:
        """End ``step``; ``then`` changes more of the job (skip, queue a step) before the one save, so a kill
        can never leave the step ended with the job's next move not yet on disk."""
        self._close(step, state, detail)
        if then is not None:
            then()
        self.save()
        self._step_record(step)

    def _close(self, step: Step, state: StepState, detail: str) -> None:
        step.state, step.ended, step.detail, step.eta = state, time.time(), detail, None

    def _step_record(self, step: Step) -> None:
        self.audit("flash-step", {"job": self.job.id, "kind": self.job.kind, "step": step.name, "state": step.state,
                                   "detail": step.detail}, step.state)

    def note(self, line: str) -> None:
        """Evidence: what was seen on the device, in the order it was seen."""
        if line not in self.job.evidence:
            self.job.evidence.append(line)

    def finish(self, status: JobStatus, message: str) -> None:
        self._settle(status, message)
        self.save()
        self._final_record()

    def conclude(self, step: Step, state: StepState, detail: str, status: JobStatus, message: str) -> None:
        """End ``step`` and the job in ONE save, then record both: a kill between two saves would leave a
        job whose step ended with its status still "running", which a resume would take for success."""
        self._close(step, state, detail)
        self._settle(status, message)
        self.save()
        self._step_record(step)
        self._final_record()

    def _settle(self, status: JobStatus, message: str) -> None:
        job = self.job
        for step in job.steps:
            if step.state == "pending":
                step.state = "skipped"
            elif step.state == "running":  # only when the job ends outside a step (cancel, unexpected error)
                step.state, step.ended = ("skipped" if status == "cancelled" else "failed"), time.time()
        job.status, job.message = status, message

    def _final_record(self) -> None:
        self.audit("flash" if self.job.kind == "flash" else "rollback", self.final_detail(), self.job.status)

    def final_detail(self) -> dict[str, Any]:
        job = self.job
        return {"job": job.id, "kind": job.kind, "status": job.status, "message": job.message,
                "evidence": list(job.evidence), "image": Path(job.image).name if job.image else "",
                "image_sha256": job.image_sha256, "key_fingerprint": job.key_fingerprint,
                "from_version": job.from_version, "to_version": job.image_version if job.kind == "flash" else None,
                "from_slot": job.from_slot, "to_slot": job.to_slot, "backend": job.backend,
                "overrides": {"bootloader": job.options.bootloader_override is not None,
                              "downgrade": job.options.allow_downgrade, "metered": job.options.allow_metered,
                              "raw_compatible": job.options.raw_compatible},
                "rollout": job.rollout}
