"""What a plugin may implement (pluggy hook specifications) and the typed objects it deals in.

Plugins never import this module directly: they import :mod:`siteline.api`, which re-exports it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import pluggy

from siteline.core.flash.job import HealthCheck
from siteline.core.transports.base import Result

PROJECT = "siteline"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ProbeKind = Literal["system", "modem", "network", "slots", "logs", "posture"]


@dataclass(frozen=True)
class DeviceContext:
    """What a probe or backend gets: one way to run commands on one device, and a logger."""

    name: str
    target: str
    run: Callable[[str, float], Awaitable[Result]]
    log: logging.LoggerAdapter[logging.Logger]


def make_context(
    name: str, target: str, run: Callable[[str, float], Awaitable[Result]], logger: logging.Logger
) -> DeviceContext:
    """A context whose log lines carry the device's name."""
    return DeviceContext(name=name, target=target, run=run, log=logging.LoggerAdapter(logger, {"device": name}))


@runtime_checkable
class Probe(Protocol):
    """Turns what a device prints into a typed snapshot.

    ``collect`` returns a snapshot object (e.g. :class:`siteline.core.device.system.System`) and never
    raises for bad device output: it records what it could not read in the snapshot instead. It returns
    ``None`` when it has nothing to say on this device, and an ``Unavailable`` when the area cannot be read.

    An area may have several probes, asked in turn (the last reading wins). A probe with a true ``fallback``
    attribute (optional) is asked after the others of its area, and only when none of them read it (the AT
    port after ModemManager).
    """

    name: str
    kind: ProbeKind

    async def collect(self, ctx: DeviceContext) -> Any: ...


@runtime_checkable
class UpdateBackend(Protocol):
    """Installs an image through the device's own update tool (RAUC, SWUpdate, raw slot write).

    ``formats`` names the image formats it installs ("raucb", "swu", "raw"). ``detect`` says whether the
    device has the tool (one short command, never a change). ``install_command`` is the one shell command
    that writes the uploaded image to the inactive slot and makes that slot the next one booted; exit 0
    means both happened. Marking good and rolling back are slot actions (core/device/slot_actions.py).
    """

    name: str
    formats: tuple[str, ...]

    async def detect(self, ctx: DeviceContext) -> bool: ...

    def install_command(self, remote_path: str, target_slot: str | None) -> str: ...


@dataclass(frozen=True)
class HealthSpec:
    """What "healthy after an update" means for a device family: devices whose compatible matches one of
    ``compatibles`` (shell-style patterns, e.g. "nwedge-gw-*") get ``check`` unless the technician chose one."""

    family: str
    compatibles: tuple[str, ...]
    check: HealthCheck


@dataclass(frozen=True)
class PanelSpec:
    """An extra tab on the device page. ``factory(parent, ctx)`` builds the widget; only the UI calls it."""

    title: str
    factory: Callable[..., Any]


class SitelineHooks:
    """The hook specifications. Each returns a list so one plugin can contribute several objects."""

    @hookspec
    def siteline_probes(self) -> list[Probe]:  # type: ignore[empty-body]
        """Return the probes this plugin provides."""

    @hookspec
    def siteline_update_backends(self) -> list[UpdateBackend]:  # type: ignore[empty-body]
        """Return the update backends this plugin provides."""

    @hookspec
    def siteline_health_checks(self) -> list[HealthSpec]:  # type: ignore[empty-body]
        """Return the health checks of the device families this plugin knows."""

    @hookspec
    def siteline_panels(self) -> list[PanelSpec]:  # type: ignore[empty-body]
        """Return extra device-page panels (UI side; keep the import of Qt inside the factory)."""
