"""The provisioning wizard's run page: the eight steps, one big row each (mark, title, state word, detail),
the banner that says what happened and what to do, the summary when it is done, and a log pane.

Fed a ProvisionJob in any state (and log lines); it does no I/O. Every text it shows goes through ``mask``
first: the runner masks secrets already, this is the second lock on the same door.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from siteline.core.provisioning.api import PlannedCommand
from siteline.core.provisioning.job import STEP_TITLES, STEPS, ProvisionJob
from siteline.ui.panels import paint, plain_label
from siteline.ui.update_steps import big

Mask = Callable[[str], str]
TOUCH_HEIGHT = 48  # px: a button a gloved finger hits first time

# state -> (mark, tone, word): the word is there for whoever cannot tell the colours apart
STATE_MARKS = {
    "pending": ("○", None, "pending"),
    "running": ("▶", "info", "running"),
    "done": ("✔", "good", "done"),
    "skipped": ("–", None, "skipped"),
    "failed": ("✖", "bad", "failed"),
    "interrupted": ("⚠", "warn", "interrupted"),  # shown, not stored: the runner keeps such a step "pending"
}
# status -> (headline, tone)
OUTCOMES = {
    "running": ("Provisioning…", "info"),
    "provisioned": ("✔ Provisioned: the device is ready to install", "good"),
    "incomplete": ("⚠ Provisioned, but a required posture check did not pass", "warn"),
    "refused": ("✖ Refused: nothing unsafe was changed on the device", "bad"),
    "failed": ("✖ Failed", "bad"),
}


def step_at(job: ProvisionJob) -> str:
    """The step a stopped job stopped at: the one running or failed, else the first not done."""
    for record in job.steps:
        if record.state in ("running", "failed"):
            return record.name
    return job.next_step() or STEPS[-1]


def headline(job: ProvisionJob) -> tuple[str, str | None]:
    title = STEP_TITLES.get(step_at(job), step_at(job))
    if job.status == "interrupted":
        return (f"⚠ The link dropped at “{title}”. Reconnect the cable and press Resume: nothing is lost.", "warn")
    if job.status == "failed":  # the steps before it are done and stay done: trying again starts here
        return (f"✖ Failed at “{title}”. Fix what it says below, then press Try again.", "bad")
    return OUTCOMES.get(job.status, (job.status, None))


def summary_lines(job: ProvisionJob) -> list[str]:
    """What a finished job leaves for the technician: name, hostname, certificate, posture."""
    lines = [f"Device: {job.device or 'unknown'} at site {job.site}"]
    hostname = job.data.get("names", {}).get("hostname") or job.facts.get("hostname")
    if hostname:
        lines.append(f"Hostname: {hostname}")
    if job.tags:
        lines.append(f"Tags: {', '.join(job.tags)}")
    identity = job.data.get("identity", {})
    if identity.get("certificate"):
        lines.append("Certificate: installed")
    elif identity.get("csr_item") or identity.get("csr_sha256"):
        lines.append("Certificate: pending — the request waits in the outbox; it is installed at the next "
                     "connection after the control plane signs it")
    posture = job.data.get("posture", {})
    checks = posture.get("checks", [])
    if checks:
        passed = sum(1 for c in checks if c.get("status") == "pass")
        lines.append(f"Posture: {passed} of {len(checks)} checks pass")
        lines.extend(f"   {'⚠' if c.get('status') == 'warn' else '✖'} {c.get('key')}: "
                     f"{c.get('reason') or c.get('status')}" for c in checks if c.get("status") != "pass")
    return lines


def plan_lines(plan: Iterable[PlannedCommand]) -> list[str]:
    """The dry run as the review page shows it: grouped by step, what it does then the command."""
    lines: list[str] = []
    current = None
    for command in plan:
        if command.step != current:
            current = command.step
            lines.append(f"{'' if not lines else chr(10)}── {STEP_TITLES.get(command.step, command.step)}")
        if command.what:
            lines.append(f"   # {command.what}")
        lines.append(f"   $ {command.command}")
    return lines


class StepRow:
    def __init__(self, grid: QGridLayout, row: int, name: str) -> None:
        self.name = name
        self.mark = big(QLabel("○"), 1.4)
        self.mark.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.mark.setMinimumWidth(36)
        self.title = big(plain_label(STEP_TITLES.get(name, name), selectable=False), 1.1)
        self.word = big(plain_label("pending", selectable=False), 1.0)
        self.word.setObjectName(f"provisionStepState-{name}")
        self.detail = plain_label("", f"provisionStepDetail-{name}")
        self.detail.setEnabled(True)
        grid.addWidget(self.mark, row * 2, 0, 2, 1)
        grid.addWidget(self.title, row * 2, 1)
        grid.addWidget(self.word, row * 2, 2, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.detail, row * 2 + 1, 1, 1, 2)

    def show(self, state: str, detail: str) -> None:
        mark, tone, word = STATE_MARKS.get(state, ("?", None, state))
        self.mark.setText(mark)
        self.word.setText(word)
        self.detail.setText(detail)
        self.detail.setVisible(bool(detail))
        paint(self.mark, tone)
        paint(self.word, tone)


class StepsView(QWidget):
    """The run page's body. ``show_job`` any number of times; ``log`` appends a line to the log pane."""

    def __init__(self, mask: Mask = lambda text: text, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.hide_secrets = mask
        self.banner = big(plain_label("", "provisionBanner"), 1.15)
        self.banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.banner.setMargin(10)
        self.banner.hide()
        self.hint = plain_label("", "provisionHint")
        self.hint.hide()
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        grid.setVerticalSpacing(2)
        self.rows: dict[str, StepRow] = {name: StepRow(grid, i, name) for i, name in enumerate(STEPS)}
        self.summary = big(plain_label("", "provisionSummary"), 1.05, bold=False)
        self.summary.hide()
        self.log_pane = QPlainTextEdit()
        self.log_pane.setObjectName("provisionLog")
        self.log_pane.setReadOnly(True)
        self.log_pane.setMaximumBlockCount(2000)
        self.log_pane.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log_pane.setMinimumHeight(60)
        # The steps and the summary scroll (a small screen must not squeeze the rows into each other); the
        # banner stays in sight above them, the log below, the divider between them draggable.
        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 6, 0)
        body_layout.addLayout(grid)
        body_layout.addWidget(self.summary)
        body_layout.addStretch(1)
        self.steps_area = QScrollArea()
        self.steps_area.setWidgetResizable(True)
        self.steps_area.setFrameShape(QFrame.Shape.NoFrame)
        self.steps_area.setWidget(body)
        log_box = QWidget()
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 4, 0, 0)
        log_layout.addWidget(QLabel("Log:"))
        log_layout.addWidget(self.log_pane, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.steps_area)
        self.splitter.addWidget(log_box)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.hint)
        layout.addWidget(self.splitter, 1)
        self._seen: dict[str, tuple[str, str]] = {}
        self._status = ""

    def show_job(self, job: ProvisionJob) -> None:
        for record in job.steps:
            row = self.rows.get(record.name)
            if row is None:
                continue
            detail = self.hide_secrets(record.detail)
            stopped_here = job.status == "interrupted" and record.name == step_at(job)
            row.show("interrupted" if stopped_here else record.state, detail)
            if self._seen.get(record.name) != (record.state, detail):
                self._seen[record.name] = (record.state, detail)
                if record.state != "pending":
                    self.log(f"{row.title.text()}: {record.state}{' — ' + detail if detail else ''}")
        self._show_outcome(job)

    def _show_outcome(self, job: ProvisionJob) -> None:
        text, tone = headline(job)
        self.banner.setText(self.hide_secrets(text))
        self.banner.setVisible(True)
        paint(self.banner, tone)
        message = self.hide_secrets(job.message)
        if job.status == "interrupted":  # the banner says what to do; the runner's hint (the CLI's words) goes
            message = "What happened: " + message.split(" Reconnect the cable")[0]
        self.hint.setText(message)
        self.hint.setVisible(bool(message) and job.status != "running")
        finished = job.status in ("provisioned", "incomplete")
        self.summary.setText(self.hide_secrets("\n".join(summary_lines(job))) if finished else "")
        self.summary.setVisible(finished)
        if finished:  # once laid out: on a small screen the summary is below the fold
            QTimer.singleShot(0, self.steps_area, lambda: self.steps_area.ensureWidgetVisible(self.summary))
        if job.status != self._status:
            self._status = job.status
            if job.status != "running":
                self.log(f"{text}{' — ' + message if message else ''}")

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log_pane.appendPlainText(f"{stamp}  {self.hide_secrets(line)}")

    def texts(self) -> list[str]:
        """Every text this view shows (tests: no secret anywhere)."""
        labels = [self.banner, self.hint, self.summary]
        for row in self.rows.values():
            labels.extend([row.mark, row.title, row.word, row.detail])
        return [label.text() for label in labels] + [self.log_pane.toPlainText()]
