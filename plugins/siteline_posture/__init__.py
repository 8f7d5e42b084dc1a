"""Built-in plugin: the Posture probe (encryption, read-only root, firewall, SSH, certificate, clock)."""

from __future__ import annotations

from siteline.api import Probe, hookimpl
from siteline_posture.probe import PostureProbe

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [PostureProbe()]
