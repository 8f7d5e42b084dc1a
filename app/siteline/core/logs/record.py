"""One log line as Siteline understands it, whatever tool printed it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class Source(IntEnum):
    """Which tool's format a line came in (an int so the store keeps it in one byte)."""

    JOURNAL = 0  # journalctl -o json
    LOGREAD = 1  # busybox logread
    DMESG = 2  # dmesg, with or without -T / --time-format
    SYSLOG = 3  # a syslog-style file (RFC 3164 as rsyslog writes it, or RFC 3339 timestamps)
    TEXT = 4  # anything else: the line is the message


@dataclass(frozen=True, slots=True)
class LogRecord:
    time: float | None  # epoch seconds (UTC); None when the line carries no usable time
    host: str
    unit: str  # systemd unit, syslog tag or "kernel"
    pid: int | None
    priority: int | None  # syslog 0 (emerg) .. 7 (debug); None when the format does not say
    message: str
    source: Source
    problem: str | None = None  # why the line could not be read as its format; the raw line is then the message


def priority_from_name(name: str) -> int | None:
    """'err' / 'error' / 'warn' / '3' -> 3 / 3 / 4 / 3; None for anything else."""
    name = name.strip().lower()
    if name.isdigit():
        value = int(name)
        return value if 0 <= value <= 7 else None
    aliases = {"error": 3, "warn": 4, "panic": 0, "emergency": 0, "critical": 2, "crit": 2}
    if name in aliases:
        return aliases[name]
    return PRIORITY_NAMES.index(name) if name in PRIORITY_NAMES else None
