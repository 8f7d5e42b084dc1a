"""Provision a new device: a three-page wizard. 1) where it is (serial port or SSH URL), which profile, which
site and tags; 2) the dry run: every command that would run, secrets masked, then "Provision"; 3) the run:
the eight steps as they go, what to do when it stops, the summary when it is done.

No protocol here: the work is core.provisioning.runner.run_provision's, started through a Provisioner
(provision_service.py) on the qasync loop; the wizard only listens. Big rows and 48 px buttons: it is used
standing at a cabinet, sometimes in gloves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from siteline.core.errors import HostKeyError, HostKeyProblem, SitelineError
from siteline.core.provisioning.api import MASK, PlannedCommand, StepRefusedError
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.tasks import cancel_and_wait
from siteline.ui.panels import paint, plain_label
from siteline.ui.provision_service import Provisioner, ProvisionRequest, plan_of
from siteline.ui.provision_steps_view import TOUCH_HEIGHT, StepsView, headline, plan_lines
from siteline.ui.provision_target_page import PortLister, TargetPage, list_serial_ports
from siteline.ui.update_steps import big

log = logging.getLogger(__name__)
PROVISIONED_ALREADY = "provisioned already"  # in identify's refusal (core/provisioning/device_steps.py)


class ReviewPage(QWizardPage):
    """The dry run: the device is read (nothing changed) and every command that would run is listed."""

    def __init__(self, wizard: ProvisionWizard) -> None:
        super().__init__()
        self._wizard = wizard
        self.setTitle("Review: what will change on the device")
        self.setSubTitle("Nothing has been changed yet. Passwords are shown as " + MASK + ".")
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, "&Provision")
        self.status = big(plain_label("", "provisionReviewStatus"), 1.1)
        self.plan = QPlainTextEdit()
        self.plan.setObjectName("provisionPlan")
        self.plan.setReadOnly(True)
        self.plan.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.retry_button = big(QPushButton("&Try again"))
        self.retry_button.setObjectName("provisionRetry")
        self.retry_button.setMinimumSize(200, TOUCH_HEIGHT)
        self.retry_button.setToolTip("Read the device again (after reconnecting the cable, for example)")
        self.retry_button.clicked.connect(self.initializePage)
        self.retry_button.hide()
        # identify's refusal of a device that carries a provisioning marker; ticking it is the confirmation.
        self.again = big(QCheckBox("Provision it &again: new passwords, key and settings replace the old ones"), 1.0)
        self.again.setObjectName("provisionAgain")
        self.again.toggled.connect(self._on_again_toggled)
        self.again.hide()
        self.trust_button = big(QPushButton("Trust this &key: the fingerprints match"))
        self.trust_button.setObjectName("provisionTrustKey")
        self.trust_button.setMinimumHeight(TOUCH_HEIGHT)
        self.trust_button.clicked.connect(self._on_trust_clicked)
        self.trust_button.hide()
        self.host_key: HostKeyProblem | None = None  # an unknown SSH host key the person may trust
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.again)
        layout.addWidget(self.trust_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.plan, 100)
        layout.addStretch(1)  # keeps a refusal at the top when the plan is hidden
        self.ready = False

    def initializePage(self) -> None:
        self.ready = False
        self.retry_button.hide()
        self.trust_button.hide()
        self.again.setVisible(False)
        self.plan.clear()
        self.plan.show()
        self.status.setText("Reading the device… (nothing is changed)")
        paint(self.status, "info")
        self._wizard.start_dry_run()

    def cleanupPage(self) -> None:
        self._wizard.cancel_dry_run()

    def _on_again_toggled(self, checked: bool) -> None:
        self._wizard.target_page.reprovision.setChecked(checked)
        if checked:
            self.initializePage()

    def _on_trust_clicked(self) -> None:
        """Pin the key the person compared (as the host-key dialog does for a device's session), then read again."""
        from siteline.core.transports.known_hosts import KnownHosts

        problem, self.host_key = self.host_key, None
        if problem is None or problem.kind != "unknown":
            return
        KnownHosts(Path(problem.known_hosts_path)).pin(problem.host, problem.port, problem.offered_key)
        keep = self._wizard.provisioner.keep
        if keep is not None:
            site = self._wizard.target_page.site.currentText()
            keep.record("host-key-pinned", device=problem.display_name, site=site,
                        detail={"host": problem.display_name, "fingerprint": problem.offered_fingerprint})
        self.initializePage()

    def show_host_key(self, problem: HostKeyProblem) -> None:
        """An unknown key: the fingerprint to compare, and the button to trust it (a changed key stays refused)."""
        self.host_key = problem if problem.kind == "unknown" else None
        if self.host_key is not None:
            self.status.setText(f"The device's SSH key is not known to this laptop yet. Compare its fingerprint\n\n"
                                f"    {problem.offered_fingerprint}\n\nwith the device's (on its console: "
                                "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub). Trust it only if they match.")
            paint(self.status, "warn")
        self.trust_button.setVisible(self.host_key is not None)

    def show_result(self, job: ProvisionJob | None, plan: list[PlannedCommand], problem: str = "") -> None:
        mask = self._wizard.hide_secrets
        stopped = job is not None and (job.message or any(s.state == "failed" for s in job.steps))
        if problem or job is None or stopped or job.status in ("refused", "failed", "interrupted"):
            why = problem or (job.message if job is not None and job.message else "")
            text = f"✖ {why[:1].upper()}{why[1:]}" if why else headline(job)[0] if job else "✖ Stopped"
            self.status.setText(mask(f"{text}\n\nNothing was changed. Go Back to change the target, profile or "
                                     "options; or fix the cause and press Try again."))
            paint(self.status, "bad")
            self.plan.hide()
            self.retry_button.show()
            self.again.setVisible(PROVISIONED_ALREADY in why and not self._wizard.target_page.reprovision.isChecked())
            self.ready = False
        else:
            facts = job.facts
            who = job.device or facts.get("serial") or "the device"
            system = facts.get("os_release", {}).get("PRETTY_NAME", "") if isinstance(facts, dict) else ""
            steps = len({c.step for c in plan})
            self.status.setText(mask(f"{who}{' — ' + system if system else ''}: {len(plan)} changes in {steps} "
                                     "steps. Press Provision to make them."))
            paint(self.status, "good")
            self.plan.setPlainText(mask("\n".join(plan_lines(plan))))
            self.ready = True
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.ready


class RunPage(QWizardPage):
    def __init__(self, wizard: ProvisionWizard) -> None:
        super().__init__()
        self._wizard = wizard
        self.setTitle("Provisioning")
        self.view = StepsView(wizard.hide_secrets)
        self.resume_button = big(QPushButton("⟳  &Resume"), 1.2)
        self.resume_button.setObjectName("provisionResume")
        self.resume_button.setMinimumSize(260, TOUCH_HEIGHT + 8)
        self.resume_button.hide()
        self.resume_button.clicked.connect(wizard.resume)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.resume_button, 0, Qt.AlignmentFlag.AlignLeft)

    def initializePage(self) -> None:
        self._wizard.start_run()

    def show_job(self, job: ProvisionJob) -> None:
        self.view.show_job(job)
        self.resume_button.setText("⟳  &Try again" if job.status == "failed" else "⟳  &Resume")
        self.resume_button.setVisible(job.status in ("interrupted", "failed") and not self._wizard.running)
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        job = self._wizard.job
        return not self._wizard.running and (job is None or job.status != "running")


class ProvisionWizard(QWizard):
    """``provisioner`` does the work; ``target``/``site`` prefill page 1 (the selected device's)."""

    sig_provisioned = Signal(object)  # the ProvisionJob of a run that ended provisioned (or incomplete)

    def __init__(self, provisioner: Provisioner, *, sites: list[str] | None = None, target: str = "",
                 site: str = "", ports: PortLister = list_serial_ports, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Provision new device")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, False)
        self.setMinimumSize(820, 640)
        self.provisioner = provisioner
        self.found: ProvisionJob | None = None  # an unfinished job for the typed target
        self.job: ProvisionJob | None = None
        self.request: ProvisionRequest | None = None
        self.task: asyncio.Task[Any] | None = None  # the run
        self.dry_task: asyncio.Task[Any] | None = None  # the review page's dry run
        self.confirm_box: QMessageBox | None = None
        self._closing = False
        self.target_page = TargetPage(self, sites or [], target, site, ports)
        self.review_page = ReviewPage(self)
        self.run_page = RunPage(self)
        for page in (self.target_page, self.review_page, self.run_page):
            self.addPage(page)
        for which in (QWizard.WizardButton.BackButton, QWizard.WizardButton.NextButton,
                      QWizard.WizardButton.CommitButton, QWizard.WizardButton.FinishButton,
                      QWizard.WizardButton.CancelButton):
            button: QAbstractButton = self.button(which)
            button.setMinimumHeight(TOUCH_HEIGHT)
            big(button, 1.05)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def hide_secrets(self, text: str) -> str:
        secrets = list(self.provisioner.secrets)
        typed = self.target_page.password.text()
        if typed:
            secrets.append(typed)
        for secret in sorted(secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, MASK)
        return text

    def make_request(self) -> ProvisionRequest | None:
        page = self.target_page
        choice = page.choice()
        if page.problem() is not None or choice is None or choice.profile is None:
            return None
        return ProvisionRequest(target=page.target.text().strip(), profile=choice.profile,
                                site=page.site.currentText().strip(), tags=page.tag_list(),
                                factory_password=page.password.text(), reprovision=page.reprovision.isChecked())

    def _resuming(self) -> ProvisionJob | None:
        return self.found if self.found is not None and self.target_page.resume.isChecked() else None

    # -- the dry run (page 2) ----------------------------------------------------------------------------

    def start_dry_run(self) -> None:
        request = self.make_request()
        if request is None:
            return
        self.request = request
        previous, self.dry_task = self.dry_task, None
        self.dry_task = asyncio.ensure_future(self._dry_run(request, previous))
        self.dry_task.add_done_callback(self._on_task_done)

    def cancel_dry_run(self) -> None:
        """Back from the review page: its answer would be about what was typed before."""
        if self.dry_task is not None:
            self.dry_task.cancel()

    async def _dry_run(self, request: ProvisionRequest, previous: asyncio.Task[Any] | None) -> None:
        if previous is not None:  # one link to the device at a time (a serial port has one console)
            await cancel_and_wait(previous)
        found = self._resuming()
        # A copy: the dry run must leave the job that will really run (or be resumed) as it is.
        job = ProvisionJob.from_json(found.to_json()) if found else self.provisioner.new_job(request)
        job.status = "running"
        try:
            result = await self.provisioner.run(request, job, lambda *_a: None, dry_run=True)
        except (SitelineError, ImportError, OSError, ValueError) as exc:
            self.review_page.show_result(None, [], f"Could not read the device: {exc}")
            if isinstance(exc, HostKeyError) and exc.problem is not None:
                self.review_page.show_host_key(exc.problem)
            return
        shown = result if isinstance(result, ProvisionJob) else job
        self.review_page.show_result(shown, plan_of(result) or plan_of(job))

    # -- the run (page 3) ------------------------------------------------------------------------------

    def start_run(self) -> None:
        request = self.request or self.make_request()
        if request is None or self.running:
            return
        self.request = request
        self.job = self._resuming() or self.provisioner.new_job(request)
        self.run_page.show_job(self.job)
        self._spawn(self._run(request, self.job))

    def resume(self) -> None:
        if self.request is not None and self.job is not None and not self.running:
            self.run_page.view.log("Resuming…")
            self.job.status = "running"
            self.run_page.show_job(self.job)
            self._spawn(self._run(self.request, self.job))

    async def _run(self, request: ProvisionRequest, job: ProvisionJob) -> None:
        try:
            result = await self.provisioner.run(request, job, self._listen)
        except (SitelineError, ImportError, OSError, ValueError) as exc:
            refused = isinstance(exc, StepRefusedError)  # e.g. the profile changed since the job started
            job.status, job.message = ("refused" if refused else "interrupted"), f"Could not start: {exc}"
            result = job
        if isinstance(result, ProvisionJob):
            self.job = result
        self.task = None
        self.run_page.show_job(self.job or job)
        if self.job is not None and self.job.status in ("provisioned", "incomplete"):
            self.sig_provisioned.emit(self.job)

    def _listen(self, job: ProvisionJob, *extra: object) -> None:
        """The runner's updates: after each saved change (and, if it sends them, progress lines)."""
        self.job = job
        for line in extra:
            if isinstance(line, str) and line:
                self.run_page.view.log(line)
        self.run_page.show_job(job)

    def _spawn(self, coro: Any) -> None:
        """The run: one at a time, ``running`` while it goes."""
        self.task = asyncio.ensure_future(coro)
        self.task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("provisioning work failed", exc_info=task.exception())
            if self.currentPage() is self.review_page:
                self.review_page.show_result(None, [], f"Siteline hit an error: {task.exception()}")
            else:
                self.run_page.view.log(f"Siteline hit an error: {task.exception()}")
        if self.task is task:
            self.task = None
        if self.dry_task is task:
            self.dry_task = None
        with contextlib.suppress(RuntimeError):  # the wizard may be gone already
            self.run_page.completeChanged.emit()

    # -- closing ---------------------------------------------------------------------------------------

    def reject(self) -> None:
        """Cancel or Esc: while a run changes the device, ask first; a dry run just stops."""
        if self.running and self.currentPage() is self.run_page and not self._closing:
            box = QMessageBox(QMessageBox.Icon.Warning, "Stop provisioning?",
                              "Provisioning is changing the device now. Stop it?", parent=self)
            box.setInformativeText("The job is kept: open this wizard again for the same target and it resumes "
                                   "where it stopped.")
            box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(QMessageBox.StandardButton.Cancel)
            box.accepted.connect(self._stop_and_close)
            self.confirm_box = box
            box.open()
            return
        self._stop_and_close()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.running and not self._closing:
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)

    def _stop_and_close(self) -> None:
        self._closing = True
        self.cancel_dry_run()
        if self.task is not None:
            self.task.cancel()  # the runner saves the job as interrupted, then the task ends
        super().reject()

    async def close_work(self) -> None:
        """Wait for what runs to end (the window closing, tests)."""
        for task in (self.dry_task, self.task):
            if task is not None:
                await cancel_and_wait(task)
