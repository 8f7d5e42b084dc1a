"""What the sync refuses and holds: the data budget, plain MQTT, a refused login, a publish the broker
refuses for good, and the retained inbound documents it caches on connect."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import paho.mqtt.client as paho
import paho.mqtt.publish as paho_publish
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.integration.test_outbox_sync_support import TECH, Consumer, fill, open_outbox, settings_for, until
from tests.peers import require_tool

from siteline.core.outbox.inbound import InboundCache
from siteline.core.outbox.model import NewItem, Priority, State
from siteline.core.outbox.settings import ControlPlaneSettings, SettingsError
from siteline.core.outbox.sync import Syncer, SyncError, SyncState
from siteline.simulator.broker import BrokerHandle, start_mosquitto

pytestmark = [pytest.mark.peer("mosquitto"), pytest.mark.asyncio]
BUDGET = 1_000_000


async def test_near_the_budget_telemetry_is_held_and_audit_still_goes(tmp_path: Path,
                                                                      mosquitto: BrokerHandle) -> None:
    consumer = Consumer(mosquitto.port)
    outbox = open_outbox(tmp_path)
    try:
        outbox.add_usage(int(BUDGET * 0.95))
        low = fill(outbox, 20, kinds=["telemetry"])
        high = fill(outbox, 5, kinds=["audit"])
        settings = settings_for(mosquitto.port, metered=True, monthly_budget_bytes=BUDGET)
        syncer = Syncer(outbox, settings)
        result = await syncer.drain(timeout=20)
        assert (result.sent, result.held) == (5, 20)
        assert syncer.status.state is SyncState.HELD
        assert syncer.status.message.startswith("Data budget 9")
        assert "telemetry is held until 1 " in syncer.status.message
        assert await asyncio.to_thread(consumer.wait_for, high, 10) == set()
        assert not consumer.ids() & set(low)
        assert {outbox.get(i).state for i in low} == {State.PENDING}  # type: ignore[union-attr]
        # the metered link's connect and subscribe were counted too, not only the items
        assert outbox.usage() > int(BUDGET * 0.95) + result.bytes
    finally:
        outbox.close()
        consumer.close()


async def test_over_the_budget_only_high_items_go(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    outbox = open_outbox(tmp_path)
    try:
        outbox.add_usage(BUDGET + 1)
        fill(outbox, 4, kinds=["note", "telemetry"])
        outbox.put(NewItem("flash-result", "site-a", "gw1", {"ok": True}))
        outbox.put(NewItem("custom", "site-a", "gw1", {"n": 1}, priority=Priority.HIGH))
        result = await Syncer(outbox, settings_for(mosquitto.port, monthly_budget_bytes=BUDGET)).drain(timeout=20)
        assert (result.sent, result.held) == (2, 4)
    finally:
        outbox.close()


async def test_plain_mqtt_is_refused_without_allow_plain() -> None:
    with pytest.raises(SettingsError):
        ControlPlaneSettings(url="mqtt://127.0.0.1:1883", technician=TECH)


async def test_metered_links_send_compressed_batches(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    consumer = Consumer(mosquitto.port)
    metered, plain = open_outbox(tmp_path, "metered.sqlite3"), open_outbox(tmp_path, "plain.sqlite3")
    try:
        ids = fill(metered, 400, kinds=["telemetry"]) + fill(plain, 400, kinds=["telemetry"])
        batched = await Syncer(metered, settings_for(mosquitto.port, metered=True)).drain(timeout=20)
        one_by_one = await Syncer(plain, settings_for(mosquitto.port)).drain(timeout=20)
        assert batched.sent == one_by_one.sent == 400
        assert await asyncio.to_thread(consumer.wait_for, ids, 10) == set()
        assert batched.bytes * 4 < one_by_one.bytes
    finally:
        metered.close()
        plain.close()
        consumer.close()


def _broker_with_users(tmp_path: Path) -> BrokerHandle:
    require_tool("mosquitto")
    acl = {TECH: [("write", f"siteline/v1/{TECH}/outbox/note"), ("read", f"siteline/v1/{TECH}/in/#")],
           "ops": [("readwrite", "#")]}
    return start_mosquitto(tmp_path / "auth-broker", users={TECH: "right", "ops": "ops-pw"}, acl=acl)


async def test_a_refused_login_is_an_auth_error(tmp_path: Path) -> None:
    broker = _broker_with_users(tmp_path)
    outbox = open_outbox(tmp_path)
    try:
        fill(outbox, 2)
        settings = settings_for(broker.port, username=TECH, protocol="3.1.1")
        with pytest.raises(SyncError) as err:
            await Syncer(outbox, settings, password="wrong").drain(timeout=10)
        assert err.value.kind == "auth"
        assert outbox.status().pending == 2
    finally:
        outbox.close()
        broker.stop()


async def test_a_publish_the_broker_refuses_for_good_is_failed_not_retried(tmp_path: Path) -> None:
    """MQTT 5: Mosquitto answers a publish outside the ACL with PUBACK 0x87 (not authorised)."""
    broker = _broker_with_users(tmp_path)
    outbox = open_outbox(tmp_path)
    try:
        note = outbox.put(NewItem("note", "site-a", "gw1", {"text": "fine"}))
        denied = outbox.put(NewItem("telemetry", "site-a", "gw1", {"rssi": -71}))
        settings = settings_for(broker.port, username=TECH, protocol="5")
        result = await Syncer(outbox, settings, password="right").drain(timeout=10)
        assert result.sent == 1
        assert outbox.get(note.id).state is State.SENT  # type: ignore[union-attr]
        failed = outbox.get(denied.id)
        assert failed is not None
        assert failed.state is State.FAILED
        assert "0x87" in failed.last_error
        assert outbox.attempts(denied.id)[-1].outcome == "failed"
    finally:
        outbox.close()
        broker.stop()


async def test_retained_inbound_documents_are_cached_on_connect(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    orders = {"v": 1, "orders": [{"id": "wo-1", "site": "site-a", "title": "Replace the modem"}]}
    topic = f"siteline/v1/{TECH}/in/work-orders"
    await asyncio.to_thread(paho_publish.single, topic, json.dumps(orders), qos=1, retain=True,
                            hostname="127.0.0.1", port=mosquitto.port)
    outbox = open_outbox(tmp_path)
    try:
        cache = InboundCache(outbox)
        syncer = Syncer(outbox, settings_for(mosquitto.port), inbound=cache)
        task = asyncio.create_task(syncer.run())
        await until(lambda: cache.get("work-orders") is not None, "the work orders cached")
        await syncer.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        outbox.close()


async def test_mqtt5_outbox_messages_carry_no_expiry_and_are_not_retained(tmp_path: Path,
                                                                          mosquitto: BrokerHandle) -> None:
    """An item must not expire in a broker's queue on its way to a slow consumer."""
    seen: list[paho.MQTTMessage] = []
    consumer = paho.Client(CallbackAPIVersion.VERSION2, client_id="v5-consumer", protocol=paho.MQTTv5)
    subscribed = threading.Event()
    consumer.on_subscribe = lambda *_a: subscribed.set()
    consumer.on_message = lambda _c, _u, m: seen.append(m)
    consumer.connect("127.0.0.1", mosquitto.port)
    consumer.subscribe(f"siteline/v1/{TECH}/outbox/#", qos=1)
    consumer.loop_start()
    outbox = open_outbox(tmp_path)
    try:
        assert await asyncio.to_thread(subscribed.wait, 10)
        fill(outbox, 3)
        await Syncer(outbox, settings_for(mosquitto.port, protocol="5")).drain(timeout=10)
        await until(lambda: len(seen) == 3, "three messages")
        for m in seen:
            assert m.qos == 1
            assert not m.retain
            assert not hasattr(m.properties, "MessageExpiryInterval")
            assert not hasattr(m.properties, "ContentType")
    finally:
        outbox.close()
        consumer.disconnect()
        consumer.loop_stop()
