"""The System snapshot: who the device is and how long it has been up."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OsRelease:
    id: str = ""
    name: str = ""
    pretty_name: str = ""
    version_id: str = ""
    version: str = ""
    build_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class System:
    hostname: str | None
    os: OsRelease
    kernel: str | None  # `uname -r`
    machine: str | None  # `uname -m`
    uname: str | None  # the whole `uname -a` line
    uptime_seconds: float | None
    load: tuple[float, float, float] | None
    problems: tuple[str, ...] = ()  # what could not be read, in words
