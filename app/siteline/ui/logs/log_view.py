"""The Logs panel: a virtual table of log lines with follow/pause, filters, search, time jump, copy, export, open.

Lines from a live stream are parsed as they come (in slices, so one huge batch cannot freeze the
window) and shown on a 100 ms tick with one insert for everything that arrived meanwhile. A file
from disk is indexed a few MB per idle moment: the first screen shows at once, the rest follows.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QLabel, QVBoxLayout, QWidget

from siteline.core.logs import LogFile, LogStore, Source
from siteline.ui.logs.exporter import Exporter
from siteline.ui.logs.file_feed import LOAD_LIMIT, FileFeed
from siteline.ui.logs.log_model import MESSAGE, FilterUnavailableError, LogFilter, LogModel
from siteline.ui.logs.log_table import make_table
from siteline.ui.logs.toolbar import LogToolbar, mark_field
from siteline.ui.logs.view_actions import LogActions
from siteline.ui.logs.words import SOURCE_WORDS, sniff_file

TICK_MS = 100  # how often new lines are shown: ten inserts a second whatever the line rate
# Lines parsed in one go (a few ms each): a bigger batch is split, and parsing yields to other events
# after DRAIN_BUDGET, so the worst stall depends on neither the batch size nor the line rate.
SLICE = 2_000
SLICES = {Source.JOURNAL: 800}  # a JSON line costs several times a text line
DRAIN_BUDGET = 0.02  # seconds of parsing per loop turn


class LogView(LogActions, QWidget):
    """What the device logged, as a table a technician can follow, filter, search and export."""

    sig_follow_changed = Signal(bool)
    """Follow was switched on (True: the newest line is kept in view) or off (paused)."""
    sig_export_finished = Signal(int, str)
    """An export ended: lines written, and '' or why nothing was written."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = LogModel(self)
        self.bar = LogToolbar(self._known_units, self)
        self.table, self.highlighter = make_table(self.model, self)
        self.status = QLabel("")
        self.status.setObjectName("logStatus")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        layout = QVBoxLayout(self)
        layout.addWidget(self.bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self._backlog: deque[tuple[list[str], Source]] = deque()
        self._following = True
        self._new_while_paused = 0
        self._auto_scroll = False  # True while the view itself moves the scroll bar
        self._status_text = ""
        self._source_word = ""
        self._last_status = ""
        self._tick = _timer(self, TICK_MS, self._on_tick_timeout, single=False)
        self._tick.start()
        self._drain_timer = _timer(self, 0, self._drain)
        self._feed: FileFeed | None = None  # the file from disk behind the view, if any
        self._exporter: Exporter | None = None  # the export running in the background, if any
        self._resume: tuple[str, bool, int, int] | None = None  # (text, forward, from row, stopped at): file search
        self.file_load_limit = LOAD_LIMIT  # bytes: bigger files are browsed from disk, not read in to filter
        self._filter_timer = _timer(self, 250, self._apply_filter)
        self._connect()
        self._update_status()

    def _connect(self) -> None:
        bar = self.bar
        bar.follow.toggled.connect(self.set_following)
        bar.jump.clicked.connect(lambda: self.set_following(True))
        bar.priority.currentIndexChanged.connect(lambda _i: self._filter_timer.start())
        bar.unit.currentTextChanged.connect(lambda _t: self._filter_timer.start())
        bar.regex.textChanged.connect(lambda _t: self._filter_timer.start())
        bar.regex.returnPressed.connect(self._apply_filter)
        bar.search.textChanged.connect(self._on_search_text_changed)
        bar.search.returnPressed.connect(lambda: self.find_next(True))
        bar.next.clicked.connect(lambda: self.find_next(True))
        bar.prev.clicked.connect(lambda: self.find_next(False))
        bar.when.returnPressed.connect(self._on_go_clicked)
        bar.go.clicked.connect(self._on_go_clicked)
        bar.copy.clicked.connect(self.copy_selection)
        bar.export.clicked.connect(self._on_export_clicked)
        bar.open.clicked.connect(self._on_open_clicked)
        self.table.sig_copy_requested.connect(self.copy_selection)
        scroll = self.table.verticalScrollBar()
        scroll.valueChanged.connect(self._on_scroll_value_changed)
        scroll.rangeChanged.connect(lambda _lo, _hi: self._keep_bottom())
        for keys, forward in (("F3", True), ("Shift+F3", False)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda forward=forward: self.find_next(forward))

    # -- the API the device page uses ------------------------------------------------------

    def append_lines(self, lines: list[str], source: Source, boot_time: float | None = None) -> None:
        """Parse and store lines in `source`'s format; they show on the next tick (one insert per tick).

        ``boot_time`` (the device's boot, epoch) turns dmesg's seconds since boot into times.
        """
        if not lines:
            return
        if boot_time is not None:
            self.model.boot_time = boot_time
        if self._feed is not None:  # a live stream replaces a file being browsed
            self._close_file()
        self._source_word = SOURCE_WORDS.get(source, "")
        self._backlog.append((list(lines), source))
        if not self._drain_timer.isActive():  # else the lines wait their turn behind the backlog
            self._drain()

    def set_status(self, text: str) -> None:
        """Where the lines come from, in words: 'following journalctl on gw-01', 'stream ended: ...'."""
        self._status_text = text
        self._update_status()

    def clear(self) -> None:
        """Forget every line (a new stream starts); the filters the technician chose stay."""
        self._backlog.clear()
        if self._feed is not None:
            self._close_file()
        else:
            self.model.reset_to()
        self._new_while_paused = 0
        self._resume = None
        self._source_word = ""
        self.bar.say("")
        if self._wanted_filter().active:
            self._apply_filter()
        self._update_status()

    def open_file(self, path: Path) -> None:
        """Browse a log file from disk; its format is guessed from the first lines."""
        path = Path(path)
        try:
            source = sniff_file(path)
            log = LogFile(path, source)
            log.index_more(max_bytes=1 << 20)  # the first screen, now; the rest in idle moments
        except OSError as exc:
            self.bar.say(f"Could not open {path}: {exc.strerror or exc}. Check the path and that you may read it.",
                         "bad")
            return
        self._backlog.clear()
        self._close_file()
        self.set_following(False)
        self.model.reset_to(file=log)
        self._feed = FileFeed(log, self, load_limit=self.file_load_limit)
        self._feed.sig_grew.connect(self._on_feed_grew)
        self._feed.sig_loaded.connect(self._on_feed_loaded)
        self._feed.start()
        self._source_word = self.model.source_word()
        self._new_while_paused = 0
        self.bar.say(f"Opened {path.name}: read as {SOURCE_WORDS[source]}.", None)
        self.table.scrollToTop()
        self._update_status()

    # -- ingest, tick, follow --------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Lines received but not parsed yet."""
        return sum(len(lines) for lines, _ in self._backlog)

    @property
    def following(self) -> bool:
        return self._following

    def _drain(self) -> None:
        deadline = time.perf_counter() + DRAIN_BUDGET
        while self._backlog and time.perf_counter() < deadline:
            lines, source = self._backlog[0]
            size = SLICES.get(source, SLICE)
            if len(lines) > size:
                self._backlog[0] = (lines[size:], source)
                lines = lines[:size]
            else:
                self._backlog.popleft()
            self.model.ingest(lines, source)
        if self._backlog and not self._drain_timer.isActive():
            self._drain_timer.start(0)

    def flush(self) -> int:
        """Parse everything received and show it now (tests, and before a search or export)."""
        while self._backlog:
            self._drain()
        return self._show_new()

    def _on_tick_timeout(self) -> None:
        self._show_new()
        self._update_status()

    def _show_new(self) -> int:
        added = self.model.flush()
        if added:
            if self._following:
                self._keep_bottom()
            else:
                self._new_while_paused += added
                self.bar.show_follow(False, self._new_while_paused)
        return added

    def _keep_bottom(self) -> None:
        if self._following:
            self._auto_scroll = True
            self.table.scrollToBottom()
            self._auto_scroll = False

    def set_following(self, following: bool) -> None:
        if following == self._following:
            self.bar.show_follow(following, self._new_while_paused)
            return
        self._following = following
        self._new_while_paused = 0
        self.bar.show_follow(following, 0)
        if following:
            self._show_new()
            self._keep_bottom()
        self.sig_follow_changed.emit(following)

    def _on_scroll_value_changed(self, value: int) -> None:
        if self._auto_scroll:
            return
        at_bottom = value >= self.table.verticalScrollBar().maximum()
        if self._following and not at_bottom:
            self.set_following(False)  # the technician scrolled up to read: stop moving the lines away
        elif not self._following and at_bottom and value > 0 and self._feed is None:
            self.set_following(True)  # scrolled back down to the newest line

    def _on_feed_grew(self) -> None:
        self._show_new()
        self._update_status()

    def _on_feed_loaded(self, store: LogStore) -> None:
        """Every line of the file is parsed: move the view onto the store (same rows) so filters work."""
        keep = self._current_line()
        selected = self.table.currentIndex().isValid()
        self._auto_scroll = True
        self.model.reset_to(store=store)
        self._auto_scroll = False
        if self._wanted_filter().active:
            self._apply_filter()  # typed while the file was being read
        elif keep is not None:
            row = self.model.row_at_or_after(keep)
            if row is not None:
                if selected:
                    self._select(row, pause=False)
                else:
                    self._auto_scroll = True
                    self.table.scrollTo(self.model.index(row, 0), QAbstractItemView.ScrollHint.PositionAtTop)
                    self._auto_scroll = False
        self._update_status()

    def _close_file(self) -> None:
        if self._feed is not None and self._exporter is not None and self.model.file is not None:
            self._exporter.cancel("the log file was closed before the export ended")
        if self._feed is not None:
            self._feed.stop()
            self._feed.deleteLater()
            self._feed = None
        self._reset_filters()
        self.model.reset_to()

    # -- filters ---------------------------------------------------------------------------

    def _known_units(self) -> list[str]:
        return self.model.store.units() if self.model.file is None else []

    def _wanted_filter(self) -> LogFilter:
        bar = self.bar
        typed = [part.strip() for part in bar.unit.wanted().split(",") if part.strip()]
        units: frozenset[str] | None = None
        if typed:
            known = self._known_units()
            # "sshd" also means "sshd.service": journald names units in full, people do not
            units = frozenset(typed) | {u for u in known for t in typed if u.startswith(t + ".")}
        return LogFilter(bar.priority.currentData(), units, bar.regex.text() or None)

    def _apply_filter(self) -> None:
        self._filter_timer.stop()
        self.flush()
        wanted = self._wanted_filter()
        keep = self._current_line()
        self._auto_scroll = True
        try:
            self.model.set_filter(wanted)
        except re.error as exc:
            mark_field(self.bar.regex, True)
            self.bar.say(f"The filter is not a valid pattern: {exc}. Fix it or clear it; the list is unchanged.", "bad")
            return
        except FilterUnavailableError:
            self.bar.say(self._why_no_filter(), "warn")
            return
        finally:
            self._auto_scroll = False
        mark_field(self.bar.regex, False)
        self.bar.say("" if self.model.rowCount() or not wanted.active else "No line matches these filters.",
                     "warn" if wanted.active else None)
        self._new_while_paused = 0
        if self._following:
            self._keep_bottom()
        elif keep is not None:
            row = self.model.row_at_or_after(keep)
            if row is not None:
                self._select(row, pause=False)
        self._update_status()

    def _why_no_filter(self) -> str:
        feed = self._feed
        if feed is not None and feed.too_big:
            return (f"This file is too big to filter here ({feed.size / 2**30:.1f} GB): it is browsed from disk. "
                    "Find and Go to time work.")
        done = feed.progress() if feed is not None else 0.0
        return f"Filters work once the file is read ({done:.0%} so far); they apply by themselves then."

    def _reset_filters(self) -> None:
        for widget in (self.bar.priority, self.bar.unit, self.bar.regex):
            widget.blockSignals(True)
        self.bar.priority.setCurrentIndex(0)
        self.bar.unit.setCurrentIndex(0)
        self.bar.unit.setEditText(self.bar.unit.itemText(0))
        self.bar.regex.clear()
        mark_field(self.bar.regex, False)
        for widget in (self.bar.priority, self.bar.unit, self.bar.regex):
            widget.blockSignals(False)
        self._filter_timer.stop()

    def showEvent(self, event: QShowEvent) -> None:
        if not self._tick.isActive():
            self._tick.start()
        super().showEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        """A closed panel lets go of its file (an open file would keep a deleted log's space on disk)."""
        if self._exporter is not None:
            self._exporter.cancel("the Logs panel was closed before the export ended")
        if self._feed is not None:
            self._close_file()
        self._tick.stop()
        super().closeEvent(event)

    # -- helpers ---------------------------------------------------------------------------

    def _select(self, row: int, pause: bool = True) -> None:
        if pause:
            self.set_following(False)  # the technician is looking at this line: do not scroll it away
        index = self.model.index(row, MESSAGE)
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self._auto_scroll = True
        self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self._auto_scroll = False

    def _current_line(self) -> int | None:
        index = self.table.currentIndex()
        if index.isValid():
            return self.model.line_of(index.row())
        top = self.table.rowAt(0)
        return self.model.line_of(top) if top >= 0 else None

    def _update_status(self) -> None:
        total, shown = self.model.total_lines(), self.model.rowCount()
        parts = [f"{total:,} line{'s' if total != 1 else ''}", f"{shown:,} shown"]
        if self._source_word:
            parts.append(self._source_word)
        feed = self._feed
        if feed is not None and not feed.loaded:
            parts.append("browsed from disk (too big to filter)" if feed.too_big and feed.log.complete
                         else f"reading the file… {feed.progress():.0%}")
        if self._status_text:
            parts.append(self._status_text)
        text = " · ".join(parts)
        if text != self._last_status:
            self._last_status = text
            self.status.setText(text)


def _timer(parent: QWidget, interval: int, slot: Callable[[], object], single: bool = True) -> QTimer:
    timer = QTimer(parent)
    timer.setInterval(interval)
    timer.setSingleShot(single)
    timer.timeout.connect(slot)
    return timer
