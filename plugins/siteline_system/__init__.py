"""Built-in plugin: the System probe (os-release, hostname, kernel, uptime, load)."""

from __future__ import annotations

from siteline.api import Probe, hookimpl
from siteline_system.probe import SystemProbe

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [SystemProbe()]
