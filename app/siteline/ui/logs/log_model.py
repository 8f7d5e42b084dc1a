"""A virtual table model over a `LogStore` (live streams) or a `LogFile` (a big file on disk).

Nothing is copied into the model: `data()` reads the one record the view paints. A filter is an
array of line numbers from `store.filter(...)` (a proxy model over millions of rows would ask every
row). New lines are stored at once but shown by `flush()`, which the view calls on a timer, so a
flood of lines costs one `beginInsertRows` per tick, never one per line.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette

from siteline.core.logs import LogFile, LogRecord, LogStore, Source
from siteline.core.logs.store import compile_regex
from siteline.ui.logs.words import SOURCE_WORDS, format_time, priority_word, record_text, storable
from siteline.ui.theme import STATE_COLOURS

AnyIndex = QModelIndex | QPersistentModelIndex
COLUMNS = ("Time", "Host", "Unit", "Priority", "Message")
TIME, HOST, UNIT, PRIORITY, MESSAGE = range(5)
_CACHE_ROWS = 4096  # records kept for repaints; a screen is ~50
_FILE_PAGE = 256  # lines parsed at once from a file: a screen and a bit


@dataclass(frozen=True)
class LogFilter:
    """What the view shows; None everywhere shows everything."""

    max_priority: int | None = None  # show this priority and more serious ones (lines without one are hidden)
    units: frozenset[str] | None = None
    regex: str | None = None

    @property
    def active(self) -> bool:
        return self.max_priority is not None or self.units is not None or bool(self.regex)

    @property
    def ignore_case(self) -> bool:
        return self.regex is not None and self.regex == self.regex.lower()  # smart case: any capital letter means exact


class FilterUnavailableError(Exception):
    """Filters need the lines in the store; a big file on disk is browsed as it is."""


class LogModel(QAbstractTableModel):
    """Rows are log lines, oldest first; `line_of(row)` is the line number in the store or file."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._store = LogStore()
        self.boot_time: float | None = None  # the device's boot (epoch): dmesg seconds since boot become times
        self._file: LogFile | None = None
        self._rows: array[int] | None = None  # shown line numbers while a filter is on
        self._count = 0  # rows the view knows about
        self._seen = 0  # lines already shown or filtered out
        self._filter = LogFilter()
        self._pattern: re.Pattern[bytes] | None = None
        self._cache: dict[int, LogRecord] = {}
        self._colours = self._pick_colours()
        self._bold = QFont()
        self._bold.setBold(True)

    # -- what is behind the rows -----------------------------------------------------------

    @property
    def store(self) -> LogStore:
        return self._store

    @property
    def file(self) -> LogFile | None:
        return self._file

    @property
    def log_filter(self) -> LogFilter:
        return self._filter

    def total_lines(self) -> int:
        return len(self._file) if self._file is not None else len(self._store)

    def source_word(self) -> str:
        if self._file is not None:
            return f"{self._file.path.name} ({SOURCE_WORDS[self._file.source]})"
        return ""

    def ingest(self, lines: list[str], source: Source) -> int:
        """Parse and store lines; they show at the next `flush()`."""
        if source is Source.DMESG and self.boot_time is not None:
            return self._store.ingest(storable(lines, source), source, boot_time=self.boot_time)
        return self._store.ingest(storable(lines, source), source)

    def reset_to(self, store: LogStore | None = None, file: LogFile | None = None) -> None:
        """Show a new store (empty by default) or a file (which the caller owns and closes)."""
        self.beginResetModel()
        self._store = store if store is not None else LogStore()
        self._file = file
        self._rows, self._filter, self._pattern = None, LogFilter(), None
        self._cache.clear()
        self._count = self._seen = self.total_lines()
        self.endResetModel()

    def flush(self) -> int:
        """Show the lines stored since the last call, in one insert; returns how many rows were added."""
        total = self.total_lines()
        if total <= self._seen:
            return 0
        if self._rows is None:
            new = total - self._count
            self.beginInsertRows(QModelIndex(), self._count, total - 1)
            self._count = self._seen = total
            self.endInsertRows()
            return new
        passed = self._tail_passing(self._seen, total)
        self._seen = total
        if passed:
            self.beginInsertRows(QModelIndex(), self._count, self._count + len(passed) - 1)
            self._rows.extend(passed)
            self._count = len(self._rows)
            self.endInsertRows()
        return len(passed)

    def pending(self) -> int:
        """Lines stored but not yet looked at by `flush()`."""
        return self.total_lines() - self._seen

    # -- filtering -------------------------------------------------------------------------

    def set_filter(self, wanted: LogFilter) -> None:
        """Show only the lines that pass; raises re.error for a bad regex (nothing changes then)."""
        if wanted == self._filter:
            return
        if self._file is not None and wanted.active:
            raise FilterUnavailableError("filters work on streamed logs and files read into memory")
        rows: array[int] | None = None
        pattern = compile_regex(wanted.regex, wanted.ignore_case) if wanted.regex else None
        if wanted.active:
            rows = self._store.filter(max_priority=wanted.max_priority, units=wanted.units, regex=wanted.regex or None,
                                      ignore_case=wanted.ignore_case, keep_unknown_priority=False)
        self.beginResetModel()
        self._filter, self._pattern, self._rows = wanted, pattern, rows
        self._seen = self.total_lines()
        self._count = len(rows) if rows is not None else self._seen
        self._cache.clear()
        self.endResetModel()

    def _tail_passing(self, first: int, end: int) -> list[int]:
        """Lines first..end-1 that pass the filter, as a live stream brings them."""
        try:
            return _tail_filter(self._store, first, end, self._filter, self._pattern)
        except AttributeError:  # the store's columns changed shape: the slow, public way still works
            return [i for i in range(first, end) if self._passes(i)]

    def _passes(self, line: int) -> bool:
        record = self._store[line]
        wanted = self._filter
        if wanted.max_priority is not None and (record.priority is None or record.priority > wanted.max_priority):
            return False
        if wanted.units is not None and record.unit not in wanted.units:
            return False
        return self._pattern is None or self._pattern.search(record.message.encode("utf-8", "surrogateescape")) \
            is not None

    # -- rows and lines --------------------------------------------------------------------

    def line_of(self, row: int) -> int:
        return self._rows[row] if self._rows is not None else row

    def row_of(self, line: int) -> int | None:
        """The row showing `line`, or None when the filter hides it (or it is not shown yet)."""
        if self._rows is None:
            return line if 0 <= line < self._count else None
        at = bisect_left(self._rows, line)
        return at if at < self._count and self._rows[at] == line else None

    def row_at_or_after(self, line: int) -> int | None:
        """The first shown row whose line is `line` or later."""
        at = bisect_left(self._rows, line) if self._rows is not None else max(line, 0)
        return at if at < self._count else None

    def record(self, row: int) -> LogRecord | None:
        if not 0 <= row < self._count:
            return None
        found = self._cache.get(row)
        if found is None:
            if len(self._cache) > _CACHE_ROWS:
                self._cache.clear()
            if self._file is not None:
                start = row - row % _FILE_PAGE
                for offset, rec in enumerate(self._file.records(start, _FILE_PAGE)):
                    self._cache[start + offset] = rec
                found = self._cache.get(row)
                if found is None:  # a line the index counted that could not be read back (file shrank)
                    return None
            else:
                found = self._cache[row] = self._store[self.line_of(row)]
        return found

    def snapshot(self) -> tuple[int, Callable[[int, int], list[LogRecord]]]:
        """The rows shown now and a reader of them that later appends, filters or a clear() do not disturb."""
        count = self._count
        if self._file is not None:
            log = self._file
            return count, lambda start, n: log.records(start, min(n, count - start))
        store = self._store
        lines = array("I", self._rows[:count]) if self._rows is not None else range(count)
        return count, lambda start, n: [store[i] for i in lines[start:start + n]]

    def rows_text(self, rows: list[int]) -> str:
        return "\n".join(record_text(rec) for rec in map(self.record, rows) if rec is not None)

    def time_of_row(self, row: int) -> float | None:
        record = self.record(row)
        return record.time if record is not None else None

    # -- Qt's model interface --------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < 5:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        record = self.record(index.row())
        if record is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(record, column)
        if role == Qt.ItemDataRole.ForegroundRole and column in (PRIORITY, MESSAGE):
            return self._colour(record.priority)
        if role == Qt.ItemDataRole.FontRole and column == PRIORITY and record.priority is not None \
                and record.priority <= 3:
            return self._bold
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(record, column)
        return None

    def _colour(self, priority: int | None) -> QColor | None:
        if priority is None or priority > 4:
            return None
        return self._colours[0] if priority <= 3 else self._colours[1]

    def refresh_colours(self) -> None:
        """Pick the red/amber that read on the current palette (after a light/dark switch)."""
        self._colours = self._pick_colours()
        if self._count:
            self.dataChanged.emit(self.index(0, 0), self.index(self._count - 1, len(COLUMNS) - 1))

    @staticmethod
    def _pick_colours() -> tuple[QColor, QColor]:
        window = QGuiApplication.palette().color(QPalette.ColorRole.Base)
        scheme = STATE_COLOURS["dark" if window.lightness() < 128 else "light"]
        return QColor(scheme["down"]), QColor(scheme["retrying"])


def _tail_filter(store: LogStore, first: int, end: int, wanted: LogFilter,
                 pattern: re.Pattern[bytes] | None) -> list[int]:
    """`store.filter` for the newest lines only, reading the store's columns (C-level loops, as filter does).

    LogStore.filter has no start index; calling it on millions of lines every tick would stall the UI.
    """
    lines = range(first, end)
    masks: list[Iterable[bool | int]] = []  # each aligned with `lines`
    if wanted.max_priority is not None:
        table = bytes(int(p <= wanted.max_priority) for p in range(256))  # unknown (8) is hidden, as in set_filter
        masks.append(store._prio[first:end].translate(table))
    if wanted.units is not None:
        ids = {store._ids[u] for u in wanted.units if u in store._ids}
        masks.append(map(ids.__contains__, store._unit[first:end]))
    candidates: Iterable[int] = compress(lines, map(all, zip(*masks, strict=True))) if masks else lines
    if pattern is not None:
        starts, text = store._starts, store._text
        hits = {bisect_right(starts, m.start(), first) - 1 for m in pattern.finditer(text, starts[first])}
        candidates = (i for i in candidates if i in hits)
    return list(candidates)


def _cell(record: LogRecord, column: int) -> str:
    if column == TIME:
        return format_time(record.time)
    if column == HOST:
        return record.host
    if column == UNIT:
        return record.unit
    if column == PRIORITY:
        return priority_word(record.priority)
    # Control characters (binary garbage) would draw as boxes or move the text: show them as symbols.
    message = record.message
    if not message.isprintable():
        message = message.translate(_CONTROL_PICTURES)
    return message[:4000]  # a 1 MB line must not make every repaint measure 1 MB


_CONTROL_PICTURES = {c: 0x2400 + c for c in range(32)} | {0x7F: 0x2421}


def _tooltip(record: LogRecord, column: int) -> str | None:
    if column == TIME and record.time is not None:
        return f"Device time {format_time(record.time)} (shown in this laptop's time zone)"
    if column == MESSAGE:
        lead = f"Could not read this line as {SOURCE_WORDS[record.source]}: {record.problem}\n\n" \
            if record.problem else ""
        return lead + record.message[:2000] if lead or len(record.message) > 120 else None
    return None
