"""Built-in plugin: the ModemManager probe (mmcli -L, -m N in all three output forms, --signal-get)."""

from __future__ import annotations

from siteline.api import Probe, hookimpl
from siteline_modemmanager.probe import ModemManagerProbe

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [ModemManagerProbe()]
