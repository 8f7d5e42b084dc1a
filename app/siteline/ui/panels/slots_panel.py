"""The Slots panel: an A/B picture read in a second, then the raw bootloader counters beneath it.

Each slot is a box side by side: the booted one has a thick frame, the one the next boot tries first carries
"▶ NEXT BOOT", the health is a coloured badge (good green, bad red). Under the boxes, the counters as the
bootloader prints them, because RAUC alone says "bad" whenever it could not read the environment.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import QFrame, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from siteline.core.device.slots import BootEnv, Slot, Slots
from siteline.ui.panels import UNKNOWN, ProblemsLabel, RawOutput, is_dark, paint, plain_label, tone_colour

# The variables that make up an A/B scheme, in every bootloader's spelling; the rest of the env is noise here.
_COUNTER = re.compile(
    r"^(BOOT_ORDER|BOOT_\w+_LEFT|ORDER|\w+_OK|\w+_TRY|bootcount|bootlimit|upgrade_available|ustate|bootstate\..*)$"
)

_SOURCES = {"rauc": "RAUC", "uboot": "U-Boot env", "grub": "GRUB env", "barebox": "barebox state"}


def ab_slots(slots: Slots) -> list[Slot]:
    """The slots the bootloader chooses between (those with a bootname), in bootname order; else all of them."""
    booting = sorted((s for s in slots.slots if s.bootname), key=lambda s: s.bootname or "")
    return booting or list(slots.slots)


def slot_title(slot: Slot) -> str:
    name = slot.bootname or slot.name
    return f"Slot {name}" + (f"  ({slot.name})" if slot.bootname and slot.name != slot.bootname else "")


def slot_lines(slot: Slot) -> list[str]:
    """The facts in a box under the badges; pure so it can be tested without widgets."""
    attempts = UNKNOWN if slot.attempts_left is None else str(slot.attempts_left)
    installed = (slot.installed_at or "").replace("T", " ").replace("Z", " UTC") or UNKNOWN
    return [
        f"Version: {slot.bundle_version or UNKNOWN}",
        f"Attempts left: {attempts}",
        f"Installed: {installed}",
        f"Device: {slot.device or UNKNOWN}",
    ]


def summary(slots: Slots) -> tuple[str, str | None]:
    """"Running B (1.2.0) on trial: next boot B, 2 attempts left" and its tone."""
    booted = slots.booted_slot
    nxt = next((s for s in ab_slots(slots) if s.primary), None)
    if booted is None:
        head, tone = "Which slot booted is not known", "warn"
    else:
        version = f" ({booted.bundle_version})" if booted.bundle_version else ""
        head = f"Running slot {booted.bootname or booted.name}{version}"
        tone = "bad" if booted.health == "bad" else "good" if booted.health == "good" else None
        if slots.env is not None and slots.env.upgrade_available:  # U-Boot's bootcount scheme: still on trial
            head += " on trial (not yet marked good)"
            tone = "warn" if tone == "good" else tone
    bad = [s.bootname or s.name for s in ab_slots(slots) if s.health == "bad" and s is not booted]
    if bad:
        head += f"; slot {', '.join(bad)} is BAD"
        tone = "bad" if tone == "bad" else "warn"
    if nxt is None:
        return f"{head}; the next boot's slot is not known", "warn"
    tail = f"next boot: slot {nxt.bootname or nxt.name}"
    if nxt.attempts_left is not None:
        tail += f", {nxt.attempts_left} attempt{'s' if nxt.attempts_left != 1 else ''} left"
    if booted is not None and nxt is not booted:
        tail += " — it will switch slots on reboot"
        tone = "warn"
    return f"{head}; {tail}", tone


def counter_lines(env: BootEnv) -> list[str]:
    tool = {"uboot": "fw_printenv", "grub": "grub-editenv list", "barebox": "barebox-state"}[env.kind]
    shown = [f"{k}={v}" for k, v in env.variables.items() if _COUNTER.match(k)]
    return [f"{tool}:", *(shown or ["(no A/B counters in the environment)"])]


class SlotBox(QFrame):
    """One slot: its name big, BOOTED / NEXT BOOT / GOOD-BAD badges, then version, attempts and device."""

    def __init__(self, slot: Slot, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slot = slot
        key = re.sub(r"\W", "_", slot.bootname or slot.name)
        self.setObjectName(f"slotBox_{key}")
        self.title = plain_label(slot_title(slot), "slotTitle", selectable=False)
        font = self.title.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.6)
        font.setBold(True)
        self.title.setFont(font)
        self.booted_badge = self._badge("● BOOTED — running now" if slot.booted else "not running", slot.booted)
        self.next_badge = self._badge("▶ NEXT BOOT" if slot.primary else "", slot.primary)
        policy = self.next_badge.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # both boxes keep their rows level, so they compare at a glance
        self.next_badge.setSizePolicy(policy)
        self.next_badge.setVisible(slot.primary)
        health = {"good": "✔ GOOD", "bad": "✖ BAD"}.get(slot.health or "", "health unknown")
        self.health_badge = plain_label(health, "slotHealth", selectable=False)
        self.health_badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.facts = plain_label("\n".join(slot_lines(slot)), "slotFacts")
        layout = QVBoxLayout(self)
        inset = 15 - (4 if slot.booted else 1)  # the bold frame eats into the margin: rows stay level across boxes
        layout.setContentsMargins(inset, inset - 2, inset, inset - 2)
        for widget in (self.title, self.booted_badge, self.next_badge, self.health_badge, self.facts):
            layout.addWidget(widget)
        layout.addStretch(1)
        self._style()

    def _badge(self, text: str, strong: bool) -> QLabel:
        label = plain_label(text, "slotBadge", selectable=False)
        font = label.font()
        font.setBold(strong)
        label.setFont(font)
        return label

    def _style(self) -> None:
        pal = self.palette()
        frame = pal.color(QPalette.ColorRole.Highlight if self.slot.booted else QPalette.ColorRole.Mid).name()
        width = 4 if self.slot.booted else 1
        tone = {"good": "good", "bad": "bad"}.get(self.slot.health or "")
        badge_bg = tone_colour(self, tone).name() if tone else pal.color(QPalette.ColorRole.Mid).name()
        badge_fg = "#1a1d22" if is_dark(self) and tone else "#ffffff"
        name = self.objectName()
        self.setStyleSheet(
            f"QFrame#{name} {{ border: {width}px solid {frame}; border-radius: 8px; }}"
            f" QFrame#{name} QLabel {{ border: none; }}"
            f" QLabel#slotHealth {{ background: {badge_bg}; color: {badge_fg}; font-weight: bold;"
            f" border-radius: 4px; padding: 4px; }}"
        )
        if self.slot.primary:
            paint(self.next_badge, "info")


class SlotsPanel(QWidget):
    """Feed it ``show_slots``; ``show_unavailable`` when neither RAUC nor the bootloader could be read."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slots: Slots | None = None
        self.boxes: list[SlotBox] = []
        self.sentence = plain_label("Waiting for the device's slots…", "slotsSentence")
        font = self.sentence.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.3)
        font.setBold(True)
        self.sentence.setFont(font)
        self._row = QHBoxLayout()
        self._row.setSpacing(16)
        self.details = plain_label("", "slotsDetails")
        self.counters = plain_label("", "slotsCounters")
        self.counters.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        counters = QGroupBox("Raw boot counters (what the bootloader reads)")
        QVBoxLayout(counters).addWidget(self.counters)
        self.problems = ProblemsLabel()
        self.raw = RawOutput()
        layout = QVBoxLayout(self)
        layout.addWidget(self.sentence)
        layout.addWidget(self.problems)
        layout.addLayout(self._row)
        layout.addWidget(self.details)
        layout.addWidget(counters)
        layout.addWidget(self.raw)
        layout.addStretch(1)

    def show_slots(self, slots: Slots) -> None:
        self.slots = slots
        text, tone = summary(slots)
        self.sentence.setText(text)
        paint(self.sentence, tone)
        for box in self.boxes:
            self._row.removeWidget(box)
            box.deleteLater()
        self.boxes = [SlotBox(s) for s in ab_slots(slots)]
        for box in self.boxes:
            self._row.addWidget(box, 1)
        facts = ["Read from: " + " + ".join(_SOURCES.get(p, p) for p in slots.source.split("+"))]
        if slots.compatible:
            facts.append(f"compatible: {slots.compatible}")
        if slots.variant:
            facts.append(f"variant: {slots.variant}")
        self.details.setText("   ·   ".join(facts))
        self.counters.setText("\n".join(counter_lines(slots.env)) if slots.env else "No bootloader environment read.")
        self.problems.show_problems(slots.problems, "Check the slots")
        raws = [slots.raw.rstrip(), slots.env.raw.rstrip() if slots.env else ""]
        self.raw.set_text("\n\n".join(r for r in raws if r))

    def show_unavailable(self, reason: str, raw: str = "") -> None:
        self.problems.show_error(f"Could not read the slots: {reason}")
        self.raw.set_text(raw)
