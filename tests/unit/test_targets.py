"""The target URL parser: good forms, bad forms (each a TargetError with a message), round trips, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from siteline.core.errors import TargetError
from siteline.core.targets import Jump, Target, parse_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("serial:///dev/ttyUSB0?baud=115200", Target("serial", path="/dev/ttyUSB0", options={"baud": "115200"})),
        ("serial://COM3?baud=9600", Target("serial", path="COM3", options={"baud": "9600"})),
        ("serial://com12", Target("serial", path="COM12")),
        ("serial:///dev/cu.usbserial-1410", Target("serial", path="/dev/cu.usbserial-1410")),
        (
            "serial:///dev/ttyS0?baud=9600&parity=even&stopbits=2&flow=rtscts",
            Target("serial", path="/dev/ttyS0",
                   options={"baud": "9600", "parity": "even", "stopbits": "2", "flow": "rtscts"}),
        ),
        ("ssh://root@10.0.0.5", Target("ssh", host="10.0.0.5", user="root")),
        ("SSH://Host.example", Target("ssh", host="Host.example")),
        ("ssh://[::1]:2222", Target("ssh", host="[::1]", port=2222)),
        (
            "ssh://root@127.0.0.1:2222?jump=ops@bastion.example:22",
            Target("ssh", host="127.0.0.1", port=2222, user="root", jumps=(Jump("bastion.example", 22, "ops"),)),
        ),
        (
            "ssh://d?jump=a@b1:2201,b2",
            Target("ssh", host="d", jumps=(Jump("b1", 2201, "a"), Jump("b2", 22, None))),
        ),
        ("ssh://root@h?key=/tmp/k", Target("ssh", host="h", user="root", options={"key": "/tmp/k"})),
        ("mqtt://127.0.0.1:1883/edge/site-a/gw1", Target("mqtt", host="127.0.0.1", port=1883, path="edge/site-a/gw1")),
        ("mqtts://broker/edge/site-a/gw1", Target("mqtts", host="broker", path="edge/site-a/gw1")),
        ("  mqtt://u@b/t  ", Target("mqtt", host="b", user="u", path="t")),
    ],
)
def test_good_forms(text: str, expected: Target) -> None:
    target = parse_target(text)
    assert target == expected
    assert parse_target(str(target)) == target


def test_properties() -> None:
    assert parse_target("ssh://h").effective_port == 22
    assert parse_target("mqtt://h/t").effective_port == 1883
    assert parse_target("mqtts://h/t").effective_port == 8883  # the scheme decides TLS, never the port
    assert parse_target("mqtt://h:8883/t").scheme == "mqtt"
    assert parse_target("serial:///dev/ttyUSB0").baud == 115200
    assert parse_target("mqtt://h/edge/s/gw1").label == "gw1"
    assert str(parse_target("ssh://d?jump=a@b1:2201,b2")) == "ssh://d?jump=a@b1:2201,b2:22"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://x", "known scheme"),
        ("ssh:/host", "known scheme"),
        ("ssh://", "no host"),
        ("ssh://root:pw@host", "Passwords do not belong"),
        ("ssh://host:0", "not a valid SSH port"),
        ("ssh://host:70000", "not a valid SSH port"),
        ("ssh://host:abc", "not a valid SSH port"),
        ("ssh://host:22:33", "not a valid SSH port"),
        ("ssh://host/path", "no path"),
        ("ssh://host?bogus=1", "not an option"),
        ("ssh://bad host", "not a valid host"),
        ("ssh://[::1]x", "not a valid address"),
        ("ssh://-x@host", "not a valid user"),
        ("ssh://host?jump=a@:22", "no host"),
        ("ssh://host?jump=h:99999", "bastion port"),
        ("ssh://host?jump=[::1", "unclosed IPv6"),
        ("ssh://h?&&", "cannot be read"),
        ("ssh://" + "x" * 3000, "at most 2048"),
        ("ssh://h\x00", "control characters"),
        ("serial://", "names no port"),
        ("serial://dev/ttyUSB0", "three slashes"),
        ("serial:///dev/../etc/passwd", "'..'"),
        ("serial:///dev/ttyUSB0?baud=abc", "not a baud rate"),
        ("serial:///dev/ttyUSB0?baud=10", "not a baud rate"),
        ("serial:///dev/ttyUSB0?speed=9600", "not an option"),
        ("mqtt://broker", "needs the device's topic"),
        ("mqtt://broker/", "needs the device's topic"),
        ("mqtt://broker/edge/+/x", "not a valid device topic"),
        ("mqtt://broker/a//b", "not a valid device topic"),
        ("mqtt://broker:1883/edge?x=1", "not an option"),
        ("ssh://[::1", "malformed IPv6"),
        ("ssh://]", "malformed IPv6"),
        ("mqtt://[::1/edge/x", "malformed IPv6"),
        ("mqtt://broker/edge/#", "may not contain '#'"),  # not silently the device 'edge'
        ("ssh://h#frag", "may not contain '#'"),
        ("serial:///dev/tty%00", "control characters"),
    ],
)
def test_bad_forms(text: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text)
    assert message in str(info.value)
    assert info.value.message  # every rejection says what is wrong


# -- round trips and fuzzing -------------------------------------------------------------------------

HOSTS = st.one_of(
    st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
USERS = st.none() | st.from_regex(r"\A[a-z_][a-z0-9_.-]{0,15}\Z")
PORTS = st.none() | st.integers(min_value=1, max_value=65535)
LEVELS = st.lists(st.from_regex(r"\A[A-Za-z0-9_.-]{1,12}\Z"), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(HOSTS, USERS, PORTS, st.lists(st.tuples(HOSTS, USERS, st.integers(1, 65535)), max_size=3))
def test_ssh_round_trip(host: str, user: str | None, port: int | None, hops: list[tuple[str, str | None, int]]) -> None:
    target = Target("ssh", host=host, user=user, port=port, jumps=tuple(Jump(h, p, u) for h, u, p in hops))
    assert parse_target(str(target)) == target


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["mqtt", "mqtts"]), HOSTS, USERS, PORTS, LEVELS)
def test_mqtt_round_trip(scheme: str, host: str, user: str | None, port: int | None, levels: list[str]) -> None:
    target = parse_target(f"{scheme}://{user + '@' if user else ''}{host}{f':{port}' if port else ''}/"
                          + "/".join(levels))
    assert parse_target(str(target)) == target
    assert target.topic == "/".join(levels)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A/dev/[A-Za-z0-9_.+-]{1,20}(/[A-Za-z0-9_.:+-]{1,20}){0,2}\Z"), st.integers(50, 4_000_000))
def test_serial_round_trip(path: str, baud: int) -> None:
    assume(".." not in path.split("/"))
    target = parse_target(f"serial://{path}?baud={baud}")
    assert (target.path, target.baud) == (path, baud)
    assert parse_target(str(target)) == target


URL_ALPHABET = st.characters(codec="utf-8", exclude_characters="\x00")
PREFIXES = st.sampled_from(["", "ssh://", "serial://", "serial:///", "mqtt://", "mqtts://", "SSH://root@"])


@settings(max_examples=500, deadline=None)
@given(PREFIXES, st.text(alphabet=URL_ALPHABET, max_size=80) | st.text(alphabet="@:/?&=,.[]%#+ a1", max_size=40))
def test_fuzz_only_target_error(prefix: str, rest: str) -> None:
    text = prefix + rest
    try:
        target = parse_target(text)
    except TargetError as exc:
        message = exc.message
    else:
        assert parse_target(str(target)) == target
        return
    assert message  # a rejection always says what is wrong


@pytest.mark.parametrize("spelling", ["auto", "AUTO", "Auto"])
def test_serial_autobaud(spelling: str) -> None:
    target = parse_target(f"serial:///dev/ttyUSB0?baud={spelling}")
    assert target.autobaud
    assert target.baud == 115200  # the first rate tried
    assert str(target) == "serial:///dev/ttyUSB0?baud=auto"
    assert parse_target(str(target)) == target
    assert not parse_target("serial:///dev/ttyUSB0?baud=9600").autobaud
    assert not parse_target("serial:///dev/ttyUSB0").autobaud


def test_serial_autobaud_typo_is_refused() -> None:
    with pytest.raises(TargetError, match="not a baud rate") as info:
        parse_target("serial:///dev/ttyUSB0?baud=autp")
    assert "auto" in (info.value.hint or "")


def test_mqtt_tls_and_version_options_are_accepted() -> None:
    target = parse_target("mqtts://ops@broker:8883/edge/site-a/gw1?ca=/etc/ca.pem&cert=/k/c.pem&key=/k/c.key&v=5")
    assert target.options == {"ca": "/etc/ca.pem", "cert": "/k/c.pem", "key": "/k/c.key", "v": "5"}
    assert parse_target(str(target)) == target


@pytest.mark.parametrize("url", ["ssh://root@10.0.0.1?keepalive=15", "mqtts://broker/edge/gw1?keepalive=60"])
def test_keepalive_option_is_read_as_seconds(url: str) -> None:
    target = parse_target(url)
    assert target.keepalive in (15.0, 60.0)
    assert parse_target(str(target)) == target


@pytest.mark.parametrize("value", ["0", "-3", "abc", "nan", "99999"])
def test_keepalive_out_of_range_is_refused_with_a_hint(value: str) -> None:
    with pytest.raises(TargetError, match="keepalive"):
        parse_target(f"ssh://root@10.0.0.1?keepalive={value}")


def test_keepalive_absent_means_transport_default() -> None:
    assert parse_target("ssh://root@10.0.0.1").keepalive is None
