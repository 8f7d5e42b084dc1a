"""The simulated device's MQTT side against a real Mosquitto, seen by a real paho client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.peers.sim import running_device, start_siteline
from tests.peers.sim_clients import Watcher

from siteline.core.transports import mqtt_contract as contract
from siteline.simulator.broker import BrokerHandle
from siteline.simulator.state import DeviceState

PREFIX = "edge/test-site/gw-01"


@pytest.fixture
def watcher(mosquitto: BrokerHandle) -> Iterator[Watcher]:
    w = Watcher(mosquitto, f"{PREFIX}/#")
    yield w
    w.close()


@pytest.mark.asyncio
async def test_status_and_telemetry_qos1(sim_state: DeviceState, mosquitto: BrokerHandle, watcher: Watcher) -> None:
    async with running_device(sim_state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        assert device.mqtt.url == f"mqtt://127.0.0.1:{mosquitto.port}/{PREFIX}"
        status = await watcher.next("/status", state="online")
        assert status.topic == contract.status_topic(PREFIX)
        for metric in contract.METRICS:
            msg = await watcher.next(f"/telemetry/{metric}")
            assert msg.qos == 1
            assert "ts" in json.loads(msg.payload)
        signal = json.loads((await watcher.next("/telemetry/signal")).payload)
        assert "rsrp" in signal


@pytest.mark.asyncio
async def test_offline_is_retained_after_stop(sim_state: DeviceState, mosquitto: BrokerHandle) -> None:
    async with running_device(sim_state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
    late = Watcher(mosquitto, contract.status_topic(PREFIX))
    try:
        msg = await late.next("/status")
        assert msg.retain
        assert json.loads(msg.payload)["state"] == "offline"
    finally:
        late.close()


@pytest.mark.asyncio
async def test_command_request_gets_reply(sim_state: DeviceState, mosquitto: BrokerHandle, watcher: Watcher) -> None:
    reply_to = contract.reply_topic(PREFIX, "tester")
    async with running_device(sim_state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
        watcher.client.subscribe(reply_to, qos=1)
        await asyncio.sleep(0.2)
        for garbage in (b"\xff\xfe", b"[1,2]", b'{"id": "x"}', b'{"id":"bad id!","cmd":"true","reply_to":"r"}'):
            watcher.client.publish(contract.request_topic(PREFIX), garbage, qos=1)
        request = contract.CommandRequest("req-1", "echo over-mqtt; cat /etc/hostname; exit 3", 10.0, reply_to)
        watcher.client.publish(contract.request_topic(PREFIX), request.encode(), qos=1)
        msg = await watcher.next("/cmd/res/", id="req-1")
        reply = contract.decode_reply(msg.payload)
        assert msg.qos == 1
        assert reply.result.exit_code == 3
        assert reply.result.stdout == "over-mqtt\ngw-01\n"
        assert not reply.truncated
        big = contract.CommandRequest("req-2", "printf '%0400000d' 0", 10.0, reply_to)
        watcher.client.publish(contract.request_topic(PREFIX), big.encode(), qos=1)
        reply = contract.decode_reply((await watcher.next("/cmd/res/", id="req-2")).payload)
        assert reply.truncated
        assert 0 < len(reply.result.stdout) < 400000


@pytest.mark.asyncio
async def test_reconnects_after_broker_restart(
    sim_state: DeviceState, mosquitto: BrokerHandle, watcher: Watcher
) -> None:
    async with running_device(sim_state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
        mosquitto.restart()
        watcher.close()
        again = Watcher(mosquitto, f"{PREFIX}/#")
        try:
            await again.next("/status", timeout=15, state="online")
            await again.next("/telemetry/cpu", timeout=10)
        finally:
            again.close()
        watcher.client = mqtt.Client(CallbackAPIVersion.VERSION2)  # the fixture's close() needs a client
        watcher.client.connect(mosquitto.host, mosquitto.port)
        watcher.client.loop_start()


def test_sim_refuses_a_bad_broker_url(tmp_path: Path) -> None:
    sim = start_siteline(["sim", "--state", str(tmp_path / "d"), "--mqtt", "http://broker:1883"], tmp_path / "log")
    assert sim.proc.wait(30) == 2
    sim.stop()
    assert "is not an mqtt://HOST:PORT broker URL" in (tmp_path / "log").read_text()


@pytest.mark.asyncio
async def test_agent_drops_foreign_reply_to_and_retained_requests(
    sim_state: DeviceState, mosquitto: BrokerHandle, watcher: Watcher
) -> None:
    req = contract.request_topic(PREFIX)
    good = contract.reply_topic(PREFIX, "tester")
    # Retained before the device subscribes, so the broker hands it over flagged as retained (a live
    # delivery of a retain-published message carries retain=0 and is a normal request).
    ran = sim_state.root.parent / "retained-request-ran"
    retained = contract.CommandRequest("kept", f"touch {ran}", 5.0, good).encode()
    watcher.client.publish(req, retained, qos=1, retain=True).wait_for_publish(5)
    async with running_device(sim_state, ssh=False, mqtt_url=mosquitto.url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
        watcher.client.subscribe("#", qos=1)
        await asyncio.sleep(0.2)
        for rid, reply_to in (("out-1", "elsewhere/topic"), ("out-2", f"{PREFIX}/status"),
                              ("out-3", "edge/test-site/gw-02/cmd/res/x"), ("out-4", f"{PREFIX}/cmd/res/")):
            watcher.client.publish(req, contract.CommandRequest(rid, "echo no", 5.0, reply_to).encode(), qos=1)
        watcher.client.publish(req, contract.CommandRequest("ok-1", "echo yes", 5.0, good).encode(), qos=1)
        assert json.loads((await watcher.next("/cmd/res/", id="ok-1")).payload)["stdout"] == "yes\n"
        await asyncio.sleep(0.5)  # any reply to the dropped requests would have come by now
        strays = []
        while not watcher.messages.empty():
            msg = watcher.messages.get()
            if msg.topic.startswith("elsewhere") or "/cmd/res" in msg.topic or b'"no' in msg.payload:
                strays.append((msg.topic, msg.payload))
        assert strays == []
        assert not ran.exists(), "the retained request was run"
        watcher.client.publish(req, b"", qos=1, retain=True)  # clear the retained request


@pytest.mark.parametrize(("reply_to", "ok"), [
    (f"{PREFIX}/cmd/res/abc", True), (f"{PREFIX}/cmd/res/a/b", True), (f"{PREFIX}/cmd/res/", False),
    (f"{PREFIX}/cmd/res", False), (f"{PREFIX}/cmd/res/a//b", False), ("edge/test-site/gw-010/cmd/res/x", False),
    (f"{PREFIX}x/cmd/res/a", False), ("other", False),
])
def test_reply_to_rule(reply_to: str, ok: bool) -> None:
    if ok:
        contract.check_reply_to(PREFIX, reply_to)
    else:
        with pytest.raises(contract.ContractError, match="is not under"):
            contract.check_reply_to(PREFIX, reply_to)


def test_request_delivery_rule() -> None:
    contract.check_request_delivery(PREFIX, contract.request_topic(PREFIX), retained=False)
    with pytest.raises(contract.ContractError, match="retained"):
        contract.check_request_delivery(PREFIX, contract.request_topic(PREFIX), retained=True)
    with pytest.raises(contract.ContractError, match="not a request"):
        contract.check_request_delivery(PREFIX, "edge/test-site/gw-02/cmd/req", retained=False)
