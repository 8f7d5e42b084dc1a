"""A compact, append-fast log store and a lazy index over log files too big to load.

`LogStore` keeps columns, not objects: times in an array of doubles, priorities and sources in
bytes, units and hosts interned to ids, every message in one UTF-8 bytearray ("\\n" after each)
with an array of start offsets. About 30 bytes per line plus the message itself. Filters build
0/1 masks with C-level loops (bytes.translate, map over arrays, big-int AND) and regex search runs
over the one bytearray, so 1 M lines filter in a fraction of a second in pure Python.

`LogFile` indexes a file in 64 KiB blocks (offset and first line number of each), counted with
bytes.count: a 1 GB file needs ~16 k index entries, the first screen needs only the first block.
"""

from __future__ import annotations

import math
import operator
import os
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress, repeat
from pathlib import Path
from typing import Any, cast

from siteline.core.logs.parsers import Fields, columns_chunk, fields_of, to_record
from siteline.core.logs.record import LogRecord, Source

UNKNOWN_PRIORITY = 8
NO_PID = -1
_VALID_PRIORITIES = bytes(range(8))
_PROBLEM = 0x80  # set in a line's source byte when its parser flagged a problem
_NL_IN_MESSAGE = "\u2028"  # a message's own newlines, so that one record stays one line of the blob


class LogStore:
    """Append-only columnar store of log records. Indices are stable: 0 is the oldest line."""

    def __init__(self) -> None:
        self._time = array("d")
        self._prio = bytearray()
        self._source = bytearray()
        self._pid = array("i")
        self._unit = array("I")
        self._host = array("I")
        self._starts = array("Q")
        self._text = bytearray()
        self._names: list[str] = []  # interned units and hosts share one table
        self._ids: dict[str, int] = {}
        self._problems: dict[int, str] = {}
        self._in_order = True  # every time so far present and not decreasing

    def __len__(self) -> int:
        return len(self._starts)

    def _intern(self, name: str) -> int:
        found = self._ids.get(name)
        if found is None:
            found = self._ids[name] = len(self._names)
            self._names.append(name)
        return found

    def append(self, record: LogRecord) -> None:
        self.extend_fields([(record.time, record.host, record.unit, record.pid, record.priority, record.message,
                             record.problem)], record.source)

    def ingest(self, lines: Iterable[str], source: Source, **opts: Any) -> int:
        """Parse and store raw lines in `source`'s format; returns how many were stored."""
        return self.extend_columns(columns_chunk(lines, source, **opts), source)

    def extend_fields(self, rows: list[Fields], source: Source) -> int:
        return self.extend_columns(tuple(zip(*rows, strict=True)), source) if rows else 0

    def extend_columns(self, columns: tuple[Sequence[Any], ...], source: Source) -> int:
        """Store seven equal-length columns in `Fields` order (time, host, unit, pid, priority, message, problem)."""
        times, hosts, units, pids, prios, messages, problems = columns
        if not messages:
            return 0
        first = len(self)
        text, starts = self._encode_messages(messages)  # first: a message that cannot be stored changes no column
        # Fast paths use C-level loops; the comprehensions only run for chunks that need them.
        new_times = array("d", times if None not in times else [math.nan if t is None else t for t in times])
        # Most logs arrive in time order: while they do, time filters and jumps are a bisect.
        self._in_order = self._in_order and all(map(operator.le, (self._time[-1:] or new_times[:1]) + new_times,
                                                   new_times))
        self._time.extend(new_times)
        self._host.extend(self._ids_of(hosts))
        self._unit.extend(self._ids_of(units))
        self._pid.extend(_pids(pids))
        self._prio.extend(_prios(prios))
        flag = int(source)
        self._source.extend(repeat(flag, len(messages)))
        if any(problems):
            for i, problem in enumerate(problems):
                if problem:
                    self._problems[first + i] = problem
                    self._source[first + i] = flag | _PROBLEM
        self._starts.extend(starts)
        self._text += text
        return len(messages)

    def _ids_of(self, names: Sequence[str]) -> array[int]:
        ids = list(map(self._ids.get, names))
        if None in ids:
            ids = list(map(self._intern, names))
        return array("I", ids)  # type: ignore[arg-type]  # no None is left

    def _encode_messages(self, messages: Sequence[str]) -> tuple[bytes, array[int]]:
        """The messages as bytes for the text column (newline-ended) and where each starts in it."""
        joined = "\n".join(messages)
        if joined.count("\n") != len(messages) - 1:
            messages = tuple(m.replace("\n", _NL_IN_MESSAGE) for m in messages)
            joined = "\n".join(messages)
        base = len(self._text)
        if joined.isascii():  # byte lengths are string lengths: no per-line encode
            data = joined.encode("ascii")
            lengths: Iterable[int] = (len(m) + 1 for m in messages)
        else:
            try:
                data = joined.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # a lone surrogate (journald JSON "\ud800"): shown as U+FFFD
                messages = tuple(map(_storable, messages))
                data = "\n".join(messages).encode("utf-8", "surrogateescape")
            lengths = (len(m.encode("utf-8", "surrogateescape")) + 1 for m in messages)
        starts = array("Q", accumulate(lengths, initial=base))
        starts.pop()  # accumulate's last value is where the next message will start
        return data + b"\n", starts

    # -- reading -------------------------------------------------------------------------------

    def message(self, i: int) -> str:
        start = self._starts[i]
        end = self._starts[i + 1] - 1 if i + 1 < len(self._starts) else len(self._text) - 1
        return self._text[start:end].decode("utf-8", "replace")

    def __getitem__(self, i: int) -> LogRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        t, pid, prio = self._time[i], self._pid[i], self._prio[i]
        return LogRecord(None if math.isnan(t) else t, self._names[self._host[i]], self._names[self._unit[i]],
                         None if pid == NO_PID else pid, None if prio == UNKNOWN_PRIORITY else prio,
                         self.message(i), Source(self._source[i] & ~_PROBLEM), self._problems.get(i))

    def units(self) -> list[str]:
        """Every unit/tag seen (for the filter menu)."""
        return sorted({self._names[u] for u in set(self._unit)})

    def nbytes(self) -> int:
        """Memory held by the columns (not the small intern table)."""
        cols = (self._time, self._pid, self._unit, self._host, self._starts)
        return sum(c.itemsize * len(c) for c in cols) + len(self._prio) + len(self._source) + len(self._text)

    # -- filtering and search ------------------------------------------------------------------

    def filter(self, *, max_priority: int | None = None, units: Iterable[str] | None = None,
               since: float | None = None, until: float | None = None, regex: str | None = None,
               ignore_case: bool = False, keep_unknown_priority: bool = True) -> array[int]:
        """Indices of the lines that pass every filter given, oldest first.

        A time range drops lines without a time. The regex is matched against messages (UTF-8
        bytes; ^ and $ anchor at each message) and raises re.error for a bad pattern.
        """
        n = len(self)
        masks: list[bytes | bytearray] = []
        if max_priority is not None:
            table = bytes(int(p <= max_priority or (p == UNKNOWN_PRIORITY and keep_unknown_priority))
                          for p in range(256))
            masks.append(self._prio.translate(table))
        if units is not None:
            wanted = {self._ids[u] for u in units if u in self._ids}
            masks.append(bytes(map(wanted.__contains__, self._unit)))
        if (since is not None or until is not None) and self._in_order:
            lo = 0 if since is None else bisect_left(self._time, since)
            hi = n if until is None else bisect_right(self._time, until)
            masks.append(bytes(lo) + b"\x01" * max(hi - lo, 0) + bytes(n - max(hi, lo)))
        else:
            if since is not None:
                masks.append(bytes(map(operator.le, repeat(since), self._time)))
            if until is not None:
                masks.append(bytes(map(operator.ge, repeat(until), self._time)))
        mask = _and(masks, n)
        if regex is None:
            return array("I", compress(range(n), mask) if mask is not None else range(n))
        hits = self._regex_lines(compile_regex(regex, ignore_case))
        if mask is not None:
            hits = list(compress(hits, map(mask.__getitem__, hits)))
        return array("I", hits)

    def _regex_lines(self, pattern: re.Pattern[bytes]) -> list[int]:
        starts = self._starts
        positions = map(re.Match.start, pattern.finditer(self._text))
        lines = map(operator.sub, map(bisect_right, repeat(starts), positions), repeat(1))
        return list(dict.fromkeys(lines))  # several matches in one line count once; order is kept

    def find(self, regex: str | re.Pattern[bytes], start: int, *, backward: bool = False,
             ignore_case: bool = False) -> int | None:
        """The next line after `start` (or before it, backward) whose message matches; None if none."""
        pattern = compile_regex(regex, ignore_case) if isinstance(regex, str) else regex
        n = len(self)
        if n == 0:
            return None
        if not backward:
            if start + 1 >= n:
                return None
            m = pattern.search(self._text, self._starts[max(start + 1, 0)])
            return None if m is None else bisect_right(self._starts, m.start()) - 1
        return self._find_back(pattern, min(start, n)) if start > 0 else None

    def _find_back(self, pattern: re.Pattern[bytes], start: int) -> int | None:
        # re cannot search backwards: scan growing windows that end where the line `start` begins.
        end = self._starts[start] if start < len(self) else len(self._text)
        window = 1 << 16
        while end > 0:
            lo = self._starts[max(bisect_right(self._starts, max(end - window, 0)) - 1, 0)]
            last = None
            for found in pattern.finditer(self._text, lo, end):
                last = found
            if last is not None:
                return bisect_right(self._starts, last.start()) - 1
            end, window = lo, window * 4
        return None

    def first_at_or_after(self, when: float) -> int | None:
        """The first line whose time is >= `when` (time jump); lines without a time are skipped."""
        if self._in_order:
            i = bisect_left(self._time, when)
            return i if i < len(self) else None
        return next(compress(range(len(self)), map(operator.le, repeat(when), self._time)), None)


# Surrogates that are no escaped byte (surrogateescape keeps U+DC80..U+DCFF for those): one U+FFFD each.
_LONE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _storable(message: str) -> str:
    return _LONE_SURROGATE.sub("\ufffd", message)


def _pids(pids: Sequence[int | None]) -> array[int]:
    try:
        fast: array[int] = array("i", cast("tuple[int, ...]", pids))  # a None is a TypeError, caught
        if min(fast, default=0) >= 0:
            return fast
    except (TypeError, OverflowError):
        pass
    return array("i", [NO_PID if p is None or not 0 <= p < 2**31 else p for p in pids])


def _prios(prios: Sequence[int | None]) -> bytes:
    try:
        fast = bytes(prios)  # type: ignore[arg-type]  # a None is a TypeError, caught
        if not fast.translate(None, _VALID_PRIORITIES):
            return fast
    except (TypeError, ValueError):
        pass
    return bytes(UNKNOWN_PRIORITY if p is None or not 0 <= p <= 7 else p for p in prios)


def compile_regex(regex: str, ignore_case: bool = False) -> re.Pattern[bytes]:
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    return re.compile(regex.encode("utf-8", "surrogateescape"), flags)


def _and(masks: list[bytes | bytearray], n: int) -> bytes | bytearray | None:
    if not masks:
        return None
    if len(masks) == 1:
        return masks[0]
    value = int.from_bytes(masks[0], "little")
    for mask in masks[1:]:
        value &= int.from_bytes(mask, "little")
    return value.to_bytes(n, "little")


class LogFile:
    """A log file read through a lazy block index; call `index_more` until `complete`."""

    BLOCK = 1 << 16

    def __init__(self, path: str | Path, source: Source = Source.TEXT, **opts: Any) -> None:
        self.path = Path(path)
        self.source = source
        self._opts = opts
        self._fd = os.open(self.path, os.O_RDONLY)
        self._offsets = array("Q")  # each block's first byte
        self._first_line = array("Q")  # each block's first line number
        self._lines = 0
        self._indexed = 0  # bytes indexed so far (always at a line boundary)
        self._cache: dict[int, list[bytes]] = {}
        self._open_tail = False
        self.complete = False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LogFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Lines indexed so far (all of them once `complete`)."""
        return self._lines

    def index_more(self, max_bytes: int = 32 << 20) -> bool:
        """Index up to `max_bytes` more; returns True when the end of the file was reached."""
        if self._open_tail:  # the last line had no newline yet: read its block again, it may have grown
            self._open_tail = False
            self._indexed = self._offsets.pop()
            self._lines = self._first_line.pop()
            self._cache.clear()
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, min(max_bytes, size - self._indexed), self._indexed)
        pos = 0
        at_end = self._indexed + len(data) >= size
        while pos < len(data):
            cut = data.rfind(b"\n", pos, pos + self.BLOCK)
            if cut < 0:
                cut = data.find(b"\n", pos + self.BLOCK)
            if cut < 0:
                if not at_end and pos > 0:
                    break  # an unfinished line: the next call starts with it
                cut = len(data) - 1  # the file's last line has no newline, or one line is longer than a read
                self._open_tail = at_end
            self._offsets.append(self._indexed + pos)
            self._first_line.append(self._lines)
            self._lines += data.count(b"\n", pos, cut) + 1
            pos = cut + 1
        self._indexed += pos
        self.complete = self._indexed >= size
        self._cache.pop(len(self._offsets) - 1, None)
        return self.complete

    def _block(self, b: int) -> list[bytes]:
        found = self._cache.get(b)
        if found is None:
            end = self._offsets[b + 1] if b + 1 < len(self._offsets) else self._indexed
            data = os.pread(self._fd, end - self._offsets[b], self._offsets[b])
            found = data.split(b"\n")
            if data.endswith(b"\n"):
                found.pop()
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[b] = found
        return found

    def raw_lines(self, start: int, count: int) -> list[str]:
        out: list[str] = []
        i = max(start, 0)
        while len(out) < count and i < self._lines:
            b = bisect_right(self._first_line, i) - 1
            block = self._block(b)
            offset = i - self._first_line[b]
            taken = block[offset:offset + count - len(out)]
            out.extend(line.decode("utf-8", "replace").rstrip("\r") for line in taken)
            i += len(taken)
            if not taken:
                break
        return out

    def records(self, start: int, count: int) -> list[LogRecord]:
        return [to_record(fields_of(line, self.source, **self._opts), self.source)
                for line in self.raw_lines(start, count)]
