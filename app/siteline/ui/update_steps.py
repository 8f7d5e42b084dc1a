"""The Update tab's job view: one big row per step (mark, name, what it is doing, a bar with the time left),
then the outcome in words with what was seen; the words the tab shows for the image gate (what to do about
each refusal); and the confirmation asked before a job starts. Fed a FlashJob in any state; it does no I/O.

A job has at most seven steps that never move, so they are plain rows, not an item model: each row is
big enough to read from arm's length, and a bar per row is what a model/delegate would draw anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.slots import Slot
from siteline.core.flash.job import FlashJob, Step
from siteline.ui.panels import paint, plain_label

if TYPE_CHECKING:  # the gate pulls in the signature code: loaded when an image is first checked, not at start
    from siteline.core.images.gate import DeviceFacts, GateResult

TOUCH_HEIGHT = 48  # px: a button a gloved finger hits first time
BAR_STEPS = 1000  # a bar counts in permille: byte counts of a multi-GB image overflow Qt's int

STEP_TITLES = {
    "preflight": "Check the device",
    "transfer": "Send the image",
    "install": "Install into the other slot",
    "reboot": "Reboot and wait for it",
    "health": "Check it is healthy",
    "mark-good": "Mark the new slot good",
    "rollback": "Switch back to the other slot",
}
# state -> (mark, tone, word)
STATE_MARKS = {
    "pending": ("○", None, "waiting"),
    "running": ("▶", "info", "running"),
    "done": ("✔", "good", "done"),
    "failed": ("✖", "bad", "failed"),
    "skipped": ("–", None, "skipped"),
}
# status -> (headline, tone): the first words a technician reads after a job.
OUTCOMES = {
    "running": ("Working…", "info"),
    "succeeded": ("✔ Updated: the new version runs and is marked good", "good"),
    "installed": ("✔ Installed: it starts at the next reboot", "good"),
    "rolled-back": ("⚠ Rolled back: the device runs its previous version again", "warn"),
    "refused": ("✖ Refused: nothing on the device was changed", "bad"),
    "failed": ("✖ Failed", "bad"),
    "needs-attention": ("⚠ Needs you: Siteline will not fix this alone", "bad"),
    "cancelled": ("Cancelled", None),
}
ROLLBACK_TITLES = {"mark-good": "Mark it good", "preflight": "Check the device and its slots"}
ROLLBACK_OUTCOMES = {
    "succeeded": ("✔ Rolled back: the other slot runs and is healthy", "good"),
    "rolled-back": ("✔ Rolled back: the other slot runs and is healthy", "good"),
}


def duration(seconds: float) -> str:
    """"45 s", "1:20", "1 h 05 min": short enough for a progress bar."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def bar_text(step: Step) -> str:
    """What the bar says: bytes for the transfer, percent otherwise, and the time left when known."""
    if step.name == "transfer":
        text = f"{size_text(step.done)} of {size_text(step.total)}"
    else:
        text = f"{100 * step.done // max(step.total, 1)} %"
    if step.state == "running":
        text += f" · {duration(step.eta)} left" if step.eta is not None else " · time left unknown"
    return text


def is_cancellable(job: FlashJob) -> bool:
    return job.cancellable


def why_not_cancellable(job: FlashJob) -> str:
    if job.finished:
        return "Nothing is running."
    current = job.current
    name = STEP_TITLES.get(current.name, current.name) if current is not None else "this step"
    return (f"Cannot cancel now: '{name}' is changing the device, and stopping halfway could leave it without a "
            "working system. Siteline finishes this step, and rolls back by itself if the new version fails.")


def outcome_words(job: FlashJob) -> tuple[str, str | None]:
    """The headline for a job's status and its tone; a rollback job's success reads as a rollback."""
    table = {**OUTCOMES, **ROLLBACK_OUTCOMES} if job.kind == "rollback" else OUTCOMES
    return table.get(job.status, (job.status, None))


# The first words of a gate refusal -> what the technician can do about it.
WHAT_TO_DO = (
    ("unsigned", "Get the .sig file made for this image and put it next to the image (same name + .sig)."),
    ("signature refused", "Do not flash this file. Get the image and its .sig again; if your team signs with a "
                          "new key, add that key first (siteline keys add)."),
    ("unreadable image", "The file is damaged or is not an update image: copy it again."),
    ("not for this device", "Choose the image built for this type of device."),
    ("device compatible unknown", "Press F5 (or open the Slots tab) so Siteline reads the device, then choose "
                                  "the image again."),
    ("it rewrites the bootloader", "Only if you were told to: type the sentence below exactly."),
    ("downgrade", "Only if you mean to go back to an older version: tick 'Allow an older version' below."),
)


def what_to_do(reason: str) -> str:
    return next((hint for start, hint in WHAT_TO_DO if reason.startswith(start)), "")


def short_reason(reason: str) -> str:
    """"unsigned", "not for this device": the words before the gate's colon, for headlines."""
    return reason.split(":", 1)[0]


def remaining(gate: GateResult, downgrade: bool, typed: str, phrase: str) -> list[str]:
    """The gate's refusals the technician's overrides do not lift (the gate ran without overrides)."""
    left = []
    for reason in gate.reasons:
        if reason.startswith("downgrade:") and downgrade:
            continue
        if reason.startswith("it rewrites the bootloader") and typed == phrase:
            continue
        left.append(reason)
    return left


def fact_lines(gate: GateResult, facts: DeviceFacts) -> list[str]:
    """The image's facts under the verdict: file, version vs the device's, compatible, signer."""
    info = gate.info
    if info is None:
        return []
    running = facts.installed_version or "unknown"
    match = "?" if not facts.compatible else "✔ matches" if not any(
        r.startswith("not for this device") for r in gate.reasons) else "✖ does not match"
    lines = [f"File: {info.path.name} · {info.format} · {size_text(info.size)} · SHA-256 {info.sha256[:16]}…",
             f"Version: {info.version or 'unknown'}   (the device runs {running})",
             f"Made for: {info.compatible or ', '.join(info.compatibles) or 'unknown'}   "
             f"({match} {facts.compatible or 'the device type is not read yet'})"]
    if gate.verdict is not None and gate.verdict.ok:
        lines.append(f"Signature: {gate.verdict.algorithm}, key {gate.verdict.key_name} {gate.verdict.fingerprint}")
    return lines


def big(widget: Any, scale: float = 1.15, bold: bool = True) -> Any:
    font = widget.font()
    font.setPointSizeF(max(font.pointSizeF(), 10.0) * scale)
    font.setBold(bold)
    widget.setFont(font)
    return widget


def slot_words(slot: Slot | None) -> str:
    if slot is None:
        return "the other slot"
    name = f"slot {slot.bootname or slot.name}"
    return f"{name} ({slot.bundle_version})" if slot.bundle_version else name


def upper_first(text: str) -> str:
    """"slot A" -> "Slot A" (str.capitalize would make it "Slot a")."""
    return text[:1].upper() + text[1:]


class ConfirmDialog(QDialog):
    """"Do this to that device?": what will happen, line by line; Cancel is the default (a stray Enter)."""

    def __init__(self, heading: str, lines: list[str], risk: str, ok_text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("updateConfirm")
        self.setWindowTitle(heading)
        self.setMinimumWidth(680)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        self.heading = big(plain_label(heading, "updateConfirmHeading", selectable=False), 1.5)
        self.effect = big(plain_label("\n".join(f"• {line}" for line in lines), "updateConfirmEffect"), 1.1, False)
        self.risk = big(plain_label(risk, "updateConfirmRisk", selectable=False), 1.0)
        paint(self.risk, "warn")
        for widget in (self.heading, self.effect, self.risk):
            layout.addWidget(widget)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = QPushButton(ok_text)
        self.ok_button.setObjectName("updateConfirmOk")
        big(self.ok_button, 1.0)
        self.ok_button.setAutoDefault(False)
        buttons.addButton(self.ok_button, QDialogButtonBox.ButtonRole.AcceptRole)
        for button in buttons.buttons():
            button.setMinimumHeight(TOUCH_HEIGHT)
            button.setMinimumWidth(180)
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class StepRow(QFrame):
    """One step: a big state mark, its name, a detail line and (when it counts something) a bar."""

    def __init__(self, name: str, kind: str = "flash", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setObjectName(f"updateStep_{name.replace('-', '_')}")
        self.mark = QLabel("○")
        self.mark.setObjectName("updateStepMark")
        self.mark.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.mark.setMinimumWidth(36)
        font = self.mark.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.6)
        font.setBold(True)
        self.mark.setFont(font)
        titles = {**STEP_TITLES, **ROLLBACK_TITLES} if kind == "rollback" else STEP_TITLES
        self.title = plain_label(titles.get(name, name), "updateStepTitle", selectable=False)
        font = self.title.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.15)
        self.title.setFont(font)
        self.state_word = plain_label("", "updateStepState", selectable=False)
        self.detail = plain_label("", "updateStepDetail")
        self.bar = QProgressBar()
        self.bar.setObjectName("updateStepBar")
        self.bar.setRange(0, BAR_STEPS)
        self.bar.setMinimumHeight(26)
        self.bar.setTextVisible(True)
        self.bar.hide()
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setHorizontalSpacing(10)
        grid.addWidget(self.mark, 0, 0, 3, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.title, 0, 1)
        grid.addWidget(self.state_word, 0, 2, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.detail, 1, 1, 1, 2)
        grid.addWidget(self.bar, 2, 1, 1, 2)
        grid.setColumnStretch(1, 1)

    def show_step(self, step: Step) -> None:
        mark, tone, word = STATE_MARKS.get(step.state, ("?", None, step.state))
        self.mark.setText(mark)
        self.state_word.setText(word)
        for label in (self.mark, self.state_word):
            paint(label, tone)
        font = self.title.font()
        font.setBold(step.state == "running")  # the eye finds the step that is going on
        self.title.setFont(font)
        self.detail.setText(step.detail)
        self.detail.setVisible(bool(step.detail))
        counting = step.total > 0 and step.state in ("running", "done", "failed")
        if counting:
            self.bar.setValue(min(BAR_STEPS, BAR_STEPS * step.done // step.total))
            self.bar.setFormat(bar_text(step))
        self.bar.setVisible(counting)


class StepsView(QWidget):
    """The steps of one job, in order; ``show_job`` again whenever the job changes (at most 10 times a second)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: dict[str, StepRow] = {}
        self._kind = "flash"
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)

    def show_job(self, job: FlashJob) -> None:
        names = [s.name for s in job.steps]
        if names != list(self.rows) or job.kind != self._kind:  # a new job, or the rollback step was added
            self._kind = job.kind
            for row in self.rows.values():
                self._layout.removeWidget(row)
                row.deleteLater()
            self.rows = {name: StepRow(name, job.kind) for name in names}
            for row in self.rows.values():
                self._layout.addWidget(row)
        for step in job.steps:
            self.rows[step.name].show_step(step)

    def row(self, name: str) -> StepRow:
        return self.rows[name]


class OutcomeView(QFrame):
    """The job's outcome: a big headline, the machine's message, and the evidence as a list to copy."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("updateOutcome")
        self.headline = plain_label("", "updateOutcomeHeadline", selectable=False)
        font = self.headline.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.4)
        font.setBold(True)
        self.headline.setFont(font)
        self.message = plain_label("", "updateOutcomeMessage")
        font = self.message.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.1)
        self.message.setFont(font)
        self.evidence = plain_label("", "updateOutcomeEvidence")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        for widget in (self.headline, self.message, self.evidence):
            layout.addWidget(widget)
        self.hide()

    def show_job(self, job: FlashJob) -> None:
        if not job.finished:
            self.hide()
            return
        headline, tone = outcome_words(job)
        self.headline.setText(headline)
        paint(self.headline, tone)
        self.message.setText(job.message)
        self.message.setVisible(bool(job.message))
        lines: list[Any] = [f"  • {e}" for e in job.evidence]
        self.evidence.setText("What Siteline saw:\n" + "\n".join(lines) if lines else "")
        self.evidence.setVisible(bool(lines))
        border = self.headline.palette().color(self.headline.foregroundRole()).name()
        self.setStyleSheet(f"QFrame#updateOutcome {{ border: 2px solid {border}; border-radius: 6px; }}"
                           " QFrame#updateOutcome QLabel { border: none; }")
        self.show()
