"""Finding, loading and guarding plugins.

Built-in plugins and installed third-party ones arrive through the ``siteline.plugins`` entry-point
group; a technician's own arrive as files in the user plugin folder (see :mod:`siteline.core.user_plugins`).
A plugin that fails to import, or raises from a hook or a probe, is disabled and reported
(``PluginHost.failures``); it never takes the application down. A person may switch any plugin off
(:meth:`PluginHost.set_enabled`, kept in :mod:`siteline.core.plugin_settings`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import pluggy

from siteline.core import user_plugins
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
from siteline.core.plugin_settings import CORE_PLUGINS, PluginSettings, settings_path

ENTRY_POINT_GROUP = "siteline.plugins"
DISABLED_BY_USER = "disabled by user"
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    source: str  # "entry point of <dist>", "user folder <path>" or "module"
    enabled: bool = True
    error: str = ""  # DISABLED_BY_USER, or why it failed
    details: str = field(default="", repr=False)  # the traceback of the failure, for support
    toggleable: bool = True  # False for a user plugin refused for its name: switching it means the other one

    @property
    def disabled_by_user(self) -> bool:
        return not self.enabled and self.error == DISABLED_BY_USER

    @property
    def failed(self) -> bool:
        return not self.enabled and not self.disabled_by_user

    @property
    def status(self) -> str:
        """"enabled", "disabled by user" or "failed: <error>": the words the CLI and the dialog show."""
        if self.enabled:
            return "enabled"
        return DISABLED_BY_USER if self.disabled_by_user else f"failed: {self.error}"

    @property
    def core(self) -> bool:
        """A built-in plugin: switching it off takes away something every technician uses."""
        return self.name in CORE_PLUGINS and self.source.startswith("entry point")


class UnknownPluginError(LookupError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"No plugin is called '{name}'. Known plugins: {', '.join(known) or 'none'}.")
        self.name = name
        self.known = list(known)


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
    """Owns the pluggy manager. Every call into plugin code (import, hooks, probes) is guarded: what raises
    is disabled and reported, the rest go on."""

    def __init__(self, disabled: Iterable[str] = (), settings: PluginSettings | None = None) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(SitelineHooks)
        self._settings = settings
        self._disabled = set(disabled) | (settings.disabled if settings else set())
        self._info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.notices: list[str] = [settings.problem] if settings and settings.problem else []
        self._listeners: list[FailureListener] = []
        # Hooks are asked once and the objects kept: probes may hold state between runs.
        self._cache: dict[str, list[Contribution[Any]]] = {}
        # How to bring in a plugin that is switched off now, should the person switch it on again.
        self._dormant: dict[str, Callable[[], None]] = {}
        self._failed_before: dict[str, PluginInfo] = {}

    # -- loading -----------------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in importlib.metadata.entry_points(group=group):
            dist = ep.dist
            version = dist.version if dist is not None else "?"
            source = f"entry point of {dist.name}" if dist is not None else "entry point"
            load = functools.partial(self._load_entry_point, ep, version, source)
            if ep.name in self._disabled:
                self._set_dormant(ep.name, version, source, load)
                continue
            load()

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint, version: str, source: str) -> None:
        try:
            module = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not stop the others (nor exit Siteline)
            self._fail(ep.name, "load", exc, version=version, source=source)
            return
        self.register(module, ep.name, version=version, source=source)

    def load_folders(self, folders: Sequence[Path]) -> None:
        """The plugins in these folders (after the entry points: an installed plugin keeps its name)."""
        candidates, notes = user_plugins.discover(list(folders))
        for note in notes:
            log.error("%s", note)
        self.notices += notes
        for candidate in candidates:
            name, version = candidate.name, user_plugins.read_version(candidate)
            if name in self._info:
                other = self._info[name]
                self._refuse(candidate, version, f"a plugin named '{name}' is already installed ({other.source}); "
                             f"rename {candidate.path.name} to load this one")
            elif candidate.refused:
                self._refuse(candidate, version, candidate.refused)
            elif name in self._disabled:
                self._set_dormant(name, version, candidate.source, functools.partial(self._load_user, candidate))
            else:
                self._load_user(candidate)

    def _load_user(self, candidate: user_plugins.Candidate) -> None:
        refused = candidate.recheck()  # checked again right before importing: a dormant one may have changed
        if refused:
            self._refuse(candidate, user_plugins.read_version(candidate), refused)
            return
        try:
            module = user_plugins.import_candidate(candidate)
        except (Exception, SystemExit) as exc:  # SyntaxError too: a half-edited file must not stop Siteline
            version = user_plugins.read_version(candidate)
            self._fail(candidate.name, "load", exc, version=version, source=candidate.source)
            return
        self.register(module, candidate.name, version=user_plugins.module_version(module), source=candidate.source)

    def _refuse(self, candidate: user_plugins.Candidate, version: str, why: str) -> None:
        """A user plugin that is not imported at all. Keyed by its path when its name belongs to another plugin."""
        failure = PluginFailure(candidate.name, "the user plugin folder", f"refused: {why}", details=why)
        log.error("%s", failure.describe())
        self.failures.append(failure)
        other = self._info.get(candidate.name)
        mine = other is None or other.source == candidate.source  # this plugin's own entry (it was dormant)
        key = candidate.name if mine else f"{candidate.name}\0{candidate.path}"
        self._info[key] = PluginInfo(
            candidate.name, version, candidate.source, enabled=False, error=failure.error, details=why,
            toggleable=key == candidate.name,
        )

    def _set_dormant(self, name: str, version: str, source: str, bring_in: Callable[[], None]) -> None:
        self._info[name] = PluginInfo(name, version, source, enabled=False, error=DISABLED_BY_USER)
        self._dormant[name] = bring_in

    def register(self, plugin: ModuleType | object, name: str, *, version: str = "", source: str = "module") -> None:
        if name in self._disabled:
            self._set_dormant(name, version, source, functools.partial(
                self.register, plugin, name, version=version, source=source))
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
        return sorted(self._info.values(), key=lambda p: (p.name, not p.toggleable))

    @property
    def names(self) -> list[str]:
        return sorted({p.name for p in self._info.values()})

    def info(self, name: str) -> PluginInfo | None:
        return self._info.get(name)

    # -- switching on and off ----------------------------------------------------------------

    def set_enabled(self, name: str, enabled: bool, *, allow_unknown: bool = False) -> str:
        """Switch a plugin on or off, remember it (when the host has settings) and say what happened.

        Off takes effect at once: its contributions leave probes(), panels() ... A plugin switched on again
        is brought in now (imported, if it never was in this process); one that failed stays off until
        Siteline restarts. An unknown name raises UnknownPluginError unless ``allow_unknown`` (a plugin
        that will be installed later).
        """
        info = self._info.get(name)
        if info is None and not allow_unknown:
            raise UnknownPluginError(name, self.names)
        if self._settings is not None:
            self._settings.set_disabled(name, not enabled)
        if info is None:
            if enabled:
                self._disabled.discard(name)
            else:
                self._disabled.add(name)
            state = "stays disabled" if not enabled else "is enabled"
            return f"Plugin '{name}' is not installed; it {state} when it is."
        return self._switch_on(name, info) if enabled else self._switch_off(name, info)

    def _switch_off(self, name: str, info: PluginInfo) -> str:
        self._disabled.add(name)
        if info.disabled_by_user:
            return f"Plugin '{name}' is already disabled."
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
            self._dormant[name] = functools.partial(self.register, plugin, name, version=info.version,
                                                    source=info.source)
        elif info.failed:  # switched on again, it shows its failure: only a restart tries it again
            self._failed_before[name] = info
        self._info[name] = replace(info, enabled=False, error=DISABLED_BY_USER, details="")
        self._cache.clear()
        return f"Plugin '{name}' is disabled; Siteline stopped using it."

    def _switch_on(self, name: str, info: PluginInfo) -> str:
        self._disabled.discard(name)
        if info.enabled:
            return f"Plugin '{name}' is already enabled."
        if info.failed:
            return f"Plugin '{name}' failed ({info.error}); it is tried again when Siteline restarts."
        failed_before = self._failed_before.pop(name, None)
        if failed_before is not None:
            self._info[name] = failed_before
            return f"Plugin '{name}' is enabled; it failed before ({failed_before.error}) and is tried again " \
                "when Siteline restarts."
        bring_in = self._dormant.pop(name, None)
        self._info[name] = replace(info, enabled=True, error="")
        if bring_in is None:
            return f"Plugin '{name}' is enabled; this takes effect when Siteline restarts."
        bring_in()
        self._cache.clear()
        now = self._info[name]
        if now.enabled and self._pm.get_plugin(name) is not None:
            return f"Plugin '{name}' is enabled and loaded now."
        if now.failed:
            return f"Plugin '{name}' is enabled but failed to load: {now.error}"
        return f"Plugin '{name}' is enabled; this takes effect when Siteline restarts."

    def ask_all_hooks(self) -> None:
        """Ask every hook once, so a plugin whose hook raises shows as failed (the CLI list does this)."""
        self.probes()
        self.update_backends()
        self.health_checks()
        self.panels()

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
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin must not end Siteline (Ctrl+C still does)
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
            except (Exception, SystemExit) as exc:  # sys.exit() in a hook disables the plugin, not Siteline
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
            details=failure.details,
        )
        for listener in list(self._listeners):
            listener(failure)


_ENABLED = PluginInfo("", "", "")


def load_plugins() -> PluginHost:
    """The plugins the application uses, one place for every caller: the ``siteline.plugins`` entry points,
    then the user plugin folder and ``SITELINE_PLUGIN_PATH``, minus those the person switched off."""
    host = PluginHost(settings=PluginSettings(settings_path()))
    host.load_entry_points()
    host.load_folders(user_plugins.plugin_folders())
    return host


def known_plugins() -> dict[str, str]:
    """Every plugin name and its source, without importing any (so a plugin that hangs at import can be
    switched off)."""
    known = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        known[ep.name] = f"entry point of {ep.dist.name}" if ep.dist is not None else "entry point"
    candidates, _notes = user_plugins.discover(user_plugins.plugin_folders())
    for candidate in candidates:
        known.setdefault(candidate.name, candidate.source)
    return dict(sorted(known.items()))


def _is_transport_problem(exc: BaseException) -> bool:
    """A broken link, not a broken plugin: the plugin must not be disabled for it."""
    return isinstance(exc, TransportError | OSError | TimeoutError)
