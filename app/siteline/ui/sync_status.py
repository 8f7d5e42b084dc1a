"""The control-plane part of the status bar: link state (dot + word), items waiting, data used this month.

It shows a ``SyncStatus`` (core/outbox/sync.py) and nothing else: no MQTT here. The Syncer calls its
listeners on the loop thread; ``on_status`` also accepts calls from another thread (a queued signal).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QWidget

from siteline.ui.theme import STATE_COLOURS

if TYPE_CHECKING:
    from siteline.core.outbox.sync import SyncStatus

# SyncState name -> (word for the person, theme colour key). Offline is normal in the field: amber, not red.
_STATES: dict[str, tuple[str, str]] = {
    "IDLE": ("online", "up"),
    "SYNCING": ("syncing", "up"),
    "CONNECTING": ("connecting", "connecting"),
    "OFFLINE": ("offline", "retrying"),
    "HELD": ("on hold (data budget)", "retrying"),
    "ERROR": ("error", "down"),
    "NOT_CONFIGURED": ("not configured", "idle"),
}
_EXPLAIN = {
    "IDLE": "Connected; everything is sent.",
    "SYNCING": "Connected; sending what is waiting.",
    "CONNECTING": "Trying to reach the control plane.",
    "OFFLINE": "The control plane cannot be reached. Everything stays on this laptop and is sent when it can be.",
    "HELD": "Low-priority items wait: this month's data budget is nearly used. Important items are still sent.",
    "ERROR": "Sending stopped on an error (below). Fix it, then press Retry now in the outbox.",
    "NOT_CONFIGURED": "No control plane is set up: everything stays on this laptop. "
    "To hand it over without a network, use Export… in the outbox.",
}


def human_bytes(n: int) -> str:
    """312 B, 312 kB, 50 MB, 1.2 GB — decimal units, as data plans count."""
    value = float(max(n, 0))
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def state_key(state: Any) -> str:
    """``SyncState.NOT_CONFIGURED`` (or its value "not_configured" / "not-configured") -> "NOT_CONFIGURED"."""
    name = getattr(state, "name", None) or str(state)
    return name.upper().replace("-", "_")


def local_time(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def dot_icon(colour: QColor, size: int = 12) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colour)
    painter.drawEllipse(1, 1, size - 2, size - 2)
    painter.end()
    return QIcon(pixmap)


def default_state_colour(widget: QWidget) -> Callable[[str], QColor]:
    """The theme's state colours for the widget's palette (light or dark), grey for "idle"."""
    dark = widget.palette().color(QPalette.ColorRole.Window).lightness() < 128
    colours = STATE_COLOURS["dark" if dark else "light"]
    grey = widget.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText)
    return lambda key: QColor(colours[key]) if key in colours else grey


class SyncStatusWidget(QWidget):
    """``Control plane: offline · 12 waiting · 312 kB of 50 MB``; click to open the outbox."""

    sig_clicked = Signal()
    """The person wants the outbox panel."""
    _sig_status_posted = Signal(object)

    def __init__(self, state_colour: Callable[[str], QColor] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("syncStatus")
        self._state_colour = state_colour
        self.status: SyncStatus | None = None
        self.button = QPushButton()
        self.button.setObjectName("syncStatusButton")
        self.button.setFlat(True)
        self.button.setIconSize(QSize(12, 12))
        self.button.clicked.connect(self.sig_clicked.emit)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        self._sig_status_posted.connect(self.set_status)
        self.word = "not configured"
        self._show("NOT_CONFIGURED", "Control plane: not configured", _EXPLAIN["NOT_CONFIGURED"])

    def on_status(self, status: SyncStatus) -> None:
        """A Syncer listener: safe from any thread (the update runs in the GUI thread)."""
        self._sig_status_posted.emit(status)

    def set_status(self, status: SyncStatus) -> None:
        self.status = status
        key = state_key(status.state)
        self.word = _STATES.get(key, (key.lower().replace("_", " "), "down"))[0]
        parts = [f"Control plane: {self.word}"]
        if key != "NOT_CONFIGURED" or status.waiting:
            parts.append(f"{status.waiting:,} waiting")
        used = human_bytes(status.bytes_this_month)
        parts.append(f"{used} of {human_bytes(status.budget)}" if status.budget else f"{used} this month")
        tip = [_EXPLAIN.get(key, "")]
        if status.message:
            tip.append(status.message)
        tip.append(f"Last item acknowledged: {local_time(status.last_ack)}")
        if status.budget:
            share = 100 * status.bytes_this_month / status.budget
            tip.append(f"Data this month: {used} of {human_bytes(status.budget)} ({share:.0f} %)")
        tip.append("Click to open the outbox.")
        self._show(key, " · ".join(parts), "\n".join(t for t in tip if t))

    def _show(self, key: str, text: str, tip: str) -> None:
        colour_key = _STATES.get(key, ("", "down"))[1]
        colour = (self._state_colour or default_state_colour(self))(colour_key)
        self.colour = colour
        self.button.setIcon(dot_icon(colour))
        self.button.setText(text)
        self.button.setToolTip(tip)
