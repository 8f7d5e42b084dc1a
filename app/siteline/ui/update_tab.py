"""The device page's Update tab: choose an image, see whether it may be flashed and why not, flash it with
a confirmation that says what will happen, watch the steps, cancel while that is safe, read the outcome,
and roll back to the other slot.

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
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.slots import Slot, Slots
from siteline.core.flash.job import FlashJob, FlashOptions
from siteline.ui.panels import paint, plain_label
from siteline.ui.panels.slots_panel import ab_slots

if TYPE_CHECKING:  # the gate and library pull in the image code: loaded on first use, not at start
    from siteline.core.images.gate import DeviceFacts, GateResult
    from siteline.core.images.library import LibraryEntry

from siteline.ui.update_steps import (
    TOUCH_HEIGHT,
    ConfirmDialog,
    OutcomeView,
    StepsView,
    big,
    fact_lines,
    is_cancellable,
    remaining,
    short_reason,
    size_text,
    slot_words,
    upper_first,
    what_to_do,
    why_not_cancellable,
)


def phrase_for(facts: DeviceFacts) -> str:
    from siteline.core.images.gate import bootloader_phrase

    return bootloader_phrase(facts)


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
        self.dialog: ConfirmDialog | None = None
        self.file_dialog: QFileDialog | None = None
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
        self._build_banner(layout)
        self.running_line = big(plain_label("", "updateRunning"), 1.3)
        layout.addWidget(self.running_line)
        self._build_job(layout)
        self._build_image(layout)
        self._build_gate(layout)
        self._build_options(layout)
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
        self.banner = QFrame()
        self.banner.setObjectName("updateResumeBanner")
        self.banner_text = big(plain_label("", "updateResumeText"), 1.05)
        self.resume_button = big(QPushButton("Resume it now"))
        self.resume_button.setObjectName("updateResume")
        self.resume_button.setMinimumHeight(TOUCH_HEIGHT)
        self.resume_button.clicked.connect(self._on_resume_clicked)
        row = QHBoxLayout(self.banner)
        row.addWidget(self.banner_text, 1)
        row.addWidget(self.resume_button)
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

    def _build_image(self, layout: QVBoxLayout) -> None:
        self.image_box = QGroupBox("1. Image")
        self.library = QComboBox()
        self.library.setObjectName("updateLibrary")
        self.library.setMinimumHeight(TOUCH_HEIGHT - 8)
        self.library.activated.connect(self._on_library_activated)
        self.choose_button = QPushButton("Choose a file…")
        self.choose_button.setObjectName("updateChoose")
        self.choose_button.setMinimumHeight(TOUCH_HEIGHT - 8)
        self.choose_button.clicked.connect(self._on_choose_clicked)
        self.image_line = plain_label("No image chosen yet.", "updateImageLine")
        row = QHBoxLayout()
        row.addWidget(self.library, 1)
        row.addWidget(self.choose_button)
        box = QVBoxLayout(self.image_box)
        box.addLayout(row)
        box.addWidget(self.image_line)
        layout.addWidget(self.image_box)

    def _build_gate(self, layout: QVBoxLayout) -> None:
        self.gate_box = QGroupBox("2. Verification")
        self.verdict = big(plain_label("", "updateVerdict"), 1.25)
        self.facts = plain_label("", "updateFacts")
        self.reasons = plain_label("", "updateReasons")
        self.notes = plain_label("", "updateNotes")
        box = QVBoxLayout(self.gate_box)
        for widget in (self.verdict, self.facts, self.reasons, self.notes):
            box.addWidget(widget)
        layout.addWidget(self.gate_box)

    def _build_options(self, layout: QVBoxLayout) -> None:
        self.options_box = QGroupBox("3. Options")
        self.reboot_now = QCheckBox("Reboot into the new version when it is installed (untick: it starts at the "
                                    "next reboot)")
        self.reboot_now.setChecked(True)
        self.metered = QCheckBox("Send it even over a metered (cellular) link")
        self.downgrade = QCheckBox("Allow an older version (downgrade)")
        self.phrase_label = plain_label("", "updatePhrasePrompt")
        self.phrase = QLineEdit()
        self.phrase.setObjectName("updatePhrase")
        self.phrase.setMinimumHeight(TOUCH_HEIGHT - 8)
        box = QVBoxLayout(self.options_box)
        for widget in (self.reboot_now, self.metered, self.downgrade, self.phrase_label, self.phrase):
            box.addWidget(widget)
        for check in (self.reboot_now, self.metered, self.downgrade):
            check.setMinimumHeight(32)
            check.toggled.connect(lambda _on: self._refresh())
        self.phrase.textChanged.connect(lambda _t: self._refresh())
        layout.addWidget(self.options_box)

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
            self.slots_stale = False
            self.phrase.clear()
            self.downgrade.setChecked(False)
            self.metered.setChecked(False)
            self.reboot_now.setChecked(True)
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
        self.library.clear()
        self.library.addItem("Images in the library…" if entries else "The image library is empty", None)
        for entry in entries:
            version = entry.info.get("version") or "version unknown"
            self.library.addItem(f"{entry.image.name} — {version} ({entry.sha256[:12]})", entry.image)

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
        return replace(self.base_options, reboot=self.reboot_now.isChecked(), allow_metered=self.metered.isChecked(),
                       allow_downgrade=self.downgrade.isChecked(), bootloader_override=phrase or None)

    # -- drawing -------------------------------------------------------------------------------

    def _refresh(self) -> None:
        running = self.job is not None and not self.job.finished
        finished = self.job is not None and self.job.finished
        self._draw_banner(running)
        self._draw_job(running)
        choosing = not running and not finished
        for widget in (self.image_box, self.gate_box, self.options_box, self.flash_button, self.flash_why):
            widget.setVisible(choosing)
        self._draw_gate()
        self._draw_flash_button()
        self._draw_rollback(running)

    def _draw_banner(self, running: bool) -> None:
        job = self.resumable
        self.banner.setVisible(job is not None and not running)
        if job is None:
            return
        step = job.current
        where = f" It stopped at “{step.name}”." if step is not None else ""
        what = "A rollback" if job.kind == "rollback" else f"An update to {job.image_version or 'a new version'}"
        self.banner_text.setText(f"⚠ {what} of {job.device} did not finish (Siteline was closed).{where} "
                                 "Resume it so Siteline can finish it safely.")
        self.resume_button.setEnabled(self.connected)
        self.resume_button.setToolTip("" if self.connected else self.offline_reason)
        paint(self.banner_text, "warn")
        self.banner.setStyleSheet("QFrame#updateResumeBanner { border: 2px solid palette(highlight); "
                                  "border-radius: 6px; }")

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

    def _draw_gate(self) -> None:
        gate, image = self.gate, self.image
        self.image_line.setText(f"{image}" if image else "No image chosen yet: pick one from the library or a file.")
        for label in (self.facts, self.reasons, self.notes):
            label.setVisible(gate is not None)
        if self.checking:
            self.verdict.setText(f"Checking the signature of {image.name if image else 'the image'}…")
            paint(self.verdict, "info")
            return
        if gate is None:
            self.verdict.setText("Choose an image: Siteline checks its signature and that it fits this device.")
            paint(self.verdict, None)
            return
        left = self._remaining()
        signer = gate.verdict.key_name if gate.verdict is not None and gate.verdict.ok else ""
        self.verdict.setText(f"✔ Ready to flash: signed by {signer or 'a trusted key'}, made for this device"
                             if not left else f"✖ Will not flash: {', '.join(short_reason(r) for r in left)}")
        paint(self.verdict, "good" if not left else "bad")
        self.facts.setText("\n".join(fact_lines(gate, self.device_facts)))
        self.facts.setVisible(bool(self.facts.text()))
        self.reasons.setText("\n\n".join(f"✖ {r}\n    What to do: {what_to_do(r)}" if what_to_do(r) else f"✖ {r}"
                                         for r in left))
        paint(self.reasons, "bad")
        self.reasons.setVisible(bool(left))
        self.notes.setText("\n".join(f"• {n}" for n in gate.notes))
        paint(self.notes, "warn")
        self.notes.setVisible(bool(gate.notes))
        needs_phrase = gate.info is not None and gate.info.writes_bootloader
        self.phrase_label.setText(f"This image rewrites the BOOTLOADER. To flash it anyway, type exactly:\n"
                                  f"{phrase_for(self.device_facts)}")
        self.phrase_label.setVisible(needs_phrase)
        self.phrase.setVisible(needs_phrase)

    def _remaining(self) -> list[str]:
        if self.gate is None:
            return []
        phrase = phrase_for(self.device_facts)
        return remaining(self.gate, self.downgrade.isChecked(), self.phrase.text(), phrase)

    def flash_blocked(self) -> str | None:
        """Why the Flash button is off, in words; None when it is on."""
        if self.job is not None and not self.job.finished:
            return "An update is running on this device."
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

    def _on_library_activated(self, index: int) -> None:
        image = self.library.itemData(index)
        if isinstance(image, Path):
            self.choose_image(image)

    def _on_choose_clicked(self) -> None:
        dialog = QFileDialog(self, "Choose an update image")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilters(["Update images (*.raucb *.swu *.img *.img.gz *.img.xz *.img.zst)", "All files (*)"])
        dialog.fileSelected.connect(lambda path: self.choose_image(Path(path)))
        self.file_dialog = dialog
        dialog.open()

    def _on_flash_clicked(self) -> None:
        gate = self.gate
        if self.flash_blocked() is not None or gate is None or gate.info is None or self.image is None:
            return
        info, options = gate.info, self.options()
        booted, other = self._slot_pair()
        device = self.device or "the device"
        signer = gate.verdict.key_name if gate.verdict is not None else ""
        lines = [f"Sends {info.path.name} ({size_text(info.size)}, signed by {signer or 'a trusted key'}) to "
                 f"{device} at site {self.site}.",
                 f"Installs {info.version} into {slot_words(other)}, the slot not running now. "
                 f"{upper_first(slot_words(booted))} stays as it is: the way back."]
        if options.reboot:
            lines += [f"Then reboots {device} into {info.version}: it is offline for a few minutes.",
                      f"If it does not come back healthy, Siteline switches back to {slot_words(booted)} by itself."]
        else:
            lines.append(f"Does not reboot: {info.version} starts at the next reboot.")
        lines += [f"Overrides: {', '.join(self._overrides(options))}."] if self._overrides(options) else []
        risk = "⚠ Do not unplug the device's power until Siteline says it is finished."
        if options.bootloader_override:
            risk = ("⚠ This image REWRITES THE BOOTLOADER: if that goes wrong the device needs a visit. " + risk[2:])
        self._confirm(f"Flash {info.version} to {device}?", lines, risk, f"Flash {info.version} to {device}",
                      lambda: self.sig_flash_confirmed.emit(options))

    def _overrides(self, options: FlashOptions) -> list[str]:
        used = ["older version allowed"] if options.allow_downgrade else []
        used += ["BOOTLOADER rewrite allowed"] if options.bootloader_override else []
        return used + (["metered link allowed"] if options.allow_metered else [])

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

    def _on_resume_clicked(self) -> None:
        if self.resumable is not None:
            self.sig_resume_requested.emit(self.resumable.id)

    def _on_again_clicked(self) -> None:
        self.job = None
        self._refresh()
