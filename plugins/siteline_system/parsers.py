"""Parsers for what any Linux box prints about itself. They take garbage and never raise."""

from __future__ import annotations

import re
import shlex

from siteline.api import OsRelease

_OS_RELEASE_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
_KNOWN = {"ID", "NAME", "PRETTY_NAME", "VERSION_ID", "VERSION", "BUILD_ID"}
MAX_INPUT = 64 * 1024


def parse_os_release(text: str) -> OsRelease:
    """os-release(5): KEY=value lines, values optionally shell-quoted; unknown lines ignored."""
    values: dict[str, str] = {}
    for raw in text[:MAX_INPUT].splitlines():
        line = raw.strip()
        m = _OS_RELEASE_LINE.match(line)
        if not m:
            continue
        key, value = m.group(1), m.group(2)
        try:
            parts = shlex.split(value, posix=True)
            value = " ".join(parts) if parts else ""
        except ValueError:
            value = value.strip("'\"")
        values[key] = value
    extra = {k: v for k, v in values.items() if k not in _KNOWN}
    return OsRelease(
        id=values.get("ID", ""),
        name=values.get("NAME", ""),
        pretty_name=values.get("PRETTY_NAME", "") or values.get("NAME", ""),
        version_id=values.get("VERSION_ID", ""),
        version=values.get("VERSION", ""),
        build_id=values.get("BUILD_ID", ""),
        extra=extra,
    )


def parse_proc_uptime(text: str) -> float | None:
    """/proc/uptime: 'seconds idle'."""
    parts = text.strip().split()
    try:
        value = float(parts[0])
    except (IndexError, ValueError):
        return None
    return value if value >= 0 else None


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    """/proc/loadavg: '0.52 0.58 0.59 1/467 12345'."""
    parts = text.strip().split()
    try:
        one, five, fifteen = (float(p) for p in parts[:3])
    except ValueError:
        return None
    return (one, five, fifteen)


def parse_uname(text: str) -> tuple[str | None, str | None]:
    """`uname -a` -> (kernel release, machine). Linux prints: sysname nodename release version... machine."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    parts = line.split()
    if len(parts) < 3 or parts[0] != "Linux":
        return (None, None)
    machine = None
    for candidate in reversed(parts):
        if candidate in {"x86_64", "aarch64", "armv7l", "armv6l", "mips", "mipsel", "riscv64", "i686"}:
            machine = candidate
            break
    return (parts[2], machine)
