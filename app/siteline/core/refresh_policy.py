"""When to read a device again: slow on metered links, faster for the tab being looked at, never for nobody.

Cellular data costs money on a site, so a device whose link is metered is read every few minutes; one on a
wire every half minute; the area whose tab is open (the Modem tab while someone watches the signal) more
often; and a device nobody looks at (not the selected one, or the window is hidden) not at all. A manual
refresh (F5) is always there: this module only decides the automatic ones.

Everything here is pure: :func:`plan` takes what the window knows about one device (:class:`DeviceView`)
and the settings, and returns the interval per probe kind with the reason in words. The settings live in
``paths.config_dir()/refresh.json``; a bad file gives the defaults and a warning, never a crash.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from siteline import paths
from siteline.core.atomic import write_atomic
from siteline.core.device.network import Network

log = logging.getLogger(__name__)

FILE_NAME = "refresh.json"
FILE_FORMAT = "siteline-refresh"
FILE_VERSION = 1
MAX_FILE_BYTES = 64 * 1024
MIN_SECONDS, MAX_SECONDS = 1.0, 24 * 3600.0  # a file may not ask for a busier poll than 1 s, nor rarer than a day
# Areas that change slowly (who the device is, its disk, boot slots, posture) or cost many commands.
SLOW_KINDS = ("system", "network", "slots", "posture")
LinkChoice = Literal["auto", "metered", "unmetered"]
_CHOICES = ("auto", "metered", "unmetered")
_LOCAL_SCHEMES = ("serial",)  # a cable to the laptop: no data plan in between


@dataclass(frozen=True)
class RefreshSettings:
    """The automatic refresh, as the person set it. Seconds; ``devices`` maps a device name to its link choice."""

    enabled: bool = True  # False: only manual refresh (F5)
    shown_seconds: float = 30.0  # the device shown, link not metered
    metered_seconds: float = 300.0  # the device shown, link metered
    tab_seconds: float = 10.0  # the area of the open tab (e.g. Modem), link not metered
    tab_metered_seconds: float = 60.0  # the area of the open tab, link metered
    slow_factor: float = 2.0  # system/network/slots/posture wait this many times longer
    devices: dict[str, LinkChoice] = field(default_factory=dict)  # "metered"/"unmetered" overrides auto

    def link_choice(self, name: str) -> LinkChoice:
        return self.devices.get(name, "auto")

    def with_link_choice(self, name: str, choice: LinkChoice) -> RefreshSettings:
        """These settings with ``name`` marked metered / unmetered (or back to auto-detection)."""
        devices = dict(self.devices)
        if choice == "auto":
            devices.pop(name, None)
        else:
            devices[name] = choice
        return replace(self, devices=devices)


@dataclass(frozen=True)
class DeviceView:
    """What the window knows about one device right now."""

    name: str
    shown: bool  # its page is the one on screen
    window_visible: bool = True
    tab_kind: str | None = None  # the probe kind of the open tab (modem, network, slots), None for others
    connected: bool = True
    target_scheme: str | None = None  # of the path in use: ssh, serial, mqtt, mqtts ...
    network: Network | None = None  # its latest Network snapshot
    control_plane_metered: bool = False  # the laptop's control-plane link (MQTT targets go through it) is metered


@dataclass(frozen=True)
class Metered:
    metered: bool
    why: str  # "on cellular (metered)", "wired (not metered)", "marked metered in the settings" ...


@dataclass(frozen=True)
class RefreshPlan:
    """Seconds between automatic reads per probe kind; ``paused`` says why there are none."""

    paused: str | None
    link: Metered
    base_seconds: float | None
    tab_kind: str | None = None
    tab_seconds: float | None = None
    slow_factor: float = 1.0

    def interval(self, kind: str) -> float | None:
        """Seconds until ``kind`` is read again after its last read; None while paused."""
        if self.paused is not None or self.base_seconds is None:
            return None
        if kind == self.tab_kind and self.tab_seconds is not None:
            return self.tab_seconds
        return self.base_seconds * (self.slow_factor if kind in SLOW_KINDS else 1.0)


def metered(view: DeviceView, settings: RefreshSettings) -> Metered:
    """Is the device's link metered, and why: the person's mark first, then what the link is."""
    choice = settings.link_choice(view.name)
    if choice == "metered":
        return Metered(True, "marked metered in the settings")
    if choice == "unmetered":
        return Metered(False, "marked not metered in the settings")
    scheme = (view.target_scheme or "").lower()
    if scheme in _LOCAL_SCHEMES:
        return Metered(False, "on the serial cable (not metered)")
    if scheme.startswith("mqtt") and view.control_plane_metered:
        return Metered(True, "through the control plane on a metered link")
    kind = _uplink_kind(view.network)
    if kind == "cellular":
        return Metered(True, "on cellular (metered)")
    if kind == "wired":
        return Metered(False, "on wired (not metered)")
    return Metered(False, "not metered")


def _uplink_kind(network: Network | None) -> str | None:
    if network is None:
        return None
    if network.active_device is not None:
        return network.active_device.kind
    return "cellular" if network.on_backup else None


def plan(view: DeviceView, settings: RefreshSettings) -> RefreshPlan:
    """How often each area of ``view``'s device is read now."""
    link = metered(view, settings)
    paused = _paused(view, settings)
    if paused is not None:
        return RefreshPlan(paused, link, None)
    base = settings.metered_seconds if link.metered else settings.shown_seconds
    tab = settings.tab_metered_seconds if link.metered else settings.tab_seconds
    tab_kind = view.tab_kind if view.tab_kind else None
    return RefreshPlan(None, link, base, tab_kind, min(tab, base) if tab_kind else None, settings.slow_factor)


def _paused(view: DeviceView, settings: RefreshSettings) -> str | None:
    if not settings.enabled:
        return "automatic refresh is off in the settings"
    if not view.connected:
        return "not connected"
    if not view.window_visible:
        return "window hidden"
    if not view.shown:
        return "not shown"
    return None


def describe(view: DeviceView, settings: RefreshSettings) -> str:
    """The status-bar words: "refreshing every 5 min: on cellular (metered)" or "paused: not shown"."""
    found = plan(view, settings)
    if found.paused is not None or found.base_seconds is None:
        return f"paused: {found.paused} (F5 refreshes now)"
    text = f"refreshing every {duration(found.base_seconds)}: {found.link.why}"
    if found.tab_kind and found.tab_seconds is not None and found.tab_seconds < found.base_seconds:
        text += f"; {found.tab_kind} every {duration(found.tab_seconds)}"
    return text


def duration(seconds: float) -> str:
    """30 s, 5 min, 1 h 30 min: a person's words for an interval."""
    total = max(1, round(seconds))
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


# -- the settings file -----------------------------------------------------------------------------------------


def settings_path() -> Path:
    return paths.config_dir() / FILE_NAME


def load_settings(path: Path | None = None) -> tuple[RefreshSettings, list[str]]:
    """The settings in ``path`` (default: the config folder) and warnings for what was ignored.

    A missing file is the defaults with no warning; an unreadable one the defaults with a warning; a bad
    value the default for that value with a warning naming it. Never raises for the file's content.
    """
    path = path or settings_path()
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return _defaults_because(path, f"it is larger than {MAX_FILE_BYTES // 1024} KiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RefreshSettings(), []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return _defaults_because(path, f"it cannot be read ({exc})")
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        return _defaults_because(path, f"it is not a {FILE_FORMAT} file")
    if data.get("version") != FILE_VERSION:
        return _defaults_because(path, f"its version {data.get('version')!r} is not {FILE_VERSION}")
    settings, warnings = _from_dict(data)
    for warning in warnings:
        log.warning("refresh settings %s: %s", path, warning)
    return settings, warnings


def _defaults_because(path: Path, why: str) -> tuple[RefreshSettings, list[str]]:
    warning = f"The refresh settings in {path} were ignored because {why}; using the defaults. Fix or delete the file."
    log.warning("%s", warning)
    return RefreshSettings(), [warning]


def _from_dict(data: dict[str, Any]) -> tuple[RefreshSettings, list[str]]:
    defaults, values, warnings = RefreshSettings(), {}, []
    for f in fields(RefreshSettings):
        if f.name not in data:
            continue
        value, problem = _checked(f.name, data[f.name])
        if problem:
            warnings.append(f"{f.name!r} {problem}; using {getattr(defaults, f.name)!r}")
        else:
            values[f.name] = value
    return replace(defaults, **values), warnings


def _checked(name: str, value: Any) -> tuple[Any, str | None]:
    """The value if it is valid for ``name``, else (None, what is wrong)."""
    if name == "enabled":
        return (value, None) if isinstance(value, bool) else (None, "must be true or false")
    if name == "devices":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and k and v in _CHOICES for k, v in value.items()
        )
        return ({k: v for k, v in value.items() if v != "auto"}, None) if ok else (
            None, 'must map device names to "metered", "unmetered" or "auto"')
    is_number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if name == "slow_factor":
        return (float(value), None) if is_number and 1.0 <= value <= 100.0 else (None, "must be a number 1..100")
    if is_number and MIN_SECONDS <= value <= MAX_SECONDS:
        return float(value), None
    return None, f"must be seconds between {MIN_SECONDS:g} and {MAX_SECONDS:g}"


def save_settings(settings: RefreshSettings, path: Path | None = None) -> None:
    """Write ``settings`` atomically (a power cut leaves the old file or the new one)."""
    path = path or settings_path()
    data = {"format": FILE_FORMAT, "version": FILE_VERSION, **asdict(settings)}
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
