"""Filters on parsed records: unit, priority, a regular expression, a start time.

journald filters unit, priority and time itself; logread, dmesg and files are filtered here. A record
whose format carries no priority or no time is kept by those filters (it cannot be judged, and hiding
it could hide the one line that matters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from siteline.core.logs.record import LogRecord, priority_from_name


def parse_priority_range(text: str) -> tuple[int, int] | None:
    """journalctl -p: "err" means emerg..err; "warning..err" or "3..4" a range; None when not a priority."""
    low_text, sep, high_text = text.partition("..")
    low = priority_from_name(low_text) if low_text.strip() else 0
    high = priority_from_name(high_text if sep else low_text)
    if not sep:
        return None if high is None else (0, high)
    if low is None or high is None:
        return None
    return (min(low, high), max(low, high))


def unit_matches(unit: str, wanted: str) -> bool:
    """'ModemManager' matches the unit 'ModemManager.service' and the syslog tag 'ModemManager'."""
    if unit == wanted:
        return True
    bare = wanted.removesuffix(".service")
    return unit in (bare, f"{bare}.service")


@dataclass(frozen=True)
class RecordFilter:
    unit: str | None = None
    priorities: tuple[int, int] | None = None
    pattern: re.Pattern[str] | None = None
    since: float | None = None

    def matches(self, record: LogRecord) -> bool:
        if self.unit is not None and not unit_matches(record.unit, self.unit):
            return False
        if self.priorities is not None and record.priority is not None:
            low, high = self.priorities
            if not low <= record.priority <= high:
                return False
        if self.since is not None and record.time is not None and record.time < self.since:
            return False
        if self.pattern is not None:
            text = f"{record.unit} {record.message}"
            return self.pattern.search(text) is not None
        return True
