"""The device Timeline: facts derived from realistic snapshot sequences, and the sentences built from them."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from siteline.core.device.history import DeviceHistory, LinkEvent, PathChange, Reboot, SignalSample, SlotChange
from siteline.core.device.modem import ModemSignal, SignalReading
from siteline.core.device.network import derive_network
from siteline.core.device.posture import Clock, Posture
from siteline.core.device.system import OsRelease, System
from siteline.core.device.timeline import build, clock_note, span_words
from siteline.core.logs.record import LogRecord, Source
from siteline.core.paths import PathEvent
from siteline_modemmanager.parsers import parse_signal
from siteline_networkmanager.parsers import network_from_outputs
from siteline_slots.bootenv import parse_fw_printenv
from siteline_slots.parsers import merge

DATA = Path(__file__).resolve().parents[1] / "data"
T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC).timestamp()  # 14:00 UTC


def at(minute: float) -> float:
    return T0 + minute * 60


def golden(path: str) -> str:
    return (DATA / path).read_text()


def network(case: str, since: datetime | None = None):
    return network_from_outputs(
        golden(f"nmcli/device-status-{case}.txt"),
        golden(f"nmcli/connection-show-{case}.txt"),
        golden(f"nmcli/ip-route-default-{case}.txt"),
        golden("nmcli/device-show-ip-iface.txt"),
        since=since,
    )


def system(uptime: float | None) -> System:
    return System("gw1", OsRelease(id="poky"), "6.1.0", "aarch64", None, uptime, None)


def slots(env_file: str, booted: str):
    return merge(None, parse_fw_printenv(golden(f"fw_printenv/{env_file}")), booted=booted)


def lte(rsrp: float | None, rsrq: float | None = -11, snr: float | None = 9.0) -> ModemSignal:
    return ModemSignal(refresh_rate=10, lte=SignalReading(rsrp=rsrp, rsrq=rsrq, snr=snr))


def texts(history: DeviceHistory, kind: str | None = None) -> list[str]:
    return [e.text for e in build(history) if kind is None or e.kind == kind]


# --- network ------------------------------------------------------------------------------------------


def test_failover_to_cellular_and_back() -> None:
    h = DeviceHistory("gw1")
    h.observe("network", network("wired"), at=at(0))
    h.observe("network", network("wired"), at=at(1))  # same path: nothing new
    # The probe saw the change itself and says when: that time is used, not the probe's arrival.
    h.observe("network", network("failover", since=datetime.fromtimestamp(at(2), UTC)), at=at(2.5))
    h.observe("network", network("failover", since=datetime.fromtimestamp(at(2), UTC)), at=at(3))
    h.observe("network", network("wired"), at=at(9))
    events = [e for e in build(h) if e.kind == "network"]
    assert [e.text for e in events] == [
        "on wired primary (first seen)",
        "wired down → cellular",
        "cellular → wired: back on the primary",
    ]
    assert events[1].at == at(2)
    assert events[1].tone == "warn"
    assert events[2].tone == "good"
    assert events[2].at == at(9)
    changes = [f for f in h.events if isinstance(f, PathChange)]
    assert changes[1].before is not None
    assert changes[1].before.iface == "eth0"
    assert changes[1].after is not None
    assert changes[1].after.kind == "cellular"


def test_since_outside_the_interval_is_not_trusted() -> None:
    h = DeviceHistory()
    h.observe("network", network("wired"), at=at(5))
    # A "since" from before the previous snapshot cannot be when this change happened.
    h.observe("network", network("failover", since=datetime.fromtimestamp(at(1), UTC)), at=at(6))
    assert [e.at for e in build(h) if e.kind == "network"] == [at(5), at(6)]


# --- reboots ------------------------------------------------------------------------------------------


def test_reboot_from_uptime_going_down() -> None:
    h = DeviceHistory()
    h.observe("system", system(3 * 86400 + 4 * 3600), at=at(0))
    h.observe("system", system(3 * 86400 + 4 * 3600 + 240), at=at(4))  # same boot, 4 min later
    h.observe("system", system(120), at=at(7))  # up 2 min at 14:07: it rebooted at 14:05
    reboots = [f for f in h.events if isinstance(f, Reboot)]
    assert [r.first for r in reboots] == [True, False]
    assert reboots[1].at == pytest.approx(at(5))
    event = [e for e in build(h, at(1), at(10)) if e.kind == "reboot"]
    assert [e.text for e in event] == ["reboot (up 2 min when seen; had been up 3 d 4 h)"]


def test_reboot_seen_only_as_boot_time_moving() -> None:
    """Probes far apart: the uptime went up, but the device booted again in between."""
    h = DeviceHistory()
    h.observe("system", system(600), at=at(0))
    h.observe("system", system(1800), at=at(60))  # 30 min up at 15:00: booted at 14:30, not 13:50
    reboots = [f for f in h.events if isinstance(f, Reboot) and not f.first]
    assert len(reboots) == 1
    assert reboots[0].at == pytest.approx(at(30))
    # The same boot seen again with a little jitter is not a reboot.
    h.observe("system", system(1800 + 60 + 2), at=at(61))
    assert len([f for f in h.events if isinstance(f, Reboot)]) == 2


def test_quick_reboot_again_is_red() -> None:
    h = DeviceHistory()
    h.observe("system", system(100), at=at(0))
    h.observe("system", system(30), at=at(3))
    (event,) = [e for e in build(h) if e.text.startswith("reboot")]
    assert event.tone == "bad"


# --- slots --------------------------------------------------------------------------------------------


def test_slot_switch_with_attempts() -> None:
    h = DeviceHistory()
    h.observe("slots", slots("rauc-factory-a.txt", "A"), at=at(0))
    h.observe("slots", slots("rauc-factory-a.txt", "A"), at=at(1))
    h.observe("system", system(3600), at=at(0))
    # An update made B primary (BOOT_ORDER=B A) and the device rebooted into it: B has 2 attempts left.
    h.observe("system", system(60), at=at(6))
    h.observe("slots", slots("rauc-booted-b-trial.txt", "B"), at=at(6))
    events = [(e.kind, e.text) for e in build(h, at(0), at(10))]
    assert ("slots", "booted A, 3 attempts left (first seen)") in events
    assert events[-3:] == [
        ("reboot", "reboot (up 1 min when seen; had been up 1 h)"),
        ("slots", "booted B, 2 attempts left"),
        ("slots", "next boot tries B"),
    ]
    changes = [f for f in h.events if isinstance(f, SlotChange)]
    assert [c.change for c in changes] == ["first", "booted", "primary"]
    assert changes[1].previous == "A"


def test_attempts_falling_and_slot_marked_bad() -> None:
    h = DeviceHistory()
    trial = slots("rauc-booted-b-trial.txt", "B")
    h.observe("slots", trial, at=at(0))
    text = golden("fw_printenv/rauc-booted-b-trial.txt")
    for minute, left in ((3, 1), (5, 0)):
        env = parse_fw_printenv(text.replace("BOOT_B_LEFT=2", f"BOOT_B_LEFT={left}"))
        h.observe("slots", merge(None, env, booted="B"), at=at(minute))
    found = [(e.text, e.tone) for e in build(h) if e.kind == "slots"]
    assert found == [
        ("booted B, 2 attempts left (first seen)", "info"),
        ("B: 1 attempt left", "warn"),
        ("next boot tries A", "info"),  # the counters fall back to A by themselves
        ("slot B marked bad (no attempts left)", "bad"),
    ]


# --- clock and logs -----------------------------------------------------------------------------------


def test_1970_clock_is_corrected() -> None:
    """A device without RTC: its clock says 1970-01-01 00:02; its log times are placed by the offset."""
    h = DeviceHistory()
    device_now = 120.0  # two minutes after the epoch
    laptop_now = at(7)
    record = LogRecord(time=device_now - 30, host="gw1", unit="app", pid=12, priority=3, message="cannot reach broker",
                       source=Source.JOURNAL)
    h.observe_logs([record], at=laptop_now)  # arrives before the clock was read: corrected later anyway
    h.observe("posture", Posture(checks=(), clock=Clock(laptop_now, 0.05, device_now)), at=laptop_now)
    logs = [e for e in build(h) if e.kind == "logs"]
    assert logs[0].at == pytest.approx(laptop_now - 30)
    assert logs[0].text == "err · app: cannot reach broker"
    assert logs[0].tone == "bad"
    note = clock_note(h)
    assert note is not None
    assert note.startswith("device clock was 57 years behind")
    assert note.endswith("times corrected")
    (clock,) = [e for e in build(h) if e.kind == "clock"]
    assert "not set" in clock.text


def test_clock_three_hours_behind_then_set_right() -> None:
    h = DeviceHistory()
    h.observe("clock", Clock(at(0), 0.1, at(0) - 3 * 3600), at=at(0))
    assert clock_note(h) == "device clock was 3 h behind; times corrected"
    h.observe("clock", Clock(at(1), 0.1, at(1) - 3 * 3600 + 2), at=at(1))  # drift: not an event
    h.observe("clock", Clock(at(5), 0.1, at(5) + 0.2), at=at(5))  # NTP synchronised
    assert texts(h, "clock") == ["device clock 3 h behind; times corrected", "device clock set right"]
    assert clock_note(h) is None


def test_only_warnings_or_worse_are_kept() -> None:
    h = DeviceHistory()
    records = [
        LogRecord(at(1), "gw1", "kernel", None, 6, "eth0: link up", Source.DMESG),
        LogRecord(at(2), "gw1", "kernel", None, 4, "eth0: link down", Source.DMESG),
        LogRecord(at(3), "gw1", "app", None, None, "no priority", Source.TEXT),
    ]
    assert h.observe_logs(records, at=at(3)) == 1
    assert texts(h, "logs") == ["warning · kernel: eth0: link down"]


# --- signal -------------------------------------------------------------------------------------------


def test_signal_samples_are_events_only_on_band_change() -> None:
    h = DeviceHistory()
    for minute, rsrp in enumerate([-85, -86, -84, -95, -96, -112, -113, -88]):
        h.observe("modem", lte(rsrp), at=at(minute))
    assert len(h.samples) == 8
    assert texts(h, "signal") == [
        "LTE RSRP −85 dBm (good) (first seen)",
        "RSRP fell to −95 dBm (fair)",
        "RSRP fell to −112 dBm (poor)",
        "RSRP rose to −88 dBm (good)",
    ]
    # A window starting inside the poor stretch: the band is judged against the samples before it.
    assert [e.text for e in build(h, at(6), at(8)) if e.kind == "signal"] == ["RSRP rose to −88 dBm (good)"]


def test_a_signal_hovering_on_a_band_edge_is_not_a_stream_of_events() -> None:
    h = DeviceHistory()
    for minute, rsrp in enumerate([-88, -90.5, -89.5, -91, -89, -90.2, -91.5, -89.8, -93, -90.5, -89, -87.5]):
        h.observe("modem", lte(rsrp), at=at(minute))
    # Past the edge by 2 dB counts (-93 is fair, -87.5 good again); wobbling across -90 does not.
    assert texts(h, "signal") == [
        "LTE RSRP −88 dBm (good) (first seen)",
        "RSRP fell to −93 dBm (fair)",
        "RSRP rose to −88 dBm (good)",
    ]


def test_technology_change_and_late_samples() -> None:
    h = DeviceHistory()
    h.observe("modem", lte(-95), at=at(0))
    umts = ModemSignal(refresh_rate=10, umts=SignalReading(rscp=-97, ecio=-8))
    h.observe("modem", umts, at=at(2))
    h.observe("modem", lte(-80), at=at(1))  # older than the newest: dropped, samples stay in time order
    assert [s.at for s in h.samples] == [at(0), at(2)]
    assert texts(h, "signal")[-1] == "LTE → UMTS (3G), RSCP −97 dBm"


def test_a_day_of_one_second_samples_builds_quickly() -> None:
    h = DeviceHistory()
    h.samples.extend(SignalSample(T0 + i, "lte", -80.0 - (i % 30), -11.0, 9.0) for i in range(86_400))
    started = time.perf_counter()
    found = build(h, T0 + 86_400 - 3600, T0 + 86_400)
    assert time.perf_counter() - started < 1.0  # a redraw per probe round must stay cheap
    assert len(found) == 3600 // 30 * 4  # a sawtooth through good, fair and poor every 30 s: 4 changes each


def test_signal_from_a_real_mmcli_reading() -> None:
    h = DeviceHistory()
    signal = parse_signal(golden("mmcli/signal-get-5g.json"))
    h.observe("modem", signal, at=at(0))
    (sample,) = h.samples
    assert isinstance(sample, SignalSample)
    assert sample.tech in ("lte", "nr")
    assert sample.rsrp is not None


def test_unknown_signal_is_never_zero() -> None:
    h = DeviceHistory()
    h.observe("modem", lte(None, None, None), at=at(0))  # polling off: nothing to draw
    h.observe("modem", ModemSignal(refresh_rate=0), at=at(1))
    assert not h.samples


# --- path events, garbage, bounds ---------------------------------------------------------------------


def test_path_events() -> None:
    h = DeviceHistory()
    h.observe_path_event(PathEvent("trying", "ssh://gw1", "trying ssh://gw1", None, when=at(0)))
    h.observe_path_event(PathEvent("switched", "serial", "SSH dropped; continuing on serial", "serial", when=at(5)))
    h.observe_path_event("back on the preferred path", at=at(8))
    assert [f.kind for f in h.events if isinstance(f, LinkEvent)] == ["switched", ""]
    events = [e for e in build(h) if e.kind == "link"]
    assert [(e.at, e.tone) for e in events] == [(at(5), "warn"), (at(8), "info")]


@pytest.mark.parametrize(
    ("kind", "snapshot"),
    [
        ("modem", None),
        ("modem", "garbage"),
        ("modem", object()),
        ("system", system(None)),
        ("system", system(math.nan)),
        ("system", system(-5)),
        ("network", 42),
        ("slots", {"booted": "A"}),
        ("posture", Posture(checks=(), clock=None)),
        ("posture", Posture(checks=(), clock=Clock(at(0), 0.1, None))),
        ("logs", ["x"]),
        ("unknown-kind", system(5)),
    ],
)
def test_garbage_is_ignored(kind: str, snapshot: object) -> None:
    h = DeviceHistory()
    assert h.observe(kind, snapshot, at=at(0)) == []
    assert h.observe("system", system(10), at=math.nan) == []
    assert h.observe_logs([None, "line", 3], at=at(0)) == 0  # type: ignore[list-item]
    assert h.observe_path_event(None) is None
    assert h.observe_path_event("   ") is None
    assert build(h) == []
    assert h.revision == 0


def test_unreadable_routes_are_not_offline() -> None:
    h = DeviceHistory()
    wired = network("wired")
    unreadable = derive_network(wired.devices, wired.connections, None, None, ("ip route failed",), "")
    h.observe("network", wired, at=at(0))
    h.observe("network", unreadable, at=at(1))
    assert texts(h, "network") == ["on wired primary (first seen)"]
    offline = derive_network(wired.devices, wired.connections, (), None, (), "")
    h.observe("network", offline, at=at(2))
    assert texts(h, "network")[-1] == "wired → offline"


def test_memory_is_bounded() -> None:
    h = DeviceHistory(max_samples=100, max_events=50, max_logs=20)
    for i in range(1000):
        h.observe("modem", lte(-80 - (i % 40)), at=T0 + i)
        h.observe("system", system(5.0), at=T0 + i * 100)  # a reboot every time
        h.observe_logs([LogRecord(T0 + i, "gw1", "app", None, 3, f"error {i}", Source.JOURNAL)], at=T0 + i)
    assert len(h.samples) == 100
    assert len(h.events) == 50
    assert len(h.logs) == 20
    assert h.samples[0].at == T0 + 900
    assert len(build(h)) < 300


def test_events_are_merged_in_time_order() -> None:
    h = DeviceHistory()
    h.observe("network", network("wired"), at=at(0))
    h.observe("system", system(600), at=at(0))
    h.observe("network", network("failover"), at=at(2))
    h.observe("system", system(60), at=at(6))
    h.observe_logs([LogRecord(at(1), "gw1", "NetworkManager", None, 4, "eth0: carrier lost", Source.JOURNAL)],
                   at=at(3))
    found = build(h, at(-1), at(10))
    assert [e.at for e in found] == sorted(e.at for e in found)
    assert [e.kind for e in found] == ["network", "logs", "network", "reboot"]
    assert build(h, at(1.5), at(2.5))[0].text == "wired down → cellular"


def test_span_words() -> None:
    assert [span_words(s) for s in (45, 120, 3 * 3600, 3 * 3600 + 1200, 4 * 86400 + 7200, 56 * 365.25 * 86400)] == [
        "45 s", "2 min", "3 h", "3 h 20 min", "4 d 2 h", "56 years",
    ]
