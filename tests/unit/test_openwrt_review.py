"""Fresh-eyes review of the OpenWrt plugin against what real OpenWrt tools print.

Formats checked against openwrt/uqmi uqmi/commands-nas.c (get-signal-info, get-serving-system) and netifd's
interface dump. The probe round trips run for real in bash, with small stand-ins for ubus/uci/uqmi on PATH.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from siteline_openwrt.netifd import parse_network
from siteline_openwrt.parsers import UqmiOutputs, parse_modem, parse_signal_info
from siteline_openwrt.probe import OpenWrtModemProbe, OpenWrtNetworkProbe, OpenWrtSystemProbe

from siteline.api import Result, Unavailable
from siteline.core.plugin_api import make_context

SERVING = '{"registration":"registered","plmn_mcc":262,"plmn_mnc":1,"plmn_description":"Telekom.de","roaming":false}'
SIGNAL = '{"type":"lte","rssi":-65,"rsrq":-9,"rsrp":-94,"snr":13.200000}'


def _modem(serving: str = SERVING, signal: str = SIGNAL, wwan: str = '{"up": true}') -> UqmiOutputs:
    return UqmiOutputs(device="/dev/cdc-wdm0", signal=signal, serving=serving, imei='"867698041234567"',
                       iccid='"89490200001234567890"', wwan=wwan)


# --- uqmi units --------------------------------------------------------------------------------------------


def test_lte_snr_printed_as_a_blobmsg_double_is_db() -> None:
    """Current uqmi: blobmsg_add_double(snr * 0.1), printed "%lf" -> 13.200000 dB, not 1.32."""
    signal, tech, error = parse_signal_info(SIGNAL)
    assert error is None
    assert tech == "lte"
    assert signal is not None
    assert signal.lte is not None
    assert signal.lte.snr == 13.2


def test_en_dc_array_gives_lte_and_nr() -> None:
    """With 5G NSA (EN-DC) uqmi prints an ARRAY of two tables: the LTE anchor and the NR leg."""
    text = ('[{"type":"lte","rssi":-70,"rsrq":-11,"rsrp":-99,"snr":8.000000},'
            '{"type":"5gnr","rsrp":-95,"snr":11.500000,"rsrq":-12}]')
    signal, _tech, error = parse_signal_info(text)
    assert error is None
    assert signal is not None
    assert signal.lte is not None
    assert signal.nr is not None
    assert (signal.lte.rsrp, signal.nr.rsrp, signal.nr.snr) == (-99, -95, 11.5)


def test_wcdma_ecio_is_converted_from_qmi_half_db_units() -> None:
    """uqmi prints the raw QMI WCDMA Ec/Io (units of -0.5 dB, as qmicli converts it): 14 means -7.0 dB.

    A technician reading Ec/Io expects a negative dB figure (-7 dB is fair); +14 dB is impossible.
    """
    signal, tech, error = parse_signal_info('{"type":"wcdma","rssi":-77,"ecio":14}')
    assert error is None
    assert tech == "umts"
    assert signal is not None
    assert signal.umts is not None
    assert signal.umts.ecio == -7.0


def test_registration_denied_is_not_reported_as_registered() -> None:
    """uqmi "registering_denied": the network refused the SIM. The modem is NOT registered (ModemManager says
    state enabled/searching, registration denied), and a stale wwan 'up' must not make it 'connected'."""
    serving = '{"registration":"registering_denied","plmn_mcc":262,"plmn_mnc":1}'
    modem = parse_modem(_modem(serving=serving, wwan='{"up": false}')).modem
    assert modem.registration == "denied"
    assert modem.state not in ("registered", "connected")


def test_searching_modem_is_not_connected_even_with_a_stale_wwan_up() -> None:
    modem = parse_modem(_modem(serving='{"registration":"searching"}', signal="{}")).modem
    assert modem.state == "searching"
    assert modem.registration == "searching"


def test_roaming_true_from_blobmsg_u8() -> None:
    serving = '{"registration":"registered","plmn_mcc":234,"plmn_mnc":15,"roaming":true}'
    modem = parse_modem(_modem(serving=serving)).modem
    assert modem.registration == "roaming"
    assert modem.operator_code == "23415"


# --- netifd / mwan3 ----------------------------------------------------------------------------------------


def _iface(name: str, proto: str, device: str, *, up: bool = True, v4: str | None = None, v4_default: bool = False,
           v6: str | None = None, v6_default: bool = False, metric: int = 0) -> dict[str, Any]:
    routes: list[dict[str, Any]] = []
    if v4_default:
        routes.append({"target": "0.0.0.0", "mask": 0, "nexthop": "10.0.0.1", "source": "0.0.0.0/0"})
    if v6_default:
        routes.append({"target": "::", "mask": 0, "nexthop": "fe80::1", "source": "::/0"})
    return {"interface": name, "up": up, "pending": False, "available": True, "autostart": True, "dynamic": False,
            "uptime": 600, "l3_device": device, "proto": proto, "device": device, "metric": metric,
            "ipv4-address": [{"address": v4, "mask": 24}] if v4 else [],
            "ipv6-address": [{"address": v6, "mask": 64}] if v6 else [], "route": routes, "data": {}}


LAN = _iface("lan", "static", "br-lan", v4="192.168.1.1")


def test_ipv6_only_uplink_is_not_offline() -> None:
    """An IPv6-only WAN (DS-Lite, 464XLAT, many mobile networks): wan has no IPv4, wan6 (dhcpv6) carries the
    default route ::/0. The router is online; Siteline must not call it offline."""
    dump = json.dumps({"interface": [
        LAN,
        _iface("wan", "dhcp", "eth1"),
        _iface("wan6", "dhcpv6", "eth1", v6="2001:db8:1::2", v6_default=True),
    ]})
    network = parse_network(dump)
    assert network.active_iface == "eth1", network.summary
    assert "offline" not in network.summary.lower()


MWAN3_ALL_OFFLINE = """Interface status:
 interface wan is offline 00h:00m:00s, uptime 02h:10m:31s and tracking is active
 interface wwan is offline 00h:00m:00s, uptime 01h:13m:02s and tracking is active

Current ipv4 policies:
balanced:
 unreachable
wan_wwan:
 unreachable

Current ipv6 policies:
balanced:
 unreachable

Directly connected ipv4 networks:
192.168.1.0/24

Active ipv4 user rules:
   42  3020 - balanced  all  --  *      *       0.0.0.0/0            0.0.0.0/0
"""


def test_mwan3_all_wans_offline_says_so() -> None:
    """Both links are up in netifd (carrier, DHCP lease) but mwan3's tracking fails on both: every policy is
    'unreachable'. The technician must see both reported offline, and no link named as carrying traffic."""
    dump = json.dumps({"interface": [
        LAN,
        _iface("wan", "dhcp", "eth1", v4="10.0.0.2", v4_default=True, metric=10),
        _iface("wwan", "qmi", "wwan0", v4="10.64.12.201", v4_default=True, metric=20),
    ]})
    network = parse_network(dump, MWAN3_ALL_OFFLINE)
    text = " ".join(network.problems)
    assert "wan offline" in text
    assert "wwan offline" in text
    assert network.active_iface is None, network.summary


def test_usb_modem_with_another_iface_name_is_cellular() -> None:
    """A QMI modem's netdev is not always wwan0: e.g. usb0 (cdc_ether mode) under proto dhcp in interface 'lte'."""
    dump = json.dumps({"interface": [LAN, _iface("lte", "qmi", "usb0", v4="10.64.0.2", v4_default=True)]})
    network = parse_network(dump)
    assert network.backup is not None
    assert network.backup.name == "lte"
    assert network.on_backup is True


# --- the probes' round trips, run in bash with stand-in tools ------------------------------------------------


def _tool(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _router(tmp_path: Path, *, iface: str = "wwan", uqmi: bool = True) -> Path:
    """A tiny stand-in router: ubus/uci know one QMI interface named ``iface``; uqmi answers when present."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    node = tmp_path / "cdc-wdm0"
    node.write_text("")
    _tool(bindir, "uci", f'[ "$*" = "-q get network.{iface}.device" ] && {{ echo "{node}"; exit 0; }}\n'
                         f'[ "$1 $2" = "-q show" ] && {{ echo "network.{iface}=interface"; '
                         f'echo "network.{iface}.proto=\'qmi\'"; echo "network.{iface}.device=\'{node}\'"; }}\n'
                         "exit 1\n")
    _tool(bindir, "ubus", f'[ "$*" = "call network.interface.{iface} status" ] && '
                          "{ echo '{\"up\": true, \"l3_device\": \"wwan0\"}'; exit 0; }\n"
                          'echo "Command failed: Not found"; exit 4\n')
    if iface != "wwan":
        # A real router has /dev/cdc-wdm0: the probe's `ls /dev/cdc-wdm*` fallback finds it (this host has none).
        _tool(bindir, "ls", f'[ "$1" = "/dev/cdc-wdm*" ] && {{ echo "{node}"; exit 0; }}\nexec /bin/ls "$@"\n')
    if uqmi:
        _tool(bindir, "uqmi", f"case \"$*\" in *signal-info*) echo '{SIGNAL}';; *serving-system*) echo '{SERVING}';;"
                              " *imei*) echo '\"867698041234567\"';; *iccid*) echo '\"89490200001234567890\"';;"
                              " esac\n")
    return bindir


def _runner(bindir: Path | None, calls: list[str]) -> Any:
    env = {"PATH": (f"{bindir}:" if bindir else "") + "/usr/bin:/bin", "LC_ALL": "C"}

    async def run(cmd: str, timeout: float) -> Result:
        calls.append(cmd)
        done = await asyncio.to_thread(subprocess.run, ["/bin/sh", "-c", cmd], capture_output=True, text=True,
                                       timeout=timeout, env=env, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def _collect(probe: Any, bindir: Path | None) -> tuple[Any, list[str]]:
    calls: list[str] = []
    ctx = make_context("rtr", "ssh://rtr", _runner(bindir, calls), logging.getLogger("test"))
    return asyncio.run(probe.collect(ctx)), calls


def test_probes_run_one_command_each_and_say_nothing_without_ubus() -> None:
    """A Yocto gateway (no ubus on PATH) pays ONE short command per probe, and gets nothing back from it."""
    assert not any(os.access(os.path.join(d, "ubus"), os.X_OK) for d in ("/usr/bin", "/bin"))
    for probe in (OpenWrtSystemProbe(), OpenWrtModemProbe(), OpenWrtNetworkProbe()):
        found, calls = _collect(probe, None)
        assert found is None
        assert len(calls) == 1


def test_modem_on_the_wwan_interface_is_connected(tmp_path: Path) -> None:
    found, calls = _collect(OpenWrtModemProbe(), _router(tmp_path))
    assert len(calls) == 1
    assert not isinstance(found, Unavailable), found
    assert found.modem.state == "connected"
    assert found.signal.lte.snr == 13.2


def test_modem_on_an_interface_not_named_wwan_is_found_and_connected(tmp_path: Path) -> None:
    """LuCI lets the technician name the QMI interface anything ("lte", "4g", "modem"). The probe must find the
    modem from the interface whose proto is qmi, not from a hard-coded 'wwan', and read its status from it."""
    found, _ = _collect(OpenWrtModemProbe(), _router(tmp_path, iface="lte"))
    assert not isinstance(found, Unavailable), found
    assert found.modem.state == "connected"


def test_no_uqmi_but_ubus_says_install_uqmi(tmp_path: Path) -> None:
    found, calls = _collect(OpenWrtModemProbe(), _router(tmp_path, uqmi=False))
    assert len(calls) == 1
    assert isinstance(found, Unavailable)
    assert "opkg install uqmi" in found.reason


def test_no_ubus_is_remembered_for_a_while_then_asked_again() -> None:
    """Probes sharing one memory ask a device without ubus once; after ``remember`` seconds they ask again."""
    from siteline_openwrt.probe import NotOpenWrt

    now = [1000.0]
    memory = NotOpenWrt(remember=3600.0, clock=lambda: now[0])
    calls: list[str] = []
    ctx = make_context("gw", "ssh://gw", _runner(None, calls), logging.getLogger("test"))
    for probe in (OpenWrtSystemProbe(memory), OpenWrtModemProbe(memory), OpenWrtNetworkProbe(memory)):
        assert asyncio.run(probe.collect(ctx)) is None
    assert len(calls) == 1
    other = make_context("rtr", "ssh://rtr", _runner(None, calls), logging.getLogger("test"))
    assert asyncio.run(OpenWrtModemProbe(memory).collect(other)) is None
    assert len(calls) == 2  # another device is asked for itself
    now[0] += 3600.0
    assert asyncio.run(OpenWrtSystemProbe(memory).collect(ctx)) is None
    assert len(calls) == 3  # reflashed meanwhile? asked again after the hour
