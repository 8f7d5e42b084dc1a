"""MqttTransport over TLS (and MQTT 5) against a real Mosquitto, with certificates made here by openssl."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tests.peers.pki import Pki, make_pki, start_tls_broker

from siteline.core.errors import AuthError, TransportError
from siteline.core.mqtt_client import MqttSettingsError
from siteline.core.targets import Target
from siteline.core.transports import mqtt_contract as contract
from siteline.core.transports.base import ConnState, Credentials, Result
from siteline.core.transports.mqtt import MqttTransport
from siteline.simulator.broker import BrokerHandle

pytestmark = [pytest.mark.peer("mosquitto")]
PREFIX = "edge/site-t/tls1"


class Device5:
    """A device over TLS speaking MQTT 5: answers on the request's response topic, echoing correlation data."""

    def __init__(self, broker: BrokerHandle, pki: Pki) -> None:
        self.properties: list[tuple[str | None, bytes | None]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{time.monotonic_ns()}",
                                  protocol=paho.MQTTv5)
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(pki.client), str(pki.client_key))
        self.client.tls_set_context(ctx)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(contract.request_topic(PREFIX), qos=1)
        self.client.loop_start()
        status = json.dumps({"state": "online", "ts": time.time()})
        self.client.publish(contract.status_topic(PREFIX), status, qos=1, retain=True).wait_for_publish(5)

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        req = contract.decode_request(msg.payload)
        topic = getattr(msg.properties, "ResponseTopic", None)
        correlation = getattr(msg.properties, "CorrelationData", None)
        self.properties.append((topic, correlation))
        threading.Thread(target=self._answer, args=(req, topic, correlation), daemon=True).start()

    def _answer(self, req: contract.CommandRequest, topic: str | None, correlation: bytes | None) -> None:
        done = subprocess.run(["/bin/sh", "-c", req.cmd], capture_output=True, timeout=req.timeout, check=False)
        reply = contract.CommandReply(req.id, Result(done.returncode, done.stdout.decode(), done.stderr.decode()))
        props = Properties(PacketTypes.PUBLISH)
        if correlation is not None:
            props.CorrelationData = correlation
        self.client.publish(topic or req.reply_to, reply.encode(), qos=1, properties=props)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _target(broker: BrokerHandle, scheme: str = "mqtts", **options: str) -> Target:
    # Built directly: parse_target does not take these options until core/targets.py allows them.
    return Target(scheme="mqtts" if scheme == "mqtts" else "mqtt", host=broker.host, port=broker.port,
                  path=PREFIX, options=options)


def _client_options(pki: Pki) -> dict[str, str]:
    return {"ca": str(pki.ca), "cert": str(pki.client), "key": str(pki.client_key)}


async def _connect_error(target: Target) -> TransportError:
    t = MqttTransport(target, Credentials(), connect_timeout=5.0, status_timeout=0.5)
    with pytest.raises(TransportError) as caught:
        await t.connect()
    assert t.state.state is ConnState.DOWN
    return caught.value


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_tls_with_client_certificate_runs_commands(tls_broker: BrokerHandle, pki: Pki, version: str) -> None:
    device = Device5(tls_broker, pki)
    t = MqttTransport(_target(tls_broker, v=version, **_client_options(pki)), Credentials())
    try:
        await t.connect()
        results = await asyncio.gather(t.run("echo one"), t.run("echo two >&2; exit 4"))
        assert [(r.exit_code, r.stdout, r.stderr) for r in results] == [(0, "one\n", ""), (4, "", "two\n")]
        if version == "5":  # MQTT 5's own request/response fields travel with the request
            assert {topic for topic, _ in device.properties} == {t.reply_topic}
            assert all(c is not None and len(c) == 32 for _, c in device.properties)
        else:
            assert device.properties == [(None, None), (None, None)]
    finally:
        await t.close()
        device.stop()


@pytest.mark.asyncio
async def test_untrusted_ca_names_the_ca(tls_broker: BrokerHandle, pki: Pki) -> None:
    options = {**_client_options(pki), "ca": str(pki.other_ca)}
    err = await _connect_error(_target(tls_broker, **options))
    assert f"not signed by the CA in {pki.other_ca}" in str(err)
    assert "--ca" in err.hint


@pytest.mark.asyncio
async def test_system_store_does_not_trust_a_private_ca(tls_broker: BrokerHandle) -> None:
    err = await _connect_error(_target(tls_broker))
    assert "not signed by any CA in the system's trust store" in str(err)


@pytest.mark.asyncio
async def test_missing_client_certificate_is_explained(tls_broker: BrokerHandle, pki: Pki) -> None:
    err = await _connect_error(_target(tls_broker, ca=str(pki.ca)))
    assert isinstance(err, AuthError)
    assert "requires a client certificate" in str(err)


@pytest.mark.asyncio
async def test_client_certificate_from_another_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    other = make_pki(tmp_path / "other-pki")
    broker = start_tls_broker(tmp_path / "mosquitto", pki, require_certificate=True)
    try:
        opts = {"ca": str(pki.ca), "cert": str(other.client), "key": str(other.client_key)}
        err = await _connect_error(_target(broker, **opts))
        assert isinstance(err, AuthError)
        assert "client certificate" in str(err)
    finally:
        broker.stop()


@pytest.mark.asyncio
async def test_hostname_mismatch_is_explained(tmp_path: Path, pki: Pki) -> None:
    broker = start_tls_broker(tmp_path / "mosquitto", pki, require_certificate=False, wrong_name=True)
    try:
        err = await _connect_error(_target(broker, ca=str(pki.ca)))
        assert "does not name 127.0.0.1" in str(err)
        # insecure=1 skips only the name check: the chain is still verified, and the login goes on.
        err = await _connect_error(_target(broker, ca=str(pki.ca), insecure="1"))
        assert "has not reported to the broker" in str(err)
    finally:
        broker.stop()


@pytest.mark.asyncio
async def test_plain_mqtt_to_a_tls_port_and_tls_to_a_plain_port(tls_broker: BrokerHandle,
                                                               mosquitto: BrokerHandle, pki: Pki) -> None:
    err = await _connect_error(_target(tls_broker, scheme="mqtt"))
    assert "closed the connection before accepting us" in str(err)
    assert "mqtts://" in str(err)
    err = await _connect_error(_target(mosquitto, ca=str(pki.ca)))
    assert "does not speak TLS on this port" in str(err)
    assert "mqtt://" in err.hint


@pytest.mark.asyncio
async def test_bad_local_settings_are_settings_errors(tls_broker: BrokerHandle, tmp_path: Path, pki: Pki) -> None:
    err = await _connect_error(_target(tls_broker, ca=str(tmp_path / "nope.pem")))
    assert isinstance(err, MqttSettingsError)
    assert "does not exist" in str(err)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"\x00not a certificate\xff")
    err = await _connect_error(_target(tls_broker, ca=str(pki.ca), cert=str(garbage)))
    assert isinstance(err, MqttSettingsError)
    assert "cannot be used" in str(err)
    err = await _connect_error(_target(tls_broker, v="7", **_client_options(pki)))
    assert isinstance(err, MqttSettingsError)
    assert "not supported" in str(err)
