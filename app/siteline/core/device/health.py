"""The Overview's health lines: one per area (modem, network, slots, disk, posture) with a tone and the reason.

``assess(snapshots)`` takes a session's latest snapshots by probe kind ("modem", "network", "slots",
"system", "posture") and answers "what is wrong with this box" in words, one line per area in a fixed
order, so the eye learns where to look. Unknown is never good: a value the device did not report makes
the line "unknown", never a pass and never a zero. Pure and Qt-free: the CLI and tests use it too.

The modem snapshot is read by shape (``.modem`` and ``.signal`` attributes, as the ModemManager probe's
report has) and an unavailable area by its ``kind`` and ``reason``, because core never imports plugins
or the plugin API that defines them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from siteline.core.device.modem import Modem, ModemSignal, rsrp_band
from siteline.core.device.network import Network
from siteline.core.device.posture import Posture
from siteline.core.device.slots import Slot, Slots
from siteline.core.device.system import System

log = logging.getLogger(__name__)

Tone = Literal["good", "warn", "bad", "unknown"]
AREAS: tuple[str, ...] = ("modem", "network", "slots", "disk", "posture")
TITLES: dict[str, str] = {
    "modem": "Modem", "network": "Network", "slots": "A/B slots", "disk": "Disk", "posture": "Security",
}
# The snapshot kind each area is read from (disk use comes with the System snapshot).
SOURCES: dict[str, str] = {"modem": "modem", "network": "network", "slots": "slots", "disk": "system",
                           "posture": "posture"}
# How an unreadable area is named in "could not read the ...".
_NOUNS: dict[str, str] = {"modem": "the modem", "network": "the network", "slots": "the A/B slots",
                          "disk": "the disk use", "posture": "the security checks"}
_RANK: dict[Tone, int] = {"good": 0, "unknown": 1, "warn": 2, "bad": 3}

DISK_WARN = 90.0  # % used
DISK_BAD = 97.0
CLOCK_LIMIT = 60.0  # seconds off the laptop's before certificates and the timeline go wrong
LOW_ATTEMPTS = 1  # a slot with this many boot attempts left or fewer is one bad boot from being abandoned


@dataclass(frozen=True)
class HealthLine:
    """One area's answer: ``headline`` is the finding ("SIM missing"), ``reason`` what supports it."""

    area: str
    tone: Tone
    headline: str
    reason: str = ""
    details: tuple[str, ...] = ()  # more findings and what the probe could not read, for a tooltip

    @property
    def title(self) -> str:
        return TITLES.get(self.area, self.area)

    @property
    def is_problem(self) -> bool:
        return self.tone in ("warn", "bad")

    def text(self) -> str:
        return f"{self.headline}: {self.reason}" if self.reason else self.headline


@runtime_checkable
class _Unavailable(Protocol):
    kind: str
    reason: str


@dataclass(frozen=True)
class _Finding:
    tone: Tone
    text: str


def _line(area: str, findings: Sequence[_Finding], context: str = "", details: Sequence[str] = ()) -> HealthLine:
    """The worst finding is the headline; the rest (and the context) make the reason."""
    if not findings:
        return HealthLine(area, "unknown", "nothing to judge", context, tuple(details))
    ranked = sorted(findings, key=lambda f: -_RANK[f.tone])
    worst = ranked[0]
    rest = [f.text for f in ranked[1:]]
    reason = "; ".join([*rest, context] if context else rest)
    return HealthLine(area, worst.tone, worst.text, reason, tuple(details))


def _db(value: float, unit: str = "dBm") -> str:
    return f"{value:.0f} {unit}".replace("-", "\u2212")  # a real minus sign, as the panels print it


# --- modem ------------------------------------------------------------------------------------------------


def _modem_parts(snapshot: object) -> tuple[Modem, ModemSignal | None, tuple[str, ...]] | None:
    if isinstance(snapshot, Modem):
        return snapshot, None, snapshot.problems
    modem, signal = getattr(snapshot, "modem", None), getattr(snapshot, "signal", None)
    if not isinstance(modem, Modem):
        return None
    problems = getattr(snapshot, "problems", ())
    extra = tuple(p for p in problems if isinstance(p, str)) if isinstance(problems, tuple) else ()
    return modem, signal if isinstance(signal, ModemSignal) else None, modem.problems + extra


def _sim_findings(modem: Modem) -> list[_Finding]:
    reason = (modem.failed_reason or "").lower()
    if modem.sim_present is False or reason == "sim-missing":
        return [_Finding("bad", "SIM missing")]
    if modem.sim_locked or (modem.state or "").lower() == "locked":
        need = modem.unlock_required if modem.unlock_required not in (None, "none") else None
        return [_Finding("bad", f"SIM locked (needs {need})" if need else "SIM locked")]
    if reason == "sim-error":
        return [_Finding("bad", "SIM error")]
    return []


def _registration_findings(modem: Modem) -> list[_Finding]:
    state = (modem.state or "").lower()
    reg = (modem.registration or "").lower()
    if state == "failed":
        return [_Finding("bad", f"modem failed: {modem.failed_reason or 'no reason given'}")]
    if state in ("disabled", "disabling"):
        return [_Finding("bad", "modem disabled")]
    if reg == "denied":
        return [_Finding("bad", "registration denied by the network")]
    registered = state in ("registered", "connected", "connecting", "disconnecting") or reg in ("home", "roaming")
    if not registered:
        if reg == "searching" or state == "searching":
            return [_Finding("warn", "searching for a network")]
        if state or reg:
            return [_Finding("bad", f"not registered ({reg or state})")]
        return [_Finding("unknown", "registration unknown")]
    if modem.roaming or reg == "roaming":  # data abroad is billed by the megabyte
        return [_Finding("warn", f"roaming {_where(modem) or 'on another network'}")]
    return []


_BAND_TONE: dict[str, Tone] = {"excellent": "good", "good": "good", "fair": "warn", "poor": "bad"}


def _signal_finding(modem: Modem, signal: ModemSignal | None) -> _Finding:
    """RSRP band for LTE/NR; other technologies and the bare % are shown but not judged (no agreed bands)."""
    readings = signal.technologies() if signal is not None else {}
    for tech in ("lte", "nr"):
        reading = readings.get(tech)
        if reading is not None and reading.rsrp is not None:
            band = rsrp_band(reading.rsrp)
            tone = _BAND_TONE.get(band or "", "bad")
            return _Finding(tone, f"signal {band}: RSRP {_db(reading.rsrp)} ({'LTE' if tech == 'lte' else '5G'})")
    for tech, label in (("umts", "RSCP"), ("gsm", "RSSI")):
        reading = readings.get(tech)
        figure = None if reading is None else (reading.rscp if tech == "umts" else reading.rssi)
        if figure is not None:
            return _Finding("good", f"{tech.upper()} {label} {_db(figure)}")
    if signal is not None and signal.rssi is not None:
        return _Finding("good", f"RSSI {_db(signal.rssi)}")
    if modem.signal_quality is not None:
        return _Finding("good", f"signal {modem.signal_quality} %")
    return _Finding("unknown", "signal strength not reported")


def _where(modem: Modem) -> str:
    operator = modem.operator_name or modem.operator_code
    tech = "/".join(t.upper() for t in modem.access_technologies if t)
    parts = [f"on {operator}" if operator else "", f"({tech})" if tech else ""]
    return " ".join(p for p in parts if p)


def assess_modem(snapshot: object) -> HealthLine:
    parts = _modem_parts(snapshot)
    if parts is None:
        return _unexpected("modem", snapshot)
    modem, signal, problems = parts
    where = _where(modem)
    findings = _sim_findings(modem) or _registration_findings(modem)
    if any(f.tone == "bad" for f in findings):
        return _line("modem", findings, where, problems)  # no service: the signal figures do not matter now
    if not findings:  # registered at home
        findings.append(_Finding("good", f"registered {where}" if where else "registered"))
    findings.append(_signal_finding(modem, signal))
    return _line("modem", findings, "", problems)


# --- network ----------------------------------------------------------------------------------------------


def assess_network(net: Network) -> HealthLine:
    rest = net.summary.split("; ")[1:]  # "wired eth0 is unavailable" and the like, after the head
    device = net.active_device
    if net.on_backup:
        since = f" since {net.since:%H:%M}" if net.since else ""
        finding = _Finding("warn", f"on cellular backup{since}")
    elif net.active_iface is None and net.on_backup is False:
        finding = _Finding("bad", "offline: no default route")
    elif net.active_iface is None:
        finding = _Finding("unknown", "the default route could not be read")
    elif device is not None and device.kind == "wired":
        finding = _Finding("good", f"on wired primary ({device.name})")
    elif device is not None:
        finding = _Finding("good", f"traffic goes through {device.kind} ({device.name})")
    else:
        finding = _Finding("good", f"traffic goes through {net.active_iface}")
    return _line("network", [finding, *_failover_findings(net)], "; ".join(rest), net.problems)


def _failover_findings(net: Network) -> list[_Finding]:
    """Profiles that would stop failover from working, read from the profiles themselves (not the words)."""
    primary, backup = net.primary, net.backup
    found: list[_Finding] = []
    if primary and backup and primary.priority is not None and backup.priority is not None \
            and backup.priority >= primary.priority:
        found.append(_Finding("warn", f"cellular backup priority {backup.priority} not below wired {primary.priority}"))
    for conn, role in ((primary, "wired"), (backup, "cellular")):
        if conn is not None and conn.autoconnect is False:
            found.append(_Finding("warn", f"{role} profile {conn.name!r} does not autoconnect"))
    return found


# --- slots ------------------------------------------------------------------------------------------------


def _slot_name(slot: Slot) -> str:
    return slot.bootname or slot.name


def _rauc_misread(slots: Slots) -> bool:
    """RAUC calls every bootable slot bad with no counters to say otherwise: it could not read the env."""
    bootable = [s for s in slots.slots if s.bootname]
    return bool(bootable) and slots.env is None and all(s.rauc_boot_status == "bad" for s in bootable)


def _attempts_findings(slots: Slots, slot: Slot, role: str) -> list[_Finding]:
    # GRUB's scheme gives a slot one try (its _TRY flag), so one left is normal there; U-Boot and barebox count
    # down from a budget (BOOT_x_LEFT, remaining_attempts) that mark-good refills.
    left = slot.attempts_left
    if slots.env is None or slots.env.kind == "grub" or left is None or left > LOW_ATTEMPTS or slot.health == "bad":
        return []
    plural = "s" if left != 1 else ""
    return [_Finding("bad" if left == 0 else "warn", f"{role} {_slot_name(slot)}: {left} boot attempt{plural} left")]


def assess_slots(slots: Slots) -> HealthLine:
    if _rauc_misread(slots):
        return _line("slots", [_Finding("warn", "RAUC could not read the boot environment")],
                     "it calls every slot bad; check fw_printenv / grub-editenv and fw_env.config", slots.problems)
    booted = slots.booted_slot
    primary = next((s for s in slots.slots if s.primary), None)
    bad = [s for s in slots.slots if s.health == "bad" and s.bootname and s is not booted]
    marked = f" — {', '.join(_slot_name(s) for s in bad)} marked bad" if bad else ""
    findings: list[_Finding] = []
    if booted is None:
        findings.append(_Finding("unknown", "which slot booted is not known"))
    elif booted.health == "bad":
        findings.append(_Finding("bad", f"booted {_slot_name(booted)}, which is marked bad"))
    elif bad:
        findings.append(_Finding("warn", f"booted {_slot_name(booted)} (fallback){marked}"))
    elif primary is not None and primary is not booted:
        findings.append(_Finding("warn", f"booted {_slot_name(booted)}; the next boot switches to "
                                         f"{_slot_name(primary)}"))
    else:
        version = f" ({booted.bundle_version})" if booted.bundle_version else ""
        findings.append(_Finding("good", f"booted {_slot_name(booted)}{version}, the primary"
                                 if primary is booted else f"booted {_slot_name(booted)}{version}"))
    if booted is not None:
        findings += _attempts_findings(slots, booted, "booted")
    if primary is not None and primary is not booted:
        findings += _attempts_findings(slots, primary, "next")
    # U-Boot's bootcount scheme: a new slot runs on trial until marked good (not after a fallback: that is said).
    on_trial = slots.env is not None and slots.env.upgrade_available and not bad
    if on_trial and booted is not None and booted.health != "bad":
        findings.append(_Finding("warn", f"{_slot_name(booted)} on trial: not yet marked good"))
    return _line("slots", findings, "", slots.problems)


# --- disk -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountUse:
    mountpoint: str
    percent: float | None  # used / (used + available), as df prints it; None when unknown
    read_only: bool | None
    fs_type: str | None = None
    available: int | None = None  # bytes
    size: int | None = None  # bytes

    def free_words(self) -> str:
        """"0.3 GiB free of 8.0 GiB", or "" when the sizes are not known."""
        if self.available is None or not self.size:
            return ""
        return f"{_bytes(self.available)} free of {_bytes(self.size)}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024.0:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024.0
    return f"{size:.1f} TiB"


# Filesystems that are full by construction (an image) or not disks at all.
_FULL_BY_DESIGN = frozenset({"squashfs", "erofs", "iso9660", "cramfs", "romfs"})


def _attr(obj: object, *names: str) -> object:
    return next((v for v in (getattr(obj, n, None) for n in names) if v is not None), None)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value and value >= 0 else None  # NaN and negatives are garbage


def _bytes_of(mount: object, name: str) -> float | None:
    """``<name>_bytes`` or ``<name>`` in bytes, else ``<name>_kib`` / ``<name>_kb`` (df -k's 1024-byte blocks)."""
    found = _number(_attr(mount, f"{name}_bytes", name, "avail" if name == "available" else f"{name}_b"))
    if found is not None:
        return found
    kib = _number(_attr(mount, f"{name}_kib", f"{name}_kb"))
    return None if kib is None else kib * 1024.0


def mount_uses(system: System) -> list[MountUse] | None:
    """The System snapshot's mounts, read by shape (field names vary by version); None when not reported."""
    mounts = getattr(system, "mounts", None)
    if not isinstance(mounts, Sequence) or isinstance(mounts, str):
        return None
    found: list[MountUse] = []
    for m in mounts:
        point = _attr(m, "mountpoint", "target", "mount_point", "path")
        if not isinstance(point, str):
            continue
        size, used, avail = (_bytes_of(m, name) for name in ("size", "used", "available"))
        pct = _number(_attr(m, "use_percent", "used_percent", "percent"))
        if pct is None and used is not None and (avail is not None or size):
            total = used + avail if avail is not None else size or 0.0
            pct = math.ceil(used * 100.0 / total) if total else None  # rounded up, as df prints Use%
        ro = _attr(m, "read_only", "readonly", "ro")
        fs = _attr(m, "fs_type", "fstype", "type")
        found.append(MountUse(point, pct, ro if isinstance(ro, bool) else None, fs if isinstance(fs, str) else None,
                              int(avail) if avail is not None else None, int(size) if size is not None else None))
    return found


def _one_per_filesystem(uses: list[MountUse]) -> list[MountUse]:
    """An overlay (or bind mount) shows its upper filesystem's figures: judge that space once, not twice."""
    seen: dict[tuple[object, ...], MountUse] = {}
    for use in uses:
        key = (use.size, use.available, use.percent) if use.size else (use.mountpoint,)
        if key not in seen or (seen[key].fs_type == "overlay" and use.fs_type != "overlay"):
            seen[key] = use
    return list(seen.values())


def assess_disk(system: System) -> HealthLine:
    uses = mount_uses(system)
    if uses is None:
        return HealthLine("disk", "unknown", "disk use not reported", "the System probe did not list the mounts")
    judged = _one_per_filesystem(
        [u for u in uses if u.percent is not None and not u.read_only and (u.fs_type or "") not in _FULL_BY_DESIGN])
    if not judged:
        return HealthLine("disk", "unknown", "disk use not known", "no writable mount reported its use")
    findings: list[_Finding] = []
    for u in sorted(judged, key=lambda u: -(u.percent or 0.0)):
        pct = u.percent or 0.0
        full = u.available == 0 or pct >= 99.5
        if pct >= DISK_BAD or (full and u.mountpoint == "/"):
            findings.append(_Finding("bad", f"disk {u.mountpoint} {'full' if full else f'{pct:.0f} % full'}"))
        elif pct >= DISK_WARN:
            findings.append(_Finding("warn", f"disk {u.mountpoint} {pct:.0f} % full"))
    if findings:
        fullest = max(judged, key=lambda u: u.percent or 0.0)
        return _line("disk", findings, fullest.free_words() and f"{fullest.mountpoint}: {fullest.free_words()}")
    fullest = max(judged, key=lambda u: u.percent or 0.0)
    free = f", {fullest.free_words()}" if fullest.free_words() else ""
    return HealthLine("disk", "good", f"every mount below {DISK_WARN:.0f} %",
                      f"fullest: {fullest.mountpoint} {fullest.percent or 0.0:.0f} %{free}")


# --- posture ----------------------------------------------------------------------------------------------


def _clock_finding(posture: Posture) -> _Finding | None:
    clock = posture.clock
    if clock is None or clock.device_time is None:
        return None
    offset = clock.offset_seconds
    if clock.unset or (offset is not None and abs(offset) > CLOCK_LIMIT):
        return _Finding("bad", clock.describe())
    return None


def assess_posture(posture: Posture) -> HealthLine:
    counts = posture.counts()
    failing = [c.title for c in posture.checks if c.status == "fail"]
    findings: list[_Finding] = []
    clock = _clock_finding(posture)
    if clock is not None:
        findings.append(clock)
    if failing:
        plural = "s fail" if len(failing) > 1 else " fails"
        findings.append(_Finding("warn", f"{len(failing)} security check{plural}"))
    if counts["unknown"]:
        findings.append(_Finding("unknown", f"{counts['unknown']} of {len(posture.checks)} not checked"))
    if not posture.checks:
        findings.append(_Finding("unknown", "no security checks were made"))
    elif counts["pass"] == len(posture.checks):
        findings.append(_Finding("good", f"all {len(posture.checks)} security checks pass"))
    context = f"not met: {', '.join(failing)}" if failing else f"{counts['pass']} pass" if counts["unknown"] else ""
    return _line("posture", findings, context, posture.problems)


# --- all areas --------------------------------------------------------------------------------------------


def _unexpected(area: str, snapshot: object) -> HealthLine:
    return HealthLine(area, "unknown", f"could not read {_NOUNS[area]}",
                      f"the probe returned {type(snapshot).__name__}, which Siteline does not know")


_ASSESSORS: dict[str, tuple[type, Callable[..., HealthLine]]] = {
    "network": (Network, assess_network),
    "slots": (Slots, assess_slots),
    "disk": (System, assess_disk),
    "posture": (Posture, assess_posture),
}


def assess_area(area: str, snapshot: object) -> HealthLine:
    """One area's line; never raises, whatever the snapshot holds."""
    if snapshot is None:
        return HealthLine(area, "unknown", "not read yet")
    if isinstance(snapshot, _Unavailable) and isinstance(snapshot.reason, str):
        # ModemManager answered and sees no modem: that is a finding (power, USB cable), not an unread area.
        if area == "modem" and "no modem" in snapshot.reason.lower():
            return HealthLine(area, "bad", "no modem found", snapshot.reason)
        return HealthLine(area, "unknown", f"could not read {_NOUNS[area]}", snapshot.reason)
    try:
        if area == "modem":
            return assess_modem(snapshot)
        kind, assess_one = _ASSESSORS[area]
        return assess_one(snapshot) if isinstance(snapshot, kind) else _unexpected(area, snapshot)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:  # a snapshot with garbage inside
        log.warning("could not assess %s: %r", area, exc)
        return HealthLine(area, "unknown", f"could not judge {_NOUNS[area]}", f"unexpected values ({exc})")


def assess(snapshots: Mapping[str, object]) -> list[HealthLine]:
    """One line per area in the fixed order of ``AREAS``."""
    return [assess_area(area, snapshots.get(SOURCES[area])) for area in AREAS]


def summary(lines: Sequence[HealthLine]) -> str:
    """"2 problems: on cellular backup; disk /data 96 % full" — or what is fine and what is not known."""
    problems = sorted((ln for ln in lines if ln.is_problem), key=lambda ln: -_RANK[ln.tone])
    unknown = [ln.title for ln in lines if ln.tone == "unknown"]
    tail = f" (not known: {', '.join(unknown)})" if unknown else ""
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        return f"{len(problems)} {noun}: " + "; ".join(ln.headline for ln in problems) + tail
    if not unknown:
        return "No problems found"
    if len(unknown) == len(lines):
        return "Nothing known yet"
    return "No problems found" + tail


def worst(lines: Sequence[HealthLine]) -> Tone:
    return max((ln.tone for ln in lines), key=lambda t: _RANK[t], default="unknown")
