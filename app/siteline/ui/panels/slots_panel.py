"""The Slots panel: an A/B picture read in a second, then the raw bootloader counters beneath it.

Each slot is a box side by side: the booted one has a thick frame, the one the next boot tries first carries
"▶ NEXT BOOT", the health is a coloured badge (good green, bad red). Each box ends with big buttons — Mark good,
Mark bad, Boot this next — disabled with the reason as tooltip when they make no sense; a click emits
``sig_action_requested`` with the SlotAction (the page confirms it and runs it). Under the boxes, the counters as
the bootloader prints them, because RAUC alone says "bad" whenever it could not read the environment.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from siteline.core.device.slot_actions import SlotAction, Verb, actions_for
from siteline.core.device.slots import BootEnv, Slot, Slots
from siteline.ui.help_text import HelpLine, explain
from siteline.ui.panels import UNKNOWN, ProblemsLabel, RawOutput, is_dark, paint, plain_label, tone_colour

# The variables that make up an A/B scheme, in every bootloader's spelling; the rest of the env is noise here.
_COUNTER = re.compile(
    r"^(BOOT_ORDER|BOOT_\w+_LEFT|ORDER|\w+_OK|\w+_TRY|bootcount|bootlimit|upgrade_available|ustate|bootstate\..*)$"
)

_BUTTONS: dict[Verb, str] = {"mark-good": "✔ Mark good", "mark-bad": "✖ Mark bad", "mark-active": "▶ Boot this next"}
TOUCH_HEIGHT = 48  # px: a button a gloved finger hits first time

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
    """One slot: its name big, BOOTED / NEXT BOOT / GOOD-BAD badges, version, attempts, device, action buttons."""

    def __init__(self, slot: Slot, actions: dict[Verb, SlotAction] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slot = slot
        self.slot_actions = actions or {}
        self.on_action: Callable[[SlotAction], object] | None = None  # the panel's: called with a clicked action
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
        self.facts.setWordWrap(False)  # short lines; a wrapped label's height is under-counted and clipped
        for label, term in ((self.booted_badge, "Booted slot"), (self.next_badge, "Primary slot"),
                            (self.facts, "Attempts left"), (self.health_badge, "Mark good")):
            explain(label, term)
        layout = QVBoxLayout(self)
        inset = 15 - (4 if slot.booted else 1)  # the bold frame eats into the margin: rows stay level across boxes
        layout.setContentsMargins(inset, inset - 2, inset, inset - 2)
        for widget in (self.title, self.booted_badge, self.next_badge, self.health_badge, self.facts):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.buttons: dict[Verb, QPushButton] = {}
        row = QHBoxLayout()
        row.setSpacing(8)
        for verb, text in _BUTTONS.items():
            button = QPushButton(text)
            button.setObjectName(f"slotAction_{verb.replace('-', '_')}")
            button.setMinimumHeight(TOUCH_HEIGHT)
            font = button.font()
            font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.1)
            font.setBold(True)
            button.setFont(font)
            button.clicked.connect(lambda _=False, v=verb: self._on_button_clicked(v))
            self.buttons[verb] = button
            row.addWidget(button)
        layout.addLayout(row)
        self.set_actions_enabled(True)
        self._style()

    def set_actions_enabled(self, enabled: bool, reason: str = "") -> None:
        """Enable the buttons whose action makes sense; ``enabled=False`` disables all with ``reason``."""
        for verb, button in self.buttons.items():
            action = self.slot_actions.get(verb)
            why = (reason or "Not possible now.") if not enabled else (
                "Not offered for this slot." if action is None else action.blocked)
            button.setEnabled(why is None)
            # The tooltip says why not, or what will happen: a disabled button never leaves the user guessing.
            button.setToolTip(why if why is not None else f"{action.effect if action else ''}")

    def _on_button_clicked(self, verb: Verb) -> None:
        action = self.slot_actions.get(verb)
        if action is not None and action.available and self.on_action is not None:
            self.on_action(action)

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

    sig_action_requested = Signal(object)
    """A slot action button was clicked: the SlotAction (not yet confirmed, not yet run)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slots: Slots | None = None
        self.boxes: list[SlotBox] = []
        self._actions_enabled: tuple[bool, str] = (True, "")
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
        explain(counters, "Boot counter")
        self.help_line = HelpLine("slots")
        QVBoxLayout(counters).addWidget(self.counters)
        self.problems = ProblemsLabel()
        self.raw = RawOutput()
        self.outcome = plain_label("", "slotsActionOutcome")  # what the last action did, until the next one
        self.outcome.hide()
        # Everything scrolls as one page: on a small laptop screen nothing is squeezed until it is clipped.
        content = QWidget()
        content.setObjectName("slotsContent")
        scroll = QScrollArea()
        scroll.setObjectName("slotsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # width: see _fit_width
        self._scroll, self._content = scroll, content
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        layout = QVBoxLayout(content)
        layout.addWidget(self.help_line)
        layout.addWidget(self.sentence)
        layout.addWidget(self.outcome)
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
        self.boxes = [SlotBox(s, actions_for(slots, s) if s.bootname else {}) for s in ab_slots(slots)]
        for box in self.boxes:
            box.on_action = self.sig_action_requested.emit
            box.set_actions_enabled(*self._actions_enabled)
            self._row.addWidget(box, 1)
        self._fit_width()
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

    def _fit_width(self) -> None:
        """Scroll down, never sideways: the panel asks for the width its boxes and buttons need."""
        bar = self._scroll.verticalScrollBar().sizeHint().width()
        self._scroll.setMinimumWidth(self._content.minimumSizeHint().width() + bar)

    def show_unavailable(self, reason: str, raw: str = "") -> None:
        self.problems.show_error(f"Could not read the slots: {reason}")
        self.raw.set_text(raw)
        self.set_actions_enabled(False, "The slots could not be read: refresh first.")

    def show_action_outcome(self, text: str, ok: bool | None) -> None:
        """The last action's result in words: ok True (done), False (not done / not known), None (running)."""
        mark = "✔ " if ok else "… " if ok is None else "⚠ "
        self.outcome.setText(mark + text)
        paint(self.outcome, "good" if ok else "info" if ok is None else "bad")
        self.outcome.show()

    def set_actions_enabled(self, enabled: bool, reason: str = "") -> None:
        """Off while the device is disconnected or an action runs (``reason`` becomes every button's tooltip)."""
        self._actions_enabled = (enabled, reason)
        for box in self.boxes:
            box.set_actions_enabled(enabled, reason)
