"""The NetworkManager probe's parsers: real-format goldens, the simulator's own output, and garbage."""

from __future__ import annotations

import contextlib
import io
import shlex
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.device.network import Network
from siteline.core.errors import ParseError
from siteline.simulator.state import DeviceState
from siteline.simulator.tools import iproute, nmcli
from siteline_networkmanager.parsers import (
    CONNECTIONS_COMMAND,
    DEVICE_SHOW_COMMAND,
    DEVICE_STATUS_COMMAND,
    ROUTE_COMMAND,
    network_from_outputs,
    parse_connections,
    parse_default_routes,
    parse_device_show,
    parse_device_status,
    split_terse,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "nmcli"


def golden(name: str) -> str:
    return (DATA / name).read_text()


def snapshot(case: str, since: datetime | None = None, with_show: bool = True) -> Network:
    return network_from_outputs(
        golden(f"device-status-{case}.txt"),
        golden(f"connection-show-{case}.txt"),
        golden(f"ip-route-default-{case}.txt"),
        golden("device-show-ip-iface.txt") if with_show else None,
        since=since,
    )


def test_terse_split_unescapes_colons_and_backslashes() -> None:
    assert split_terse(r"Depot\: guest \\ 2G:uuid::yes") == ["Depot: guest \\ 2G", "uuid", "", "yes"]
    assert split_terse("trailing\\") == ["trailing\\"]


def test_device_status_golden() -> None:
    devices, problems = parse_device_status(golden("device-status-wired.txt"))
    assert problems == ()
    by_name = {d.name: d for d in devices}
    assert (by_name["eth0"].kind, by_name["eth0"].connected, by_name["eth0"].connection) == (
        "wired",
        True,
        "Wired connection 1",
    )
    assert (by_name["cdc-wdm0"].kind, by_name["cdc-wdm0"].connection) == ("cellular", "Telia LTE")
    assert by_name["lo"].connected
    assert by_name["lo"].kind == "loopback"
    assert by_name["wlan0"].connection is None
    assert not by_name["wlan0"].connected
    assert by_name["can0"].state == "unmanaged"


def test_connections_golden_priorities_and_escapes() -> None:
    connections, problems = parse_connections(golden("connection-show-failover.txt"))
    assert problems == ()
    by_name = {c.name: c for c in connections}
    wired = by_name["Wired connection 1"]
    assert (wired.kind, wired.priority, wired.autoconnect, wired.device, wired.active) == (
        "wired",
        100,
        True,
        None,
        False,
    )
    cell = by_name["Telia LTE"]
    assert (cell.kind, cell.priority, cell.device, cell.active) == ("cellular", 10, "cdc-wdm0", True)
    assert by_name["Depot: guest Wi-Fi \\ 2G"].priority == -5
    assert by_name["lo"].autoconnect is False


def test_connections_with_active_column_and_unknown_priority() -> None:
    fields = ("NAME", "UUID", "TYPE", "DEVICE", "AUTOCONNECT", "AUTOCONNECT-PRIORITY", "ACTIVE")
    connections, problems = parse_connections("eth:u1:802-3-ethernet::maybe:high:no\n", fields)
    assert connections[0].priority is None  # unknown, never 0
    assert connections[0].autoconnect is None
    assert connections[0].active is False
    assert problems == ("nmcli connection show: 'eth' has autoconnect priority 'high', not a number.",)


def test_device_show_maps_modem_to_its_ip_interface() -> None:
    assert parse_device_show(golden("device-show-ip-iface.txt")) == {"eth0": "eth0", "cdc-wdm0": "wwan0", "lo": "lo"}


def test_routes_text_json_linkdown_multipath() -> None:
    text = parse_default_routes(golden("ip-route-default-wired.txt"))
    as_json = parse_default_routes(golden("ip-j-route-default-wired.json"))
    assert [(r.dev, r.gateway, r.metric, r.proto) for r in text] == [
        ("eth0", "192.168.10.1", 100, "dhcp"),
        ("wwan0", "10.64.12.202", 700, "static"),
    ]
    assert [(r.dev, r.gateway, r.metric, r.src) for r in as_json] == [(r.dev, r.gateway, r.metric, r.src) for r in text]
    down = parse_default_routes(golden("ip-route-default-linkdown.txt"))
    assert [(r.dev, r.linkdown) for r in down] == [("wwan0", False), ("eth0", True)]
    (multi,) = parse_default_routes(golden("ip-route-default-multipath.txt"))
    assert multi.dev is None
    assert multi.nexthops == (("eth0", "192.168.10.1"), ("wwan0", "10.64.12.202"))
    assert parse_default_routes("default via 192.0.2.1 dev eth0 \n")[0].metric == 0  # iproute2 omits "metric 0"
    assert parse_default_routes("") == ()


def test_wired_primary_carries_traffic() -> None:
    net = snapshot("wired")
    assert net.primary is not None
    assert net.primary.name == "Wired connection 1"
    assert net.backup is not None
    assert net.backup.name == "Telia LTE"
    assert net.active_iface == "eth0"
    assert net.on_backup is False
    assert net.summary == "on wired primary ('Wired connection 1' on eth0)"
    assert net.problems == ()
    assert DEVICE_STATUS_COMMAND in net.raw
    assert "metric 700" in net.raw


def test_failover_says_running_on_cellular_backup_since() -> None:
    net = snapshot("failover", since=datetime(2026, 11, 27, 14, 2))
    assert net.active_iface == "wwan0"
    assert net.active_device is not None
    assert net.active_device.name == "cdc-wdm0"
    assert net.on_backup is True
    assert net.summary == "running on cellular backup ('Telia LTE' on cdc-wdm0) since 14:02; wired eth0 is unavailable"
    assert net.problems == ()


def test_modem_matched_without_device_show() -> None:
    net = snapshot("failover", with_show=False)
    assert net.active_device is not None
    assert net.active_device.name == "cdc-wdm0"
    assert net.summary.startswith("running on cellular backup")


def test_priority_inversion_and_offline_are_reported() -> None:
    conns = "wired:u1:802-3-ethernet:eth0:yes:5\ncell:u2:gsm::no:50\n"
    net = network_from_outputs("eth0:ethernet:unavailable:\ncdc-wdm0:gsm:disconnected:\n", conns, "")
    assert net.on_backup is False
    assert net.summary == "offline: no default route; wired eth0 is unavailable; cellular cdc-wdm0 is disconnected"
    assert any("autoconnect priority 50, not lower" in p for p in net.problems)
    assert any("'cell' does not autoconnect" in p for p in net.problems)


def test_unreadable_parts_become_problems_or_one_parse_error() -> None:
    net = network_from_outputs("garbage without colons", "", golden("ip-route-default-wired.txt"))
    assert net.devices == ()
    assert net.active_iface == "eth0"
    assert net.on_backup is None
    assert net.problems[0].startswith("could not read the devices: nmcli device status: none of the 1 lines")
    with pytest.raises(ParseError, match="could not read the network"):
        network_from_outputs("", "", "[not json")
    with pytest.raises(ParseError, match="terse"):
        parse_device_status("DEVICE  TYPE      STATE      CONNECTION\neth0    ethernet  connected  Wired\n")
    with pytest.raises(ParseError, match="NetworkManager is not running"):
        parse_device_status("Error: NetworkManager is not running.\n")


@pytest.mark.parametrize(
    ("devices", "connections", "routes", "summary"),
    [
        # nmcli before 1.42 left lo unmanaged and some versions print the short TYPE alias "ethernet".
        (
            "eth0:ethernet:connected:Wired\nlo:loopback:unmanaged:\n",
            "Wired:u1:ethernet:eth0:yes:0\n",
            "default via 192.0.2.1 dev eth0 \n",
            "on wired primary ('Wired' on eth0)",
        ),
        # Cut off in the middle of the second line: the first line still counts, the rest is a problem.
        (
            "eth0:ethernet:unavailable:\ncdc-wdm0:gsm:conn",
            "",
            "default via 10.0.0.1 dev ppp0 proto static metric 700",
            "traffic goes through ppp0; wired eth0 is unavailable",
        ),
        # A VPN holds the default route: never taken for the modem.
        ("cdc-wdm0:gsm:connected:LTE\n", "", "default dev tun0 scope link \n", "traffic goes through tun0"),
    ],
)
def test_other_versions_and_truncated_output(devices: str, connections: str, routes: str, summary: str) -> None:
    net = network_from_outputs(devices, connections, routes)
    assert net.summary == summary


# --- The simulator prints the same commands; its output must parse the same way ---------------------------------


def _sim(state: DeviceState, command: str) -> str:
    argv = shlex.split(command)
    tool = nmcli if argv[0] == "nmcli" else iproute
    buf, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        code = tool.main(argv[0], argv[1:], state)
    assert code == 0, err.getvalue()
    return buf.getvalue()


def _sim_network(state: DeviceState) -> Network:
    outputs = [_sim(state, c) for c in (DEVICE_STATUS_COMMAND, CONNECTIONS_COMMAND, ROUTE_COMMAND, DEVICE_SHOW_COMMAND)]
    return network_from_outputs(*outputs)


def test_simulator_output_parses_and_fails_over(tmp_path: Path) -> None:
    state = DeviceState.open(tmp_path / "dev", name="gw-net", password="pw")
    net = _sim_network(state)
    assert net.problems == ()
    assert net.summary.startswith("on wired primary")
    assert net.primary is not None
    assert net.backup is not None
    assert net.backup.priority is not None
    assert net.primary.priority is not None
    assert net.backup.priority < net.primary.priority
    state.fail_wired(True)
    net = _sim_network(state)
    assert net.on_backup is True
    assert net.summary == "running on cellular backup ('cellular' on cdc-wdm0); wired eth0 is unavailable"
    state.fail_wired(False)
    assert _sim_network(state).on_backup is False


# --- Garbage in: a snapshot with problems or a ParseError, never another exception ----------------------------

_WORDS = ["default", "via", "dev", "metric", "nexthop", "\t", "GENERAL.DEVICE", "connected"]
_TERSE_ALPHABET = st.sampled_from([*':\\\n ab-0179yesno()[]{}"', *_WORDS])
_TERSE = st.lists(_TERSE_ALPHABET, max_size=80).map("".join)
_GOLDENS = sorted(p.name for p in DATA.iterdir() if p.suffix in (".txt", ".json"))


def _cut(name: str, at: float) -> str:
    text = golden(name)
    return text[: int(len(text) * at)]


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=400), _TERSE, st.builds(_cut, st.sampled_from(_GOLDENS), st.floats(0, 1))))
def test_parsers_never_raise_anything_but_parse_error(text: str) -> None:
    for parse in (parse_device_status, parse_connections, parse_device_show, parse_default_routes):
        with contextlib.suppress(ParseError):
            parse(text)
    with contextlib.suppress(ParseError):
        net = network_from_outputs(text, text, text, text)
        assert isinstance(net.summary, str)
        assert net.summary


@settings(max_examples=80, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["dst", "dev", "gateway", "metric", "flags", "nexthops", "type", "prefsrc"]),
                inner,
                max_size=6,
            )
        ),
        max_leaves=20,
    )
)
def test_route_json_of_any_shape(doc: object) -> None:
    import json

    with contextlib.suppress(ParseError):
        parse_default_routes(json.dumps(doc))
    with contextlib.suppress(ParseError):
        parse_default_routes(json.dumps([{"dst": "default", "dev": doc, "metric": doc, "nexthops": doc}]))
