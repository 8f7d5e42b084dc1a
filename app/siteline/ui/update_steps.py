"""The Update tab's job view: one big row per step (mark, name, what it is doing, a bar with the time left),
then the outcome in words with what was seen; the confirmation asked before a job starts; and the red recovery
panel for a device whose slots ran out of boot attempts. Fed a FlashJob (or a Slots snapshot) in any state;
it does no I/O. The image gate's words are in update_verify.py.

A job has at most seven steps that never move, so they are plain rows, not an item model: each row is
big enough to read from arm's length, and a bar per row is what a model/delegate would draw anyway.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.slot_actions import DEFAULT_ATTEMPTS, ActionOutcome
from siteline.core.device.slots import Slot, Slots
from siteline.core.flash.job import FlashJob, Step
from siteline.core.flash.recovery import first_slot, needs_reset, reset_plan
from siteline.ui.panels import paint, plain_label, tone_colour

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



class ResumeBanner(QFrame):
    """A job a closed Siteline left unfinished on this device: what it was, where it stopped, Resume."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("updateResumeBanner")
        self.text = big(plain_label("", "updateResumeText"), 1.05)
        self.button = big(QPushButton("Resume it now"))
        self.button.setObjectName("updateResume")
        self.button.setMinimumHeight(TOUCH_HEIGHT)
        row = QHBoxLayout(self)
        row.addWidget(self.text, 1)
        row.addWidget(self.button)

    def show_job(self, job: FlashJob | None, running: bool, connected: bool, offline_reason: str) -> None:
        self.setVisible(job is not None and not running)
        if job is None:
            return
        step = job.current
        where = f" It stopped at “{step.name}”." if step is not None else ""
        what = "A rollback" if job.kind == "rollback" else f"An update to {job.image_version or 'a new version'}"
        self.text.setText(f"⚠ {what} of {job.device} did not finish (Siteline was closed).{where} "
                          "Resume it so Siteline can finish it safely.")
        self.button.setEnabled(connected)
        self.button.setToolTip("" if connected else offline_reason)
        paint(self.text, "warn")
        self.setStyleSheet("QFrame#updateResumeBanner { border: 2px solid palette(highlight); border-radius: 6px; }")
COUNTERS_FIRST = ("Reset the boot counters first (the red panel above): with no boot attempts left, a reboot "
                  "could leave the device with nothing to boot.")


def counters_sentence(slots: Slots) -> str:
    """Each A/B slot's attempts left in one sentence: "Slot A (1.1.0, running now) has 0 boot attempts left, …"."""
    parts = []
    for slot in sorted((s for s in slots.slots if s.bootname), key=lambda s: s.bootname or ""):
        if slot.bootname:
            left = "an unknown number of" if slot.attempts_left is None else str(slot.attempts_left)
            words = slot_words(slot)
            words = words[:-1] + ", running now)" if words.endswith(")") and slot.booted else \
                words + (" (running now)" if slot.booted else "")
            parts.append(f"{words} has {left} boot attempts left")
    return upper_first(", ".join(parts)) + "." if parts else ""


def reset_confirmation(device: str, slots: Slots | None) -> tuple[str, list[str], str, str]:
    """(heading, lines, risk, button) of the question asked before the boot counters are reset."""
    todo = reset_plan(slots, first_slot(slots))
    first = todo.order.split()[0]
    return (f"Reset the boot counters of {device}?",
            [f"Writes {device}'s boot environment over the link in use now (the serial console when SSH is down):",
             f"Runs: {todo.linux}",
             f"Every slot gets {DEFAULT_ATTEMPTS} boot attempts again; slot {first} boots first (it runs now, so it "
             "is known to boot).",
             "Reads the environment back to check it, and records the reset in the audit trail.",
             "Does not reboot and does not touch the images in the slots."],
            "⚠ Keep the device powered until Siteline says it is done.",
            f"Reset the counters on {device}")


class RecoveryPanel(QWidget):
    """A red panel while the Slots snapshot says the boot counters need a reset (recovery.needs_reset), with the
    one action that fixes it, and under it the outcome of the last reset (which stays after the panel goes)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.alarm = QFrame()
        self.alarm.setObjectName("updateRecovery")
        self.headline = big(plain_label("", "updateRecoveryHeadline", selectable=False), 1.4)
        self.counters = big(plain_label("", "updateRecoveryCounters"), 1.15)
        self.explain = big(plain_label("", "updateRecoveryExplain"), 1.0, False)
        self.button = big(QPushButton("⟲ Reset the boot counters…"), 1.3)
        self.button.setObjectName("updateRecoveryReset")
        self.button.setMinimumHeight(TOUCH_HEIGHT + 12)
        self.why_off = big(plain_label("", "updateRecoveryWhyOff", selectable=False), 1.0, False)
        box = QVBoxLayout(self.alarm)
        box.setSpacing(8)
        for widget in (self.headline, self.counters, self.explain, self.button, self.why_off):
            box.addWidget(widget)
        self.result = big(plain_label("", "updateRecoveryResult"), 1.1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.alarm)
        layout.addWidget(self.result)

    def show_state(self, device: str, slots: Slots | None, *, blocked: str | None, resetting: bool,
                   outcome: ActionOutcome | None) -> None:
        """``blocked``: why the reset cannot run now (offline, a job runs), None when it can."""
        why = needs_reset(slots) if slots is not None else None
        self.alarm.setVisible(why is not None or resetting)
        if slots is not None and why is not None:
            self.headline.setText(f"⚠ {device} may not boot again: {why.split(':')[0]}")
            self.counters.setText(counters_sentence(slots))
            first = first_slot(slots) or "the running slot"
            self.explain.setText("Usually the images are fine: every boot cut short (a power cut while it boots) "
                                 f"used up an attempt. Resetting the counters gives every slot {DEFAULT_ATTEMPTS} "
                                 f"attempts again, slot {first} first. Siteline does it over the link in use now, "
                                 "the serial console included; nothing reboots.")
        self.button.setText("Resetting the boot counters…" if resetting else "⟲ Reset the boot counters…")
        self.button.setEnabled(not resetting and blocked is None)
        self.button.setToolTip(blocked or "Asks once more, saying exactly what will be written.")
        self.why_off.setText(blocked or "")
        self.why_off.setVisible(bool(blocked) and not resetting)
        for label, tone in ((self.headline, "bad"), (self.counters, "bad"), (self.why_off, "warn")):
            paint(label, tone)
        red = tone_colour(self.headline, "bad").name()
        self.alarm.setStyleSheet(f"QFrame#updateRecovery {{ border: 3px solid {red}; border-radius: 6px; }} "
                                 "QFrame#updateRecovery QLabel { border: none; } "
                                 f"QPushButton#updateRecoveryReset:enabled {{ background: {red}; color: white; "
                                 "border-radius: 4px; padding: 4px 16px; }")
        self._show_outcome(outcome)

    def _show_outcome(self, outcome: ActionOutcome | None) -> None:
        self.result.setVisible(outcome is not None)
        if outcome is None:
            return
        if outcome.ok:
            done = outcome.message.removeprefix("Done: ")
            self.result.setText(f"✔ Boot counters reset: {done}\nNext: {outcome.hint}" if outcome.hint else
                                f"✔ Boot counters reset: {done}")
        else:
            head = {"refused": "✖ Reset refused", "failed": "✖ Reset failed"}.get(outcome.result,
                                                                                 "⚠ Reset not confirmed")
            self.result.setText(f"{head}: {outcome.message}" + (f"\nWhat to do: {outcome.hint}" if outcome.hint
                                                                else ""))
        paint(self.result, "good" if outcome.ok else "bad")
