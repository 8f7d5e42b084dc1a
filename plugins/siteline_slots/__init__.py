"""Built-in plugin: A/B slots from RAUC, U-Boot (fw_printenv) and GRUB (grub-editenv) — parsers for now."""

from __future__ import annotations

from siteline.api import Probe, hookimpl
from siteline_slots.probe import SlotsProbe

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [SlotsProbe()]
