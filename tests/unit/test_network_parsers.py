"""The NetworkManager probe's parsers: real-format goldens, the simulator's own output, and garbage."""

from __future__ import annotations

import contextlib
import io
import shlex
from datetime import UTC, datetime
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
    TIMESTAMPED_FIELDS,
    connection_fields,
    device_time,
    network_from_outputs,
    parse_connections,
    parse_default_routes,
    parse_device_show,
    parse_device_status,
    parse_timestamps,
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
    assert net.since is None  # on the primary there is no "since" to tell
    before = datetime.now(UTC).replace(microsecond=0)
    state.fail_wired(True)
    net = _sim_network(state)
    assert net.on_backup is True
    assert net.since is not None
    assert before <= net.since <= datetime.now(UTC)  # when the wired profile went down, from its TIMESTAMP
    assert net.summary == (
        f"running on cellular backup ('cellular' on cdc-wdm0) since {net.since:%H:%M}; wired eth0 is unavailable"
    )
    state.fail_wired(False)
    assert _sim_network(state).on_backup is False


# --- TIMESTAMP: when the path changed, from the device's own record --------------------------------------------

WIRED_DOWN = datetime(2026, 11, 27, 14, 2, 17, tzinfo=UTC)  # the wired profile's TIMESTAMP in the golden


def test_since_is_when_the_wired_profile_went_down_from_the_first_probe() -> None:
    net = network_from_outputs(
        golden("device-status-failover.txt"),
        golden("connection-show-timestamp-failover.txt"),
        golden("ip-route-default-failover.txt"),
        golden("device-show-ip-iface.txt"),
    )
    assert net.since == WIRED_DOWN
    assert net.since is not None
    assert net.since.tzinfo is not None  # the device's epoch, shown in the laptop's zone
    local = WIRED_DOWN.astimezone()
    # The golden's failover was on 2026-11-27: shown as 14:02 that day, with its date on any later day.
    when = f"{local:%H:%M}" if local.date() == datetime.now(local.tzinfo).date() else f"{local:%d %b %H:%M}"
    assert net.summary == (
        f"running on cellular backup ('Telia LTE' on cdc-wdm0) since {when}; wired eth0 is unavailable"
    )
    assert net.problems == ()
    # The device's own record beats the probe's later observation.
    later = network_from_outputs(
        golden("device-status-failover.txt"), golden("connection-show-timestamp-failover.txt"),
        golden("ip-route-default-failover.txt"), since=datetime(2026, 11, 27, 15, 0, tzinfo=UTC),
    )
    assert later.since == WIRED_DOWN


def test_timestamps_parsed_and_bad_ones_unknown() -> None:
    text = golden("connection-show-timestamp-failover.txt")
    assert connection_fields(text) == TIMESTAMPED_FIELDS
    assert connection_fields(golden("connection-show-failover.txt")) == TIMESTAMPED_FIELDS[:-1]
    stamps = parse_timestamps(text)
    assert stamps["5a2f0c1e-6d3b-3f7a-9e44-8c1b2d3e4f50"] == 1795788137
    assert "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f" not in stamps  # 0: never activated
    odd = "".join(f"c{n}:u{n}:802-3-ethernet::yes:0:{v}\n" for n, v in enumerate(["", "-5", "x", "3600", "9" * 12]))
    assert parse_timestamps(odd) == {}  # empty, negative, words, a clock still in 1970, the far future
    assert parse_timestamps(golden("connection-show-failover.txt"), TIMESTAMPED_FIELDS[:-1]) == {}
    assert device_time(None) is None
    assert device_time(1795788137) == WIRED_DOWN


def _failover_with_wired_stamp(stamp: str, since: datetime | None = None) -> Network:
    conns = f"LTE:u1:gsm:cdc-wdm0:yes:10:1795790100\nWired:u2:802-3-ethernet::yes:100:{stamp}\n"
    return network_from_outputs(
        "cdc-wdm0:gsm:connected:LTE\neth0:ethernet:unavailable:\n", conns,
        golden("ip-route-default-failover.txt"), since=since,
    )


def test_without_a_usable_timestamp_the_probes_observation_is_used() -> None:
    seen = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)
    for stamp in ("0", "", "garbage", "12"):
        assert _failover_with_wired_stamp(stamp).since is None
        net = _failover_with_wired_stamp(stamp, seen)
        assert net.since == seen
        assert net.problems == ()
    assert _failover_with_wired_stamp("1795788137").since == WIRED_DOWN


def test_on_primary_no_since_and_offline_since_the_last_link_went() -> None:
    wired = network_from_outputs(
        "eth0:ethernet:connected:W\n", "W:u1:802-3-ethernet:eth0:yes:100:1795790100\n",
        "default via 192.0.2.1 dev eth0 proto dhcp metric 100 \n",
    )
    assert (wired.on_backup, wired.since) == (False, None)
    offline = network_from_outputs(
        "eth0:ethernet:unavailable:\ncdc-wdm0:gsm:disconnected:\n",
        "W:u1:802-3-ethernet::yes:100:1795788137\nLTE:u2:gsm::yes:10:1795789000\n", "",
    )
    assert offline.since == datetime.fromtimestamp(1795789000, UTC)
    assert offline.summary.startswith(f"offline: no default route since {offline.since:%H:%M}")


_STAMPS = st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(":\\0123456789-x \n", max_size=12))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["802-3-ethernet", "gsm", "wifi"]), st.booleans(), _STAMPS), max_size=5))
def test_any_timestamps_give_an_aware_since_or_none(rows: list[tuple[str, bool, str]]) -> None:
    conns = "".join(f"c{n}:u{n}:{kind}:{'eth0' if up else ''}:yes:{n}:{stamp}\n" for n, (kind, up, stamp) in
                    enumerate(rows))
    with contextlib.suppress(ParseError):
        parse_timestamps(conns)
    for routes in ("", golden("ip-route-default-failover.txt")):
        net = network_from_outputs(golden("device-status-failover.txt"), conns, routes)
        assert net.since is None or net.since.tzinfo is not None
        assert net.summary


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
    assert connection_fields(text) in (TIMESTAMPED_FIELDS, TIMESTAMPED_FIELDS[:-1])
    for parse in (parse_device_status, parse_connections, parse_device_show, parse_default_routes, parse_timestamps):
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
