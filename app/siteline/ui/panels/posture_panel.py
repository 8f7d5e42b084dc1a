"""The Posture panel: one row per security measure, read at arm's length with gloves on.

Each row starts with a big mark that says its verdict in a symbol AND a word (✔ PASS, ✖ FAIL, ? UNKNOWN),
never by colour alone; then the measure's title, what was seen on the device, the one line of why it
matters, and the device's own output one click away. Above the rows, the device's clock against this
laptop's. The factory-password check is the only one that logs in: it runs only when the technician
presses "Try factory passwords…" and confirms what it will do (``sig_factory_check_requested``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.factory_login import plan
from siteline.core.device.posture import CLOCK_FLOOR, WHY, CheckStatus, Clock, Posture, PostureCheck
from siteline.ui.help_text import HelpLine, explain
from siteline.ui.panels import ProblemsLabel, RawOutput, is_dark, paint, plain_label, tone_colour

_TERMS = {"luks": "LUKS", "root_readonly": "Read-only root"}  # checks named by a glossary term
TOUCH_HEIGHT = 48  # px: a button a gloved finger hits first time
MARKS: dict[CheckStatus, tuple[str, str, str]] = {  # symbol, word, tone
    "pass": ("✔", "PASS", "good"),
    "fail": ("✖", "FAIL", "bad"),
    "unknown": ("?", "UNKNOWN", "warn"),
}
NOT_TRIED = PostureCheck("factory_credentials", "unknown",
                         "Not tried yet: press “Try factory passwords…” to try the published ones over SSH.")


def clock_sentence(clock: Clock | None) -> tuple[str, str]:
    """The device's clock against this laptop's in plain words, and its tone."""
    if clock is None or clock.device_time is None:
        return "Device clock: not known (the device did not print its time)", "warn"
    if clock.device_time < CLOCK_FLOOR:
        year = time.gmtime(max(clock.device_time, 0.0)).tm_year
        return f"Device thinks it is {year}: no real-time clock and no time sync", "bad"
    offset = clock.offset_seconds or 0.0
    size = abs(offset)
    if size < max(1.0, clock.uncertainty_seconds):
        return "Device clock agrees with this laptop (within a second)", "good"
    amount = next((f"{size / scale:.0f} {unit}" for scale, unit in ((86400.0, "days"), (3600.0, "h"), (60.0, "min"))
                   if size >= 2 * scale), f"{size:.0f} s")
    side = "ahead of" if offset > 0 else "behind"
    return f"Device clock {amount} {side} this laptop", "good" if size < 5 else "warn" if size < 300 else "bad"


def headline(checks: list[PostureCheck]) -> tuple[str, str]:
    """"3 of 7 checks fail: …" and its tone; unknown is never counted as a pass."""
    failed = [c for c in checks if c.status == "fail"]
    unknown = [c for c in checks if c.status == "unknown"]
    if failed:
        more = f", {len(unknown)} not verified" if unknown else ""
        return f"✖ {len(failed)} of {len(checks)} checks FAIL{more}", "bad"
    if unknown:
        return f"? {len(checks) - len(unknown)} of {len(checks)} checks pass; {len(unknown)} not verified", "warn"
    return f"✔ All {len(checks)} checks pass", "good"


class CheckRow(QFrame):
    """One measure: the mark, the title, what was seen, why it matters, the raw output behind a button."""

    def __init__(self, check: PostureCheck, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"postureRow_{check.key}")
        self.mark = QLabel()
        self.mark.setObjectName("postureMark")
        self.mark.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.mark.setFixedSize(132, 72)
        self.title = plain_label("", "postureTitle", selectable=False)
        font = self.title.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.25)
        font.setBold(True)
        self.title.setFont(font)
        self.reason = plain_label("", "postureReason")
        seen = self.reason.font()
        seen.setPointSizeF(max(seen.pointSizeF(), 10.0) * 1.1)
        self.reason.setFont(seen)
        self.why = plain_label(f"Why it matters: {WHY[check.key]}", "postureWhy", selectable=False)
        if check.key in _TERMS:
            explain(self.title, _TERMS[check.key])
        italic = self.why.font()
        italic.setItalic(True)
        self.why.setFont(italic)
        self.raw = RawOutput()
        self.raw.toggle.setMinimumHeight(36)  # gloves: still easy to hit, smaller than the action button
        text = QVBoxLayout()
        text.setSpacing(4)
        for widget in (self.title, self.reason, self.why, self.raw):
            widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            text.addWidget(widget)
        self.extra = QHBoxLayout()  # the factory row puts its button here
        text.addLayout(self.extra)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 8, 10, 8)
        row.setSpacing(14)
        side = QVBoxLayout()  # the mark stays at the top, at its own size, however tall the row grows
        side.addWidget(self.mark)
        side.addStretch(1)
        row.addLayout(side, 0)
        row.addLayout(text, 1)
        self.check = check
        self.show_check(check)

    def show_check(self, check: PostureCheck) -> None:
        self.check = check
        symbol, word, tone = MARKS[check.status]
        self.mark.setText(f"{symbol}\n{word}")
        self.mark.setAccessibleName(f"{check.title}: {word}")
        self.title.setText(check.title)
        self.reason.setText(f"Seen: {check.reason}")
        self.raw.set_text(check.raw)
        self.raw.setVisible(bool(check.raw.strip()))  # nothing printed (not tried yet): no button to nothing
        self._style(tone)

    def _style(self, tone: str) -> None:
        colour = tone_colour(self, tone).name()
        fg = "#1a1d22" if is_dark(self) else "#ffffff"
        name = self.objectName()
        self.setStyleSheet(
            f"QFrame#{name} {{ border: 1px solid palette(mid); border-left: 6px solid {colour}; border-radius: 6px; }}"
            f" QFrame#{name} QLabel {{ border: none; }}"
            f" QLabel#postureMark {{ background: {colour}; color: {fg}; font-weight: bold; font-size: 15pt;"
            f" border-radius: 6px; padding: 6px; }}"
        )


class PosturePanel(QWidget):
    """Feed it ``show_posture``; ``show_unavailable`` when the probe could not run; ``show_factory_result``."""

    sig_factory_check_requested = Signal()
    """The technician asked for the factory-password check AND confirmed the plan shown to them."""

    def __init__(self, device_name: str = "this device", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.device_name = device_name
        self.posture: Posture | None = None
        self.factory: PostureCheck | None = None  # kept across refreshes: the probe never makes this check
        # Asked before the factory check runs; replaced in tests (a modal box cannot be clicked there).
        self.confirm: Callable[[str], bool] = self._ask
        self.rows: dict[str, CheckRow] = {}
        self.headline = plain_label("Waiting for the device's security checks…", "postureHeadline")
        font = self.headline.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.35)
        font.setBold(True)
        self.headline.setFont(font)
        self.clock = plain_label("", "postureClock")
        clock_font = self.clock.font()
        clock_font.setPointSizeF(max(clock_font.pointSizeF(), 10.0) * 1.15)
        self.clock.setFont(clock_font)
        self.problems = ProblemsLabel()
        self.factory_button = QPushButton("Try factory passwords…")
        self.factory_button.setObjectName("postureFactoryButton")
        self.factory_button.setMinimumHeight(TOUCH_HEIGHT)
        bold = self.factory_button.font()
        bold.setPointSizeF(max(bold.pointSizeF(), 10.0) * 1.15)
        bold.setBold(True)
        self.factory_button.setFont(bold)
        self.factory_button.setStyleSheet("padding: 0 18px;")
        self.factory_button.setToolTip("Logs in over SSH with published factory passwords, after you confirm")
        self.factory_button.clicked.connect(self._on_factory_button_clicked)
        self._list = QVBoxLayout()
        self._list.setSpacing(10)
        body = QWidget()
        inner = QVBoxLayout(body)
        inner.addLayout(self._list)
        inner.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self.raw = RawOutput()  # the whole round trip, for when the probe itself failed
        self.raw.hide()
        self.help_line = HelpLine("posture")
        layout = QVBoxLayout(self)
        for widget in (self.help_line, self.headline, self.clock, self.problems, self.raw):
            layout.addWidget(widget)
        layout.addWidget(scroll, 1)
        self._rebuild([])

    # -- feeding ------------------------------------------------------------------------------------
    def show_posture(self, posture: Posture) -> None:
        self.posture = posture
        self.raw.hide()
        checks = [c for c in posture.checks if c.key != "factory_credentials"]
        self.factory = posture.check("factory_credentials") or self.factory
        self._rebuild(checks)
        if not checks:
            self.headline.setText("? No security check could be made")
            paint(self.headline, "warn")
        text, tone = clock_sentence(posture.clock)
        self.clock.setText(text)
        paint(self.clock, tone)
        self.problems.show_problems(posture.problems, "Not everything could be read")

    def show_unavailable(self, reason: str, raw: str = "") -> None:
        self.posture = None
        self._rebuild([])
        self.headline.setText("? The security checks could not be made")
        paint(self.headline, "warn")
        self.clock.setText("")
        self.problems.show_error(f"Could not read the security posture: {reason}")
        self.raw.set_text(raw)
        self.raw.show()

    def show_factory_result(self, check: PostureCheck) -> None:
        self.factory = check
        self.set_factory_running(False)
        self._rebuild([c for c in (self.posture.checks if self.posture else ()) if c.key != "factory_credentials"])

    def set_factory_running(self, running: bool) -> None:
        """While the check runs the button is off and says so (the page calls this when it starts and ends)."""
        self.factory_button.setEnabled(not running)
        self.factory_button.setText("Trying factory passwords…" if running else "Try factory passwords…")

    # -- building -----------------------------------------------------------------------------------
    def _rebuild(self, checks: list[PostureCheck]) -> None:
        self.factory_button.setParent(self)  # out of the old row before it goes, so it is not deleted with it
        for row in self.rows.values():
            self._list.removeWidget(row)
            row.hide()  # at once: deleteLater waits for the event loop
            row.deleteLater()
        self.rows = {}
        factory = self.factory or NOT_TRIED
        for check in [*checks, factory]:
            row = CheckRow(check)
            self.rows[check.key] = row
            self._list.addWidget(row)
        self.rows["factory_credentials"].extra.addWidget(self.factory_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.factory_button.show()
        if checks:
            text, tone = headline([*checks, factory])
            self.headline.setText(text)
            paint(self.headline, tone)

    def _on_factory_button_clicked(self) -> None:
        if self.confirm(plan(self.device_name)):
            self.set_factory_running(True)
            self.sig_factory_check_requested.emit()

    def _ask(self, text: str) -> bool:
        answer = QMessageBox.question(self, "Try factory passwords?", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes
