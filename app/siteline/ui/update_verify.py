"""The Update tab before a flash: the image box (the library, a file), the verification box (the gate's
verdict, the image's facts, each refusal with what to do about it), the options box (reboot, metered link,
downgrade, the bootloader phrase) and the words of the flash confirmation.

Views only: the tab hands them the gate result and reads the options back; the gate itself
(core/images/gate.py) decides. Its words are shortened here for a headline and paired with what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.slots import Slot
from siteline.core.flash.job import FlashOptions
from siteline.ui.panels import paint, plain_label
from siteline.ui.update_steps import TOUCH_HEIGHT, big, size_text, slot_words, upper_first

if TYPE_CHECKING:  # the gate pulls in the signature code: loaded when an image is first checked, not at start
    from siteline.core.images.gate import DeviceFacts, GateResult
    from siteline.core.images.library import LibraryEntry

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


def phrase_for(facts: DeviceFacts) -> str:
    from siteline.core.images.gate import bootloader_phrase

    return bootloader_phrase(facts)


def flash_confirmation(gate: GateResult, options: FlashOptions, device: str, site: str, booted: Slot | None,
                       other: Slot | None) -> tuple[list[str], str]:
    """What flashing the verified image will do, line by line, and the risk line under it."""
    assert gate.info is not None
    info = gate.info
    signer = gate.verdict.key_name if gate.verdict is not None else ""
    lines = [f"Sends {info.path.name} ({size_text(info.size)}, signed by {signer or 'a trusted key'}) to "
             f"{device} at site {site}.",
             f"Installs {info.version} into {slot_words(other)}, the slot not running now. "
             f"{upper_first(slot_words(booted))} stays as it is: the way back."]
    if options.reboot:
        lines += [f"Then reboots {device} into {info.version}: it is offline for a few minutes.",
                  f"If it does not come back healthy, Siteline switches back to {slot_words(booted)} by itself."]
    else:
        lines.append(f"Does not reboot: {info.version} starts at the next reboot.")
    used = ["older version allowed"] if options.allow_downgrade else []
    used += ["BOOTLOADER rewrite allowed"] if options.bootloader_override else []
    used += ["metered link allowed"] if options.allow_metered else []
    lines += [f"Overrides: {', '.join(used)}."] if used else []
    risk = "⚠ Do not unplug the device's power until Siteline says it is finished."
    if options.bootloader_override:
        risk = "⚠ This image REWRITES THE BOOTLOADER: if that goes wrong the device needs a visit. " + risk[2:]
    return lines, risk


class ImageBox(QGroupBox):
    """"1. Image": one from the library or a file; ``chosen`` gets its path."""

    def __init__(self, chosen: Callable[[Path], None], parent: QWidget | None = None) -> None:
        super().__init__("1. Image", parent)
        self._chosen = chosen
        self.file_dialog: QFileDialog | None = None
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
        box = QVBoxLayout(self)
        box.addLayout(row)
        box.addWidget(self.image_line)

    def show_library(self, entries: list[LibraryEntry]) -> None:
        self.library.clear()
        self.library.addItem("Images in the library…" if entries else "The image library is empty", None)
        for entry in entries:
            version = entry.info.get("version") or "version unknown"
            self.library.addItem(f"{entry.image.name} — {version} ({entry.sha256[:12]})", entry.image)

    def show_image(self, image: Path | None) -> None:
        self.image_line.setText(f"{image}" if image else "No image chosen yet: pick one from the library or a file.")

    def _on_library_activated(self, index: int) -> None:
        image = self.library.itemData(index)
        if isinstance(image, Path):
            self._chosen(image)

    def _on_choose_clicked(self) -> None:
        dialog = QFileDialog(self, "Choose an update image")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilters(["Update images (*.raucb *.swu *.img *.img.gz *.img.xz *.img.zst)", "All files (*)"])
        dialog.fileSelected.connect(lambda path: self._chosen(Path(path)))
        self.file_dialog = dialog
        dialog.open()


class VerifyBox(QGroupBox):
    """"2. Verification": the verdict in one line, the image's facts, each refusal left with what to do."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("2. Verification", parent)
        self.verdict = big(plain_label("", "updateVerdict"), 1.25)
        self.facts = plain_label("", "updateFacts")
        self.reasons = plain_label("", "updateReasons")
        self.notes = plain_label("", "updateNotes")
        box = QVBoxLayout(self)
        for widget in (self.verdict, self.facts, self.reasons, self.notes):
            box.addWidget(widget)

    def show_gate(self, image: Path | None, gate: GateResult | None, checking: bool, left: list[str],
                  facts: DeviceFacts) -> None:
        """``left``: the refusals the technician's overrides do not lift."""
        for label in (self.facts, self.reasons, self.notes):
            label.setVisible(gate is not None)
        if checking:
            self.verdict.setText(f"Checking the signature of {image.name if image else 'the image'}…")
            paint(self.verdict, "info")
            return
        if gate is None:
            self.verdict.setText("Choose an image: Siteline checks its signature and that it fits this device.")
            paint(self.verdict, None)
            return
        signer = gate.verdict.key_name if gate.verdict is not None and gate.verdict.ok else ""
        self.verdict.setText(f"✔ Ready to flash: signed by {signer or 'a trusted key'}, made for this device"
                             if not left else f"✖ Will not flash: {', '.join(short_reason(r) for r in left)}")
        paint(self.verdict, "good" if not left else "bad")
        self.facts.setText("\n".join(fact_lines(gate, facts)))
        self.facts.setVisible(bool(self.facts.text()))
        self.reasons.setText("\n\n".join(f"✖ {r}\n    What to do: {what_to_do(r)}" if what_to_do(r) else f"✖ {r}"
                                         for r in left))
        paint(self.reasons, "bad")
        self.reasons.setVisible(bool(left))
        self.notes.setText("\n".join(f"• {n}" for n in gate.notes))
        paint(self.notes, "warn")
        self.notes.setVisible(bool(gate.notes))


class OptionsBox(QGroupBox):
    """"3. Options": what the technician may change about a flash; ``changed`` runs after every change."""

    def __init__(self, changed: Callable[[], None], parent: QWidget | None = None) -> None:
        super().__init__("3. Options", parent)
        self.reboot_now = QCheckBox("Reboot into the new version when it is installed (untick: it starts at the "
                                    "next reboot)")
        self.reboot_now.setChecked(True)
        self.metered = QCheckBox("Send it even over a metered (cellular) link")
        self.downgrade = QCheckBox("Allow an older version (downgrade)")
        self.phrase_label = plain_label("", "updatePhrasePrompt")
        self.phrase = QLineEdit()
        self.phrase.setObjectName("updatePhrase")
        self.phrase.setMinimumHeight(TOUCH_HEIGHT - 8)
        box = QVBoxLayout(self)
        for widget in (self.reboot_now, self.metered, self.downgrade, self.phrase_label, self.phrase):
            box.addWidget(widget)
        for check in (self.reboot_now, self.metered, self.downgrade):
            check.setMinimumHeight(32)
            check.toggled.connect(lambda _on: changed())
        self.phrase.textChanged.connect(lambda _t: changed())

    def reset(self) -> None:
        """Another device: nothing overridden, reboot after install."""
        self.phrase.clear()
        self.downgrade.setChecked(False)
        self.metered.setChecked(False)
        self.reboot_now.setChecked(True)

    def show_phrase(self, needed: bool, phrase: str) -> None:
        self.phrase_label.setText(f"This image rewrites the BOOTLOADER. To flash it anyway, type exactly:\n{phrase}")
        self.phrase_label.setVisible(needed)
        self.phrase.setVisible(needed)
