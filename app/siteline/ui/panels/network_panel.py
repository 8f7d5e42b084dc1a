"""The Network panel: one sentence on which link carries traffic ("running on cellular backup since 14:02"),
the links NetworkManager knows (device, type, state, connection, priority, role), and the path changes seen.

The links table is a handful of rows replaced whole on each snapshot, so a QTableWidget is enough here.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from siteline.core.device.network import NetConnection, NetDevice, Network
from siteline.ui.help_text import HelpLine, explain, sentence
from siteline.ui.panels import UNKNOWN, ProblemsLabel, RawOutput, paint, plain_label, tone_colour

COLUMNS = ("Device", "Type", "State", "Connection", "Priority", "Role", "Traffic")
_HIDDEN_TYPES = ("loopback", "wifi-p2p")  # never an uplink; they only make the table longer
TRAFFIC = "◀ carries traffic"
MAX_HISTORY = 20


def headline(net: Network) -> tuple[str, str | None]:
    """The sentence read first, capitalised, and its tone (backup amber, offline red, wired green)."""
    text = net.summary[:1].upper() + net.summary[1:] if net.summary else "The network could not be read"
    if net.on_backup:
        return text, "warn"
    if net.active_iface is None:
        return text, "bad"
    return text, "good" if net.on_backup is False else None


def _connection_for(net: Network, dev: NetDevice) -> tuple[NetConnection | None, bool]:
    """The connection active on the device, else the profile that would come up on it (not active)."""
    for conn in net.connections:
        if conn.device == dev.name:
            return conn, True
    fallback = {"wired": net.primary, "cellular": net.backup}.get(dev.kind)
    if fallback is not None and fallback.device is None:
        return fallback, False
    return None, False


def _role(net: Network, conn: NetConnection | None) -> str:
    if conn is None:
        return ""
    if net.primary is not None and conn.uuid == net.primary.uuid and conn.name == net.primary.name:
        return "primary"
    if net.backup is not None and conn.uuid == net.backup.uuid and conn.name == net.backup.name:
        return "backup"
    return ""


def link_rows(net: Network) -> list[tuple[list[str], str | None]]:
    """The table's rows (cell texts) and each row's tone; pure so it can be tested without widgets."""
    rows: list[tuple[list[str], str | None]] = []
    carrier = net.active_device.name if net.active_device else None
    for dev in net.devices:
        if dev.type in _HIDDEN_TYPES:
            continue
        conn, active = _connection_for(net, dev)
        conn_text = UNKNOWN if conn is None else conn.name if active else f"{conn.name} (not active)"
        priority = UNKNOWN if conn is None or conn.priority is None else str(conn.priority)
        carries = dev.name == carrier
        iface = f" ({dev.ip_iface})" if dev.ip_iface and dev.ip_iface != dev.name else ""
        role = _role(net, conn)
        cells = [dev.name + iface, dev.type, dev.state, conn_text, priority, role, TRAFFIC if carries else ""]
        tone = "good" if carries else ("bad" if role and not dev.connected else None)
        rows.append((cells, tone))
    return rows


class NetworkPanel(QWidget):
    """Feed it ``show_network``; ``note_path_change`` adds to the "Path changes" list (newest first)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.network: Network | None = None
        self.history: list[tuple[datetime, str]] = []
        self.sentence = plain_label("Waiting for the device's network…", "networkSentence")
        font = self.sentence.font()
        font.setPointSizeF(max(font.pointSizeF(), 10.0) * 1.3)
        font.setBold(True)
        self.sentence.setFont(font)
        self.route = plain_label("", "networkRoute")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("networkLinks")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeaderItem(COLUMNS.index("Role")).setToolTip(sentence("Failover"))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.changes = plain_label("No path change seen yet in this session.", "networkChanges")
        self.problems = ProblemsLabel()
        self.raw = RawOutput()
        links = QGroupBox("Links")
        QVBoxLayout(links).addWidget(self.table)
        changes = QGroupBox("Path changes")
        QVBoxLayout(changes).addWidget(self.changes)
        self.help_line = HelpLine("network")
        explain(self.route, "Default route")
        layout = QVBoxLayout(self)
        layout.addWidget(self.help_line)
        layout.addWidget(self.sentence)
        layout.addWidget(self.route)
        layout.addWidget(self.problems)
        layout.addWidget(links)
        layout.addWidget(changes)
        layout.addWidget(self.raw)
        layout.addStretch(1)

    def show_network(self, net: Network) -> None:
        self.network = net
        text, tone = headline(net)
        self.sentence.setText(text)
        paint(self.sentence, tone)
        self.route.setText(_route_words(net))
        self._fill_table(net)
        self.problems.show_problems(net.problems, "Some of the network could not be read")
        self.raw.set_text(net.raw)

    def _fill_table(self, net: Network) -> None:
        rows = link_rows(net)
        self.table.setRowCount(len(rows))
        for r, (cells, tone) in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if tone and c in (0, 2, 6):  # colour the device, its state and the traffic mark, not the whole row
                    item.setForeground(tone_colour(self.table, tone))
                if cells[6]:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
        # As tall as its rows: a handful of links, and the space below is for the path changes.
        height = self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
        height += sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(height + 2)

    def note_path_change(self, at: datetime, text: str) -> None:
        """E.g. ``note_path_change(t, "wired eth0 down → cellular")``; keeps the last MAX_HISTORY."""
        self.history = [(at, text), *self.history][:MAX_HISTORY]
        self.changes.setText("\n".join(f"{when:%H:%M:%S}  {what}" for when, what in self.history))

    def show_unavailable(self, reason: str, raw: str = "") -> None:
        self.problems.show_error(f"Could not read the network: {reason}")
        self.raw.set_text(raw)

    def cell(self, row: int, column: str) -> str:
        item = self.table.item(row, COLUMNS.index(column))
        return item.text() if item else ""


def _route_words(net: Network) -> str:
    if not net.default_routes:
        return "No default route: the device cannot reach anything beyond its own networks."
    best = net.default_routes[0]
    via = f" via {best.gateway}" if best.gateway else ""
    dev = best.dev or ", ".join(d for d, _ in best.nexthops)
    note = " (link down)" if best.linkdown else ""
    return f"Default route: {dev}{via}, metric {best.metric}{note}"
