"""The demo's broker with logins and ACLs: Mosquitto, and the embedded amqtt fallback, for real.

Both kinds run the same tests. amqtt is optional (the ``broker`` extra): without it the embedded
case is skipped, also under CI, since the demo then simply uses Mosquitto.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from tests.peers import require_tool
from tests.peers.sim import running_device

from siteline.core.errors import AuthError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.mqtt import MqttTransport
from siteline.simulator import broker as broker_mod
from siteline.simulator.broker import BrokerHandle, BrokerUnavailableError, device_acl, siteline_acl, start_broker
from siteline.simulator.mqtt_agent import save_broker_password
from siteline.simulator.state import DeviceState

SITE, NAME = "test-site", "gw-01"
PREFIX = f"edge/{SITE}/{NAME}"
USERS = {"siteline": "s3cret-siteline", "dev-gw-01": "s3cret-device", "dev-gw-02": "s3cret-other"}
ACL = {"siteline": siteline_acl(), "dev-gw-01": device_acl(SITE, NAME), "dev-gw-02": device_acl(SITE, "gw-02")}


def _need(kind: str) -> None:
    if kind == "mosquitto":
        require_tool("mosquitto")
    elif not broker_mod.embedded_available():
        pytest.skip("amqtt is not installed (optional: pip install 'siteline[broker]'): embedded broker not tested")


@pytest.fixture(params=["mosquitto", "embedded"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerHandle]:
    kind = str(request.param)
    _need(kind)
    handle = start_broker(tmp_path / "broker", users=USERS, acl=ACL, kind=kind)
    try:
        yield handle
    finally:
        handle.stop()


class Client:
    """A paho client logged in as ``user``; records the CONNACK and every message."""

    def __init__(self, broker: BrokerHandle, user: str | None, password: str | None) -> None:
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}")
        if user:
            self.client.username_pw_set(user, password)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def accepted(self) -> bool:
        return not self.connack.get(timeout=10).is_failure

    def subscribe(self, topic: str) -> None:
        _result, _mid = self.client.subscribe(topic, qos=1)
        time.sleep(0.3)  # the SUBACK; nothing below depends on a tighter bound

    def topics(self, wait: float) -> list[str]:
        deadline, seen = time.monotonic() + wait, []
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(self.messages.get(timeout=left).topic)
            except queue.Empty:
                break
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_anonymous_and_wrong_password_are_refused(secured: BrokerHandle) -> None:
    for user, password in ((None, None), ("siteline", "wrong"), ("nobody", "x")):
        client = Client(secured, user, password)
        try:
            assert not client.accepted(), f"{user} / {password} was let in"
        finally:
            client.close()


def test_acl_limits_each_device_to_its_own_topics(secured: BrokerHandle) -> None:
    siteline = Client(secured, "siteline", USERS["siteline"])
    device = Client(secured, "dev-gw-01", USERS["dev-gw-01"])
    other = Client(secured, "dev-gw-02", USERS["dev-gw-02"])
    try:
        assert siteline.accepted()
        assert device.accepted()
        assert other.accepted()
        siteline.subscribe("edge/#")
        device.subscribe(f"{PREFIX}/cmd/req")
        other.subscribe(f"{PREFIX}/cmd/req")  # not its own: the broker must not deliver these to it
        device.client.publish(f"edge/{SITE}/gw-02/status", b"forged", qos=1)
        device.client.publish(f"{PREFIX}/cmd/req", b"self-made request", qos=1)
        device.client.publish(f"{PREFIX}/telemetry/cpu", b"{}", qos=1)
        siteline.client.publish(f"{PREFIX}/cmd/req", b"{}", qos=1)
        assert sorted(siteline.topics(1.0)) == [f"{PREFIX}/cmd/req", f"{PREFIX}/telemetry/cpu"]
        assert device.topics(0.3) == [f"{PREFIX}/cmd/req"]
        assert other.topics(0.3) == []
    finally:
        for client in (siteline, device, other):
            client.close()


@pytest.mark.asyncio
async def test_siteline_runs_a_command_through_the_secured_broker(
    secured: BrokerHandle, sim_state: DeviceState
) -> None:
    save_broker_password(sim_state.root, USERS["dev-gw-01"])
    assert (sim_state.root / "mqtt-password").stat().st_mode & 0o077 == 0
    url = f"mqtt://dev-gw-01@{secured.host}:{secured.port}"
    target = parse_target(f"mqtt://siteline@{secured.host}:{secured.port}/{PREFIX}")
    async with running_device(sim_state, ssh=False, mqtt_url=url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
        transport = MqttTransport(target, Credentials(username="siteline", password=USERS["siteline"], use_agent=False))
        try:
            await transport.connect()
            result = await transport.run("cat /etc/hostname; exit 4", timeout=10)
            assert (result.exit_code, result.stdout) == (4, "gw-01\n")
        finally:
            await transport.close()
        wrong = MqttTransport(target, Credentials(username="siteline", password="guess", use_agent=False))
        with pytest.raises(AuthError, match="refused the login"):
            await wrong.connect()
        await wrong.close()


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of the sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.append(local.rsplit(":", 1)[0])
    return found


def test_embedded_broker_binds_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need("embedded")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to see the bound address")
    monkeypatch.setenv(broker_mod.BROKER_ENV, "embedded")
    handle = start_broker(tmp_path / "broker")  # the environment variable forces the fallback
    try:
        assert handle.kind == "embedded"
        assert _listeners(handle.port) == ["0100007F"]  # 127.0.0.1, and no 0.0.0.0 or :: socket
    finally:
        handle.stop()


def test_unknown_broker_kind_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(broker_mod.BROKER_ENV, "rabbit")
    with pytest.raises(BrokerUnavailableError, match="not one of auto, mosquitto, embedded"):
        start_broker(tmp_path / "broker")


def test_no_broker_at_all_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: None)
    monkeypatch.setattr(broker_mod, "embedded_available", lambda: False)
    with pytest.raises(BrokerUnavailableError, match="install the Debian package 'mosquitto'"):
        start_broker(tmp_path / "broker")
