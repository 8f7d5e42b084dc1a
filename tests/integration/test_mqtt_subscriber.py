"""MqttSubscriber against a real Mosquitto: wildcards, batches, reconnect with resubscribe, clear errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.peers import free_port
from tests.peers.pki import Pki

from siteline.core.errors import AuthError, TransportError
from siteline.core.mqtt_subscriber import FilterError, MqttSubscriber, parse_filters
from siteline.core.mqtt_topics import TopicTree
from siteline.core.transports.base import ConnState, Credentials
from siteline.simulator.broker import BrokerHandle, start_mosquitto

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("mosquitto")]


def publish(broker: BrokerHandle, messages: list[tuple[str, bytes]], retain: bool = False) -> None:
    """Publish with a plain paho client (QoS 1, waited for), as any device would."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        for topic, payload in messages:
            c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_wildcards_fill_the_buffer_and_the_tree(mosquitto: BrokerHandle, version: str) -> None:
    sub = MqttSubscriber(f"{mosquitto.url}?v={version}", ["edge/+/cpu", "site/#"])
    await sub.connect()
    try:
        assert sub.state.state is ConnState.UP
        publish(mosquitto, [("edge/a/cpu", b"1"), ("edge/a/mem", b"x"), ("site/1/dev/2", b'{"v":1}'),
                            ("other", b"no")])
        await until(lambda: sub.received >= 2 and len(sub.buffer) >= 2, "messages")
        await asyncio.sleep(0.1)
        tree = TopicTree()
        tree.ingest_batch(sub.drain())
        topics = {n.topic for n in tree.drain_changes().added if n.is_topic}
        assert topics == {"edge/a/cpu", "site/1/dev/2"}
        assert sub.drained == 2
        assert sub.dropped == 0
    finally:
        await sub.close()
    assert sub.state.state is ConnState.DOWN


async def test_retained_flag_and_publish_round_trip(mosquitto: BrokerHandle) -> None:
    publish(mosquitto, [("cfg/x", b"kept")], retain=True)
    sub = MqttSubscriber(mosquitto.url, parse_filters("cfg/#, echo/#"))
    await sub.connect()
    try:
        sub.publish("echo/me", b"hello", qos=1)
        await until(lambda: sub.received >= 2, "retained + echo")
        got = {bytes(t): (p, r) for t, p, _q, r, _ts in sub.drain()}
        assert got == {b"cfg/x": (b"kept", True), b"echo/me": (b"hello", False)}
        with pytest.raises(TransportError, match="Cannot publish"):
            sub.publish("bad/+/topic", b"")
    finally:
        await sub.close()


async def test_broker_restart_reconnects_and_resubscribes(mosquitto: BrokerHandle) -> None:
    sub = MqttSubscriber(mosquitto.url, ["t/#"])
    states: list[ConnState] = []
    sub.add_state_listener(lambda s: states.append(s.state))
    await sub.connect()
    try:
        mosquitto.restart()
        await until(lambda: ConnState.RETRYING in states, "retrying")
        await until(lambda: sub.state.state is ConnState.UP and sub.reconnects == 1, "reconnected", timeout=15)
        assert "reconnect" in sub.state.describe()
        publish(mosquitto, [("t/after", b"1")])
        await until(lambda: sub.received >= 1, "a message after the restart")
    finally:
        await sub.close()


async def test_unreachable_broker_is_explained() -> None:
    sub = MqttSubscriber(f"mqtt://127.0.0.1:{free_port()}", ["#"], connect_timeout=3)
    with pytest.raises(TransportError, match="refused the connection"):
        await sub.connect()
    assert sub.state.state is ConnState.DOWN
    assert "refused" in sub.state.reason


async def test_refused_login_is_an_auth_error(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "m", users={"ops": "right"}, acl={"ops": [("read", "#")]})
    try:
        sub = MqttSubscriber(f"mqtt://ops@{broker.host}:{broker.port}", ["#"],
                             credentials=Credentials(password="wrong"), connect_timeout=5)
        with pytest.raises(AuthError, match="refused the login"):
            await sub.connect()
        ok = MqttSubscriber(f"mqtt://ops@{broker.host}:{broker.port}", ["#"], credentials=Credentials(password="right"))
        await ok.connect()
        await ok.close()
    finally:
        broker.stop()


async def test_tls_with_an_untrusted_ca_names_it(tls_broker: BrokerHandle, pki: Pki) -> None:
    url = f"mqtts://{tls_broker.host}:{tls_broker.port}?ca={pki.other_ca}&cert={pki.client}&key={pki.client_key}"
    sub = MqttSubscriber(url, ["#"], connect_timeout=5)
    with pytest.raises(TransportError, match="not signed by the CA"):
        await sub.connect()
    good = MqttSubscriber(f"mqtts://{tls_broker.host}:{tls_broker.port}?ca={pki.ca}&cert={pki.client}&key={pki.client_key}",
                          ["#"], connect_timeout=5)
    await good.connect()
    await good.close()


@pytest.mark.parametrize("bad", ["a/#/b", "a+/b", "", "x/#y"])
async def test_bad_filters_are_refused(bad: str) -> None:
    with pytest.raises(FilterError):
        MqttSubscriber("mqtt://127.0.0.1:1883", [bad])


async def test_filters_text_defaults_to_everything() -> None:
    assert parse_filters("  ") == ["#"]
    assert parse_filters("a/+/c, b/#") == ["a/+/c", "b/#"]
