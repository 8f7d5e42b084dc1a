"""MqttTransport against a real Mosquitto, with a tiny device written here that follows mqtt_contract."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from tests.peers import free_port, require_tool

from siteline.core.errors import CommandTimeout, TransportError
from siteline.core.targets import parse_target
from siteline.core.transports import mqtt_contract as contract
from siteline.core.transports.base import ConnState, Credentials, Result, Transport
from siteline.core.transports.mqtt import MqttTransport
from siteline.simulator.broker import BrokerHandle

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("mosquitto")]
PREFIX = "edge/site-t/gw1"


class Device:
    """A device in the contract's terms: retained status with an 'offline' will, commands through /bin/sh.

    Commands containing NOREPLY are swallowed, so a test can wait for a reply that never comes.
    """

    def __init__(self, broker: BrokerHandle, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self.seen: list[contract.CommandRequest] = []
        self.delivery: list[tuple[int, bool]] = []  # (QoS, retained) of each request as it arrived
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{time.monotonic_ns()}")
        offline = json.dumps({"state": "offline", "ts": time.time()})
        self.client.will_set(contract.status_topic(prefix), offline, qos=1, retain=True)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(contract.request_topic(prefix), qos=2)  # the delivered QoS is the sender's
        self.client.loop_start()
        self.status("online")

    def status(self, state: str) -> None:
        payload = json.dumps({"state": state, "ts": time.time()})
        self.client.publish(contract.status_topic(self.prefix), payload, qos=1, retain=True).wait_for_publish(5)

    def _on_message(self, client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        req = contract.decode_request(msg.payload)
        self.seen.append(req)
        self.delivery.append((msg.qos, bool(msg.retain)))
        if "NOREPLY" in req.cmd:
            return
        # A thread per command so one slow command does not hold up paho's network thread.
        threading.Thread(target=self._execute, args=(req,), daemon=True).start()

    def _execute(self, req: contract.CommandRequest) -> None:
        done = subprocess.run(["/bin/sh", "-c", req.cmd], capture_output=True, timeout=req.timeout, check=False)
        result = Result(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode())
        self.client.publish(req.reply_to, contract.CommandReply(req.id, result).encode(), qos=1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(mosquitto: BrokerHandle) -> Iterator[Device]:
    dev = Device(mosquitto)
    try:
        yield dev
    finally:
        dev.stop()


def _transport(broker: BrokerHandle, prefix: str = PREFIX, status_timeout: float = 3.0) -> MqttTransport:
    target = parse_target(f"mqtt://{broker.host}:{broker.port}/{prefix}")
    return MqttTransport(target, Credentials(), status_timeout=status_timeout)


async def _wait_state(t: Transport, state: ConnState, seconds: float = 5.0) -> None:
    reached = asyncio.Event()
    remove = t.add_state_listener(lambda s: reached.set() if s.state is state else None)
    try:
        if t.state.state is not state:
            await asyncio.wait_for(reached.wait(), seconds)
    finally:
        remove()


async def test_run_through_broker(mosquitto: BrokerHandle, device: Device) -> None:
    t = _transport(mosquitto)
    assert isinstance(t, Transport)
    await t.connect()
    try:
        assert t.state.state is ConnState.UP
        r = await t.run("echo hello; echo oops >&2; exit 3")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "hello\n", "oops\n")
        results = await asyncio.gather(*(t.run(f"echo {i}") for i in range(5)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]
        assert device.seen[0].reply_to == f"{PREFIX}/cmd/res/{t.client_id}"
    finally:
        await t.close()
    assert t.state.state is ConnState.DOWN


async def test_two_transports_get_their_own_replies(mosquitto: BrokerHandle, device: Device) -> None:
    a, b = _transport(mosquitto), _transport(mosquitto)
    assert a.client_id != b.client_id
    await asyncio.gather(a.connect(), b.connect())
    try:
        ra, rb = await asyncio.gather(a.run("echo a"), b.run("echo b"))
        assert (ra.stdout, rb.stdout) == ("a\n", "b\n")
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_silent_device_is_refused(mosquitto: BrokerHandle) -> None:
    t = _transport(mosquitto, "edge/site-t/nobody", status_timeout=0.3)
    with pytest.raises(TransportError, match="has not reported to the broker"):
        await t.connect()
    assert t.state.state is ConnState.DOWN


async def test_offline_device_is_refused(mosquitto: BrokerHandle, device: Device) -> None:
    device.status("offline")
    with pytest.raises(TransportError, match="is offline: the device reported offline at 20"):
        await _transport(mosquitto).connect()


async def test_device_reporting_offline_sets_down(mosquitto: BrokerHandle, device: Device) -> None:
    t = _transport(mosquitto)
    await t.connect()
    try:
        device.status("offline")
        await _wait_state(t, ConnState.DOWN)
        assert "reported offline" in t.state.reason
    finally:
        await t.close()


async def test_device_will_sets_down(mosquitto: BrokerHandle) -> None:
    """A device that dies without a goodbye: the broker publishes its will."""
    sub, pub = require_tool("mosquitto_sub"), require_tool("mosquitto_pub")
    will = json.dumps({"state": "offline", "ts": 1})
    status = contract.status_topic(PREFIX)
    where = ["-p", str(mosquitto.port), "-h", "127.0.0.1"]
    online = json.dumps({"state": "online", "ts": time.time()})
    publish = await asyncio.create_subprocess_exec(pub, *where, "-r", "-q", "1", "-t", status, "-m", online)
    assert await asyncio.wait_for(publish.wait(), 10) == 0
    proc = await asyncio.create_subprocess_exec(
        sub, *where, "-t", status, "--will-topic", status, "--will-payload", will, "--will-retain", "--will-qos", "1",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert b"online" in await asyncio.wait_for(proc.stdout.readline(), 5)  # it is connected
        t = _transport(mosquitto)
        await t.connect()
        proc.kill()  # no DISCONNECT packet: the broker sends the will
        await _wait_state(t, ConnState.DOWN)
        assert "reported offline" in t.state.reason
        await t.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_broker_killed_sets_down(mosquitto: BrokerHandle, device: Device) -> None:
    t = _transport(mosquitto)
    await t.connect()
    try:
        running = asyncio.ensure_future(t.run("echo NOREPLY", timeout=10))
        await asyncio.sleep(0.1)
        assert mosquitto.process is not None
        mosquitto.process.kill()
        await _wait_state(t, ConnState.DOWN)
        assert "lost the broker" in t.state.reason
        with pytest.raises(TransportError, match="lost the broker"):
            await running  # a waiting command fails at once instead of hanging to its timeout
    finally:
        await t.close()


async def test_no_reply_is_command_timeout(mosquitto: BrokerHandle, device: Device) -> None:
    t = _transport(mosquitto)
    await t.connect()
    try:
        with pytest.raises(CommandTimeout, match="got no answer"):
            await t.run("NOREPLY", timeout=0.2)
        assert (await t.run("echo after")).stdout == "after\n"
    finally:
        await t.close()


async def test_garbage_on_our_topics_is_dropped(mosquitto: BrokerHandle, device: Device) -> None:
    t = _transport(mosquitto)
    await t.connect()
    try:
        for payload in (b"\xff\xfe", b"[]", b'{"id": 5}', b'{"state": "maybe"}'):
            device.client.publish(t.reply_topic, payload, qos=1).wait_for_publish(5)
            device.client.publish(contract.status_topic(PREFIX), payload, qos=1).wait_for_publish(5)
        assert (await t.run("echo fine")).stdout == "fine\n"
        assert t.state.state is ConnState.UP
    finally:
        await t.close()


async def test_refused_broker_port() -> None:
    t = MqttTransport(parse_target(f"mqtt://127.0.0.1:{free_port()}/{PREFIX}"), Credentials())
    with pytest.raises(TransportError, match="refused the connection"):
        await t.connect()
    assert t.state.state is ConnState.DOWN


class _MuteBroker:
    """Accepts one MQTT connect with a CONNACK, then ignores everything (no SUBACK ever comes)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            conn.recv(1024)  # the CONNECT packet
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
            while conn.recv(1024):
                pass

    def stop(self) -> None:
        self.server.close()
        self.thread.join(5)


async def test_missing_suback_is_a_transport_error() -> None:
    broker = _MuteBroker()
    try:
        target = parse_target(f"mqtt://127.0.0.1:{broker.port}/{PREFIX}")
        t = MqttTransport(target, Credentials(), connect_timeout=0.5, status_timeout=0.2)
        with pytest.raises(TransportError, match="did not confirm our subscription"):
            await t.connect()
        assert t.state.state is ConnState.DOWN
    finally:
        broker.stop()


async def test_late_disconnect_from_an_old_client_is_ignored(mosquitto: BrokerHandle, device: Device) -> None:
    t = _transport(mosquitto)
    await t.connect()
    old = t._client
    assert old is not None
    await t.connect()  # a reconnect: the old client is closed, a new one is current
    try:
        running = asyncio.create_task(t.run("sleep 0.3; echo still here"))
        await asyncio.sleep(0.05)
        # paho's thread delivering the old client's disconnect late, as it does after a slow loop_stop
        rc = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
        await asyncio.to_thread(t._on_disconnect, old, None, None, rc, None)
        assert (await running).stdout == "still here\n"
        assert t.state.state is ConnState.UP
    finally:
        await t.close()


async def test_commands_go_at_qos1_not_retained(mosquitto: BrokerHandle, device: Device) -> None:
    """A command must arrive once the broker has it (QoS 1) and never run again for a late subscriber (retained)."""
    t = _transport(mosquitto)
    await t.connect()
    try:
        await t.run("true")
        assert device.delivery == [(1, False)]
    finally:
        await t.close()


async def test_keepalive_option_reaches_paho(mosquitto: BrokerHandle, device: Device) -> None:
    target = parse_target(f"mqtt://{mosquitto.host}:{mosquitto.port}/{PREFIX}?keepalive=7")
    t = MqttTransport(target, Credentials())
    assert (t.keepalive, _transport(mosquitto).keepalive) == (7, 30)
    await t.connect()
    try:
        assert t._client is not None
        assert t._client.keepalive == 7
    finally:
        await t.close()


async def test_mqtt5_transport_with_a_311_device(mosquitto: BrokerHandle, device: Device) -> None:
    """The 3.1.1 fallback: a device that ignores MQTT 5 properties still answers through the JSON reply_to and id."""
    target = parse_target(f"mqtt://{mosquitto.host}:{mosquitto.port}/{PREFIX}?v=5")
    t = MqttTransport(target, Credentials())
    await t.connect()
    try:
        assert t._client is not None
        assert t._client.protocol == paho.MQTTv5
        results = await asyncio.gather(t.run("echo five"), t.run("echo six"))
        assert [r.stdout for r in results] == ["five\n", "six\n"]
    finally:
        await t.close()
