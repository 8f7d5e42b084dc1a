"""Finding rows in a `LogModel`: search next/previous with wrap, the first row at a time.

Plain functions over the model (no widgets), so the view stays small and these are tested directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siteline.core.logs.store import compile_regex
from siteline.ui.logs.log_model import LogModel

_FILE_SCAN = 20_000  # lines read per step when searching a file on disk
FILE_SCAN_LIMIT = 500_000  # lines searched per press in a file on disk (~0.5 s): the window must not freeze


@dataclass(frozen=True)
class Found:
    row: int | None  # None: no shown line matches
    wrapped: bool = False
    stopped_at: int | None = None  # a file search gave up here for now (press Next again to go on)


def search_patterns(text: str) -> tuple[re.Pattern[bytes], re.Pattern[str]]:
    """The search is plain text (no regex to learn), case-blind unless it has a capital letter."""
    ignore = text == text.lower()
    escaped = re.escape(text)
    flags = re.IGNORECASE if ignore else 0
    return compile_regex(escaped, ignore), re.compile(escaped, flags)


def find_row(model: LogModel, text: str, row: int, forward: bool = True, limit: int = FILE_SCAN_LIMIT) -> Found:
    """The next (or previous) shown row after `row` whose message contains `text`, wrapping once around."""
    if not text or model.rowCount() == 0:
        return Found(None)
    as_bytes, as_str = search_patterns(text)
    if model.file is not None:
        return _find_in_file(model, as_str, row, forward, limit)
    store = model.store
    line = model.line_of(row) if 0 <= row < model.rowCount() else (-1 if forward else len(store))
    wrapped = False
    while True:
        found = store.find(as_bytes, line, backward=not forward)
        if found is None:
            if wrapped:
                return Found(None, True)
            wrapped, line = True, (-1 if forward else len(store))
            continue
        shown = model.row_of(found)
        if shown is not None:
            return Found(shown, wrapped)
        line = found  # hidden by the filter, or not shown yet: keep looking


def _find_in_file(model: LogModel, pattern: re.Pattern[str], row: int, forward: bool, limit: int) -> Found:
    """A file on disk is not in the store: read it in slices of raw lines, then check the parsed message."""
    log = model.file
    assert log is not None
    count = model.rowCount()
    if forward:
        passes = ((False, range(row + 1, count)), (True, range(0, min(row + 1, count))))
    else:
        passes = ((False, range(min(row, count) - 1, -1, -1)), (True, range(count - 1, max(row, 0) - 1, -1)))
    scanned = 0
    for wrapped, rows in passes:
        for at in range(0, len(rows), _FILE_SCAN):
            if scanned >= limit:
                return Found(None, wrapped, rows[at - 1] if at else row)
            piece = rows[at:at + _FILE_SCAN]
            scanned += len(piece)
            first = min(piece[0], piece[-1])
            lines = log.raw_lines(first, len(piece))
            for number in piece:
                offset = number - first
                if offset < len(lines) and pattern.search(lines[offset]):
                    record = model.record(number)  # the raw line matched; the shown message must too
                    if record is not None and pattern.search(record.message):
                        return Found(number, wrapped)
    return Found(None, True)


def row_at_time(model: LogModel, when: float) -> int | None:
    """The first shown row at or after `when` (lines in time order, as devices write them)."""
    if model.file is None:
        line = model.store.first_at_or_after(when)
        return None if line is None else model.row_at_or_after(line)
    lo, hi = 0, model.rowCount()
    while lo < hi:  # bisect on the file: lines without a time count as earlier (they do not stop the jump)
        mid = (lo + hi) // 2
        stamp = model.time_of_row(mid)
        if stamp is None or stamp < when:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < model.rowCount() else None
