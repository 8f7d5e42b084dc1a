"""Built-in plugin: A/B slots from RAUC, U-Boot (fw_printenv) and GRUB (grub-editenv), and the update backends."""

from __future__ import annotations

from siteline.api import Probe, UpdateBackend, hookimpl
from siteline_slots.probe import SlotsProbe
from siteline_slots.update import RaucBackend, RawBackend, SwupdateBackend

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [SlotsProbe()]


@hookimpl
def siteline_update_backends() -> list[UpdateBackend]:
    return [RaucBackend(), SwupdateBackend(), RawBackend()]
