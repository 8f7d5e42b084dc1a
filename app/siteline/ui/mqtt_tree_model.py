"""The MQTT topic tree as a Qt item model, refreshed in coalesced ticks: the in-process intake path.

The explorer now runs its intake in a child process (core/mqtt_intake.py, ui/mqtt_remote_model.py); this
model stays for ``bench/mqtt_topics.py --intake thread`` (the comparison) and shares its columns, roles,
natural sort key and TopicSortProxy with RemoteTreeModel.

Built so that the UI loop stays responsive under a flood (bench/mqtt_topics.py measures it):

- A QStandardItemModel, not a Python QAbstractItemModel: under a flood paho's network thread holds
  the GIL most of the time, and a repaint of a Python model calls into Python ~1,500 times (index,
  parent, data per role per cell), each call waiting for the GIL: 30-280 ms per repaint. Here the
  texts are C++ strings formatted once per tick, so views and the sort/filter proxy (TopicSortProxy,
  C++ too) paint without Python.
- A TreeFeeder thread drains the subscriber's buffer into the core TopicTree; the UI thread only
  takes the lock to swap the change lists. Ingesting on the UI thread, even in 8 ms slices, made
  a CPU-bound UI thread that the OS schedules late.
- Each tick (``interval_ms``) attaches new subtrees (built off-model, one ``appendRow`` each, at
  most BUILD_BUDGET seconds per tick) and refreshes only the rows on screen (``on_screen``, e.g.
  ``rows_on_screen(view, model)``), texts set with signals blocked and announced as one
  ``dataChanged`` range per parent; never ``layoutChanged``. Without ``on_screen`` it refreshes the
  changed rows below expanded parents (``watched``). Rows are appended in arrival order.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TypeVar

from PySide6.QtCore import (
    QAbstractProxyModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QTreeView

from siteline.core.mqtt_topics import RATE_WINDOW, RawMessage, TopicNode, TopicTree, TreeChanges, payload_preview, walk

log = logging.getLogger(__name__)
Index = QModelIndex | QPersistentModelIndex
Source = Callable[[int], list[RawMessage]]  # drain(limit) -> oldest messages first

COLUMNS = ("Topic", "Messages", "Rate (/s)", "Last payload")
COL_TOPIC, COL_COUNT, COL_RATE, COL_PAYLOAD = range(4)
SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # a value a proxy can compare (numbers for numeric columns)
NODE_ROLE = Qt.ItemDataRole.UserRole + 2  # the full topic of the row (also what the search filter matches)
_DISPLAY = Qt.ItemDataRole.DisplayRole
K = TypeVar("K")
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_DIGITS = re.compile(r"\d+")
GIL_SWITCH_INTERVAL = 0.0005  # seconds; see set_source
CHUNK = 250  # messages per ingest call: the budget is checked between chunks
FEEDER_IDLE = 0.005  # seconds the feeder waits when the source is empty
FEEDER_PAUSE = 0.001  # seconds the feeder rests after each batch
BUILD_BUDGET = 0.008  # seconds of building new rows per tick


def natural_key(name: str) -> str:
    """Sort key for a topic level: case-folded, numbers zero-padded so dev/2 comes before dev/10."""
    return _DIGITS.sub(lambda m: m.group().zfill(12), name.casefold())


class MqttTreeModel(QStandardItemModel):
    """Columns Topic, Messages (the subtree's), Rate (/s) and a preview of the last payload."""

    sig_tick_done = Signal(int)  # messages absorbed in the tick that just ended
    """Emitted after each drain tick, also an empty one."""

    def __init__(self, tree: TopicTree | None = None, *, interval_ms: int = 200,
                 clock: Callable[[], float] = time.time, parent: QObject | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.tree = tree or TopicTree()
        self._clock = clock
        self._source: Source | None = None
        self._items: dict[TopicNode, list[QStandardItem]] = {}  # the row of every node on the model
        self._waiting: list[TopicNode] = []  # tops of new subtrees not built yet (over BUILD_BUDGET)
        self._recent: dict[TopicNode, float] = {}  # changed lately: their rate still moves
        self.watched: set[TopicNode] | None = None  # parents whose children are on screen; None: all
        # The rows a view shows right now: when set, each tick refreshes those (and only those) instead of
        # every changed row below a watched parent, so a tick costs the same at 100 or 100,000 topics.
        self.on_screen: Callable[[], Iterable[TopicNode]] | None = None
        self.absorbed = 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.tick)
        self._feeder: TreeFeeder | None = None  # set while a source is drained on its own thread

    # ---- feeding -------------------------------------------------------------------------------

    def set_source(self, source: Source | None) -> None:
        """Drain ``source`` on a feeder thread and show the results on every tick (None stops both)."""
        if self._feeder is not None:
            self._feeder.stop()
            with self._feeder.held():  # what it took in since the last tick still counts
                self.absorbed += self._feeder.take_count()
            self._feeder = None
        self._source = source
        if source is None:
            self.timer.stop()
            return
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
            # paho's network thread and the feeder are CPU-bound under a flood. With Python's default 5 ms switch
            # interval the UI thread waits up to 5 ms for the GIL each time it needs it (the loop watcher, the
            # tick), and paho as long after each recv(): both starve (bench/mqtt_topics.py: ratio 0.57 -> 0.83).
            # Lowering it is process-wide, hence only ever lowered.
            sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        self._feeder = TreeFeeder(source, self.tree)
        self._feeder.start()
        self.timer.start()

    def tick(self) -> None:
        """Show what changed since the last tick (without a feeder thread: drain the source first)."""
        feeder, tree = self._feeder, self.tree
        with self.locked():  # only to swap the change lists: the feeder goes on while rows are set
            absorbed = self._ingest_all() if feeder is None else feeder.take_count()
            changes = TreeChanges(tree.take_added()) if self.on_screen is not None else tree.drain_changes()
        self.apply(changes)
        self.absorbed += absorbed
        self.sig_tick_done.emit(absorbed)

    def _ingest_all(self) -> int:
        """Drain the source here and now: ticks driven by hand (tests) and a last tick after a disconnect."""
        n = 0
        while self._source is not None and (batch := self._source(CHUNK)):
            n += self.tree.ingest_batch(batch)
        return n

    def locked(self) -> AbstractContextManager[object]:
        """Hold this while reading the tree from the UI thread: the feeder thread writes it."""
        return self._feeder.held() if self._feeder is not None else contextlib.nullcontext()

    def apply(self, changes: TreeChanges) -> None:
        built = self._build(changes.added)
        now = self._clock()
        if self.on_screen is not None:  # exactly the rows a person can see, however big the flood
            self._refresh([n for n in self.on_screen() if n not in built], now, anywhere=True)
            return
        recent = self._recent
        for node in changes.changed:
            recent[node] = now
        for node in changes.added:  # their rate moves for a while too
            recent[node] = now
        stale = [n for n, t in recent.items() if now - t > RATE_WINDOW + 1]
        for node in stale:  # one last update so the rate reads 0
            del recent[node]
        self._refresh([n for n in (*recent, *stale) if n not in built], now)

    # ---- rows ----------------------------------------------------------------------------------

    def _build(self, added: list[TopicNode]) -> set[TopicNode]:
        """Attach new subtrees (one insert signal each) for up to BUILD_BUDGET seconds; returns the nodes built.

        A burst of new topics (thousands at once when a subscription starts) then shows over a few ticks
        instead of freezing one: building a row costs ~30 µs of calls into Qt. A subtree too big for one
        tick is cut: what is left waits as new subtrees under the rows already attached.
        """
        items, root = self._items, self.tree.root
        tops = self._waiting
        tops.extend(n for n in added if n not in items and (n.parent is root or n.parent in items))
        built: set[TopicNode] = set()
        deadline = time.perf_counter() + BUILD_BUDGET
        done, now = 0, self._clock()
        while done < len(tops) and (not built or time.perf_counter() < deadline):  # always some progress
            top = tops[done]
            done += 1
            if top in items:  # already built, inside a subtree attached earlier
                continue
            row, rest = self._row_tree(top, built, now, deadline)
            parent = top.parent
            (self.invisibleRootItem() if parent is root or parent is None else items[parent][0]).appendRow(row)
            tops[done:done] = rest
        del tops[:done]
        return built

    def _row_tree(self, top: TopicNode, built: set[TopicNode], now: float,
                  deadline: float) -> tuple[list[QStandardItem], list[TopicNode]]:
        """The row for ``top`` with its subtree below it (as much as the deadline allows), built before the model
        sees any of it; and the tops of what is left."""
        items, root, watched = self._items, self.tree.root, self.watched
        rest: list[TopicNode] = []
        nodes = walk(top)  # parents before children
        for node in nodes:
            parent = node.parent
            if node is not top and time.perf_counter() > deadline:
                rest.extend(n for n in (node, *nodes) if n.parent in items)
                break
            row = self._new_row(node, now, watched is None or parent is root or parent in watched)
            items[node] = row
            built.add(node)
            if node is not top and parent is not None:
                items[parent][0].appendRow(row)
        return items[top], rest

    def _new_row(self, node: TopicNode, now: float, fill: bool) -> list[QStandardItem]:
        """A row; its numbers only when a view can see it (else the expand fills them)."""
        name = QStandardItem(node.name if node.name else "(empty)")
        name.setData(natural_key(node.name), SORT_ROLE)
        name.setData(node.topic, NODE_ROLE)
        count, rate = QStandardItem(), QStandardItem()
        count.setTextAlignment(_RIGHT)
        rate.setTextAlignment(_RIGHT)
        row = [name, count, rate, QStandardItem()]
        if fill:
            self._fill(row[COL_COUNT], row[COL_RATE], row[COL_PAYLOAD], node, now)
        return row

    @staticmethod
    def _fill(count: QStandardItem, rate: QStandardItem, payload: QStandardItem, node: TopicNode,
              now: float) -> None:
        """Set one row's texts, formatted here once per tick (views only copy C++ strings), and the values a
        proxy sorts by (numbers as numbers)."""
        count.setData(f"{node.total:,}", _DISPLAY)
        count.setData(node.total, SORT_ROLE)
        per_second = node.rate.per_second(now)
        rate.setData(f"{per_second:,.1f}" if per_second else "", _DISPLAY)
        rate.setData(per_second, SORT_ROLE)
        last = node.last
        text = "" if last is None else ("[retained] " if last.retain else "") + payload_preview(last.data)
        payload.setData(text, _DISPLAY)
        payload.setData(text, SORT_ROLE)

    def _refresh(self, nodes: Iterable[TopicNode], now: float, *, anywhere: bool = False) -> None:
        """Set the texts of ``nodes`` that a view can see (all of them if ``anywhere``), then one ``dataChanged``
        per parent."""
        root, watched, items = self.tree.root, None if anywhere else self.watched, self._items
        spans: dict[TopicNode, list[int]] = {}
        blocked = self.blockSignals(True)  # one ranged signal per parent below, not three per row
        try:
            for node in nodes:
                parent = node.parent
                cells = items.get(node)
                if cells is None or parent is None or (watched is not None and parent is not root
                                                       and parent not in watched):
                    continue  # collapsed: refreshed when expanded
                self._fill(cells[COL_COUNT], cells[COL_RATE], cells[COL_PAYLOAD], node, now)
                widen_span(spans, parent, cells[0].row())
        finally:
            self.blockSignals(blocked)
        announce_spans(self, [(self.index_for(parent), span) for parent, span in spans.items()])

    def set_watched(self, node: TopicNode, on_screen: bool) -> None:
        """A view expanded (or collapsed) ``node``: only watched parents get their children's texts refreshed.

        With ``watched`` None every row is refreshed (no view, or a search that expanded everything).
        """
        if self.watched is None:
            return
        if on_screen:
            self.watched.add(node)
            with self.locked():
                self._refresh(node.rows, self._clock())  # they may have changed while collapsed
        else:
            self.watched.discard(node)

    def clear(self) -> None:
        """Start again with an empty tree (a new connection); stops draining the source (set_source again)."""
        self.set_source(None)
        self._items.clear()  # before the items go: their Python wrappers die with them
        self._waiting.clear()
        self.removeRows(0, self.rowCount())
        self.tree = TopicTree(keep=self.tree.keep, payload_cap=self.tree.payload_cap,
                              payload_budget=self.tree.payload_budget, max_nodes=self.tree.max_nodes)
        self._recent.clear()
        if self.watched is not None:
            self.watched.clear()
        self.absorbed = 0

    # ---- lookups -------------------------------------------------------------------------------

    def node(self, index: Index) -> TopicNode:
        """The tree node of a row (the root for an invalid index or a row that has gone)."""
        if not index.isValid():
            return self.tree.root
        topic = index.siblingAtColumn(COL_TOPIC).data(NODE_ROLE)
        found = self.tree.find(topic) if isinstance(topic, str) else None
        return found or self.tree.root

    def index_for(self, node: TopicNode) -> QModelIndex:
        """The Topic-column index of ``node``, or an invalid index (the root, or not shown yet)."""
        cells = self._items.get(node)
        return cells[0].index() if cells is not None else QModelIndex()

    def index_of(self, topic: str) -> QModelIndex:
        """The index of a topic the views already know, else an invalid index."""
        node = self.tree.find(topic)
        return self.index_for(node) if node is not None else QModelIndex()


class TopicSortProxy(QSortFilterProxyModel):
    """Sorts topics naturally (dev/2 before dev/10) and numbers as numbers; filters on the full topic name.

    C++ all the way (the source model too): views paint through it without calling into Python.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterRole(NODE_ROLE)  # "dev/13" finds site/3/dev/13 and everything below it
        self.setRecursiveFilteringEnabled(True)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)


def rows_on_screen(view: QTreeView, model: MqttTreeModel, limit: int = 300) -> Callable[[], list[TopicNode]]:
    """For ``MqttTreeModel.on_screen``: the nodes of the rows ``view`` shows now (through a proxy or not).

    Walks from the top visible row down with indexBelow: ~40 rows, a fraction of a millisecond.
    """

    def nodes() -> list[TopicNode]:
        proxy = view.model()
        to_source = proxy.mapToSource if isinstance(proxy, QAbstractProxyModel) else None
        bottom = view.viewport().height()
        index = view.indexAt(QPoint(1, 1))
        out: list[TopicNode] = []
        while index.isValid() and len(out) < limit and view.visualRect(index).top() < bottom:
            out.append(model.node(to_source(index) if to_source else index))
            index = view.indexBelow(index)
        return out

    return nodes


class TreeFeeder:
    """Drains a source into a TopicTree on a thread of its own; the UI thread takes the lock only to read.

    Why a thread: ingesting a flood on the UI thread, even in 8 ms slices, stalled the loop 70-185 ms on
    a loaded 2-core machine (bench/mqtt_topics.py): a CPU-bound UI thread is scheduled late by the OS and
    loses the GIL to paho's thread mid-slice. With the work here the UI thread stays mostly idle, and is
    woken promptly. No Qt here: the tree is plain Python.
    """

    def __init__(self, source: Source, tree: TopicTree) -> None:
        self.source, self.tree = source, tree
        self.absorbed = 0  # since the UI last took the count (under the lock)
        self._lock = threading.Lock()
        self._ui_waiting = threading.Event()  # the UI thread wants the lock: step aside
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-tree-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The tree, to read or change from another thread. The feeder yields to a waiting UI thread first
        (a plain Lock is not fair: the feeder would take it back again and again)."""
        self._ui_waiting.set()
        try:
            with self._lock:
                yield
        finally:
            self._ui_waiting.clear()

    def take_count(self) -> int:
        """Messages absorbed since the previous call (call with the lock held)."""
        n, self.absorbed = self.absorbed, 0
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._ui_waiting.is_set():
                time.sleep(0.0002)
                continue
            try:
                batch = self.source(CHUNK)
                if not batch:
                    self._stop.wait(FEEDER_IDLE)
                    continue
                with self._lock:
                    self.absorbed += self.tree.ingest_batch(batch)
                # A breather after each batch (~1 ms of work): the GIL goes to the UI thread, which would otherwise
                # queue behind this thread and paho's (loop stalls 100-150 ms in the bench). At ~4 µs a message
                # this still absorbs over 100,000 messages a second.
                time.sleep(FEEDER_PAUSE)
            except Exception:  # a bug must not silently end the explorer's feed: log it and go on
                log.exception("the MQTT topic feeder failed on a batch; it goes on with the next")
                self._stop.wait(FEEDER_IDLE)


def widen_span(spans: dict[K, list[int]], parent: K, row: int) -> None:
    """Grow ``parent``'s [first, last] range of changed rows to include ``row``."""
    span = spans.get(parent)
    if span is None:
        spans[parent] = [row, row]
    else:
        span[0], span[1] = min(span[0], row), max(span[1], row)


def announce_spans(model: QStandardItemModel, spans: Iterable[tuple[QModelIndex, list[int]]]) -> None:
    """One dataChanged per parent for the rows whose texts were set with signals blocked."""
    for parent, (lo, hi) in spans:
        model.dataChanged.emit(model.index(lo, COL_COUNT, parent), model.index(hi, COL_PAYLOAD, parent),
                               [_DISPLAY, SORT_ROLE])
