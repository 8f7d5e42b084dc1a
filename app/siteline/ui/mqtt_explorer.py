"""MQTT Explorer: subscribe to a broker with wildcard filters, browse the live topic tree, inspect and publish.

The window only wires widgets to core: an IntakeClient runs the subscriber and the TopicTree in a child
process (core/mqtt_intake.py: under a flood the UI process has no CPU-bound thread to share the GIL
with), the RemoteTreeModel asks it once per tick for the rows on screen and the selected topic and
turns the answers into view updates; payload formatting comes from core too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from PySide6.QtCore import QItemSelection, QModelIndex, Qt
from PySide6.QtGui import QCloseEvent, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from siteline.core.errors import SitelineError
from siteline.core.keep import publish_detail
from siteline.core.mqtt_intake import Published, Selected, Snapshot
from siteline.core.mqtt_intake_client import IntakeClient
from siteline.core.mqtt_subscriber import parse_filters
from siteline.core.mqtt_topics import Payload, payload_text
from siteline.core.transports.base import ConnectionState, ConnState, Credentials
from siteline.ui.help_text import HelpLine
from siteline.ui.mqtt_remote_model import RemoteTreeModel, topic_of, topics_on_screen
from siteline.ui.mqtt_tree_model import COL_COUNT, COL_RATE, COL_TOPIC, TopicSortProxy

log = logging.getLogger(__name__)
ClientFactory = Callable[[str, list[str], Credentials], IntakeClient]


def _default_factory(url: str, filters: list[str], credentials: Credentials) -> IntakeClient:
    return IntakeClient(url, filters, credentials=credentials)


class MqttExplorer(QMainWindow):
    """A window of its own (Tools → MQTT Explorer…); several can be open at once."""

    def __init__(self, url: str = "", filters: str = "#", *, factory: ClientFactory = _default_factory,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("MQTT Explorer — Siteline")
        self.resize(1280, 780)
        self._factory = factory
        self.client: IntakeClient | None = None
        self._busy: asyncio.Future[object] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._shown_count = -1  # how many messages of the selected topic the payload pane shows
        self.last: Snapshot | None = None  # the latest answer from the intake
        self._publishing = ""  # the topic of the latest publish, for its outcome
        self._publish_detail: dict[str, Any] = {}
        # Told of every publish and how it ended (the window puts it in the audit trail): broker, detail, result.
        self.on_publish_done: Callable[[str, dict[str, Any], str], None] | None = None
        self.model = RemoteTreeModel(parent=self)
        self.proxy = TopicSortProxy(self)  # C++ at paint time like the model: views never call into Python
        self._build(url, filters)
        self.model.sig_snapshot_applied.connect(self._on_model_snapshot_applied)
        self.model.on_screen = topics_on_screen(self.tree_view)  # each tick asks only for these rows
        self.model.selection = lambda: (self.selected_topic(), self._shown_count)
        self.tree_view.expanded.connect(self._on_tree_expanded)
        self.tree_view.collapsed.connect(self._on_tree_collapsed)

    # ---- layout --------------------------------------------------------------------------------

    def _build(self, url: str, filters: str) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        self.help_line = HelpLine("mqtt_explorer")
        layout.addWidget(self.help_line)
        layout.addLayout(self._build_connection_row(url, filters))
        split = QSplitter(Qt.Orientation.Horizontal, central)
        split.addWidget(self._build_tree_side())
        split.addWidget(self._build_payload_side())
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)
        layout.addLayout(self._build_publish_row())
        self.setCentralWidget(central)
        self.stats = QLabel("Not connected.")
        self.statusBar().addWidget(self.stats, 1)
        self._set_connected_ui(False)

    def _build_connection_row(self, url: str, filters: str) -> QHBoxLayout:
        row = QHBoxLayout()
        self.url_edit = QLineEdit(url)
        self.url_edit.setPlaceholderText("mqtt://broker:1883  or  mqtts://user@broker:8883?ca=/path/ca.pem")
        self.password_edit = QLineEdit()
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.password_edit.setPlaceholderText("password (if any)")
        self.password_edit.setMaximumWidth(160)
        self.filters_edit = QLineEdit(filters)
        self.filters_edit.setPlaceholderText("filters: edge/+/telemetry/#, site/#")
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self._on_connect_clicked)
        self.state_label = QLabel("down")
        self.state_label.setMinimumWidth(220)
        for label, widget, stretch in (("Broker", self.url_edit, 3), ("", self.password_edit, 0),
                                       ("Filters", self.filters_edit, 2)):
            if label:
                row.addWidget(QLabel(label))
            row.addWidget(widget, stretch)
        row.addWidget(self.connect_button)
        row.addWidget(self.state_label)
        return row

    def _build_tree_side(self) -> QWidget:
        side = QWidget()
        box = QVBoxLayout(side)
        box.setContentsMargins(0, 0, 0, 0)
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Show topics containing…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(self._on_search_text_changed)
        self.proxy.setSourceModel(self.model)
        self.tree_view = QTreeView()
        self.tree_view.setModel(self.proxy)
        self.tree_view.setUniformRowHeights(True)  # lets the view skip measuring thousands of rows
        self.tree_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree_view.setAlternatingRowColors(True)
        self.tree_view.setSortingEnabled(True)
        self.tree_view.sortByColumn(COL_TOPIC, Qt.SortOrder.AscendingOrder)
        self.tree_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.tree_view.header()
        # Interactive, never ResizeToContents: that measures every row of a big tree on each repaint.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.resizeSection(COL_TOPIC, 300)
        for col in (COL_COUNT, COL_RATE):
            header.resizeSection(col, 90)
        header.setStretchLastSection(True)
        self.tree_view.selectionModel().selectionChanged.connect(self._on_tree_selection_changed)
        box.addWidget(self.search_edit)
        box.addWidget(self.tree_view, 1)
        return side

    def _build_payload_side(self) -> QWidget:
        side = QWidget()
        box = QVBoxLayout(side)
        box.setContentsMargins(0, 0, 0, 0)
        self.topic_label = QLabel("Select a topic to see its last messages.")
        self.topic_label.setWordWrap(True)
        self.topic_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.history = QListWidget()
        self.history.setMaximumHeight(180)
        self.history.currentRowChanged.connect(self._on_history_row_changed)
        self.payload_view = QPlainTextEdit()
        self.payload_view.setReadOnly(True)
        self.payload_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        box.addWidget(self.topic_label)
        box.addWidget(self.history)
        box.addWidget(self.payload_view, 1)
        return side

    def _build_publish_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.pub_topic = QLineEdit()
        self.pub_topic.setPlaceholderText("topic to publish to")
        self.pub_payload = QLineEdit()
        self.pub_payload.setPlaceholderText("payload (text or JSON)")
        self.pub_qos = QComboBox()
        self.pub_qos.addItems(["QoS 0", "QoS 1", "QoS 2"])
        self.pub_retain = QCheckBox("Retain")
        self.pub_button = QPushButton("Publish")
        self.pub_button.clicked.connect(self._on_publish_clicked)
        row.addWidget(QLabel("Publish"))
        row.addWidget(self.pub_topic, 2)
        row.addWidget(self.pub_payload, 3)
        row.addWidget(self.pub_qos)
        row.addWidget(self.pub_retain)
        row.addWidget(self.pub_button)
        return row

    # ---- connection ----------------------------------------------------------------------------

    def _on_connect_clicked(self) -> None:
        if self._busy is not None and not self._busy.done():
            return
        work: Coroutine[object, object, object] = (
            self.disconnect_broker() if self.client is not None else self.connect_broker())
        self._busy = asyncio.ensure_future(work)
        self._busy.add_done_callback(_log_failure)

    async def connect_broker(self) -> bool:
        """Connect with the fields' values; on failure the state label says what happened and what to do."""
        try:
            filters = parse_filters(self.filters_edit.text())
            creds = Credentials(password=self.password_edit.text() or None)
            client = self._factory(self.url_edit.text(), filters, creds)
        except SitelineError as exc:
            self._show_error(exc)
            return False
        self.model.clear()
        self.last = None
        self._show_topic(None)
        self.client = client
        self._remove_listener = client.add_state_listener(self._on_client_state_changed)
        client.on_published = self._on_client_published
        self.connect_button.setEnabled(False)
        try:
            await client.connect()
        except SitelineError as exc:
            self._drop_client()
            self._show_error(exc)
            return False
        finally:
            self.connect_button.setEnabled(True)
        self.model.set_client(client)
        self._set_connected_ui(True)
        return True

    async def disconnect_broker(self) -> None:
        client = self.client
        if client is None:
            return
        self.model.set_client(None)  # what was already received stays shown
        await client.close()
        self._drop_client()
        self._set_connected_ui(False)
        self.state_label.setText("down: disconnected")

    def _drop_client(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        if self.client is not None:
            self.client.on_published = None
        self._remove_listener, self.client = None, None
        self._set_connected_ui(False)

    def _show_error(self, exc: SitelineError) -> None:
        text = str(exc)  # what happened, then what to do
        self.state_label.setText("error")
        self.state_label.setToolTip(text)
        self.stats.setText(text)

    def _set_connected_ui(self, connected: bool) -> None:
        self.connect_button.setText("Disconnect" if connected else "Connect")
        for w in (self.url_edit, self.password_edit, self.filters_edit):
            w.setEnabled(not connected)
        self.pub_button.setEnabled(connected)

    def _on_client_state_changed(self, state: ConnectionState) -> None:
        colour = {ConnState.UP: "#2e7d32", ConnState.RETRYING: "#e65100", ConnState.CONNECTING: "#1565c0"}
        self.state_label.setText(f"<b style='color:{colour.get(state.state, '#b71c1c')}'>{state.state.value}</b>")
        self.state_label.setToolTip(state.describe())

    def _on_publish_clicked(self) -> None:
        client = self.client
        if client is None:
            return
        topic = self.pub_topic.text()
        payload, qos = self.pub_payload.text().encode(), self.pub_qos.currentIndex()
        retain = self.pub_retain.isChecked()
        try:
            client.publish(topic, payload, qos, retain)
        except SitelineError as exc:
            self._show_error(exc)
            return
        self._publish_detail = publish_detail(topic, payload, qos, retain)
        self._publishing = topic
        self.stats.setText(f"Publishing to {topic}…")

    def _on_client_published(self, outcome: Published) -> None:
        if outcome.error is not None:
            self._show_error(outcome.error)
        else:
            self.stats.setText(f"Published to {self._publishing}.")
        if self.on_publish_done is not None and self._publish_detail:
            result = "ok" if outcome.error is None else "error"
            self.on_publish_done(self.url_edit.text().split("?")[0][:200], self._publish_detail, result)
            self._publish_detail = {}

    # ---- tree and payload pane -----------------------------------------------------------------

    def _on_tree_expanded(self, index: QModelIndex) -> None:
        topic = topic_of(index)
        if topic is not None:
            self.model.expanded.add(topic)

    def _on_tree_collapsed(self, index: QModelIndex) -> None:
        self.model.expanded.discard(topic_of(index) or "")

    def _on_search_text_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        if text:
            self.tree_view.expandAll()

    def _on_model_snapshot_applied(self, snap: Snapshot) -> None:
        self.last = snap
        t = snap.totals
        parts = [f"{t.messages:,} messages on {t.topics:,} topic levels", f"{t.rate:,.0f} msg/s"]
        if t.dropped:
            parts.append(f"{t.dropped:,} dropped (the display fell behind)")
        warnings = t.warnings
        self.stats.setText("  ·  ".join(parts) + ("  ·  ⚠ " + warnings[0] if warnings else ""))
        self.stats.setToolTip("\n".join(warnings))
        sel = snap.selected
        if sel is not None and sel.topic == self.selected_topic():
            self._show_selected(sel)

    def selected_topic(self) -> str | None:
        rows = self.tree_view.selectionModel().selectedRows()
        return topic_of(rows[0]) if rows else None

    def select_topic(self, topic: str) -> bool:
        """Select ``topic`` in the tree (expanding its parents); False when it is not shown yet."""
        index = self.proxy.mapFromSource(self.model.index_of(topic))
        if not index.isValid():
            return False
        self.tree_view.expand(index.parent())
        self.tree_view.setCurrentIndex(index)
        self.tree_view.scrollTo(index)
        return True

    def _on_tree_selection_changed(self, _sel: QItemSelection, _desel: QItemSelection) -> None:
        self._show_topic(self.selected_topic())
        self.model.tick()  # its payloads now, not at the next tick

    def _show_topic(self, topic: str | None) -> None:
        """A new selection: an empty pane until the intake sends the topic's messages."""
        self.history.blockSignals(True)
        self.history.clear()
        self.history.blockSignals(False)
        self.payload_view.clear()
        self._shown_count = -1
        self.topic_label.setText("Select a topic to see its last messages." if topic is None else
                                 f"<b>{topic or '(empty)'}</b><br>…")

    def _show_selected(self, sel: Selected) -> None:
        self.topic_label.setText(f"<b>{sel.topic or '(empty)'}</b><br>{sel.count:,} messages here, "
                                 f"{sel.total:,} in the subtree, {sel.rate:,.1f}/s")
        if sel.payloads is None:  # what the pane shows is current
            return
        self._shown_count = sel.count
        row = self.history.currentRow()
        self.history.blockSignals(True)
        self.history.clear()
        for p in reversed(sel.payloads):
            item = QListWidgetItem(_history_line(p))
            item.setData(Qt.ItemDataRole.UserRole, p)
            self.history.addItem(item)
        self.history.blockSignals(False)
        if self.history.count():
            self.history.setCurrentRow(0 if row <= 0 else min(row, self.history.count() - 1))  # shows it

    def _on_history_row_changed(self, row: int) -> None:
        item = self.history.item(row) if row >= 0 else None
        payload = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if not isinstance(payload, Payload):
            self.payload_view.clear()
            return
        kind, text = payload_text(payload.data)
        note = f"(truncated: {len(payload.data):,} of {payload.size:,} bytes kept)\n" if payload.truncated else ""
        self.payload_view.setPlainText(f"{note}{text}" if kind != "binary" else f"{note}binary payload\n{text}")

    def closeEvent(self, event: QCloseEvent) -> None:
        # The window may be deleted right after this (WA_DeleteOnClose): close the link without touching widgets.
        self.model.set_client(None)
        client = self.client
        if client is not None:
            if self._remove_listener is not None:
                self._remove_listener()
            client.on_published = None
            self._remove_listener, self.client = None, None
            asyncio.ensure_future(client.close()).add_done_callback(_log_failure)
        super().closeEvent(event)


def _history_line(p: Payload) -> str:
    when = dt.datetime.fromtimestamp(p.time).strftime("%H:%M:%S.%f")[:-3]
    flags = " retained" if p.retain else ""
    kind = payload_text(p.data[:256])[0] if p.data else "empty"
    return f"{when}   QoS {p.qos}{flags}   {p.size:,} B   {kind}"


def _log_failure(task: asyncio.Future[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.error("closing the MQTT explorer failed", exc_info=task.exception())

