"""The confirmation for a slot action: what will happen in plain words, the exact command, and for the risky
ones a field where the device's name must be typed before the action button wakes up."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.slot_actions import SlotAction
from siteline.ui.help_text import HelpLine
from siteline.ui.panels import paint, plain_label

TOUCH_HEIGHT = 48  # px: a button a gloved finger hits first time
_RISK = {
    "low": ("Risk: low — routine; the device keeps a working fallback.", "good"),
    "medium": ("Risk: medium — changes which system the device boots next.", "warn"),
    "high": ("Risk: HIGH — if this is wrong the device may not come back without a visit.", "bad"),
}


def name_matches(typed: str, device_name: str) -> bool:
    """The typed confirmation: the device's name, spaces around it and letter case forgiven (gloves)."""
    return bool(device_name.strip()) and typed.strip().casefold() == device_name.strip().casefold()


class SlotActionDialog(QDialog):
    """Accepted = the technician confirmed; the caller then runs ``perform(action, ...)``."""

    def __init__(self, action: SlotAction, device_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.action = action
        self.device_name = device_name
        self.setObjectName("slotActionDialog")
        self.setWindowTitle(f"{action.title} — {device_name}")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        self.heading = plain_label(f"{action.title} on {device_name}?", "slotActionHeading", selectable=False)
        font = self.heading.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.5)
        font.setBold(True)
        self.heading.setFont(font)
        self.effect = plain_label(action.effect, "slotActionEffect")
        font = self.effect.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.15)
        self.effect.setFont(font)
        text, tone = _RISK[action.risk]
        self.risk = plain_label(("⚠ " if action.risk != "low" else "") + text, "slotActionRisk", selectable=False)
        paint(self.risk, tone)
        font = self.risk.font()
        font.setBold(True)
        self.risk.setFont(font)
        self.help_line = HelpLine("slot_action")
        layout.addWidget(self.heading)
        layout.addWidget(self.help_line)
        layout.addWidget(self.effect)
        layout.addWidget(self.risk)
        layout.addWidget(plain_label("This command runs on the device:", selectable=False))
        self.command = QPlainTextEdit("\n".join(action.commands))
        self.command.setObjectName("slotActionCommand")
        self.command.setReadOnly(True)
        self.command.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.command.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.command.setFixedHeight(24 + 20 * max(1, len(action.commands)))
        layout.addWidget(self.command)
        self.typed: QLineEdit | None = None
        if action.typed_confirmation:
            self._add_typed_field(layout)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = QPushButton(action.title)
        self.ok_button.setObjectName("slotActionOk")
        self.buttons.addButton(self.ok_button, QDialogButtonBox.ButtonRole.AcceptRole)
        for button in self.buttons.buttons():
            button.setMinimumHeight(TOUCH_HEIGHT)
            button.setMinimumWidth(160)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        # A risky action never starts from a stray Enter: Cancel is the default until the name is typed.
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setDefault(not action.typed_confirmation)
        self.ok_button.setAutoDefault(False)
        self._update_ok()

    def _add_typed_field(self, layout: QVBoxLayout) -> None:
        prompt = plain_label(f"To confirm, type the device's name: {self.device_name}", "slotActionPrompt",
                             selectable=False)
        prompt.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.typed = QLineEdit()
        self.typed.setObjectName("slotActionTyped")
        self.typed.setPlaceholderText(self.device_name)
        self.typed.setMinimumHeight(TOUCH_HEIGHT)
        self.typed.textChanged.connect(self._on_typed_text_changed)
        self.mismatch = QLabel("")
        self.mismatch.setObjectName("slotActionMismatch")
        layout.addWidget(prompt)
        layout.addWidget(self.typed)
        layout.addWidget(self.mismatch)

    @property
    def confirmed(self) -> bool:
        return self.typed is None or name_matches(self.typed.text(), self.device_name)

    def _on_typed_text_changed(self, text: str) -> None:
        self._update_ok()
        if self.typed is not None:
            shown = "" if not text.strip() or self.confirmed else f"That is not {self.device_name}."
            self.mismatch.setText(shown)
            paint(self.mismatch, "warn")

    def _update_ok(self) -> None:
        ok = self.confirmed and self.action.available
        self.ok_button.setEnabled(ok)
        self.ok_button.setDefault(ok and self.typed is not None)
        self.ok_button.setToolTip("" if ok else "Type the device's name above first.")

    def accept(self) -> None:  # Qt's name
        if self.confirmed and self.action.available:
            super().accept()
