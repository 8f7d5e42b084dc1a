"""Built-in plugin: NetworkManager links, autoconnect priorities and the default route (wired vs cellular)."""

from __future__ import annotations

from siteline.api import Probe, hookimpl
from siteline_networkmanager.probe import NetworkManagerProbe

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [NetworkManagerProbe()]
