"""The Overview's health lines: real-format samples through the real parsers, hand-made edge cases, and garbage."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.api import Unavailable
from siteline.core.device.health import AREAS, HealthLine, assess, assess_area, mount_uses, summary, worst
from siteline.core.device.modem import Modem, ModemSignal, SignalReading
from siteline.core.device.network import DefaultRoute, NetConnection, NetDevice, derive_network
from siteline.core.device.posture import CheckKey, CheckStatus, Clock, Posture, PostureCheck
from siteline.core.device.slots import BootEnv, Slot, Slots
from siteline.core.device.system import OsRelease, System
from siteline_modemmanager.parsers import parse_modem, parse_signal
from siteline_networkmanager.parsers import network_from_outputs
from siteline_slots.parsers import merge, parse_fw_printenv, parse_rauc_status

DATA = Path(__file__).resolve().parents[1] / "data"
GIB = 1 << 30


def read(*parts: str) -> str:
    return DATA.joinpath(*parts).read_text()


@dataclass(frozen=True)
class Report:
    """The shape of the ModemManager probe's report (a plugin type core never imports)."""

    modem: Modem
    signal: ModemSignal | None = None
    problems: tuple[str, ...] = ()


def modem_line(modem_file: str, signal_file: str | None = None) -> HealthLine:
    signal = parse_signal(read("mmcli", signal_file)) if signal_file else None
    return assess_area("modem", Report(parse_modem(read("mmcli", modem_file)), signal))


def network(case: str, since: datetime | None = None) -> Any:
    return network_from_outputs(
        read("nmcli", f"device-status-{case}.txt"),
        read("nmcli", f"connection-show-{case}.txt"),
        read("nmcli", f"ip-route-default-{case}.txt"),
        read("nmcli", "device-show-ip-iface.txt"),
        since=since,
    )


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    fs_type: str
    size_bytes: int
    used_bytes: int
    available_bytes: int
    read_only: bool = False


@dataclass(frozen=True)
class SystemWithMounts(System):
    """System as the probe reports it once mounts are in (read by shape, so any field spelling of a Mount works)."""

    mounts: tuple[Any, ...] = field(default_factory=tuple)


def system(*mounts: Any) -> SystemWithMounts:
    return SystemWithMounts("gw", OsRelease(), None, None, None, None, None, mounts=tuple(mounts))


def mount(point: str, percent: float, size: int = 8 * GIB, **kw: Any) -> Mount:
    used = int(size * percent / 100)
    return Mount(point, kw.pop("fs_type", "ext4"), size, used, size - used, **kw)


def posture(
    *statuses: tuple[CheckKey, CheckStatus], offset: float | None = 0.2, device_time: float | None = None
) -> Posture:
    now = 1_790_000_000.0
    when = device_time if device_time is not None else (None if offset is None else now + offset)
    clock = Clock(laptop_time=now, uncertainty_seconds=0.01, device_time=when)
    return Posture(checks=tuple(PostureCheck(k, s, "seen") for k, s in statuses), clock=clock)


ALL_PASS: list[tuple[CheckKey, CheckStatus]] = [
    ("luks", "pass"), ("root_readonly", "pass"), ("firewall_output", "pass"), ("ssh_passwords", "pass"),
]


# --- modem --------------------------------------------------------------------------------------------


def test_registered_modem_with_good_signal_is_ok() -> None:
    line = modem_line("modem-0-keyvalue.txt", "signal-get-umts-keyvalue.txt")
    assert (line.tone, line.headline) == ("good", "registered on Dark Star (LTE)")
    assert "RSCP \u221287 dBm" in line.reason


def test_poor_and_fair_rsrp_name_the_dbm() -> None:
    poor = modem_line("modem-0-keyvalue.txt", "signal-get-5g.json")
    assert (poor.tone, poor.headline) == ("bad", "signal poor: RSRP \u2212102 dBm (LTE)")
    fair = modem_line("modem-0-keyvalue.txt", "signal-get-keyvalue.txt")
    assert (fair.tone, fair.headline) == ("warn", "signal fair: RSRP \u2212100 dBm (LTE)")


def test_sim_missing_and_locked_are_problems() -> None:
    missing = modem_line("modem-1-sim-missing-human.txt", "signal-get-5g.json")
    assert (missing.tone, missing.headline) == ("bad", "SIM missing")
    locked = modem_line("modem-2-locked-keyvalue.txt")
    assert (locked.tone, locked.headline) == ("bad", "SIM locked (needs sim-pin)")


def test_roaming_is_a_warning_with_the_operator() -> None:
    line = modem_line("modem-3-roaming-5g.json", "signal-get-off.json")
    assert (line.tone, line.headline) == ("warn", "roaming on Telekom.de (LTE/5GNR)")


def test_unknown_signal_is_never_zero_nor_poor() -> None:
    modem = Modem(state="registered", registration="home", operator_name="Acme")
    blank = ModemSignal(refresh_rate=0, lte=SignalReading(), nr=SignalReading(rsrp=None, snr=None))
    line = assess_area("modem", Report(modem, blank))
    assert line.tone == "unknown"
    assert line.headline == "signal strength not reported"
    assert "0 dBm" not in line.text()
    assert "poor" not in line.text()
    # With the signal-off sample (every figure "--") the bare % is shown, not a band from a made-up zero.
    off = modem_line("modem-0-keyvalue.txt", "signal-get-off.json")
    assert off.tone == "good"
    assert "RSRP" not in off.text()


@pytest.mark.parametrize(
    ("modem", "tone", "headline"),
    [
        (Modem(state="searching", registration="searching"), "warn", "searching for a network"),
        (Modem(state="enabled", registration="idle"), "bad", "not registered (idle)"),
        (Modem(state="registered", registration="denied"), "bad", "registration denied by the network"),
        (Modem(state="failed", failed_reason="unknown-capabilities"), "bad", "modem failed: unknown-capabilities"),
        (Modem(state="disabled"), "bad", "modem disabled"),
        (Modem(), "unknown", "registration unknown"),
        (Modem(state="connected", sim_present=False), "bad", "SIM missing"),
    ],
)
def test_modem_states(modem: Modem, tone: str, headline: str) -> None:
    line = assess_area("modem", modem)  # a bare Modem (the AT-command probe's form) is read too
    assert (line.tone, line.headline) == (tone, headline)


def test_unavailable_and_missing_areas() -> None:
    gone = Unavailable("modem", "ModemManager is not on this device: mmcli: not found (exit 127).")
    line = assess_area("modem", gone)
    assert line.tone == "unknown"
    assert line.text() == "could not read the modem: ModemManager is not on this device: mmcli: not found (exit 127)."
    none = Unavailable("modem", "ModemManager sees no modem: check the modem's power and USB cable, then `mmcli -L`.")
    assert (assess_area("modem", none).tone, assess_area("modem", none).headline) == ("bad", "no modem found")
    lines = assess({"modem": gone})
    assert [ln.area for ln in lines] == list(AREAS)
    assert [ln.headline for ln in lines[1:]] == ["not read yet"] * 4


# --- network ------------------------------------------------------------------------------------------


def test_wired_primary_is_ok_and_backup_is_a_warning_with_the_time() -> None:
    assert (assess_area("network", network("wired")).tone, assess_area("network", network("wired")).headline) == (
        "good", "on wired primary (eth0)")
    line = assess_area("network", network("failover", since=datetime(2026, 11, 27, 14, 2)))
    assert (line.tone, line.headline, line.reason) == ("warn", "on cellular backup since 14:02",
                                                       "wired eth0 is unavailable")


def test_no_default_route_is_bad_and_unreadable_routes_unknown() -> None:
    devs = (NetDevice("eth0", "ethernet", "unavailable", None),)
    conns = (NetConnection("Wired", None, "802-3-ethernet", None, True, 10),)
    offline = derive_network(devs, conns, (), None, (), "")
    assert (assess_area("network", offline).tone, assess_area("network", offline).headline) == (
        "bad", "offline: no default route")
    unread = derive_network(devs, conns, None, None, (), "")
    assert assess_area("network", unread).tone == "unknown"
    inverted = (NetConnection("Wired", None, "802-3-ethernet", "eth0", True, 0),
                NetConnection("lte", None, "gsm", None, False, 10))
    wired = (NetDevice("eth0", "ethernet", "connected", "Wired"),)
    route = (DefaultRoute("eth0", "10.0.0.1", 100),)
    line = assess_area("network", derive_network(wired, inverted, route, None, (), ""))
    assert (line.tone, line.headline) == ("warn", "cellular backup priority 10 not below wired 0")
    assert line.reason == "cellular profile 'lte' does not autoconnect; on wired primary (eth0)"
    linkdown = derive_network(devs, conns, (DefaultRoute("eth0", "10.0.0.1", 100, linkdown=True),), None, (), "")
    assert assess_area("network", linkdown).tone == "bad"


# --- slots --------------------------------------------------------------------------------------------


def test_slots_from_real_rauc_output() -> None:
    good = assess_area("slots", parse_rauc_status(read("rauc", "status-1.8.json")))
    assert (good.tone, good.headline) == ("good", "booted A (1.1.0), the primary")
    fallback = assess_area("slots", parse_rauc_status(read("rauc", "status-1.8-pretty-devpath.json")))
    assert (fallback.tone, fallback.headline) == ("warn", "booted B (fallback) \u2014 A marked bad")
    misread = assess_area("slots", parse_rauc_status(read("rauc", "status-1.8-env-unreadable.json")))
    assert (misread.tone, misread.headline) == ("warn", "RAUC could not read the boot environment")


def test_rolled_back_after_exhausted_attempts() -> None:
    merged = merge(parse_rauc_status(read("rauc", "status-1.8.json")),
                   parse_fw_printenv(read("fw_printenv", "rauc-b-exhausted-rolled-back.txt")))
    line = assess_area("slots", merged)
    assert (line.tone, line.headline) == ("warn", "booted A (fallback) \u2014 B marked bad")
    assert line.details  # RAUC and the counters disagree: said in the tooltip


def test_new_slot_on_trial_is_a_warning() -> None:
    merged = merge(parse_rauc_status(read("rauc", "status-1.8-pretty-devpath.json")),
                   parse_fw_printenv(read("fw_printenv", "rauc-booted-b-trial.txt")))
    line = assess_area("slots", merged)
    assert (line.tone, line.headline) == ("warn", "B on trial: not yet marked good")
    assert line.reason == "booted B, the primary"


def _ab(booted_left: int | None, booted_health: str | None = "good", primary: str = "A") -> Slots:
    env = BootEnv(kind="uboot", order=("A", "B"), attempts_left={"A": booted_left, "B": 3})
    return Slots(source="rauc+uboot", booted="A", primary=primary, env=env, slots=(
        Slot("A", bootname="A", booted=True, primary=primary == "A", health=booted_health,  # type: ignore[arg-type]
             attempts_left=booted_left),
        Slot("B", bootname="B", primary=primary == "B", health="good", attempts_left=3),
    ))


@pytest.mark.parametrize(
    ("slots", "tone", "headline"),
    [
        (_ab(3), "good", "booted A, the primary"),
        (_ab(1), "warn", "booted A: 1 boot attempt left"),
        (_ab(None), "good", "booted A, the primary"),  # unknown attempts are not "0 left"
        (_ab(2, "bad"), "bad", "booted A, which is marked bad"),
        (_ab(3, primary="B"), "warn", "booted A; the next boot switches to B"),
        (Slots(source="rauc", slots=(Slot("rootfs.0", bootname="A"),)), "unknown", "which slot booted is not known"),
    ],
)
def test_slot_cases(slots: Slots, tone: str, headline: str) -> None:
    line = assess_area("slots", slots)
    assert (line.tone, line.headline) == (tone, headline)


# --- disk ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "tone", "headline"),
    [(41, "good", "every mount below 90 %"), (90, "warn", "disk /data 90 % full"),
     (96, "warn", "disk /data 96 % full"), (97, "bad", "disk /data 97 % full"), (100, "bad", "disk /data full")],
)
def test_disk_thresholds(percent: float, tone: str, headline: str) -> None:
    line = assess_area("disk", system(mount("/", 30), mount("/data", percent)))
    assert (line.tone, line.headline) == (tone, headline)


def test_full_read_only_images_are_not_a_full_disk_and_root_full_is_bad() -> None:
    squash = mount("/", 100, size=300 << 20, fs_type="squashfs", read_only=True)
    line = assess_area("disk", system(squash, mount("/data", 12)))
    assert (line.tone, line.reason) == ("good", "fullest: /data 12 %, 7.0 GiB free of 8.0 GiB")
    root = Mount("/", "ext4", 4 * GIB, int(4 * GIB * 0.95), 0)  # reserved blocks: 95 % used, none available
    assert assess_area("disk", system(root)).headline == "disk / full"


def test_disk_unknown_when_not_reported_or_garbage() -> None:
    plain = System("gw", OsRelease(), None, None, None, None, None)
    assert mount_uses(plain) is None  # the System snapshot without mounts: unknown, not "all fine"
    assert assess_area("disk", plain).tone == "unknown"

    @dataclass(frozen=True)
    class Weird:
        target: str
        use_percent: Any

    junk = system(Weird("/data", "96%"), Weird("/x", math.nan), Weird("/y", -3), Weird("/z", True), object())
    line = assess_area("disk", junk)
    assert (line.tone, line.headline) == ("unknown", "disk use not known")
    assert assess_area("disk", system(Weird("/data", 96.4))).headline == "disk /data 96 % full"

    @dataclass(frozen=True)
    class DfK:  # `df -k` figures: 1024-byte blocks
        mountpoint: str
        size_kib: int
        used_kib: int
        available_kib: int

    line = assess_area("disk", system(DfK("/data", 8 * 1024 * 1024, 7_900_000, 488_608)))
    assert (line.tone, line.headline) == ("warn", "disk /data 95 % full")
    assert line.reason == "/data: 477.2 MiB free of 8.0 GiB"


# --- posture ------------------------------------------------------------------------------------------


def test_posture_counts_and_unknown_is_not_a_pass() -> None:
    assert assess_area("posture", posture(*ALL_PASS)).headline == "all 4 security checks pass"
    failing = assess_area("posture", posture(*ALL_PASS[:2], ("firewall_output", "fail"), ("ssh_passwords", "fail")))
    assert (failing.tone, failing.headline) == ("warn", "2 security checks fail")
    assert "SSH password login disabled" in failing.reason
    unknown = assess_area("posture", posture(*ALL_PASS[:3], ("ssh_passwords", "unknown")))
    assert (unknown.tone, unknown.headline, unknown.reason) == ("unknown", "1 of 4 not checked", "3 pass")
    assert assess_area("posture", Posture(checks=(), clock=None)).tone == "unknown"


@pytest.mark.parametrize(("offset", "device_time", "tone"), [
    (30.0, None, "good"), (-61.0, None, "bad"), (3600.0, None, "bad"), (None, 42.0, "bad"), (None, None, "good"),
])
def test_clock_off_by_a_minute_or_in_1970_is_bad(offset: float | None, device_time: float | None, tone: str) -> None:
    line = assess_area("posture", posture(*ALL_PASS, offset=offset, device_time=device_time))
    assert line.tone == tone
    if device_time is not None:
        assert "1970-01-01" in line.headline


# --- all areas ----------------------------------------------------------------------------------------


def test_summary_names_the_problems_worst_first() -> None:
    lines = assess({
        "network": network("failover", since=datetime(2026, 11, 27, 14, 2)),
        "system": system(mount("/", 40), mount("/data", 96)),
        "slots": parse_rauc_status(read("rauc", "status-1.8.json")),
        "posture": posture(*ALL_PASS),
        "modem": Report(Modem(state="connected", registration="home"), ModemSignal(lte=SignalReading(rsrp=-85.0))),
    })
    assert [ln.tone for ln in lines] == ["good", "warn", "good", "warn", "good"]
    assert summary(lines) == "2 problems: on cellular backup since 14:02; disk /data 96 % full"
    assert worst(lines) == "warn"
    assert summary(assess({})) == "Nothing known yet"
    healthy = [HealthLine(a, "good", "fine") for a in AREAS]
    assert summary(healthy) == "No problems found"
    assert summary([*healthy[:4], HealthLine("posture", "unknown", "x")]) == "No problems found (not known: Security)"


def test_a_snapshot_of_the_wrong_kind_is_unknown() -> None:
    lines = assess({"modem": "mmcli says hi", "network": 42, "slots": {"booted": "A"}, "system": [], "posture": b""})
    assert {ln.tone for ln in lines} == {"unknown"}
    assert all(ln.headline.startswith("could not read") for ln in lines)


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_modems = st.builds(
    Modem, state=st.one_of(st.none(), st.text(max_size=10)), registration=st.one_of(st.none(), st.text(max_size=10)),
    roaming=st.one_of(st.none(), st.booleans()), sim_present=st.one_of(st.none(), st.booleans()),
    signal_quality=st.one_of(st.none(), st.integers()),
    access_technologies=st.lists(st.text(max_size=5), max_size=3).map(tuple),
)
_signals = st.builds(ModemSignal, lte=st.one_of(st.none(), st.builds(SignalReading, rsrp=st.one_of(
    st.none(), st.floats(allow_nan=True)))), rssi=st.one_of(st.none(), st.floats()))


@settings(max_examples=200, deadline=None)
@given(
    modem=st.one_of(_values, _modems, st.builds(Report, _modems, st.one_of(st.none(), _signals))),
    other=st.dictionaries(st.sampled_from(["network", "slots", "system", "posture", "junk"]), _values),
)
def test_garbage_never_raises(modem: Any, other: dict[str, Any]) -> None:
    lines = assess({"modem": modem, **other})
    assert [ln.area for ln in lines] == list(AREAS)
    assert all(ln.tone in ("good", "warn", "bad", "unknown") and ln.headline for ln in lines)
    summary(lines)


def test_an_overlay_on_a_full_data_partition_is_one_finding_not_two() -> None:
    from siteline.core.device.system import Mount

    data = Mount("/data", "ext4", 1000, 960, 40, 96.0, False, "/dev/mapper/data")
    etc = Mount("/etc", "overlay", 1000, 960, 40, 96.0, False, "overlay")
    line = assess_area("disk", System("gw", OsRelease(), None, None, None, None, None, mounts=(etc, data)))
    assert line.tone == "warn"
    assert "/data" in line.headline
    assert "/etc" not in line.headline
