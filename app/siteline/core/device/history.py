"""One device's history: what the snapshots, path events and logs said, reduced to the facts a timeline shows.

:class:`DeviceHistory` is fed every snapshot the session delivers (``observe``), the session's path events
(``observe_path_event``) and log records (``observe_logs``). It keeps signal samples and derives the facts
that matter between two snapshots: the default route moved to another link, the device rebooted, the booted
slot or its attempts changed, the device's clock is off. Times are the laptop's clock (``at``): a device
without a real-time clock boots in 1970, so its own times are only used through the offset the Posture
probe measured (:meth:`DeviceHistory.laptop_time`).

Memory is bounded: ring buffers (``deque(maxlen=...)``), each append O(1). Garbage in (None, an
"unavailable" report, a snapshot of another type, NaN) is ignored, never raised.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from siteline.core.device.modem import ModemSignal
from siteline.core.device.network import Network
from siteline.core.device.posture import Clock, Posture
from siteline.core.device.slots import Slot, Slots
from siteline.core.device.system import System
from siteline.core.logs.record import LogRecord

# 24 h of signal samples at one per second (antenna alignment); a 10 s probe keeps 10 days.
MAX_SAMPLES = 86_400
MAX_EVENTS = 10_000
MAX_LOGS = 10_000
WARNING = 4  # syslog priority: warning or worse is kept
MAX_MESSAGE = 300
# A boot time estimated from uptime moves by the probe's round trip; a reboot moves it by at least the
# previous uptime, so anything past this is a reboot.
BOOT_TOLERANCE = 30.0
# A clock that moved by more than this between two probes was set (NTP sync, a person); less is drift.
CLOCK_STEP = 30.0
# The technology whose figures lead, as the Modem panel reads them.
_LEAD = ("lte", "nr", "umts", "gsm")

SlotChangeKind = Literal["first", "booted", "primary", "attempts", "bad", "good"]


@dataclass(frozen=True, slots=True)
class SignalSample:
    at: float
    tech: str  # lte, nr, umts, gsm, or "" when the modem did not say
    rsrp: float | None  # dBm (RSCP for UMTS, RSSI for GSM is kept in ``rssi``)
    rsrq: float | None
    snr: float | None
    rssi: float | None = None


@dataclass(frozen=True, slots=True)
class Link:
    kind: str  # wired, cellular, wifi, other
    iface: str


@dataclass(frozen=True, slots=True)
class PathChange:
    """The default route moved: ``before``/``after`` None means no default route (offline)."""

    at: float
    before: Link | None
    after: Link | None
    first: bool  # the first network snapshot: where traffic went when Siteline first looked
    before_down: bool  # the link traffic left is not connected any more ("wired down")


@dataclass(frozen=True, slots=True)
class Reboot:
    """A boot, at the time estimated from uptime (laptop clock): ``seen_at`` minus ``uptime_seen``."""

    at: float
    seen_at: float
    uptime_seen: float
    previous_uptime: float | None  # how long it had run before, when it was seen running
    first: bool  # the first System snapshot: the boot before Siteline looked


@dataclass(frozen=True, slots=True)
class SlotChange:
    at: float
    change: SlotChangeKind
    slot: str  # the bootname (A, B) or RAUC's slot name
    attempts_left: int | None = None
    previous: int | str | None = None  # the earlier slot or attempts count
    health: str | None = None


@dataclass(frozen=True, slots=True)
class ClockSeen:
    at: float
    offset: float  # device minus laptop, seconds
    unset: bool  # the device's clock is before 2000 (no RTC, no time sync yet)
    previous: float | None  # the offset seen before, when the clock was set since


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """The laptop's own link to the device: "SSH via bastion dropped; continuing on serial"."""

    at: float
    kind: str  # PathEvent.kind: connected, switched, back, dropped, failed, held; "" for a bare sentence
    message: str


@dataclass(frozen=True, slots=True)
class LogSeen:
    received_at: float  # laptop time it arrived
    device_time: float | None  # as the device printed it; corrected through the clock offset when shown
    priority: int
    unit: str
    message: str


Fact = PathChange | Reboot | SlotChange | ClockSeen | LinkEvent


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def lead_signal(signal: ModemSignal) -> SignalSample | None:
    """The leading technology's figures as a sample (at 0; the caller sets the time); None when there are none."""
    found = signal.technologies()
    for tech in _LEAD:
        r = found.get(tech)
        if r is None or r.is_empty():
            continue
        rsrp = r.rscp if tech == "umts" and r.rsrp is None else r.rsrp
        rsrq = r.ecio if tech == "umts" and r.rsrq is None else r.rsrq
        return SignalSample(0.0, tech, _finite(rsrp), _finite(rsrq), _finite(r.snr), _finite(r.rssi))
    rssi = _finite(signal.rssi)
    return None if rssi is None else SignalSample(0.0, "", None, None, None, rssi)


def _link(net: Network) -> Link | None:
    if not net.active_iface:
        return None
    kind = net.active_device.kind if net.active_device is not None else "other"
    return Link(kind, net.active_iface)


def _slot_id(slot: Slot) -> str:
    return slot.bootname or slot.name


class DeviceHistory:
    """What one device did, as facts in laptop time; see the module docstring."""

    def __init__(
        self,
        name: str = "",
        max_samples: int = MAX_SAMPLES,
        max_events: int = MAX_EVENTS,
        max_logs: int = MAX_LOGS,
    ) -> None:
        self.name = name
        self.samples: deque[SignalSample] = deque(maxlen=max_samples)
        self.events: deque[Fact] = deque(maxlen=max_events)
        self.logs: deque[LogSeen] = deque(maxlen=max_logs)
        # The Logs tab re-reads the device's last lines each time it starts following again: a record
        # already kept (same device time, priority, unit and message) is not a new event.
        self._log_keys: set[tuple[float, int, str, str]] = set()
        # (laptop time seen, offset): how device times map to the laptop's; bounded like the events.
        self.offsets: deque[tuple[float, float]] = deque(maxlen=max_events)
        self.revision = 0  # grows on every change, so a view can skip a redraw when nothing happened
        self._network: tuple[float, Link | None] | None = None
        self._boot: tuple[float, float] | None = None  # (estimated boot time, last uptime seen)
        self._slots: Slots | None = None

    # -- feeding -------------------------------------------------------------------------------

    def observe(self, kind: str, snapshot: Any, at: float | None = None) -> list[Fact | SignalSample]:
        """Take one snapshot of ``kind`` seen at ``at`` (laptop time); returns what it added."""
        when = _finite(time.time() if at is None else at)
        if when is None or snapshot is None:
            return []
        added: list[Fact | SignalSample] = []
        if kind == "modem":
            added = self._observe_signal(getattr(snapshot, "signal", snapshot), when)
        elif kind == "network" and isinstance(snapshot, Network):
            added = self._observe_network(snapshot, when)
        elif kind == "system" and isinstance(snapshot, System):
            added = self._observe_system(snapshot, when)
        elif kind == "slots" and isinstance(snapshot, Slots):
            added = self._observe_slots(snapshot, when)
        elif kind == "posture" and isinstance(snapshot, Posture) and snapshot.clock is not None:
            added = self._observe_clock(snapshot.clock)
        elif kind == "clock" and isinstance(snapshot, Clock):
            added = self._observe_clock(snapshot)
        for item in added:
            if isinstance(item, SignalSample):
                if self.samples and item.at < self.samples[-1].at:
                    continue  # samples are kept in time order (the timeline searches them); a late one is dropped
                self.samples.append(item)
            else:
                self.events.append(item)
        if added:
            self.revision += 1
        return added

    def observe_path_event(self, event: Any, at: float | None = None) -> LinkEvent | None:
        """A session path event (core.paths.PathEvent) or its sentence; "trying ..." is not news."""
        kind, message, when = "", event, at
        if not isinstance(event, str):
            kind, message = str(getattr(event, "kind", "")), getattr(event, "message", None)
            when = at if at is not None else getattr(event, "when", None)
        stamp = _finite(time.time() if when is None else when)
        if kind == "trying" or not isinstance(message, str) or not message.strip() or stamp is None:
            return None
        found = LinkEvent(stamp, kind, message.strip()[:MAX_MESSAGE])
        self.events.append(found)
        self.revision += 1
        return found

    def observe_logs(self, records: Iterable[Any], at: float | None = None) -> int:
        """Keep the records of warning or worse; returns how many were kept."""
        when = _finite(time.time() if at is None else at)
        if when is None:
            return 0
        kept = 0
        for record in records:
            if not isinstance(record, LogRecord) or record.priority is None or record.priority > WARNING:
                continue
            message = record.message if isinstance(record.message, str) else str(record.message)
            device_time = _finite(record.time)
            seen = LogSeen(when, device_time, record.priority, record.unit, message[:MAX_MESSAGE])
            key = _log_key(seen)
            if key is not None:
                if key in self._log_keys:
                    continue
                if len(self.logs) == self.logs.maxlen:
                    oldest = _log_key(self.logs[0])
                    if oldest is not None:
                        self._log_keys.discard(oldest)
                self._log_keys.add(key)
            self.logs.append(seen)
            kept += 1
        if kept:
            self.revision += 1
        return kept

    # -- reading -------------------------------------------------------------------------------

    @property
    def clock_offset(self) -> float | None:
        """The latest offset (device minus laptop, seconds), None until the clock was read."""
        return self.offsets[-1][1] if self.offsets else None

    def offset_at(self, laptop_at: float) -> float | None:
        """The offset in effect at ``laptop_at``: the last one seen before it, else the first one seen after."""
        if not self.offsets:
            return None
        found = self.offsets[0][1]
        for seen, offset in self.offsets:
            if seen > laptop_at:
                break
            found = offset
        return found

    def laptop_time(self, log: LogSeen) -> float:
        """When a log record happened on the laptop's clock; its arrival time when the device's is unusable."""
        if log.device_time is None:
            return log.received_at
        offset = self.offset_at(log.received_at)
        if offset is None:
            # No clock reading yet: a sane-looking device time is taken as it is, a 1970 one cannot be placed.
            return log.device_time if log.device_time > 946_684_800.0 else log.received_at
        return log.device_time - offset

    # -- deriving ------------------------------------------------------------------------------

    def _observe_signal(self, signal: Any, at: float) -> list[Fact | SignalSample]:
        if not isinstance(signal, ModemSignal):
            return []
        sample = lead_signal(signal)
        if sample is None:
            return []
        return [SignalSample(at, sample.tech, sample.rsrp, sample.rsrq, sample.snr, sample.rssi)]

    def _observe_network(self, net: Network, at: float) -> list[Fact | SignalSample]:
        link = _link(net)
        if link is None and net.on_backup is None:
            return []  # the default route could not be read: that is not "offline"
        previous, self._network = self._network, (at, link)
        if previous is None:
            return [PathChange(at, None, link, first=True, before_down=False)]
        prev_at, before = previous
        if before == link:
            return []
        when = at
        if net.since is not None:
            since = net.since.timestamp()
            if prev_at < since <= at:  # the probe saw the change itself: its time is closer
                when = since
        return [PathChange(when, before, link, first=False, before_down=_is_down(net, before))]

    def _observe_system(self, system: System, at: float) -> list[Fact | SignalSample]:
        uptime = _finite(system.uptime_seconds)
        if uptime is None or uptime < 0:
            return []
        boot = at - uptime
        previous, self._boot = self._boot, (boot, uptime)
        if previous is None:
            return [Reboot(boot, at, uptime, None, first=True)]
        prev_boot, prev_uptime = previous
        if boot - prev_boot <= BOOT_TOLERANCE:
            self._boot = (prev_boot, uptime)  # the same boot: keep the first estimate, it does not wander
            return []
        return [Reboot(boot, at, uptime, prev_uptime, first=False)]

    def _observe_slots(self, slots: Slots, at: float) -> list[Fact | SignalSample]:
        previous, self._slots = self._slots, slots
        if previous is None:
            booted = slots.booted_slot or (slots.slot(slots.booted) if slots.booted else None)
            if booted is None and slots.booted is None:
                return []
            label = _slot_id(booted) if booted else str(slots.booted)
            health = booted.health if booted else None
            return [SlotChange(at, "first", label, booted.attempts_left if booted else None, None, health)]
        return _slot_changes(previous, slots, at)

    def _observe_clock(self, clock: Clock) -> list[Fact | SignalSample]:
        offset, at = _finite(clock.offset_seconds), _finite(clock.laptop_time)
        if offset is None or at is None:
            return []
        before = self.clock_offset
        self.offsets.append((at, offset))
        if before is not None and abs(offset - before) <= CLOCK_STEP:
            return []
        return [ClockSeen(at, offset, clock.unset, before)]


def _is_down(net: Network, link: Link | None) -> bool:
    """The link traffic left is not connected now (or its route says linkdown)."""
    if link is None:
        return False
    for dev in net.devices:
        if dev.owns_interface(link.iface):
            return not dev.connected
    if any(r.dev == link.iface and r.linkdown for r in net.default_routes):
        return True
    return any(d.kind == link.kind and not d.connected for d in net.devices)


def _slot_changes(old: Slots, new: Slots, at: float) -> list[Fact | SignalSample]:
    found: list[Fact | SignalSample] = []
    booted_changed = new.booted is not None and new.booted != old.booted
    if booted_changed:
        slot = new.slot(str(new.booted))
        label = _slot_id(slot) if slot else str(new.booted)
        found.append(SlotChange(at, "booted", label, slot.attempts_left if slot else None, old.booted,
                                slot.health if slot else None))
    if new.primary is not None and new.primary != old.primary:
        slot = new.slot(new.primary)
        found.append(SlotChange(at, "primary", _slot_id(slot) if slot else new.primary, None, old.primary))
    for slot in new.slots:
        was = old.slot(slot.name)
        if was is None:
            continue
        label = _slot_id(slot)
        if slot.health != was.health and slot.health in ("bad", "good"):
            found.append(SlotChange(at, slot.health, label, slot.attempts_left, None, slot.health))
        elif slot.attempts_left != was.attempts_left and slot.attempts_left is not None:
            if booted_changed and slot.booted:
                continue  # already said with "booted B, 2 attempts left"
            found.append(SlotChange(at, "attempts", label, slot.attempts_left, was.attempts_left, slot.health))
    return found


def _log_key(seen: LogSeen) -> tuple[float, int, str, str] | None:
    """What makes a log record the same one read twice; None for a line without a time (it may repeat)."""
    if seen.device_time is None:
        return None
    return (seen.device_time, seen.priority, seen.unit, seen.message)
