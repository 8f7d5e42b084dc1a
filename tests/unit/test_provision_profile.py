"""Provisioning profiles: the examples load, every bad key is named, garbage is a ProfileError, interval sizing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.api import Section
from siteline.core.provisioning.device_steps import (
    parse_compatible,
    parse_imei,
    parse_macs,
    parse_os_release,
    parse_serial,
    read_facts,
    valid_hostname,
)
from siteline.core.provisioning.profile import (
    MAX_PROFILE_BYTES,
    Profile,
    ProfileError,
    TelemetryPlan,
    find_profile,
    load_profile,
    render,
    telemetry_interval,
)
from siteline.resources import resource_root

EXAMPLES = sorted((resource_root() / "profiles").glob("*.toml"))
MINIMAL = 'name = "fam"\nfamily = ["fam-*"]\n[mqtt]\nbroker = "192.0.2.1"\n'


def _load(tmp_path: Path, text: str | bytes) -> Profile:
    path = tmp_path / "p.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_profile(path)


def _error(tmp_path: Path, text: str | bytes) -> str:
    with pytest.raises(ProfileError) as info:
        _load(tmp_path, text)
    return str(info.value)


def test_there_are_three_examples_and_each_loads() -> None:
    assert {p.stem for p in EXAMPLES} >= {"nwedge-gw-imx8mm", "acme-sensorhub-busybox", "contoso-ipc-x86"}
    for path in EXAMPLES:
        profile = load_profile(path)
        assert profile.name == path.stem
        assert profile.path == str(path)
        assert len(profile.sha256) == 64


def test_the_simulator_family_profile() -> None:
    profile = load_profile(find_profile("nwedge-gw-imx8mm"))
    assert profile.family == ("nwedge-gw-imx8mm",)
    assert [(f.user, f.password) for f in profile.credentials.factory] == [("root", "root")]
    assert profile.mqtt.port == 8883
    assert profile.identity.marker.startswith("/etc/siteline/")
    assert telemetry_interval(profile.telemetry) == 60


def test_a_minimal_profile_gets_the_defaults(tmp_path: Path) -> None:
    profile = _load(tmp_path, MINIMAL)
    assert profile.name == "fam"
    assert profile.mqtt.port == 8883
    assert profile.credentials.users == ("root",)
    assert profile.posture.required == ("firewall_output",)


@pytest.mark.parametrize(("extra", "named"), [
    ("colour = 1\n", "colour: unknown key"),
    ("[identity]\nname_tmpl = 'x'\n", "identity.name_tmpl: unknown key"),
    ("[mqtt.topics]\ntelemetry = 5\n", "mqtt.topics.telemetry: must be text"),
    ("[credentials]\nlength = '24'\n", "credentials.length: must be a whole number"),
    ("[credentials]\nlength = 24.5\n", "credentials.length: must be a whole number"),
    ("[credentials]\nlength = 8\n", "credentials.length: 8 is out of range"),
    ("[credentials]\nusers = ['Root!']\n", "credentials.users[0]"),
    ("[credentials]\nusers = []\n", "credentials.users"),
    ("[[credentials.factory]]\nuser = 'root'\npasswd = 'x'\n", "credentials.factory[0].passwd: unknown key"),
    ("[firewall]\ndns = 1\n", "firewall.dns: must be true or false"),
    ("[firewall]\ncontrol_plane = ['cp.example.com']\n", "firewall.control_plane[0]: 'cp.example.com' is a host name"),
    ("[firewall]\ncontrol_plane = ['10.0.0.5/24']\n", "host bits set"),
    ("[firewall]\ncontrol_plane = ['300.1.1.1']\n", "not an IP address or network"),
    ("[[firewall.extra]]\nname = 'h'\naddress = '10.0.0.1'\nport = 70000\n", "firewall.extra[0].port"),
    ("[[firewall.extra]]\nname = 'h'\naddress = '10.0.0.1'\nport = 1\nproto = 'icmp'\n", "firewall.extra[0].proto"),
    ("[firewall]\ndeadman_seconds = 1\n", "firewall.deadman_seconds"),
    ("[telemetry]\nshare = 0\n", "telemetry.share"),
    ("[telemetry]\nshare = nan\n", "telemetry.share: must be a finite number"),
    ("[telemetry]\nmin_interval = 100\nmax_interval = 50\n", "telemetry.max_interval"),
    ("[certificate]\nkey_type = 'dsa'\n", "certificate.key_type"),
    ("[certificate]\nkey_path = 'device.key'\n", "certificate.key_path"),
    ("[certificate]\nsubject = 'CN={device}'\n", "certificate.subject"),
    ("[certificate]\nsubject = '/CN={hostname}'\n", "certificate.subject: unknown placeholder {hostname}"),
    ("[identity]\nname_template = '{serial.__class__}'\n", "identity.name_template"),
    ("[identity]\nname_template = '{serial:>10}'\n", "identity.name_template"),
    ("[identity]\nmarker = '/etc/../x'\n", "identity.marker"),
    ("[posture]\nrequired = ['antivirus']\n", "posture.required[0]"),
    ("[identity]\nname_template = \"a\\nb\"\n", "control character"),
    ("identity = 3\n", "identity: must be a table"),
])
def test_each_bad_key_is_named(tmp_path: Path, extra: str, named: str) -> None:
    assert named in _error(tmp_path, MINIMAL.replace("[mqtt]", extra + "[mqtt]", 1))


@pytest.mark.parametrize(("text", "named"), [
    ('family = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\n', "name: is missing"),
    ('name = 5\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\n', "name: must be text"),
    ('name = "x"\nfamily = "x"\n[mqtt]\nbroker = "192.0.2.1"\n', "family: must be a list"),
    ('name = "a b"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\n', "name: 'a b'"),
    ('name = "x"\nfamily = []\n[mqtt]\nbroker = "192.0.2.1"\n', "family"),
    ('name = "x"\nfamily = ["x"]\n', "mqtt.broker: is missing"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "mq.example"\n', "mqtt.broker_ip: is needed"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "mq.example"\nbroker_ip = "mq2"\n', "mqtt.broker_ip"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\nport = 0\n', "mqtt.port: 0 is out of range"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\nport = 65536\n', "mqtt.port"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\nport = true\n', "mqtt.port: must be a whole"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\n[mqtt.topics]\nt = "a/#"\n', "mqtt.topics.t"),
    ('name = "x"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\nclient_id = "{imei}"\n', "mqtt.client_id"),
])
def test_top_level_and_mqtt_problems_are_named(tmp_path: Path, text: str, named: str) -> None:
    message = _error(tmp_path, text)
    assert named in message
    assert str(tmp_path / "p.toml") in message


def test_garbage_files_are_profile_errors(tmp_path: Path) -> None:
    assert "not UTF-8" in _error(tmp_path, b"name = \"\xff\xfe\"\n")
    assert "not valid TOML" in _error(tmp_path, "name = \n")
    assert "larger than" in _error(tmp_path, "#" * (MAX_PROFILE_BYTES + 1))
    with pytest.raises(ProfileError, match="Cannot read"):
        load_profile(tmp_path / "missing.toml")


def test_the_hash_is_of_the_file_bytes(tmp_path: Path) -> None:
    a = _load(tmp_path, MINIMAL)
    b = _load(tmp_path, MINIMAL + "# a comment\n")
    assert a.sha256 != b.sha256


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_are_only_profile_errors(tmp_path: Path, data: bytes) -> None:
    with contextlib.suppress(ProfileError):
        _load(tmp_path, data)


_scalar = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=20))
_values = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["user", "name", "port", "address", "proto", "telemetry", "x"]), inner, max_size=3), max_leaves=8)
_keys = {"": ["name", "family", "description", "identity", "credentials", "mqtt", "firewall", "telemetry", "zz"],
         "identity": ["name_template", "hostname_template", "marker"],
         "credentials": ["users", "factory", "length"],
         "mqtt": ["broker", "broker_ip", "port", "client_id", "topics", "config_path"],
         "firewall": ["control_plane", "dns", "extra", "deadman_seconds"],
         "telemetry": ["data_plan_mib", "share", "message_bytes", "min_interval", "max_interval"]}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(_keys)), st.dictionaries(st.integers(0, 8), _values, max_size=4),
                       max_size=5))
def test_random_toml_is_a_profile_or_a_profile_error(tmp_path: Path, doc: dict[str, dict[int, object]]) -> None:
    lines = [MINIMAL]
    for section, items in doc.items():
        names = _keys[section]
        body = "".join(f"{names[i % len(names)]} = {_toml_value(v)}\n" for i, v in items.items())
        lines.append(body if not section else f"\n[{section}]\n{body}")
    text = "".join(lines)
    with contextlib.suppress(ProfileError):  # duplicate keys, bad values: only ever a ProfileError
        _load(tmp_path, text)


@pytest.mark.parametrize(("plan", "interval"), [
    # 100 MiB * 25 % / 600 B = 43,690 messages a month: 30 days / that = 59.3 -> 60 s
    (TelemetryPlan(data_plan_mib=100, share=0.25, message_bytes=600), 60),
    # 20 MiB * 10 % / 800 B = 2,621 messages: 988.8 -> 989 s
    (TelemetryPlan(data_plan_mib=20, share=0.1, message_bytes=800, max_interval=3600), 989),
    # a tiny plan is clamped to the longest interval
    (TelemetryPlan(data_plan_mib=1, share=0.1, message_bytes=1000, max_interval=3600), 3600),
    # a huge plan to the shortest
    (TelemetryPlan(data_plan_mib=100_000, share=1.0, message_bytes=100, min_interval=10), 10),
    # unmetered: the default interval
    (TelemetryPlan(data_plan_mib=0, default_interval=120), 120),
])
def test_interval_sizing(plan: TelemetryPlan, interval: int) -> None:
    assert telemetry_interval(plan) == interval


def test_render_fills_and_refuses_unknown_placeholders() -> None:
    assert render("devices/{site}/{device}/t", {"site": "north", "device": "nw-1", "x": "y"}) == "devices/north/nw-1/t"
    assert render("{{literal}}-{device}", {"device": "d"}) == "{literal}-d"
    with pytest.raises(ProfileError, match=r"\{imei\}"):
        render("{imei}", {"device": "d"})
    with pytest.raises(ProfileError):
        render("{device.__class__}", {"device": "d"})


def test_find_profile_prefers_the_config_folder(tmp_path: Path) -> None:
    assert find_profile("nwedge-gw-imx8mm", tmp_path) == resource_root() / "profiles/nwedge-gw-imx8mm.toml"
    (tmp_path / "profiles").mkdir()
    mine = tmp_path / "profiles/nwedge-gw-imx8mm.toml"
    mine.write_text(MINIMAL)
    assert find_profile("nwedge-gw-imx8mm", tmp_path) == mine
    assert find_profile(str(mine)) == mine
    with pytest.raises(ProfileError, match="No profile named 'nope'"):
        find_profile("nope", tmp_path)
    with pytest.raises(ProfileError):
        find_profile("../../etc/passwd", tmp_path)


# -- what identify reads (device_steps' parsers): garbage gives empty facts, never an exception -------------------
IP_LINK = (
    "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\"
    "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
    "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP mode DEFAULT group default qlen 1000\\"
    "    link/ether 00:1F:7B:12:34:56 brd ff:ff:ff:ff:ff:ff\n"
    "3: can0: <NOARP> mtu 16 qdisc pfifo_fast state DOWN mode DEFAULT group default qlen 10\\    link/can \n"
    "4: wwan0@if3: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1430 qdisc mq state UP\\    link/none \n"
    "5: wlan0: <BROADCAST> mtu 1500 state DOWN\\    link/ether 02:00:00:aa:bb:cc brd ff:ff:ff:ff:ff:ff\n"
)


def test_identify_parsers() -> None:
    assert parse_serial("NWG12AB34CD\0") == "NWG12AB34CD"
    assert parse_serial("\0\0") == ""
    assert parse_serial("To Be Filled By O.E.M.\n") == ""
    assert parse_serial("0000000000000000") == ""
    assert parse_serial("  PF2X9 K7 \n") == "PF2X9K7"
    assert parse_macs(IP_LINK) == {"eth0": "00:1f:7b:12:34:56", "wlan0": "02:00:00:aa:bb:cc"}
    assert parse_macs(IP_LINK.replace("\\", "\n")) == parse_macs(IP_LINK)  # BusyBox: no -o
    sys_lines = "/sys/class/net/lo/address 00:00:00:00:00:00\n/sys/class/net/enp1s0/address 52:54:00:12:34:56\n"
    assert parse_macs(sys_lines) == {"enp1s0": "52:54:00:12:34:56"}
    assert parse_os_release('ID=nwedge\nPRETTY_NAME="Northwind Edge OS 1.0"\nbad line\nX="unclosed\n') == {
        "ID": "nwedge", "PRETTY_NAME": "Northwind Edge OS 1.0", "X": "unclosed"}
    assert parse_imei("modem.3gpp.imei                  : 866758041234567\n") == "866758041234567"
    assert parse_imei("modem.3gpp.imei : --\n") == ""
    assert parse_compatible("compatible=nwedge-gw-imx8mm\n") == "nwedge-gw-imx8mm"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_identify_parsers_take_any_text(text: str) -> None:
    section = Section("x", "x", text, text, 0)
    facts = read_facts(dict.fromkeys(("serial", "links", "imei", "os", "rauc", "hostname"), section))
    assert set(facts) >= {"serial", "serial_tail", "macs", "mac", "imei", "os_release", "compatible", "hostname"}


@pytest.mark.parametrize(("name", "ok"), [("nw-a1b2c3", True), ("north-7-nw-1", True), ("-x", False),
                                         ("x-", False), ("a" * 63, True), ("a" * 64, False), ("a_b", False),
                                         ("a.b", False), ("", False), ("ünï", False)])
def test_hostnames(name: str, ok: bool) -> None:
    assert valid_hostname(name) is ok
