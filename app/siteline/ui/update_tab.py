"""The device page's Update tab: choose an image, see whether it may be flashed and why not, flash it with
a confirmation that says what will happen, watch the steps, cancel while that is safe, read the outcome,
and roll back to the other slot; and, when the slots ran out of boot attempts, a red panel that resets the boot
counters (recovery over whatever link is up, the serial console included).

A view: it shows what the controller (update_controller.py) hands it and emits ``sig_*`` once the technician
has confirmed. One obvious next action at a time: before a job the big Flash button, during one the steps
and Cancel, after one the outcome. Nothing that changes the device is one click away.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.slot_actions import ActionOutcome
from siteline.core.device.slots import Slot, Slots
from siteline.core.flash.job import FlashJob, FlashOptions
from siteline.core.flash.recovery import needs_reset
from siteline.ui.help_text import HelpLine
from siteline.ui.panels import paint, plain_label
from siteline.ui.panels.slots_panel import ab_slots
from siteline.ui.update_steps import (
    COUNTERS_FIRST,
    TOUCH_HEIGHT,
    ConfirmDialog,
    OutcomeView,
    RecoveryPanel,
    ResumeBanner,
    StepsView,
    big,
    is_cancellable,
    reset_confirmation,
    slot_words,
    upper_first,
    why_not_cancellable,
)
from siteline.ui.update_verify import (
    ImageBox,
    OptionsBox,
    VerifyBox,
    flash_confirmation,
    phrase_for,
    remaining,
    short_reason,
)

if TYPE_CHECKING:  # the gate and library pull in the image code: loaded on first use, not at start
    from siteline.core.images.gate import DeviceFacts, GateResult
    from siteline.core.images.library import LibraryEntry


class UpdateTab(QWidget):
    sig_device_shown = Signal(str)
    """The tab now shows this device: the controller hands it that device's image, gate and job."""
    sig_image_chosen = Signal(object)
    """A Path: the technician picked this image (a file, or one from the library); verify it."""
    sig_flash_confirmed = Signal(object)
    """FlashOptions: the technician confirmed flashing the verified image with these options."""
    sig_rollback_confirmed = Signal()
    sig_cancel_requested = Signal()
    sig_resume_requested = Signal(str)
    """A job id: resume the unfinished job the banner named."""
    sig_reset_counters_confirmed = Signal()
    """The technician confirmed resetting the shown device's boot counters."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("updateTab")
        self.device: str | None = None
        self.site = ""
        self.slots: Slots | None = None
        self.connected, self.offline_reason = False, "Not connected."
        self.image: Path | None = None
        self.gate: GateResult | None = None
        self.checking = False
        self.job: FlashJob | None = None
        self.slots_stale = False  # a job ran since the slots were read
        self.resumable: FlashJob | None = None
        self.base_options = FlashOptions()
        self.resetting = False  # the boot counters are being reset now
        self.reset_outcome: ActionOutcome | None = None  # of the last reset on this device
        self.dialog: ConfirmDialog | None = None
        self._build()
        self.show_library([])
        self._refresh()

    # -- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        content = QWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.setSpacing(10)
        self.help_line = HelpLine("update")
        layout.addWidget(self.help_line)
        self._build_banner(layout)
        self.recovery = RecoveryPanel()  # first: a device that may not boot again comes before anything else
        self.recovery.button.clicked.connect(self._on_reset_clicked)
        layout.addWidget(self.recovery)
        self.running_line = big(plain_label("", "updateRunning"), 1.3)
        layout.addWidget(self.running_line)
        self._build_job(layout)
        self.image_box, self.gate_box = ImageBox(self.choose_image), VerifyBox()
        self.options_box = OptionsBox(self._refresh)
        for box in (self.image_box, self.gate_box, self.options_box):
            layout.addWidget(box)
        # The tests (and a reader) reach these by the tab's name for them.
        self.verdict, self.facts, self.reasons = self.gate_box.verdict, self.gate_box.facts, self.gate_box.reasons
        self.reboot_now, self.phrase = self.options_box.reboot_now, self.options_box.phrase
        self.phrase_label = self.options_box.phrase_label
        self.flash_button = big(QPushButton("Flash"), 1.3)
        self.flash_button.setObjectName("updateFlash")
        self.flash_button.setMinimumHeight(TOUCH_HEIGHT + 12)
        # The one obvious next action: the only button in the highlight colour, greyed until it may be pressed.
        self.flash_button.setStyleSheet("QPushButton#updateFlash:enabled { background: palette(highlight); "
                                        "color: palette(highlighted-text); border-radius: 4px; }")
        self.flash_button.clicked.connect(self._on_flash_clicked)
        self.flash_why = big(plain_label("", "updateFlashWhy", selectable=False), 1.05, False)
        layout.addWidget(self.flash_button)
        layout.addWidget(self.flash_why)
        self._build_rollback(layout)
        layout.addStretch(1)

    def _build_banner(self, layout: QVBoxLayout) -> None:
        self.banner = ResumeBanner()
        self.banner_text, self.resume_button = self.banner.text, self.banner.button
        self.resume_button.clicked.connect(self._on_resume_clicked)
        layout.addWidget(self.banner)

    def _build_job(self, layout: QVBoxLayout) -> None:
        self.outcome = OutcomeView()
        layout.addWidget(self.outcome)
        self.steps_box = QGroupBox("Steps")
        self.steps_box.setObjectName("updateSteps")
        self.steps = StepsView()
        self.cancel_button = big(QPushButton("✖ Cancel"))
        self.cancel_button.setObjectName("updateCancel")
        self.cancel_button.setMinimumHeight(TOUCH_HEIGHT)
        self.cancel_button.setMinimumWidth(220)
        self.cancel_button.clicked.connect(self.sig_cancel_requested.emit)
        self.again_button = big(QPushButton("Flash another image"), 1.0, False)
        self.again_button.setObjectName("updateAgain")
        self.again_button.setMinimumHeight(TOUCH_HEIGHT)
        self.again_button.clicked.connect(self._on_again_clicked)
        box = QVBoxLayout(self.steps_box)
        box.addWidget(self.steps)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addWidget(self.again_button)
        row.addStretch(1)
        box.addLayout(row)
        layout.addWidget(self.steps_box)

    def _build_rollback(self, layout: QVBoxLayout) -> None:
        self.rollback_box = QGroupBox("Other action")
        self.rollback_text = plain_label("", "updateRollbackText")
        self.rollback_button = QPushButton("↩ Roll back to the other slot…")
        self.rollback_button.setObjectName("updateRollback")
        self.rollback_button.setMinimumHeight(TOUCH_HEIGHT)
        self.rollback_button.clicked.connect(self._on_rollback_clicked)
        box = QVBoxLayout(self.rollback_box)
        box.addWidget(self.rollback_text)
        box.addWidget(self.rollback_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.rollback_why = plain_label("", "updateRollbackWhy")
        box.addWidget(self.rollback_why)
        layout.addWidget(self.rollback_box)

    # -- what the controller and the page feed in ---------------------------------------------------

    def set_device(self, name: str, site: str) -> None:
        """Another device is shown: forget the last one's picture, then ask for this one's."""
        if name != self.device:
            self.device, self.site, self.slots = name, site, None
            self.image, self.gate, self.job, self.resumable, self.checking = None, None, None, None, False
            self.slots_stale, self.resetting, self.reset_outcome = False, False, None
            self.options_box.reset()
            self._refresh()
            self.sig_device_shown.emit(name)

    def set_connected(self, up: bool, reason: str = "") -> None:
        self.connected, self.offline_reason = up, reason or f"{self.device or 'The device'} is not connected."
        self._refresh()

    def show_slots(self, slots: Any) -> None:
        """The device's Slots snapshot (anything else, e.g. "could not be read", counts as not known)."""
        self.slots = slots if isinstance(slots, Slots) else None
        if self.job is None or self.job.finished:
            self.slots_stale = False
        self._refresh()
        stale = self.gate is not None and any(r.startswith("device compatible unknown") for r in self.gate.reasons)
        if stale and self.slots is not None and self.image is not None and not self.checking:
            self.sig_image_chosen.emit(self.image)  # the device is known now: check the image against it again

    def show_library(self, entries: list[LibraryEntry]) -> None:
        self.image_box.show_library(entries)

    def show_checking(self, image: Path) -> None:
        self.image, self.gate, self.checking = image, None, True
        self._refresh()

    def show_gate(self, image: Path, gate: GateResult | None) -> None:
        self.image, self.gate, self.checking = image, gate, False
        self._refresh()

    def show_job(self, job: FlashJob | None) -> None:
        if job is not None and (not job.finished or (self.job is not None and not self.job.finished)):
            # A job changes the slots: what was read before it ends is not the device any more. Until the
            # slots are read again, nothing offers to act on them (a rollback would name the wrong slot).
            self.slots_stale = True
        self.job = job
        self._refresh()

    def show_resumable(self, job: FlashJob | None) -> None:
        self.resumable = job
        self._refresh()

    def show_recovery(self, resetting: bool, outcome: ActionOutcome | None) -> None:
        """A boot-counter reset runs now, and/or the outcome of the last one (None: none yet)."""
        self.resetting, self.reset_outcome = resetting, outcome
        self._refresh()

    def choose_image(self, image: Path) -> None:
        self.sig_image_chosen.emit(Path(image))

    @property
    def device_facts(self) -> DeviceFacts:
        from siteline.core.images.gate import DeviceFacts

        booted = self.slots.booted_slot if self.slots is not None else None
        return DeviceFacts(self.slots.compatible if self.slots else None, booted.bundle_version if booted else None,
                           self.device or "")

    def options(self) -> FlashOptions:
        phrase = self.phrase.text() if self.gate and self.gate.info and self.gate.info.writes_bootloader else ""
        box = self.options_box
        return replace(self.base_options, reboot=box.reboot_now.isChecked(), allow_metered=box.metered.isChecked(),
                       allow_downgrade=box.downgrade.isChecked(), bootloader_override=phrase or None)

    # -- drawing -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        running = self.job is not None and not self.job.finished
        finished = self.job is not None and self.job.finished
        self.banner.show_job(self.resumable, running, self.connected, self.offline_reason)
        self._draw_recovery(running)
        self._draw_job(running)
        choosing = not running and not finished
        for widget in (self.image_box, self.gate_box, self.options_box, self.flash_button, self.flash_why):
            widget.setVisible(choosing)
        self._draw_gate()
        self._draw_flash_button()
        self._draw_rollback(running)

    def _draw_job(self, running: bool) -> None:
        job = self.job
        self.running_line.setVisible(running)
        self.steps_box.setVisible(job is not None)
        if job is None:
            self.outcome.hide()
            return
        what = "Rolling back" if job.kind == "rollback" else f"Flashing {job.image_version or 'the image'} to"
        self.running_line.setText(f"{what} {job.device}…")
        paint(self.running_line, "info")
        self.steps_box.setTitle("Rollback steps" if job.kind == "rollback" else
                                f"Steps: {Path(job.image).name} ({job.image_version}) → {job.device}")
        self.steps.show_job(job)
        self.outcome.show_job(job)
        can = running and is_cancellable(job)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(can)
        self.cancel_button.setToolTip("Stop now: nothing on the device has changed yet; a later flash resumes "
                                      "the upload." if can else why_not_cancellable(job))
        self.again_button.setVisible(not running)

    @property
    def counters_out(self) -> bool:
        """The slots are out of boot attempts (recovery.needs_reset): the reset comes before any other action."""
        return self.slots is not None and needs_reset(self.slots) is not None

    def _draw_recovery(self, running: bool) -> None:
        why = "An update is running on this device." if running else None if self.connected else self.offline_reason
        if why is None and self.slots_stale:
            why = "Reading the device's slots again after the last job…"
        self.recovery.show_state(self.device or "the device", self.slots, blocked=why, resetting=self.resetting,
                                 outcome=self.reset_outcome)

    def _draw_gate(self) -> None:
        gate, image = self.gate, self.image
        self.image_box.show_image(image)
        self.gate_box.show_gate(image, gate, self.checking, self._remaining(), self.device_facts)
        needs_phrase = gate is not None and gate.info is not None and gate.info.writes_bootloader
        self.options_box.show_phrase(needs_phrase and not self.checking, phrase_for(self.device_facts))

    def _remaining(self) -> list[str]:
        if self.gate is None:
            return []
        phrase = phrase_for(self.device_facts)
        return remaining(self.gate, self.options_box.downgrade.isChecked(), self.phrase.text(), phrase)

    def flash_blocked(self) -> str | None:
        """Why the Flash button is off, in words; None when it is on."""
        if self.job is not None and not self.job.finished:
            return "An update is running on this device."
        if self.counters_out:
            return COUNTERS_FIRST
        if self.image is None:
            return "Choose an image first."
        if self.checking:
            return "Checking the image…"
        if self.gate is None:
            return "The image could not be checked."
        left = self._remaining()
        if left:
            return f"Refused: {', '.join(short_reason(r) for r in left)} (see Verification above)."
        if not self.connected:
            return self.offline_reason
        if self.slots_stale:
            return "Reading the device's slots again after the last job…"
        return None

    def _draw_flash_button(self) -> None:
        version = self.gate.info.version if self.gate is not None and self.gate.info is not None else ""
        self.flash_button.setText(f"⚡ Flash {version or 'the image'} to {self.device or 'the device'}")
        why = self.flash_blocked()
        self.flash_button.setEnabled(why is None)
        self.flash_button.setToolTip(why or "Asks once more, saying what will happen, before anything starts.")
        self.flash_why.setText(why or "")
        paint(self.flash_why, "bad" if why and why.startswith("Refused") else "warn")
        self.flash_why.setVisible(bool(why) and self.flash_button.isVisibleTo(self))

    def _draw_rollback(self, running: bool) -> None:
        booted, other = self._slot_pair()
        self.rollback_text.setText(
            f"For when the new version misbehaves in a way the checks did not catch: boot {slot_words(other)} "
            f"again instead of {slot_words(booted)}." if booted is not None else
            "Boot the other slot again (the slots are not read yet: press F5 first).")
        why = "An update is running on this device." if running else None if self.connected else self.offline_reason
        if why is None and self.slots_stale:
            why = "Reading the device's slots again after the last job…"
        if why is None and self.counters_out:
            why = COUNTERS_FIRST
        if why is None and other is None:
            why = "The slots are not read yet: press F5 (or open the Slots tab) first."
        if why is None and other is not None and other.health == "bad":
            # Never one click away from a device that cannot boot: the other slot failed (or was marked bad).
            why = (f"{upper_first(slot_words(other))} is marked bad (it did not boot, or failed its check): rolling "
                   "back to it could leave the device without a working system. Flash a good image instead.")
        self.rollback_button.setEnabled(why is None)
        self.rollback_button.setToolTip(why or "Asks once more before anything happens.")
        self.rollback_why.setText(why or "")
        self.rollback_why.setVisible(bool(why) and not running)
        paint(self.rollback_why, "warn")

    def _slot_pair(self) -> tuple[Slot | None, Slot | None]:
        if self.slots is None:
            return None, None
        booted = self.slots.booted_slot
        others = [s for s in ab_slots(self.slots) if s is not booted]
        return booted, others[0] if others else None

    # -- the technician's clicks -----------------------------------------------------------------

    def _on_flash_clicked(self) -> None:
        gate = self.gate
        if self.flash_blocked() is not None or gate is None or gate.info is None or self.image is None:
            return
        options, (booted, other) = self.options(), self._slot_pair()
        lines, risk = flash_confirmation(gate, options, self.device or "the device", self.site, booted, other)
        version, device = gate.info.version, self.device or "the device"
        self._confirm(f"Flash {version} to {device}?", lines, risk, f"Flash {version} to {device}",
                      lambda: self.sig_flash_confirmed.emit(options))

    def _on_rollback_clicked(self) -> None:
        booted, other = self._slot_pair()
        device = self.device or "the device"
        lines = [f"{device} runs {slot_words(booted)} now. Siteline makes {slot_words(other)} boot next and "
                 "reboots: it is offline for a few minutes.",
                 f"Then it checks that {slot_words(other)} came back and is healthy."]
        self._confirm(f"Roll {device} back to {slot_words(other)}?", lines,
                      "⚠ Do not unplug the device's power until Siteline says it is finished.",
                      f"Roll back {device}", self.sig_rollback_confirmed.emit)

    def _confirm(self, heading: str, lines: list[str], risk: str, ok_text: str, then: Any) -> None:
        dialog = ConfirmDialog(heading, lines, risk, ok_text, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(then)
        self.dialog = dialog
        dialog.open()

    def _on_reset_clicked(self) -> None:
        if not self.recovery.button.isEnabled():
            return
        heading, lines, risk, ok_text = reset_confirmation(self.device or "the device", self.slots)
        self._confirm(heading, lines, risk, ok_text, self.sig_reset_counters_confirmed.emit)

    def _on_resume_clicked(self) -> None:
        if self.resumable is not None:
            self.sig_resume_requested.emit(self.resumable.id)

    def _on_again_clicked(self) -> None:
        self.job = None
        self._refresh()
