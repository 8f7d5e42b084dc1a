"""The OpenWrt plugin's parsers on recorded-shape outputs (tests/data/openwrt), and on garbage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from siteline_openwrt.netifd import parse_mwan3, parse_network
from siteline_openwrt.parsers import (
    UqmiOutputs,
    parse_modem,
    parse_signal_info,
    parse_system,
)
from siteline_openwrt.probe import (
    MODEM_COMMANDS,
    NETWORK_COMMANDS,
    NO_UBUS,
    SYSTEM_COMMANDS,
    OpenWrtModemProbe,
    OpenWrtNetworkProbe,
    OpenWrtSystemProbe,
    guarded,
    split_parts,
)

from siteline.api import MAX_ROUND_TRIP, Result, Unavailable
from siteline.core.plugin_api import make_context

DATA = Path(__file__).resolve().parent.parent / "data" / "openwrt"


def data(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_system_from_ubus() -> None:
    system = parse_system(data("system_board.json"), data("system_info.json"))
    assert system.hostname == "rtr-north-07"
    assert system.os.name == "OpenWrt"
    assert system.os.version == "23.05.3"
    assert system.os.pretty_name == "OpenWrt 23.05.3 r23809-234f1a2efa on GL.iNet GL-X3000"
    assert system.os.extra["BOARD_NAME"] == "glinet,gl-x3000"
    assert system.kernel == "5.15.150"
    assert system.machine == "mediatek/filogic"
    assert system.uptime_seconds == 93784
    assert system.load == (0.21, 0.16, 0.14)
    root = system.mounts[0] if system.mounts else None
    assert root is not None
    assert root.mountpoint == "/"
    assert root.size == 7744 * 1024
    assert root.use_percent == 18.0
    assert system.problems == ()


def test_system_garbage_is_reported_not_raised() -> None:
    system = parse_system("Command failed: Not found", "{truncated")
    assert system.hostname is None
    assert system.load is None
    assert len(system.problems) == 2
    assert "Command failed" in system.problems[0]


def _modem(signal: str = "uqmi_signal_lte.json", serving: str = "uqmi_serving_registered.json",
           iccid: str = "uqmi_iccid.txt", wwan: str = "wwan_status_up.json") -> UqmiOutputs:
    return UqmiOutputs(device="/dev/cdc-wdm0", signal=data(signal), serving=data(serving), imei=data("uqmi_imei.txt"),
                       iccid=data(iccid), wwan=data(wwan))


def test_modem_lte_registered_and_connected() -> None:
    report = parse_modem(_modem())
    modem, signal = report.modem, report.signal
    assert signal is not None
    assert signal.lte is not None
    assert (signal.lte.rsrp, signal.lte.rsrq, signal.lte.rssi, signal.lte.snr) == (-94, -9, -65, 13.2)
    assert modem.state == "connected"
    assert modem.registration == "home"
    assert modem.roaming is False
    assert modem.operator_name == "Telekom.de"
    assert modem.operator_code == "26201"
    assert modem.access_technologies == ("lte",)
    assert modem.sim_present is True
    assert modem.imei == "867698041234567"
    assert modem.problems == ()


def test_uqmi_build_printing_snr_in_db() -> None:
    signal, tech, error = parse_signal_info(data("uqmi_signal_lte_real_snr.json"))
    assert error is None
    assert tech == "lte"
    assert signal is not None
    assert signal.lte is not None
    assert signal.lte.snr == pytest.approx(6.4)


def test_wcdma_and_roaming() -> None:
    report = parse_modem(_modem(signal="uqmi_signal_wcdma.json", serving="uqmi_serving_roaming.json"))
    assert report.signal is not None
    assert report.signal.umts is not None
    assert report.signal.umts.ecio == -7
    assert report.modem.registration == "roaming"
    assert report.modem.operator_code == "23415"


def test_no_service() -> None:
    report = parse_modem(_modem(signal="uqmi_signal_no_service.json", serving="uqmi_serving_searching.json"))
    assert report.modem.state == "searching"
    assert report.modem.registration == "searching"
    assert any("no signal" in p for p in report.modem.problems)


def test_uim_uninitialized_means_no_sim() -> None:
    outs = UqmiOutputs(device="/dev/cdc-wdm0", signal=data("uqmi_signal_no_service.json"),
                       serving=data("uqmi_uim_uninitialized.txt"), imei=data("uqmi_imei.txt"),
                       iccid=data("uqmi_uim_uninitialized.txt"))
    modem = parse_modem(outs).modem
    assert modem.sim_present is False
    assert modem.state == "failed"
    assert modem.failed_reason == "sim-missing"
    assert any("UIM uninitialized" in p for p in modem.problems)


def test_network_wired_primary() -> None:
    net = parse_network(data("network_dump_wired.json"))
    assert net.active_iface == "eth1"
    assert net.on_backup is False
    assert net.primary is not None
    assert net.primary.name == "wan"
    assert net.backup is not None
    assert net.backup.name == "wwan"
    assert [r.dev for r in net.default_routes] == ["eth1", "wwan0"]
    assert net.summary.startswith("on wired primary")


def test_network_failover_with_mwan3() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    net = parse_network(data("network_dump_failover.json"), data("mwan3_status_failover.txt"), now)
    assert net.active_iface == "wwan0"
    assert net.on_backup is True
    assert net.since == now - timedelta(seconds=4351)
    assert "running on cellular backup" in net.summary
    assert "wired eth1 is disconnected" in net.summary
    assert any("mwan3 reports interface wan offline" in p for p in net.problems)


def test_mwan3_choice_beats_metric() -> None:
    mwan3 = data("mwan3_status_wired.txt").replace(" wan (100%)", " wwan (100%)")
    net = parse_network(data("network_dump_wired.json"), mwan3)
    assert net.active_iface == "wwan0"
    assert net.on_backup is True


def test_mwan3_status() -> None:
    status = parse_mwan3(data("mwan3_status_failover.txt"))
    assert status is not None
    assert status.states == {"wan": "offline", "wwan": "online"}
    assert status.active() == "wwan"
    assert parse_mwan3("mwan3: command not found") is None


def test_network_offline_and_errors() -> None:
    net = parse_network(data("network_dump_offline.json"))
    assert net.active_iface is None
    assert net.on_backup is False
    assert net.summary.startswith("offline")
    assert any("SIM_NOT_READY" in p for p in net.problems)


def test_network_garbage() -> None:
    net = parse_network("Command failed: Not found")
    assert net.summary == "the default route could not be read"
    assert net.problems


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=200))
def test_garbage_never_raises(a: str, b: str, c: str) -> None:
    parse_system(a, b)
    parse_modem(UqmiOutputs(device=c[:20], signal=a, serving=b, imei=c, iccid=a, wwan=b))
    parse_network(a, b)
    split_parts(a)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                         st.sampled_from(["type", "rsrp", "snr", "load", "root", "interface", "up", "route", "target",
                                          "mask", "release", "registration", "plmn_mcc", "ipv4-address", "l3_device"]),
                         kids, max_size=5), max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(_JSON, _JSON)
def test_json_of_the_wrong_shape_never_raises(a: object, b: object) -> None:
    import json

    one, two = json.dumps(a), json.dumps(b)
    parse_system(one, two)
    parse_modem(UqmiOutputs(device="/dev/cdc-wdm0", signal=one, serving=two, imei=one, iccid=two, wwan=one))
    parse_network(json.dumps({"interface": [a, b]}), one)


def test_round_trips_fit_a_serial_console() -> None:
    for commands in (SYSTEM_COMMANDS, MODEM_COMMANDS, NETWORK_COMMANDS):
        assert len(guarded(commands)) <= MAX_ROUND_TRIP


@pytest.mark.parametrize("probe", [OpenWrtSystemProbe(), OpenWrtModemProbe(), OpenWrtNetworkProbe()])
def test_probe_says_nothing_without_ubus_after_one_command(probe: object) -> None:
    calls: list[str] = []

    async def run(cmd: str, timeout: float) -> Result:
        calls.append(cmd)
        return Result(0, NO_UBUS + "\n", "")

    import logging

    ctx = make_context("gw", "ssh://gw", run, logging.getLogger("test"))
    assert asyncio.run(probe.collect(ctx)) is None  # type: ignore[attr-defined]
    assert len(calls) == 1


def test_modem_probe_without_a_modem_is_unavailable() -> None:
    async def run(cmd: str, timeout: float) -> Result:
        return Result(0, "@@siteline-section@@device\n\n@@siteline-section@@rc device 1\n", "")

    import logging

    ctx = make_context("gw", "ssh://gw", run, logging.getLogger("test"))
    found = asyncio.run(OpenWrtModemProbe().collect(ctx))
    assert isinstance(found, Unavailable)
    assert "no QMI modem" in found.reason
