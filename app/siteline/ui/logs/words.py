"""Plain helpers for the Logs panel that need no Qt: words for priorities, time in and out, the format of a file.

Kept apart from the widgets so that they are tested and reused (export, copy) without a window.
"""

from __future__ import annotations

import json
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from siteline.core.logs import LogRecord, Source
from siteline.core.logs.parsers import fields_of

# What a technician reads in the Priority column: whole words, not syslog's abbreviations.
PRIORITY_WORDS = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
SOURCE_WORDS = {Source.JOURNAL: "journald JSON", Source.LOGREAD: "logread", Source.DMESG: "dmesg",
                Source.SYSLOG: "syslog", Source.TEXT: "plain text"}
SNIFF_BYTES = 64 << 10
SNIFF_LINES = 40


def priority_word(priority: int | None) -> str:
    return PRIORITY_WORDS[priority] if priority is not None and 0 <= priority <= 7 else ""


def format_time(when: float | None) -> str:
    """Device time in the laptop's local zone with milliseconds: '2026-11-27 14:02:11.123'; '' when unknown."""
    if when is None:
        return ""
    try:
        whole = int(when // 1)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole))
    except (OverflowError, OSError, ValueError):
        return ""
    return f"{stamp}.{int((when - whole) * 1000):03d}"


def record_text(record: LogRecord) -> str:
    """One record as a line of text (copy, export): time, host, unit[pid], priority, message."""
    unit = f"{record.unit}[{record.pid}]" if record.pid is not None else record.unit
    head = "  ".join(part for part in (format_time(record.time), record.host, unit, priority_word(record.priority))
                     if part)
    return f"{head}  {record.message}" if head else record.message


_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_FULL = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


def parse_when(text: str, reference: float | None = None) -> float:
    """'14:02', '14:02:30' (on the day of `reference`, local time) or '2026-11-27 14:02[:30]' -> epoch seconds.

    Raises ValueError with words a technician can act on.
    """
    text = text.strip()
    clock = _CLOCK.match(text)
    full = _FULL.match(text)
    try:
        if clock:
            hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
            day = datetime.fromtimestamp(reference).date() if reference is not None else date.today()
            stamp = datetime(day.year, day.month, day.day, hour, minute, second)
        elif full:
            stamp = datetime(int(full[1]), int(full[2]), int(full[3]), int(full[4] or 0), int(full[5] or 0),
                             int(full[6] or 0))
        else:
            raise ValueError("type a time as 14:02, 14:02:30 or 2026-11-27 14:02")
    except (OverflowError, OSError) as exc:
        raise ValueError(f"that time is out of range ({exc})") from None
    except ValueError as exc:
        if "type a time" in str(exc):
            raise
        raise ValueError(f"that is not a real time ({exc})") from None
    return stamp.timestamp()


def day_after(when: float) -> float:
    return (datetime.fromtimestamp(when) + timedelta(days=1)).timestamp()


def guess_source(lines: list[str]) -> Source:
    """Which tool printed these lines: the format most of them parse as without a problem; plain text otherwise."""
    sample = [line for line in lines if line.strip()][:SNIFF_LINES]
    if not sample:
        return Source.TEXT
    if sum(_is_json_object(line) for line in sample) * 2 > len(sample):
        return Source.JOURNAL
    best, best_score = Source.TEXT, len(sample) // 2  # more than half the lines must fit a format
    for source in (Source.DMESG, Source.LOGREAD, Source.SYSLOG):
        score = 0
        for line in sample:
            fields = fields_of(line, source)
            # logread must also name a level it knows, else "host.domain tag: msg" syslog lines look like logread
            score += fields[6] is None and (source is not Source.LOGREAD or fields[4] is not None)
        if score > best_score:
            best, best_score = source, score
    return best


def _is_json_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return type(json.loads(line)) is dict
    except (ValueError, RecursionError):
        return False


def sniff_file(path: Path) -> Source:
    """Guess a file's format from its first 64 KiB (raises OSError when it cannot be read)."""
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    lines = head.decode("utf-8", "replace").splitlines()
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # probably cut in the middle
    return guess_source(lines)


_LONE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # a JSON escape of a surrogate (pairs are fine)


def storable(lines: list[str], source: Source) -> list[str]:
    """The lines with any character the log store cannot keep replaced by U+FFFD.

    The store keeps messages as UTF-8 ('surrogateescape'), which refuses a lone surrogate outside
    U+DC80..U+DCFF: such a character comes from a careless decoder or a journald '\\ud800' escape.
    One C-level check per batch; the slow path only runs for a batch that needs it.
    """
    joined = "\n".join(lines)
    try:
        joined.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        lines = list(map(_clean, lines))
    if source is Source.JOURNAL and _LONE_ESCAPE.search(joined):
        lines = [_clean_json(line) if _LONE_ESCAPE.search(line) else line for line in lines]
    return lines


def _clean(text: str) -> str:
    try:
        text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _clean_json(line: str) -> str:
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return line  # the parser reports it as a torn line, keeping the (ASCII) raw text
    if type(entry) is not dict:
        return line
    cleaned = {key: _clean(value) if type(value) is str else value for key, value in entry.items()}
    return json.dumps(cleaned) if cleaned != entry else line
