"""Turn what journalctl, logread, dmesg and syslog files print into log records.

Every parser takes one line and never raises: a line it cannot read becomes a record whose message
is the raw line and whose `problem` says why. The store ingests the plain tuples (`Fields`) so
that bulk ingest does not build one object per line.

Times without a year (RFC 3164, busybox) take the `year` given (default: this UTC year); times
without a zone are read as UTC, the device clock's offset is applied by the caller.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any

import orjson

from siteline.core.logs.record import LogRecord, Source, priority_from_name

# time, host, unit, pid, priority, message, problem
Fields = tuple[float | None, str, str, int | None, int | None, str, str | None]

_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}
_TAG = r"(?:([^\s\[:]{1,64})(?:\[(\d{1,10})\])?: )?(.*)"
_STAMP = r"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)"
# busybox syslogd: "Nov 27 11:25:11 host daemon.err tag[pid]: msg" (with -S: no host, no facility)
_BUSYBOX = re.compile(_STAMP + r" (?:(\S+) )?(\w+)\.(\w+) " + _TAG, re.DOTALL)
# OpenWrt's logread (ubox): "Thu Nov 27 11:25:11 2026 daemon.err tag[pid]: msg"
_OPENWRT = re.compile(r"[A-Z][a-z]{2} " + _STAMP + r" (\d{4}) (\w+)\.(\w+) " + _TAG, re.DOTALL)
_SYSLOG = re.compile(r"(?:<(\d{1,3})>)?" + _STAMP + r" (\S+) " + _TAG, re.DOTALL)
_SYSLOG_ISO = re.compile(r"(?:<(\d{1,3})>)?(\d{4}-\d\d-\d\dT[\d:.,]+(?:Z|[+-]\d\d:?\d\d)?) (\S+) " + _TAG, re.DOTALL)
# dmesg: "<6>[   12.3] msg", "[   12.3] msg", "kern  :info  : [12.3] msg" (-x), "[Thu Nov 27 11:25:11 2026] msg" (-T)
_DMESG = re.compile(r"(?:<(\d{1,3})>|(\w+) *:(\w+) *: )?\[ *(\d+\.\d+)\] ?(.*)", re.DOTALL)
_DMESG_T = re.compile(r"(?:<(\d{1,3})>|(\w+) *:(\w+) *: )?\[[A-Z][a-z]{2} " + _STAMP + r" (\d{4})\] ?(.*)", re.DOTALL)
_DMESG_ISO = re.compile(r"(?:<(\d{1,3})>|(\w+) *:(\w+) *: )?(\d{4}-\d\d-\d\dT[\d:.,]+(?:Z|[+-]\d\d:?\d\d)?) (.*)",
                        re.DOTALL)
_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "warning": 4, "notice": 5, "info": 6, "debug": 7}

_stamp_cache: dict[tuple[str, int], float | None] = {}


def _stamp(text: str, year: int) -> float | None:
    """'Nov 27 11:25:11' in `year`, UTC -> epoch seconds; cached because lines come in bursts per second."""
    key = (text, year)
    found = _stamp_cache.get(key, -1.0)
    if found != -1.0:
        return found
    if len(_stamp_cache) > 8192:
        _stamp_cache.clear()
    month = _MONTHS.get(text[:3])
    try:
        value: float | None = float(calendar.timegm(
            (year, month or 0, int(text[4:6]), int(text[7:9]), int(text[10:12]), int(text[13:15]), 0, 0, 0)))
    except (ValueError, OverflowError):
        value = None
    if month is None or not 1 <= int(text[4:6]) <= 31 or int(text[7:9]) > 23:
        value = None
    _stamp_cache[key] = value
    return value


def _iso(text: str) -> float | None:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return calendar.timegm(stamp.timetuple()) + stamp.microsecond / 1e6
    return stamp.timestamp()


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _bad(line: str, why: str) -> Fields:
    return (None, "", "", None, None, line, why)


def _pri(pri: str | None) -> int | None:
    return int(pri) & 7 if pri else None


def parse_logread(line: str, year: int | None = None) -> Fields:
    year = year or time.gmtime().tm_year
    m = _BUSYBOX.match(line)
    if m is not None:
        stamp, host, _fac, level, tag, pid, msg = m.groups()
        when = _stamp_cache.get((stamp, year), -1.0)  # inlined: this runs once per line
        if when == -1.0:
            when = _stamp(stamp, year)
    else:
        m = _OPENWRT.match(line)
        if m is None:
            return _bad(line, "not a logread line (expected 'Mon DD HH:MM:SS [host] facility.level tag: message')")
        stamp, year_text, _fac, level, tag, pid, msg = m.groups()
        host, when = "", _stamp(stamp, int(year_text))
    return (when, host or "", tag or "", _int(pid), _LEVELS.get(level), msg, None if when is not None else "bad time")


def parse_syslog(line: str, year: int | None = None) -> Fields:
    m = _SYSLOG.match(line)
    if m is not None:
        pri, stamp, host, tag, pid, msg = m.groups()
        when = _stamp(stamp, year or time.gmtime().tm_year)
    else:
        m = _SYSLOG_ISO.match(line)
        if m is None:
            return _bad(line, "not a syslog line (expected 'Mon DD HH:MM:SS host tag[pid]: message')")
        pri, stamp, host, tag, pid, msg = m.groups()
        when = _iso(stamp)
    return (when, host, tag or "", _int(pid), _pri(pri), msg, None if when is not None else "bad time")


def parse_dmesg(line: str, boot_time: float | None = None) -> Fields:
    """`boot_time` (epoch) turns dmesg's seconds-since-boot into a time; without it they stay in the message."""
    m = _DMESG.match(line)
    if m is not None:
        pri, _fac, level, since, msg = m.groups()
        when = boot_time + float(since) if boot_time is not None else None
        if when is None:
            msg = line[line.find("["):]  # keep the seconds since boot as printed, so nothing is lost
    else:
        m = _DMESG_T.match(line) or _DMESG_ISO.match(line)
        if m is None:
            return (None, "", "kernel", None, None, line, "not a dmesg line (expected '[seconds] message')")
        if m.re is _DMESG_T:
            pri, _fac, level, stamp, year_text, msg = m.groups()
            when = _stamp(stamp, int(year_text))
        else:
            pri, _fac, level, stamp, msg = m.groups()
            when = _iso(stamp)
    priority = _pri(pri) if pri else _LEVELS.get(level) if level else None
    return (when, "", "kernel", None, priority, msg, None)


def _journal_message(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # journald sends non-UTF-8 / binary messages as a list of byte values
        try:
            return bytes(value).decode("utf-8", "replace")
        except (ValueError, TypeError):
            return repr(value)
    return "" if value is None else str(value)


_PRIOS = {str(i): i for i in range(8)}


def _digits(value: Any) -> int | None:
    """int(value) for a string int() accepts (as the batch path's map(int, ...) does), else None."""
    if type(value) is not str:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def journal_fields(entry: Any, raw: str = "") -> Fields:
    """One decoded `journalctl -o json` object -> fields (written for speed: it runs once per line)."""
    if type(entry) is not dict:
        return _bad(raw, "not a journal entry (expected a JSON object)")
    get = entry.get
    stamp = _digits(get("__REALTIME_TIMESTAMP"))
    unit = "kernel" if get("_TRANSPORT") == "kernel" else (
        get("_SYSTEMD_UNIT") or get("SYSLOG_IDENTIFIER") or get("_COMM") or "")
    host = get("_HOSTNAME") or ""
    prio = get("PRIORITY")
    message = get("MESSAGE")
    return (None if stamp is None or not 0 <= stamp < 1 << 62 else stamp / 1e6,
            host if type(host) is str else str(host),
            unit if type(unit) is str else str(unit),
            _digits(get("_PID") or get("SYSLOG_PID")),
            _PRIOS.get(prio) if type(prio) is str else None,
            message if type(message) is str else _journal_message(_exact(message, raw)),
            None if "MESSAGE" in entry else "no MESSAGE field")


def _exact(message: Any, raw: str) -> Any:
    """A binary MESSAGE (a list of numbers) as json reads it: orjson turns integers past 64 bits into floats."""
    if type(message) is not list or not raw:
        return message
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):
        return message
    return entry.get("MESSAGE", message) if type(entry) is dict else message


def parse_journal(line: str) -> Fields:
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return _bad(line, "not JSON (a torn or garbage journal line)")
    return journal_fields(entry, line)


def parse_text(line: str) -> Fields:
    return (None, "", "", None, None, line, None)


def fields_of(line: str, source: Source, *, year: int | None = None, boot_time: float | None = None) -> Fields:
    """Parse one line (without its newline) in `source`'s format; never raises."""
    try:
        if source is Source.JOURNAL:
            return parse_journal(line)
        if source is Source.LOGREAD:
            return parse_logread(line, year)
        if source is Source.SYSLOG:
            return parse_syslog(line, year)
        if source is Source.DMESG:
            return parse_dmesg(line, boot_time)
        return parse_text(line)
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:  # a bug here must not cost the line
        return _bad(line, f"could not parse: {exc}")


def fields_chunk(lines: Iterable[str], source: Source, *, year: int | None = None,
                 boot_time: float | None = None) -> list[Fields]:
    """Parse many lines at once into one tuple per line."""
    columns = columns_chunk(lines, source, year=year, boot_time=boot_time)
    return list(zip(*columns, strict=True))


def columns_chunk(lines: Iterable[str], source: Source, *, year: int | None = None,
                  boot_time: float | None = None) -> tuple[Sequence[Any], ...]:
    """Parse many lines at once into columns (what the store keeps): one call into json for a journal
    batch, C-level loops for text. Seven sequences of equal length, in `Fields` order."""
    text = list(map(str.rstrip, lines, repeat("\r\n")))
    if not text:
        return ((),) * 7
    if source is Source.JOURNAL:
        try:  # orjson: several times json's speed, so parsing keeps up with what a bare json.loads reads
            entries = orjson.loads("[" + ",".join(text) + "]")
        except (ValueError, RecursionError):
            entries = None  # one bad line spoils the batch (or a lone surrogate orjson refuses): line by line
        if type(entries) is list and len(entries) == len(text):
            return _transpose(list(map(journal_fields, entries, text)))
        return _transpose(list(map(parse_journal, text)))
    year = year or time.gmtime().tm_year
    plain: dict[Source, Callable[[str, Any], Fields]] = {
        Source.LOGREAD: parse_logread, Source.SYSLOG: parse_syslog, Source.DMESG: parse_dmesg}
    parse = plain.get(source)
    if parse is None:
        return _transpose(list(map(parse_text, text)))
    try:
        return _transpose(list(map(parse, text, repeat(boot_time if source is Source.DMESG else year))))
    except (ValueError, OverflowError, TypeError, RecursionError):
        return _transpose([fields_of(line, source, year=year, boot_time=boot_time) for line in text])


def _transpose(rows: list[Fields]) -> tuple[Sequence[Any], ...]:
    return tuple(zip(*rows, strict=True)) if rows else ((),) * 7


def to_record(fields: Fields, source: Source) -> LogRecord:
    when, host, unit, pid, priority, message, problem = fields
    return LogRecord(when, host, unit, pid, priority, message, source, problem)


def parse_line(line: str, source: Source, *, year: int | None = None, boot_time: float | None = None) -> LogRecord:
    return to_record(fields_of(line.rstrip("\r\n"), source, year=year, boot_time=boot_time), source)


def parse_chunk(lines: Iterable[str], source: Source, **opts: Any) -> list[LogRecord]:
    return [to_record(f, source) for f in fields_chunk(lines, source, **opts)]


__all__ = ["Fields", "fields_chunk", "fields_of", "journal_fields", "parse_chunk", "parse_line", "priority_from_name"]
