"""The MQTT topic tree as a Qt item model fed by the intake child process (core/mqtt_intake.py).

The UI process holds no topic tree and runs no intake thread: each tick (``interval_ms``) it asks the
child for the rows on screen and the selected topic, and applies the small answer when it arrives on
the loop (``add_reader``): new rows (parents first, at most ``MAX_NEW`` per answer, built detached and
attached with one insert per new subtree) and the texts of the asked rows (signals blocked, then one
``dataChanged`` range per parent). Like MqttTreeModel it is a QStandardItemModel: views and the sort
proxy paint from C++ strings without calling into Python.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QTreeView

from siteline.core.mqtt_intake import Query, Snapshot, TopicStats
from siteline.core.mqtt_intake_client import IntakeClient
from siteline.ui.mqtt_tree_model import (
    COL_COUNT,
    COL_PAYLOAD,
    COL_RATE,
    COL_TOPIC,
    COLUMNS,
    NODE_ROLE,
    SORT_ROLE,
    announce_spans,
    natural_key,
    widen_span,
)

log = logging.getLogger(__name__)
Index = QModelIndex | QPersistentModelIndex
_DISPLAY = Qt.ItemDataRole.DisplayRole
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
MORE_SOON_MS = 30  # when new topics wait (here or in the child), go on this soon instead of a full tick
BUILD_BUDGET = 0.008  # seconds of building new rows per pass: a row costs 50-150 µs behind a sorting proxy


def parent_topic(topic: str) -> str | None:
    """The parent's full topic, None for a top-level one ('' is a real level: '/a' is under '')."""
    head, sep, _name = topic.rpartition("/")
    return head if sep else None


class RemoteTreeModel(QStandardItemModel):
    """Columns Topic, Messages (the subtree's), Rate (/s), Last payload; rows keyed by full topic."""

    sig_snapshot_applied = Signal(object)
    """A snapshot (siteline.core.mqtt_intake.Snapshot) from the child was applied to the rows."""

    def __init__(self, *, interval_ms: int = 200, parent: QObject | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self._items: dict[str, list[QStandardItem]] = {}
        self._waiting: deque[str] = deque()  # new topics not built yet (over BUILD_BUDGET)
        self._build_soon = False
        self.client: IntakeClient | None = None
        # What to ask for each tick: the rows a view shows, the selected topic with the message count the UI
        # already shows for it (its payloads come only when that changed), and the expanded parents.
        self.on_screen: Callable[[], list[str]] = list
        self.selection: Callable[[], tuple[str | None, int]] = lambda: (None, -1)
        self.expanded: set[str] = set()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self.polls = 0
        self.applied = 0

    # ---- feeding -------------------------------------------------------------------------------

    def set_client(self, client: IntakeClient | None) -> None:
        """Poll ``client`` every tick and show its answers (None stops)."""
        if self.client is not None:
            self.client.on_snapshot = None
        self.client = client
        if client is None:
            self.timer.stop()
            return
        client.on_snapshot = self.apply
        # Rows are long-lived Python wrappers; making thousands of them triggers full collections that scan the
        # whole process (PySide6's types, every module): 140 ms stalls in bench/mqtt_topics.py. Freezing what
        # exists now takes it out of those scans. Process-wide, and harmless to repeat.
        gc.collect()  # garbage of earlier windows is freed first, not frozen for good
        gc.freeze()
        self.timer.start()
        self.tick()

    def tick(self) -> None:
        """Ask the child for a snapshot (skipped while the previous one is unanswered)."""
        client = self.client
        if client is None:
            return
        selected, count = self.selection()
        query = Query(tuple(self.on_screen()), selected, count, tuple(self.expanded))
        if client.poll(query):
            self.polls += 1

    def apply(self, snapshot: Snapshot) -> None:
        self.add_topics(snapshot.new)
        self.set_stats(snapshot.stats)
        self.applied += 1
        self.sig_snapshot_applied.emit(snapshot)
        if snapshot.more and not self._waiting and self.client is not None:
            QTimer.singleShot(MORE_SOON_MS, self.tick)

    def add_topics(self, paths: Iterable[str], budget: float | None = None) -> int:
        """Queue rows for ``paths`` (a parent before its children) and build for up to ``budget`` seconds
        (BUILD_BUDGET by default); the rest follow in later passes, soon. Returns the rows built."""
        self._waiting.extend(paths)
        built = self._build(time.perf_counter() + (BUILD_BUDGET if budget is None else budget))
        if self._waiting and not self._build_soon:
            self._build_soon = True
            QTimer.singleShot(MORE_SOON_MS, self._build_more)
        return built

    def _build_more(self) -> None:
        self._build_soon = False
        self.add_topics(())

    # ---- rows ----------------------------------------------------------------------------------

    def _build(self, deadline: float) -> int:
        """Rows for waiting topics until ``deadline`` (at least one). A new subtree is built detached and
        attached (one insert signal) when the next one starts, so the deadline counts the attaching too."""
        items, waiting = self._items, self._waiting
        built = 0
        top: tuple[str | None, list[QStandardItem]] | None = None  # the subtree being built, detached
        detached: set[str] = set()
        while waiting and (not built or time.perf_counter() < deadline):
            path = waiting.popleft()
            if path in items:
                continue
            parent = parent_topic(path)
            if parent is not None and parent not in items:
                log.warning("the MQTT intake named '%s' before its parent; skipped", path[:80])
                continue
            row = _new_row(path.rpartition("/")[2], path)
            if parent in detached:
                items[parent][0].appendRow(row)  # detached still: no signal
            else:
                if top is not None:
                    self._attach(*top)
                top, detached = (parent, row), set()
            items[path] = row
            detached.add(path)
            built += 1
        if top is not None:
            self._attach(*top)
        return built

    def _attach(self, parent: str | None, row: list[QStandardItem]) -> None:
        (self.invisibleRootItem() if parent is None else self._items[parent][0]).appendRow(row)

    def set_stats(self, stats: Mapping[str, TopicStats]) -> None:
        """Set the texts of these rows, then one dataChanged range per parent."""
        items = self._items
        spans: dict[str | None, list[int]] = {}
        blocked = self.blockSignals(True)
        try:
            for topic, st in stats.items():
                cells = items.get(topic)
                if cells is None:
                    continue
                _fill(cells, st)
                widen_span(spans, parent_topic(topic), cells[0].row())
        finally:
            self.blockSignals(blocked)
        announce_spans(self, [(self.index_of(parent) if parent is not None else QModelIndex(), span)
                              for parent, span in spans.items()])

    def clear(self) -> None:
        """Start again with no rows (a new connection); stops polling (set_client again)."""
        self.set_client(None)
        self._items.clear()  # before the items go: their Python wrappers die with them
        self._waiting.clear()
        self.removeRows(0, self.rowCount())
        self.expanded.clear()

    # ---- lookups -------------------------------------------------------------------------------

    def index_of(self, topic: str) -> QModelIndex:
        """The Topic-column index of a row the model has, else an invalid index."""
        cells = self._items.get(topic)
        return cells[0].index() if cells is not None else QModelIndex()

    def has(self, topic: str) -> bool:
        return topic in self._items

    @property
    def topic_count(self) -> int:
        return len(self._items)


def topic_of(index: Index) -> str | None:
    """The full topic of a row of the model or of a proxy over it."""
    if not index.isValid():
        return None
    topic = index.sibling(index.row(), COL_TOPIC).data(NODE_ROLE)
    return topic if isinstance(topic, str) else None


def _new_row(name: str, topic: str) -> list[QStandardItem]:
    item = QStandardItem(name if name else "(empty)")
    item.setData(natural_key(name), SORT_ROLE)
    item.setData(topic, NODE_ROLE)
    count, rate = QStandardItem(), QStandardItem()
    count.setTextAlignment(_RIGHT)
    rate.setTextAlignment(_RIGHT)
    return [item, count, rate, QStandardItem()]


def _fill(cells: list[QStandardItem], st: TopicStats) -> None:
    """Texts formatted once here (views only copy C++ strings); numbers as numbers for the sort proxy."""
    cells[COL_COUNT].setData(f"{st.total:,}", _DISPLAY)
    cells[COL_COUNT].setData(st.total, SORT_ROLE)
    cells[COL_RATE].setData(f"{st.rate:,.1f}" if st.rate else "", _DISPLAY)
    cells[COL_RATE].setData(st.rate, SORT_ROLE)
    cells[COL_PAYLOAD].setData(st.preview, _DISPLAY)
    cells[COL_PAYLOAD].setData(st.preview, SORT_ROLE)


def topics_on_screen(view: QTreeView, limit: int = 300) -> Callable[[], list[str]]:
    """For ``RemoteTreeModel.on_screen``: the topics of the rows ``view`` shows now (through a proxy or not)."""

    def topics() -> list[str]:
        bottom = view.viewport().height()
        index = view.indexAt(QPoint(1, 1))
        out: list[str] = []
        while index.isValid() and len(out) < limit and view.visualRect(index).top() < bottom:
            topic = topic_of(index)
            if topic is not None:
                out.append(topic)
            index = view.indexBelow(index)
        return out

    return topics
