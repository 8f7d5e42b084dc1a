"""One time axis per device: the facts of a :class:`DeviceHistory` as sentences a technician reads in order.

``build(history, start, end)`` merges path changes, reboots, slot events, clock findings, link events, log
records of warning or worse and signal band changes into :class:`TimelineEvent` s sorted by time (the
laptop's clock): "14:02 wired down → cellular", "14:05 reboot (had run 3 d 4 h)", "14:06 booted B, 2 attempts
left", "14:09 RSRP fell to −112 dBm (poor)". Consecutive signal samples are one event only when the
quality band (or the technology) changes.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from siteline.core.device.history import (
    ClockSeen,
    DeviceHistory,
    Fact,
    Link,
    LinkEvent,
    LogSeen,
    PathChange,
    Reboot,
    SignalSample,
    SlotChange,
)
from siteline.core.device.modem import rsrp_band
from siteline.core.logs.record import PRIORITY_NAMES

Tone = Literal["good", "warn", "bad", "info"]
# The lanes of the timeline, top to bottom, and the word each shows in the event list.
KINDS = ("signal", "network", "reboot", "slots", "logs", "link", "clock")
WORDS = {
    "signal": "signal",
    "network": "network",
    "reboot": "reboot",
    "slots": "slots",
    "logs": "log",
    "link": "connection",
    "clock": "clock",
}
_BAND_TONE: dict[str, Tone] = {"excellent": "good", "good": "good", "fair": "warn", "poor": "bad"}
HYSTERESIS = 2.0  # dB past a band's edge before the band is said to have changed
_BAND_RANK = {"poor": 0, "fair": 1, "good": 2, "excellent": 3}
_TECH = {"lte": "LTE", "nr": "5G NR", "umts": "UMTS (3G)", "gsm": "GSM (2G)", "": "unknown technology"}
_LINK_TONE: dict[str, Tone] = {
    "connected": "good", "back": "good", "switched": "warn", "held": "info", "dropped": "bad", "failed": "bad",
}


@dataclass(frozen=True)
class TimelineEvent:
    at: float  # seconds since the epoch, laptop clock (device times already corrected)
    kind: str  # one of KINDS
    text: str  # the sentence: "wired down → cellular"
    tone: Tone
    detail: str = ""  # one more line for a tooltip: the figures, the raw counters, the device's own time

    @property
    def word(self) -> str:
        return WORDS.get(self.kind, self.kind)


def minus(text: str) -> str:
    """A real minus sign: "−112" reads better than "-112" on a small screen."""
    return text.replace("-", "\u2212")


def span_words(seconds: float) -> str:
    """45 s, 2 min, 3 h 20 min, 4 d 2 h, 56 years — a duration as a person says it."""
    s = abs(seconds)
    if not math.isfinite(s):
        return "an unknown time"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h:.0f} h" + (f" {m:.0f} min" if m else "")
    if s < 365 * 86400:
        d, h = divmod(s // 3600, 24)
        return f"{d:.0f} d" + (f" {h:.0f} h" if h else "")
    return f"{s / (365.25 * 86400):.0f} years"


def clock_note(history: DeviceHistory) -> str | None:
    """"device clock was 3 h behind; times corrected", or None while the clock is right or unknown."""
    offset = history.clock_offset
    if offset is None or abs(offset) < 60:
        return None
    side = "ahead" if offset > 0 else "behind"
    return f"device clock was {span_words(offset)} {side}; times corrected"


# -- sentences -------------------------------------------------------------------------------------


def _link_words(link: Link | None) -> str:
    if link is None:
        return "offline"
    return link.kind if link.kind in ("wired", "cellular", "wifi") else link.iface


def _path(fact: PathChange) -> TimelineEvent:
    after = _link_words(fact.after)
    tone: Tone = "bad" if fact.after is None else "warn" if fact.after.kind == "cellular" else "good"
    was, now = (link.iface if link else "none" for link in (fact.before, fact.after))
    detail = f"default route: {was} → {now}"
    if fact.first:
        text = {"offline": "offline: no default route", "cellular": "running on cellular backup",
                "wired": "on wired primary"}.get(after, f"traffic through {after}")
        return TimelineEvent(fact.at, "network", f"{text} (first seen)", tone if tone != "good" else "info", detail)
    before = _link_words(fact.before) + (" down" if fact.before_down else "")
    text = f"{before} → {after}"
    if fact.after is not None and fact.after.kind == "wired" and fact.before is not None:
        text += ": back on the primary"
    return TimelineEvent(fact.at, "network", text, tone, detail)


def _reboot(fact: Reboot) -> TimelineEvent:
    seen = f"up {span_words(fact.uptime_seen)} when seen"
    if fact.first:
        return TimelineEvent(fact.at, "reboot", f"booted ({seen} first)", "info", "the boot before Siteline looked")
    ran = f"; had been up {span_words(fact.previous_uptime)}" if fact.previous_uptime is not None else ""
    # Booting again soon after a boot is the pattern of a crash loop or a watchdog: worth the red.
    tone: Tone = "bad" if fact.previous_uptime is not None and fact.previous_uptime < 600 else "warn"
    return TimelineEvent(fact.at, "reboot", f"reboot ({seen}{ran})", tone, "time from the device's uptime")


def _attempts(n: int | None) -> str:
    if n is None:
        return ""
    return "no attempts left" if n == 0 else f"{n} attempt{'s' if n != 1 else ''} left"


def _slot(fact: SlotChange) -> TimelineEvent:
    left = _attempts(fact.attempts_left)
    if fact.change in ("first", "booted"):
        parts = [f"booted {fact.slot}", left, "marked bad" if fact.health == "bad" else ""]
        text = ", ".join(p for p in parts if p)
        if fact.change == "first":
            return TimelineEvent(fact.at, "slots", f"{text} (first seen)", "bad" if fact.health == "bad" else "info")
        tone: Tone = "bad" if fact.health == "bad" else "warn" if fact.attempts_left is not None else "info"
        return TimelineEvent(fact.at, "slots", text, tone, f"was {fact.previous}" if fact.previous else "")
    if fact.change == "primary":
        return TimelineEvent(fact.at, "slots", f"next boot tries {fact.slot}", "info", f"was {fact.previous}")
    if fact.change in ("bad", "good"):
        why = f" ({left})" if fact.change == "bad" and left else ""
        return TimelineEvent(fact.at, "slots", f"slot {fact.slot} marked {fact.change}{why}",
                             "bad" if fact.change == "bad" else "good", left)
    fell = isinstance(fact.previous, int) and fact.attempts_left is not None and fact.attempts_left < fact.previous
    tone = "bad" if fact.attempts_left == 0 else "warn" if fell else "good"
    text = f"{fact.slot}: {left}" + (" — the next boot falls back" if fact.attempts_left == 0 else "")
    return TimelineEvent(fact.at, "slots", text, tone, f"was {fact.previous}")


def _clock(fact: ClockSeen) -> TimelineEvent:
    side = "ahead" if fact.offset > 0 else "behind"
    if fact.previous is not None and abs(fact.offset) < 60:
        return TimelineEvent(fact.at, "clock", "device clock set right", "good",
                             f"it was {span_words(fact.previous)} off")
    if abs(fact.offset) < 60:
        return TimelineEvent(fact.at, "clock", "device clock right", "info", f"offset {fact.offset:+.1f} s")
    why = " (not set: no real-time clock?)" if fact.unset else ""
    text = f"device clock {span_words(fact.offset)} {side}{why}; times corrected"
    return TimelineEvent(fact.at, "clock", text, "warn", f"offset {fact.offset:+.0f} s (device minus laptop)")


def _link(fact: LinkEvent) -> TimelineEvent:
    return TimelineEvent(fact.at, "link", fact.message, _LINK_TONE.get(fact.kind, "info"))


def _fact(fact: Fact) -> TimelineEvent:
    if isinstance(fact, PathChange):
        return _path(fact)
    if isinstance(fact, Reboot):
        return _reboot(fact)
    if isinstance(fact, SlotChange):
        return _slot(fact)
    if isinstance(fact, ClockSeen):
        return _clock(fact)
    return _link(fact)


def _log(history: DeviceHistory, log: LogSeen) -> TimelineEvent:
    at = history.laptop_time(log)
    name = PRIORITY_NAMES[log.priority] if 0 <= log.priority < len(PRIORITY_NAMES) else str(log.priority)
    tone: Tone = "bad" if log.priority <= 3 else "warn"
    device = "" if log.device_time is None else f"device time {log.device_time:.0f}"
    return TimelineEvent(at, "logs", f"{name} · {log.unit}: {log.message}", tone, device)


# -- signal ----------------------------------------------------------------------------------------


def _signal_text(sample: SignalSample) -> str:
    if sample.rsrp is None:
        figure = f"RSSI {sample.rssi:.0f} dBm" if sample.rssi is not None else "no figures"
        return minus(f"{_TECH.get(sample.tech, sample.tech)} {figure}")
    name = "RSCP" if sample.tech == "umts" else "RSRP"
    band = rsrp_band(sample.rsrp) if sample.tech in ("lte", "nr") else None
    return minus(f"{name} {sample.rsrp:.0f} dBm" + (f" ({band})" if band else ""))


def _detail(s: SignalSample) -> str:
    figures = (("RSRP", s.rsrp, "dBm"), ("RSRQ", s.rsrq, "dB"), ("SNR", s.snr, "dB"), ("RSSI", s.rssi, "dBm"))
    return minus(" · ".join(f"{n} {v:.0f} {u}" for n, v, u in figures if v is not None))


def _signal_events(samples: list[SignalSample], first: bool) -> Iterator[TimelineEvent]:
    """One event per band or technology change; ``samples[0]`` is the baseline (an event itself when ``first``)."""
    prev: SignalSample | None = None
    prev_band: str | None = None
    for s in samples:
        band = rsrp_band(s.rsrp) if s.tech in ("lte", "nr") else None
        tone: Tone = _BAND_TONE.get(band or "", "info")
        if prev is None:
            if first:
                text = f"{_TECH.get(s.tech, s.tech)} {_signal_text(s)} (first seen)"
                yield TimelineEvent(s.at, "signal", text, tone, _detail(s))
        elif s.tech != prev.tech:
            text = f"{_TECH.get(prev.tech, prev.tech)} → {_TECH.get(s.tech, s.tech)}, {_signal_text(s)}"
            yield TimelineEvent(s.at, "signal", text, tone if band else "warn", _detail(s))
        elif band is not None and s.rsrp is not None and _crossed(prev_band, s.rsrp):
            verb = "now" if prev_band is None else "fell to" if _BAND_RANK[band] < _BAND_RANK[prev_band] else "rose to"
            yield TimelineEvent(s.at, "signal", minus(f"RSRP {verb} {s.rsrp:.0f} dBm ({band})"), tone, _detail(s))
        else:
            band = prev_band  # still in the band it was in (or unknown this time)
        prev, prev_band = s, band


def _crossed(was: str | None, rsrp: float) -> bool:
    """A band change that counts: the reading is HYSTERESIS dB past the edge, so a signal hovering on
    -90 dBm is not a stream of "fell to fair" / "rose to good"."""
    if was is None:
        return True
    rank = _BAND_RANK[was]
    lower, upper = rsrp_band(rsrp + HYSTERESIS), rsrp_band(rsrp - HYSTERESIS)
    return (lower is not None and _BAND_RANK[lower] < rank) or (upper is not None and _BAND_RANK[upper] > rank)


# -- the merge -------------------------------------------------------------------------------------


def _window(history: DeviceHistory, lo: float, hi: float, before: int = 0) -> tuple[list[SignalSample], int]:
    """The samples with lo <= at <= hi plus ``before`` samples ahead of them, and the index of the first one.

    Samples arrive in time order, so a binary search finds the window: a day at one per second is 86,400.
    """
    samples = list(history.samples)
    first = max(0, bisect_left(samples, lo, key=lambda s: s.at) - before)
    return samples[first:bisect_right(samples, hi, key=lambda s: s.at)], first


def build(history: DeviceHistory, start: float | None = None, end: float | None = None) -> list[TimelineEvent]:
    """Every event of ``history`` with start <= at <= end (laptop clock), oldest first; ties keep their order."""
    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    found = [_fact(f) for f in history.events]
    found += [_log(history, log) for log in history.logs]
    # The sample before the window is the baseline: only a band change inside the window is an event.
    samples, first = _window(history, lo, hi, before=1)
    found += _signal_events(samples, first == 0)
    # sorted() is stable: a reboot and the "booted B" seen by the same probe stay in the order they were derived.
    return sorted((e for e in found if lo <= e.at <= hi), key=lambda e: e.at)


def samples_between(history: DeviceHistory, start: float, end: float) -> list[SignalSample]:
    """The signal samples to draw between ``start`` and ``end`` (laptop clock)."""
    return _window(history, start, end)[0]
