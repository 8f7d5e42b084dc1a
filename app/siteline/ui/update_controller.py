"""Runs the Update tab's work on the qasync loop: verify an image, flash it, roll back, resume, cancel, and
reset the boot counters of a device whose slots ran out of boot attempts (core/flash/recovery.py).

No protocol here: the image gate (core/images/gate.py) decides what may be flashed, the flash machine
(core/flash/machine.py) does every step over a SessionLink on the window's live session, and records each
step through the ``record`` this passes (the keep's audit trail, with the device's site). This keeps, per
device, the image chosen, its gate result and the job, so switching devices in the tree loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QObject

from siteline.core.device.slot_actions import ActionOutcome
from siteline.core.device.slots import Slots
from siteline.core.errors import SitelineError
from siteline.core.flash.job import FlashJob, FlashOptions
from siteline.core.flash.store import JobStore
from siteline.core.plugins import PluginHost
from siteline.core.tasks import cancel_and_wait
from siteline.core.transports.base import ConnState
from siteline.ui.update_steps import is_cancellable
from siteline.ui.update_tab import UpdateTab

if TYPE_CHECKING:  # the image code (signatures) loads when an image is first checked, not at start
    from siteline.core.images.gate import DeviceFacts, GateResult
    from siteline.core.images.library import ImageLibrary
    from siteline.core.images.trusted_keys import TrustedKeys
    from siteline.core.keep import Keep
    from siteline.ui.sessions import SessionManager

log = logging.getLogger(__name__)
Problem = Callable[[str], None]  # where a problem the technician must see goes (the status bar)


@dataclass
class DeviceUpdate:
    """What the tab shows for one device."""

    image: Path | None = None
    gate: GateResult | None = None
    checking: bool = False
    job: FlashJob | None = None
    task: asyncio.Task[Any] | None = None
    resumable: FlashJob | None = None
    resetting: bool = False  # the boot counters are being reset now
    reset_outcome: ActionOutcome | None = None  # of the last reset


class UpdateController(QObject):
    def __init__(self, tab: UpdateTab, sessions: SessionManager, plugins: PluginHost, *, store: JobStore,
                 keys: Callable[[], TrustedKeys], library: Callable[[], ImageLibrary], keep: Keep | None = None,
                 problem: Problem | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tab, self.sessions, self.plugins = tab, sessions, plugins
        sessions.in_use = self._in_use  # an edit of a device waits while a job (or reset) drives it
        self.store, self.keep = store, keep
        self._make_keys, self._make_library = keys, library
        self._keys: TrustedKeys | None = None
        self._library: ImageLibrary | None = None
        self.problem = problem or (lambda text: log.warning("%s", text))
        self.devices: dict[str, DeviceUpdate] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        tab.sig_device_shown.connect(self._on_tab_device_shown)
        tab.sig_image_chosen.connect(self._on_tab_image_chosen)
        tab.sig_flash_confirmed.connect(self._on_tab_flash_confirmed)
        tab.sig_rollback_confirmed.connect(self._on_tab_rollback_confirmed)
        tab.sig_cancel_requested.connect(self.cancel)
        tab.sig_resume_requested.connect(self._on_tab_resume_requested)
        tab.sig_reset_counters_confirmed.connect(self._on_tab_reset_confirmed)

    @property
    def keys(self) -> TrustedKeys:
        if self._keys is None:
            self._keys = self._make_keys()
        return self._keys

    @property
    def library(self) -> ImageLibrary:
        if self._library is None:
            self._library = self._make_library()
        return self._library

    def state(self, name: str) -> DeviceUpdate:
        return self.devices.setdefault(name, DeviceUpdate())

    # -- start-up: jobs Siteline left unfinished -------------------------------------------------------

    def find_unfinished(self) -> list[FlashJob]:
        """Offer every unfinished job on its device's tab (a banner, not a modal); returns them."""
        jobs = self.store.unfinished()
        for job in jobs:
            self.state(job.device).resumable = job
        if self.tab.device is not None:
            self._show(self.tab.device)
        return jobs

    # -- the tab's requests ---------------------------------------------------------------------------

    def _on_tab_device_shown(self, name: str) -> None:
        self._show(name)

    def _show(self, name: str) -> None:
        state = self.state(name)
        try:
            self.tab.show_library(self.library.entries())
        except (SitelineError, OSError) as exc:
            self.tab.show_library([])
            self.problem(f"The image library cannot be read: {exc}")
        if state.checking and state.image is not None:
            self.tab.show_checking(state.image)
        elif state.image is not None:
            self.tab.show_gate(state.image, state.gate)
        self.tab.show_job(state.job)
        self.tab.show_resumable(state.resumable)
        self.tab.show_recovery(state.resetting, state.reset_outcome)

    def _on_tab_image_chosen(self, image: Path) -> None:
        if self.tab.device is not None:
            self._start(self.verify(self.tab.device, image))

    async def verify(self, name: str, image: Path) -> GateResult:
        """The gate, without overrides (the tab lifts the refusals its checkboxes and typed phrase allow)."""
        from siteline.core.images.gate import GateResult, Overrides, check_before_flash

        state = self.state(name)
        state.image, state.gate, state.checking = image, None, True
        if self.tab.device == name:
            self.tab.show_checking(image)
        try:
            # Hashing a multi-GB image takes seconds: off the loop, the window stays alive meanwhile.
            gate = await asyncio.to_thread(check_before_flash, image, None, self._facts(name), Overrides(),
                                           self.keys)
        except (SitelineError, OSError) as exc:  # the file went away, a USB stick was pulled, a damaged key store
            gate = GateResult(ok=False, reasons=[f"unreadable image: {exc}"])
        finally:
            state.checking = False
        if state.image == image:
            state.gate = gate
            if self.tab.device == name and shiboken6.isValid(self.tab):
                self.tab.show_gate(image, gate)
        return gate

    def _facts(self, name: str) -> DeviceFacts:
        from siteline.core.images.gate import DeviceFacts

        session = self.sessions.get(name)
        slots = session.snapshots.get("slots") if session is not None else None
        booted = getattr(slots, "booted_slot", None)
        return DeviceFacts(getattr(slots, "compatible", None), getattr(booted, "bundle_version", None), name)

    def _on_tab_flash_confirmed(self, options: FlashOptions) -> None:
        name, state = self.tab.device, self.state(self.tab.device or "")
        if name is None or state.image is None or state.gate is None:
            return
        self._start(self.flash(name, state.image, options))

    def _on_tab_rollback_confirmed(self) -> None:
        if self.tab.device is not None:
            self._start(self.rollback(self.tab.device, self.tab.base_options))

    def _on_tab_resume_requested(self, job_id: str) -> None:
        name = self.tab.device
        state = self.state(name or "")
        if name is None or state.resumable is None or state.resumable.id != job_id:
            return
        job, state.resumable = state.resumable, None
        self.tab.show_resumable(None)
        self._start(self.run(job))

    def _on_tab_reset_confirmed(self) -> None:
        name = self.tab.device
        if name is not None and not self.state(name).resetting:
            self._start(self.reset_counters(name))

    # -- recovery: the boot counters ran out ------------------------------------------------------------

    async def reset_counters(self, name: str) -> ActionOutcome | None:
        """Reset every slot's boot counter (the running slot first) over the device's session, whichever path is
        up (the serial console included), record it, then read the slots again so the tab shows the device now."""
        from siteline.core.flash.recovery import reset_boot_counters

        session = self.sessions.get(name)
        if session is None:
            return None
        state = self.state(name)
        if state.task is not None:  # a job drives the device's slots: never both at once
            self.problem(f"{name}: an update is running on it; the boot counters were not touched.")
            return None
        snapshot = session.snapshots.get("slots")
        state.resetting, state.reset_outcome = True, None
        self._show_recovery(name)
        try:
            outcome = await reset_boot_counters(session.run, snapshot if isinstance(snapshot, Slots) else None,
                                                self._record_for(name, session.entry.site))
        finally:
            state.resetting = False
            self._show_recovery(name)
        state.reset_outcome = outcome
        if session.state.state is ConnState.UP:
            await session.refresh("slots")  # the panel goes once the slots read back fine
        self._show_recovery(name)
        if not outcome.ok:
            self.problem(f"{name}: {outcome}")
        return outcome

    def _show_recovery(self, name: str) -> None:
        state = self.state(name)
        if self.tab.device == name and shiboken6.isValid(self.tab):
            self.tab.show_recovery(state.resetting, state.reset_outcome)

    # -- running jobs ---------------------------------------------------------------------------------

    async def flash(self, name: str, image: Path, options: FlashOptions) -> FlashJob | None:
        from siteline.core.flash.machine import prepare_flash

        session = self.sessions.get(name)
        if session is None:
            return None
        try:
            job = await asyncio.to_thread(prepare_flash, image, None, device=name, site=session.entry.site,
                                          target=str(session.active_target or session.target), options=options)
        except (SitelineError, OSError, ValueError) as exc:
            self.problem(f"{name}: {image.name} could not be read for flashing ({exc}). Nothing was sent; "
                         "choose the image again.")
            return None
        return await self.run(job)

    async def rollback(self, name: str, options: FlashOptions) -> FlashJob | None:
        from siteline.core.flash.machine import prepare_rollback

        session = self.sessions.get(name)
        if session is None:
            return None
        job = prepare_rollback(device=name, site=session.entry.site,
                               target=str(session.active_target or session.target), options=options)
        return await self.run(job)

    async def run(self, job: FlashJob) -> FlashJob:
        """Run or resume ``job`` to its end over the device's session; the tab follows every saved change."""
        from siteline.core.flash.machine import run_job
        from siteline.core.flash.session_link import SessionLink
        from siteline.core.flash.store import JobStoreError

        state = self.state(job.device)
        session = self.sessions.get(job.device)
        if session is None:
            self.problem(f"{job.device} is no longer in the device list: its update was not started.")
            return job
        if state.task is not None or state.resetting:  # one job (or reset) drives a device's slots at a time
            self.problem(f"{job.device}: another update (or a boot-counter reset) is running on it; this one was "
                         "not started. Wait for it to finish.")
            job.status, job.message = "refused", "Another job was running on the device: nothing was done."
            return job
        before = state.job
        state.job, state.task = job, asyncio.current_task()
        self._on_job_changed(job)
        # An edit of the device while the job runs waits for its end (SessionManager.replace asks busy()).
        link = SessionLink(session)
        backends = [c.item for c in self.plugins.update_backends()]
        try:
            final = await run_job(job, link, store=self.store, record=self._record_for(job.device, job.site),
                                  backends=backends,
                                  keys=self.keys, listener=self._on_job_changed)
        except JobStoreError as exc:  # busy in another Siteline, or its file cannot be written: nothing ran
            self.problem(f"{job.device}: {exc}")
            state.job = before  # the tab must not show it running with nothing driving it
            if self.tab.device == job.device and shiboken6.isValid(self.tab):
                self.tab.show_job(before)
            if session.state.state is ConnState.UP:
                self._start(session.refresh("slots"))  # the tab waits for fresh slots after showing a job
            return job
        except BaseException:  # cancelled (only while that is safe), the window closing, or a bug: show what is saved
            final = self._saved(job)
            state.job = final
            self._on_job_changed(final)
            raise
        finally:
            state.task = None
            await link.close()
            self.sessions.apply_postponed(job.device)  # an edit of the device made while the job ran
        state.job = final
        self._on_job_changed(final)
        if final.status not in ("succeeded", "installed", "rolled-back", "cancelled", "refused"):
            self.problem(f"{final.device}: {final.status}: {final.message}")
        session = self.sessions.get(job.device)  # a postponed edit of the device made a new session
        if session is not None and session.state.state is ConnState.UP:
            self._start(session.refresh("slots"))  # the Slots tab shows what the device has now
        return final

    def _saved(self, job: FlashJob) -> FlashJob:
        try:
            return self.store.load(job.id)
        except (OSError, ValueError):
            return job

    def _record_for(self, device: str, site: str) -> Callable[[str, Mapping[str, Any], str], None]:
        """The keep's audit trail for ``device`` (flash steps, outcomes, boot-counter resets)."""
        def record(action: str, detail: Mapping[str, Any], result: str) -> None:
            if self.keep is None:
                log.warning("not recorded (nothing can be kept): %s %s %s", action, dict(detail), result)
                return
            self.keep.record(action, device=device, site=site, detail=detail, result=result)

        return record

    def _on_job_changed(self, job: FlashJob) -> None:
        state = self.state(job.device)
        state.job = job
        if self.tab.device == job.device and shiboken6.isValid(self.tab):
            self.tab.show_job(job)

    def cancel(self) -> None:
        """Cancel the shown device's job, only while that is safe (the tab's button says when)."""
        state = self.state(self.tab.device or "")
        if state.task is not None and state.job is not None and is_cancellable(state.job):
            state.task.cancel()

    def _in_use(self, name: str) -> bool:
        state = self.devices.get(name)
        return state is not None and (state.task is not None or state.resetting)

    def busy(self) -> list[str]:
        """Devices with a job running now."""
        return sorted(name for name, s in self.devices.items() if s.task is not None)

    def _start(self, work: Any) -> asyncio.Task[Any]:
        from siteline.ui.device_controls import report_task_error

        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: None if t.cancelled() else report_task_error(t))
        return task

    async def close(self) -> None:
        """The window closes: stop what runs. A job stopped between safe points is resumed at the next start."""
        for task in list(self._tasks):
            await cancel_and_wait(task)
