"""The MQTT topic tree as a Qt item model, refreshed in coalesced ticks.

A QTimer drains the subscriber's buffer every ``interval_ms``, feeds the core TopicTree and turns
its change report into the fewest precise signals: one ``beginInsertRows`` per parent for new
topics (a new subtree arrives whole) and one ``dataChanged`` range per parent for counts. Views
never see a row move: children are only appended, so sorting (in a proxy) stays stable.

The model tells views only what it has announced: ``_shown`` holds, per node, how many of its
children the views know. The core tree may already hold more (they arrived since the last tick).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal

from siteline.core.mqtt_topics import RATE_WINDOW, RawMessage, TopicNode, TopicTree, TreeChanges, payload_preview, walk

Index = QModelIndex | QPersistentModelIndex
Source = Callable[[int], list[RawMessage]]  # drain(limit) -> oldest messages first

COLUMNS = ("Topic", "Messages", "Rate (/s)", "Last payload")
COL_TOPIC, COL_COUNT, COL_RATE, COL_PAYLOAD = range(4)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # a value a proxy can compare (numbers for numeric columns)
NODE_ROLE = Qt.ItemDataRole.UserRole + 2
_DISPLAY, _TOOLTIP = int(Qt.ItemDataRole.DisplayRole.value), int(Qt.ItemDataRole.ToolTipRole.value)
_ALIGN, _SORT, _NODE = int(Qt.ItemDataRole.TextAlignmentRole.value), int(SORT_ROLE), int(NODE_ROLE)
_HANDLED = frozenset((_DISPLAY, _TOOLTIP, _ALIGN, _SORT, _NODE))
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_DIGITS = re.compile(r"\d+")
GIL_SWITCH_INTERVAL = 0.0005  # seconds; see set_source
CHUNK = 500  # messages per ingest call: the budget is checked between chunks
TICK_BUDGET = 0.012  # seconds of ingest per slice; the rest continues after pending events


class MqttTreeModel(QAbstractItemModel):
    """Columns Topic, Messages (the subtree's), Rate (/s) and a preview of the last payload."""

    sig_tick_done = Signal(int)  # messages absorbed in the tick that just ended
    """Emitted after each drain tick, also an empty one."""

    def __init__(self, tree: TopicTree | None = None, *, interval_ms: int = 200,
                 clock: Callable[[], float] = time.time, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tree = tree or TopicTree()
        self._clock = clock
        self._source: Source | None = None
        self._shown: dict[TopicNode, int] = {self.tree.root: 0}
        self._recent: dict[TopicNode, float] = {}  # changed lately: their rate still moves
        self.watched: set[TopicNode] | None = None  # parents whose children are on screen; None: all
        self.absorbed = 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self._pending = 0  # absorbed since the last tick
        self._more = QTimer(self)  # continues a slice that ran out of budget, after pending events
        self._more.setSingleShot(True)
        self._more.setInterval(0)
        self._more.timeout.connect(self._ingest_slice)

    # ---- feeding -------------------------------------------------------------------------------

    def set_source(self, source: Source | None) -> None:
        """Drain ``source`` on every tick (None stops the timer)."""
        self._source = source
        if source is not None and sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
            # paho's network thread is CPU-bound under a flood. With Python's default 5 ms switch interval,
            # every time Qt calls into Python (thousands of times per repaint) the UI thread can wait up to
            # 5 ms for the GIL, and paho waits as long after each recv(): both starve (measured in
            # bench/mqtt_topics.py: ratio 0.57 -> 0.83). Lowering it is process-wide, hence only ever lowered.
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        if source is None:
            self.timer.stop()
            self._more.stop()
        else:
            self.timer.start()

    def tick(self) -> None:
        """Drain a slice of the buffer, then announce what changed since the last tick."""
        self._ingest_slice()
        absorbed, self._pending = self._pending, 0
        self.apply(self.tree.drain_changes())
        self.sig_tick_done.emit(absorbed)

    def _ingest_slice(self) -> None:
        """Ingest for at most TICK_BUDGET; if more is waiting, continue right after Qt's other events.

        Slicing keeps every stretch of work short (the event-loop stall) while a flood still gets all
        the time the loop has to spare; views hear about the result only on the timer's ticks.
        """
        if self._source is None:
            return
        deadline = time.perf_counter() + TICK_BUDGET
        while True:
            batch = self._source(CHUNK)
            if batch:
                n = self.tree.ingest_batch(batch)
                self._pending += n
                self.absorbed += n
            if len(batch) < CHUNK:
                return
            if time.perf_counter() > deadline:
                self._more.start()
                return

    def apply(self, changes: TreeChanges) -> None:
        self._insert(changes.added)
        now = self._clock()
        recent = self._recent
        for node in changes.changed:
            recent[node] = now
        for node in changes.added:
            recent[node] = now
        stale = [n for n, t in recent.items() if now - t > RATE_WINDOW + 1]
        for node in stale:  # one last update so the rate reads 0
            del recent[node]
        self._announce_changed([*recent, *stale])

    def _insert(self, added: list[TopicNode]) -> None:
        shown = self._shown
        tops: dict[TopicNode, list[TopicNode]] = {}
        for node in added:
            if node.parent is not None and node.parent in shown:  # the top of a new subtree
                tops.setdefault(node.parent, []).append(node)
        for parent, nodes in tops.items():
            first, last = shown[parent], len(parent.rows) - 1
            self.beginInsertRows(self.index_for(parent), first, last)
            shown[parent] = last + 1
            for top in nodes:
                for n in walk(top):
                    shown[n] = len(n.rows)
            self.endInsertRows()

    def _announce_changed(self, nodes: list[TopicNode]) -> None:
        root, watched = self.tree.root, self.watched
        spans: dict[TopicNode, list[int]] = {}
        for node in nodes:
            parent = node.parent
            if parent is None or (watched is not None and parent is not root and parent not in watched):
                continue  # collapsed: nothing to repaint, data() is read fresh on expand
            row = node.row
            span = spans.get(parent)
            if span is None:
                spans[parent] = [row, row]
            elif row < span[0]:
                span[0] = row
            elif row > span[1]:
                span[1] = row
        roles = [Qt.ItemDataRole.DisplayRole, SORT_ROLE]
        for parent, (lo, hi) in spans.items():
            pidx = self.index_for(parent)
            self.dataChanged.emit(self.index(lo, COL_COUNT, pidx), self.index(hi, COL_PAYLOAD, pidx), roles)

    def set_watched(self, node: TopicNode, on_screen: bool) -> None:
        """A view expanded (or collapsed) ``node``: only watched parents get ``dataChanged`` for children."""
        if self.watched is None:
            self.watched = set()
        if on_screen:
            self.watched.add(node)
        else:
            self.watched.discard(node)

    def clear(self) -> None:
        """Start again with an empty tree (a new connection)."""
        self.beginResetModel()
        self.tree = TopicTree(keep=self.tree.keep, payload_cap=self.tree.payload_cap,
                              payload_budget=self.tree.payload_budget, max_nodes=self.tree.max_nodes)
        self._shown = {self.tree.root: 0}
        self._recent.clear()
        if self.watched is not None:
            self.watched.clear()
        self.absorbed = self._pending = 0
        self.endResetModel()

    # ---- lookups -------------------------------------------------------------------------------

    def node(self, index: Index) -> TopicNode:
        if not index.isValid():
            return self.tree.root
        node = index.internalPointer()
        assert isinstance(node, TopicNode)
        return node

    def index_for(self, node: TopicNode) -> QModelIndex:
        if node.parent is None:
            return QModelIndex()
        return self.createIndex(node.row, 0, node)

    def index_of(self, topic: str) -> QModelIndex:
        """The index of a topic the views already know, else an invalid index."""
        node = self.tree.find(topic)
        if node is None or node.parent is None or node.row >= self._shown.get(node.parent, 0):
            return QModelIndex()
        return self.index_for(node)

    # ---- QAbstractItemModel --------------------------------------------------------------------

    def index(self, row: int, column: int, parent: Index = QModelIndex()) -> QModelIndex:  # noqa: B008
        # Called thousands of times per repaint (the proxy maps every cell): kept to the bare minimum.
        node: TopicNode = parent.internalPointer() if parent.isValid() else self.tree.root
        if 0 <= row < self._shown.get(node, 0) and 0 <= column < 4:
            return self.createIndex(row, column, node.rows[row])
        return QModelIndex()

    def parent(self, index: Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not index.isValid():
            return QModelIndex()
        return self.index_for(self.node(index).parent or self.tree.root)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        if parent.isValid() and parent.column() != 0:
            return 0
        return self._shown.get(self.node(parent), 0)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < 4:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Views ask for a dozen roles per visible cell on every repaint: answer the unhandled ones first, with
        # plain ints (comparing against Qt's enum members is slow in PySide6).
        if role not in _HANDLED or not index.isValid():
            return None
        node: TopicNode = index.internalPointer()
        col = index.column()
        if role == _DISPLAY:
            return self._display(node, col)
        if role == _SORT:
            return self._sort_key(node, col)
        if role == _NODE:
            return node.topic
        if role == _TOOLTIP:
            if col != COL_TOPIC:
                return None
            kind = "topic" if node.is_topic else "topic level"
            return f"{node.topic or '(empty)'}\n{kind}: {node.count} here, {node.total} in this subtree"
        return _RIGHT if col in (COL_COUNT, COL_RATE) else None  # the alignment role

    def _display(self, node: TopicNode, col: int) -> str:
        if col == COL_TOPIC:
            return node.name if node.name else "(empty)"
        if col == COL_COUNT:
            return f"{node.total:,}"
        if col == COL_RATE:
            rate = node.rate.per_second(self._clock())
            return f"{rate:,.1f}" if rate else ""
        last = node.last
        if last is None:
            return ""
        flag = "[retained] " if last.retain else ""
        return flag + payload_preview(last.data)

    def _sort_key(self, node: TopicNode, col: int) -> Any:
        if col == COL_TOPIC:  # natural order: dev/2 before dev/10
            return _DIGITS.sub(lambda m: m.group().zfill(12), node.name.casefold())
        if col == COL_COUNT:
            return node.total
        if col == COL_RATE:
            return node.rate.per_second(self._clock())
        last = node.last
        return payload_preview(last.data) if last else ""

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
