"""The Modem, Network, Slots and Posture tabs of the device page: each panel is built the first time its
tab is looked at (the modem panel's plot library costs start-up time most sessions never need) and fed
the shown device's latest snapshot of its kind.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from siteline.api import Network, Slots, Unavailable
from siteline.core.device.posture import Posture

KINDS = ("modem", "network", "slots", "posture")
TITLES = {"modem": "Modem", "network": "Network", "slots": "Slots", "posture": "Posture"}
WAITING = {
    "modem": "Waiting for the device's modem (ModemManager) to answer…",
    "network": "Waiting for the device's network (NetworkManager) to answer…",
    "slots": "Waiting for the device's A/B slots (RAUC, boot counters) to answer…",
    "posture": "Waiting for the device's security checks (encryption, firewall, SSH, certificate, clock)…",
}


def _make_panel(kind: str) -> QWidget:
    if kind == "modem":
        from siteline.ui.panels.modem_panel import ModemPanel

        return ModemPanel()
    if kind == "network":
        from siteline.ui.panels.network_panel import NetworkPanel

        return NetworkPanel()
    if kind == "slots":
        from siteline.ui.panels.slots_panel import SlotsPanel

        return SlotsPanel()
    from siteline.ui.panels.posture_panel import PosturePanel

    return PosturePanel()


def feed(kind: str, panel: Any, snapshot: Any) -> None:
    """Show ``snapshot`` on ``panel``: an area the device could not report shows why, with its raw output."""
    if snapshot is None:
        return
    if isinstance(snapshot, Unavailable):
        panel.show_unavailable(snapshot.reason, snapshot.raw)
    elif kind == "modem":
        # The modem probe's report carries the modem and its signal (either may be missing).
        modem, signal = getattr(snapshot, "modem", None), getattr(snapshot, "signal", None)
        if modem is not None:
            panel.show_modem(modem)
        if signal is not None:
            panel.show_signal(signal)
    elif kind == "network" and isinstance(snapshot, Network):
        panel.show_network(snapshot)
    elif kind == "slots" and isinstance(snapshot, Slots):
        panel.show_slots(snapshot)
    elif kind == "posture" and isinstance(snapshot, Posture):
        panel.show_posture(snapshot)


class PanelTab(QWidget):
    """One tab: a waiting line until the panel is wanted, then the panel."""

    sig_panel_built = Signal(object)
    """The panel was just made (its tab opened for the first time): the page connects its own signals."""

    def __init__(self, kind: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.panel: QWidget | None = None
        self.latest: Any = None
        self._layout = QVBoxLayout(self)
        self.waiting = QLabel(WAITING[kind])
        self.waiting.setObjectName(f"{kind}Waiting")
        self.waiting.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.waiting.setWordWrap(True)
        self._layout.addWidget(self.waiting)

    def show_snapshot(self, snapshot: Any, visible: bool) -> None:
        self.latest = snapshot
        if self.panel is None and visible and snapshot is not None:
            self.build()
        elif self.panel is not None:
            feed(self.kind, self.panel, snapshot)

    def build(self) -> None:
        """The tab was opened: make the panel and show what is known."""
        if self.panel is not None or self.latest is None:
            return
        self.waiting.hide()
        self.panel = _make_panel(self.kind)
        self._layout.addWidget(self.panel)
        self.sig_panel_built.emit(self.panel)
        feed(self.kind, self.panel, self.latest)

    def reset(self) -> None:
        """Another device is shown: its history is not this one's."""
        if self.panel is not None:
            self.panel.setParent(None)
            self.panel.deleteLater()
            self.panel = None
        self.latest = None
        self.waiting.show()
