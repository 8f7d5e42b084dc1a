"""BusyBox logread: the syslogd ring buffer, here the device's journal in busybox's format.

``logread`` prints the buffer, ``-f`` prints what is logged from now on, ``-F`` both (BusyBox 1.35's
options). A line is "Nov 27 11:25:11 gw-01 daemon.info tag[pid]: message", in the device's local time.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from siteline.simulator import journal
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out

USAGE = "Usage: logread [-fF]\n\nShow messages in syslogd's circular buffer\n\n" \
        "\t-f\tOutput data as log grows\n\t-F\tSame as -f, but dump buffer first"
LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
FACILITIES = {"0": "kern", "1": "user", "2": "mail", "3": "daemon", "4": "auth", "10": "authpriv"}


def line_of(entry: dict[str, Any]) -> str:
    try:
        when = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1_000_000
        level = LEVELS[min(7, max(0, int(entry.get("PRIORITY", "6"))))]
    except (TypeError, ValueError):
        when, level = 0.0, "info"
    facility = FACILITIES.get(str(entry.get("SYSLOG_FACILITY", "3")), "daemon")
    tag = entry.get("SYSLOG_IDENTIFIER") or "kernel"
    pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(when))
    return f"{stamp} {entry.get('_HOSTNAME', 'localhost')} {facility}.{level} {tag}{pid}: {entry.get('MESSAGE', '')}"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    flags: set[str] = set()
    for arg in argv:
        if arg in ("-h", "--help"):
            return fail(USAGE, 1)
        if not arg.startswith("-") or arg == "-" or any(c not in "fF" for c in arg[1:]):
            return fail(f"logread: unrecognized option '{arg}'\n{USAGE}", 1)
        flags.update(arg[1:])
    found, offset, last = journal.snapshot(state.root)
    if "F" in flags or not flags:
        out("".join(line_of(e) + "\n" for e in found))
    sys.stdout.flush()
    if not flags:
        return 0
    for new in journal.follow(state.root, offset, last):
        out("".join(line_of(e) + "\n" for e in new))
        sys.stdout.flush()
    return 0
