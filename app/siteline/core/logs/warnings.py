"""The warnings (and worse) among a batch of raw log lines, for the Timeline, without parsing every line.

The log view parses everything it shows; the Timeline only wants priority 0..4. A cheap search picks
the lines that may be such (journald's PRIORITY field, BusyBox logread's facility.level, a kernel
<N> prefix) and only those are parsed, so a flood of info lines costs one regex scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from siteline.core.logs.parsers import fields_of
from siteline.core.logs.record import LogRecord, Source

WARNING = 4
_MAYBE = {
    Source.JOURNAL: re.compile(r'"PRIORITY"\s*:\s*"?[0-4]"?[,}]'),
    Source.LOGREAD: re.compile(r"\.(?:emerg|alert|crit|err|warn)\w*\s"),
    # <PRI> is facility * 8 + severity: severities 0..4 of every facility (the parser reads no other priority).
    Source.SYSLOG: re.compile("^<(?:" + "|".join(str(f * 8 + v) for f in range(24) for v in range(5)) + ")>"),
    Source.DMESG: re.compile(r"^<[0-4]>|^\w+\s*:\s*(?:emerg|alert|crit|err|warn)\s*:"),
}


def warnings_of(lines: Iterable[str], source: Source, boot_time: float | None = None) -> list[LogRecord]:
    """The lines of priority warning or worse, parsed; lines in a format without priorities give none."""
    maybe = _MAYBE.get(source)
    if maybe is None:
        return []
    found = []
    for line in lines:
        if not maybe.search(line):
            continue
        time, host, unit, pid, priority, message, problem = fields_of(line, source, boot_time=boot_time)
        if priority is not None and priority <= WARNING:
            found.append(LogRecord(time, host, unit, pid, priority, message, source, problem))
    return found
