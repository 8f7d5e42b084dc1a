"""Finding, loading and guarding plugins.

Built-in plugins and third-party ones arrive the same way: through the ``siteline.plugins``
entry-point group. A plugin that fails to import, or raises from a hook or a probe, is disabled
and reported (``PluginHost.failures``); it never takes the application down.
"""

from __future__ import annotations

import importlib.metadata
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Generic, TypeVar

import pluggy

from siteline.core.errors import TransportError
from siteline.core.plugin_api import (
    PROJECT,
    DeviceContext,
    HealthSpec,
    PanelSpec,
    Probe,
    SitelineHooks,
    UpdateBackend,
)

ENTRY_POINT_GROUP = "siteline.plugins"
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    source: str  # "entry point <dist>" or "module"
    enabled: bool = True
    error: str = ""


@dataclass(frozen=True)
class Contribution(Generic[T]):
    """An object a plugin contributed, with the plugin's name so a failure can be pinned on it."""

    plugin: str
    item: T


@dataclass
class PluginFailure:
    plugin: str
    where: str  # "load", "hook siteline_probes", "probe system" ...
    error: str
    details: str = field(default="", repr=False)

    def describe(self) -> str:
        return f"Plugin '{self.plugin}' failed in {self.where} and was disabled: {self.error}"


FailureListener = Callable[[PluginFailure], None]


class PluginHost:
    """Owns the pluggy manager; every call into plugin code goes through :meth:`_guard`."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(SitelineHooks)
        self._disabled = set(disabled)
        self._info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._listeners: list[FailureListener] = []
        # Hooks are asked once and the objects kept: probes may hold state between runs.
        self._cache: dict[str, list[Contribution[Any]]] = {}

    # -- loading -----------------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist
            version = dist.version if dist is not None else "?"
            source = f"entry point of {dist.name}" if dist is not None else "entry point"
            if ep.name in self._disabled:
                self._info[ep.name] = PluginInfo(ep.name, version, source, enabled=False, error="disabled by user")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not stop the others
                self._fail(ep.name, "load", exc, version=version, source=source)
                continue
            self.register(module, ep.name, version=version, source=source)

    def register(self, plugin: ModuleType | object, name: str, *, version: str = "", source: str = "module") -> None:
        if name in self._disabled:
            self._info[name] = PluginInfo(name, version, source, enabled=False, error="disabled by user")
            return
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:  # pluggy rejects unknown hooks or bad signatures
            self._fail(name, "registration", exc, version=version, source=source)
            return
        self._cache.clear()
        self._info[name] = PluginInfo(name, version, source)

    @property
    def plugins(self) -> list[PluginInfo]:
        return sorted(self._info.values(), key=lambda p: p.name)

    def add_failure_listener(self, listener: FailureListener) -> None:
        self._listeners.append(listener)

    # -- calling -----------------------------------------------------------------------------

    def probes(self, kind: str | None = None) -> list[Contribution[Probe]]:
        """The probes, the System one first: who the device is fills the Overview before anything else."""
        found = [c for c in self._collect("siteline_probes") if isinstance(c.item, Probe)]
        # Stable: the others keep their order, except that an area's fallback probes go after its others.
        found.sort(key=lambda c: (c.item.kind != "system", bool(getattr(c.item, "fallback", False))))
        return [c for c in found if kind is None or c.item.kind == kind]

    def update_backends(self) -> list[Contribution[UpdateBackend]]:
        return [c for c in self._collect("siteline_update_backends") if isinstance(c.item, UpdateBackend)]

    def health_checks(self) -> list[Contribution[HealthSpec]]:
        return [c for c in self._collect("siteline_health_checks") if isinstance(c.item, HealthSpec)]

    def panels(self) -> list[Contribution[PanelSpec]]:
        return [c for c in self._collect("siteline_panels") if isinstance(c.item, PanelSpec)]

    async def run_probe(self, entry: Contribution[Probe], ctx: DeviceContext) -> Any | None:
        """Run one probe; on an exception disable its plugin and return None."""
        try:
            return await entry.item.collect(ctx)
        except Exception as exc:
            if _is_transport_problem(exc):
                raise  # the link broke: not the plugin's fault
            self._fail(entry.plugin, f"probe '{entry.item.name}'", exc)
            return None

    def _collect(self, hook_name: str) -> list[Contribution[Any]]:
        if hook_name not in self._cache:
            self._cache[hook_name] = self._ask(hook_name)
        return [c for c in self._cache[hook_name] if self._info.get(c.plugin, _ENABLED).enabled]

    def _ask(self, hook_name: str) -> list[Contribution[Any]]:
        results: list[Contribution[Any]] = []
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            name = self._pm.get_name(impl.plugin) or "?"
            try:
                got = impl.function()
            except Exception as exc:
                self._fail(name, f"hook {hook_name}", exc)
                continue
            if got is None:
                continue
            if not isinstance(got, list | tuple):
                self._fail(name, f"hook {hook_name}", TypeError(f"returned {type(got).__name__}, not a list"))
                continue
            results.extend(Contribution(name, item) for item in got)
        return results

    def _fail(self, name: str, where: str, exc: BaseException, *, version: str = "", source: str = "") -> None:
        failure = PluginFailure(
            plugin=name,
            where=where,
            error=f"{type(exc).__name__}: {exc}",
            details="".join(traceback.format_exception(exc)),
        )
        log.error("%s", failure.describe(), exc_info=exc)
        self.failures.append(failure)
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        old = self._info.get(name)
        self._info[name] = PluginInfo(
            name,
            version or (old.version if old else "?"),
            source or (old.source if old else "?"),
            enabled=False,
            error=failure.error,
        )
        for listener in list(self._listeners):
            listener(failure)


_ENABLED = PluginInfo("", "", "")


def load_plugins() -> PluginHost:
    """The plugins the application uses: every ``siteline.plugins`` entry point. One place for every caller."""
    host = PluginHost()
    host.load_entry_points()
    return host


def _is_transport_problem(exc: BaseException) -> bool:
    """A broken link, not a broken plugin: the plugin must not be disabled for it."""
    return isinstance(exc, TransportError | OSError | TimeoutError)
