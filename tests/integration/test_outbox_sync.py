"""The sync loop against a real Mosquitto: order, acks, the offline backlog, reachability, the data budget."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.integration.test_outbox_sync_support import (
    Consumer,
    Gate,
    fill,
    high_before_low,
    open_outbox,
    settings_for,
    until,
)
from tests.peers import free_port
from tests.peers.faultproxy import FaultProxy

from siteline.core.outbox.model import State
from siteline.core.outbox.sync import Syncer, SyncError, SyncState, SyncStatus
from siteline.simulator.broker import BrokerHandle

pytestmark = [pytest.mark.peer("mosquitto"), pytest.mark.asyncio]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_drain_sends_everything_once_in_priority_order(tmp_path: Path, mosquitto: BrokerHandle,
                                                             protocol: str) -> None:
    consumer = Consumer(mosquitto.port)
    outbox = open_outbox(tmp_path)
    try:
        ids = fill(outbox, 300)
        syncer = Syncer(outbox, settings_for(mosquitto.port, protocol=protocol))
        result = await syncer.drain(timeout=30)
        assert result.sent == 300
        assert result.held == 0
        assert result.bytes > 300 * 100
        assert consumer.wait_for(ids) == set()
        assert high_before_low(consumer.received)
        status = outbox.status()
        assert (status.pending, status.sent, status.failed) == (0, 300, 0)
        assert status.bytes_this_month == result.bytes
        assert syncer.status.state is SyncState.IDLE
        assert syncer.status.last_ack is not None
        assert outbox.attempts(ids[0])[0].outcome == "sent"
        await syncer.close()
    finally:
        outbox.close()
        consumer.close()
    assert not consumer.bad


async def test_drain_refuses_an_unreachable_broker(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    try:
        fill(outbox, 3)
        syncer = Syncer(outbox, settings_for(free_port()))
        with pytest.raises(SyncError) as err:
            await syncer.drain(timeout=10)
        assert err.value.kind == "unreachable"
        assert "refused" in err.value.message
        assert outbox.status().pending == 3
        assert syncer.status.state is SyncState.OFFLINE
    finally:
        outbox.close()


async def test_ten_thousand_items_written_offline_arrive_once_in_priority_order(
        tmp_path: Path, mosquitto: BrokerHandle) -> None:
    """Broker unreachable while 10,000 items are written; sync starts within seconds of it coming back."""
    consumer = Consumer(mosquitto.port)
    outbox = open_outbox(tmp_path)
    gate = Gate(mosquitto.port, free_port())
    states: list[SyncStatus] = []
    syncer = Syncer(outbox, settings_for(gate.fixed_port))
    syncer.add_listener(states.append)
    task = asyncio.create_task(syncer.run())
    try:
        ids = fill(outbox, 10_000)
        syncer.wake()
        await asyncio.sleep(1.5)
        assert syncer.status.state is SyncState.OFFLINE
        assert syncer.status.waiting == 10_000
        start = time.monotonic()
        gate.start()
        await until(lambda: syncer.status.last_ack is not None, "the first ack (5 s after reachable)", 5)
        first_ack = time.monotonic() - start
        await until(lambda: outbox.status().pending == 0, "the whole backlog sent", 30)
        elapsed = time.monotonic() - start
        missing = await asyncio.to_thread(consumer.wait_for, ids, 20)
        assert missing == set()
        assert len(consumer.received) == len(consumer.ids()) == 10_000  # no duplicates without faults
        assert high_before_low(consumer.received)
        assert outbox.status().sent == 10_000
        assert SyncState.SYNCING in {s.state for s in states}
        print(f"10,000 items: first ack {first_ack:.2f} s after reachable, all sent in {elapsed:.1f} s")
        assert elapsed < 30
    finally:
        await syncer.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        gate.stop()
        outbox.close()
        consumer.close()
    assert not consumer.bad


async def test_broker_restart_in_the_middle_of_a_long_sync(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    """The broker goes away mid-sync; the sync goes on when it is back; nothing lost."""
    consumer = Consumer(mosquitto.port)
    gate = Gate(mosquitto.port, free_port()).start()
    outbox = open_outbox(tmp_path)
    try:
        ids = fill(outbox, 5000, size=400)
        syncer = Syncer(outbox, settings_for(gate.fixed_port), window=8)
        task = asyncio.create_task(syncer.drain(timeout=60))
        await until(lambda: outbox.status().sent >= 500, "500 items sent")
        # The gate closes first so that the sync comes back only after the consumer subscribed again
        # (the broker keeps no sessions across a restart: what arrives before the consumer is gone).
        gate.stop()
        # What the broker acknowledged reaches the consumer before the restart: a broker without persistence
        # drops what it still had queued for a subscriber (seen under load), the broker's loss, not the sync's.
        sent = [item.id for item in outbox.items(State.SENT, limit=5000)]
        assert await asyncio.to_thread(consumer.wait_for, sent, 20) == set()
        await asyncio.to_thread(mosquitto.restart)
        await asyncio.to_thread(consumer.wait_subscribed, 2)
        assert outbox.status().pending > 0, "the sync finished before the restart: make it longer"
        gate = Gate(mosquitto.port, gate.fixed_port).start()
        result = await task
        assert result.sent >= 5000 - 500
        assert outbox.status().pending == 0
        assert await asyncio.to_thread(consumer.wait_for, ids, 20) == set()
    finally:
        gate.stop()
        outbox.close()
        consumer.close()


async def test_a_link_cut_every_second_during_a_sync(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    consumer = Consumer(mosquitto.port)
    outbox = open_outbox(tmp_path)
    with FaultProxy(mosquitto.port) as proxy:
        proxy.shape(rtt=0.02, rate=400_000)  # a slow radio link, so that the sync takes several seconds
        ids = fill(outbox, 3000, size=300)
        syncer = Syncer(outbox, settings_for(proxy.port))
        task = asyncio.create_task(syncer.drain(timeout=60))
        cuts = 0
        while not task.done():
            await asyncio.sleep(1.0)
            if not task.done():
                proxy.cut()
                cuts += 1
        result = task.result()
    try:
        assert cuts >= 2, "the sync was too quick to be cut"
        assert proxy.connections >= 3
        assert outbox.status().pending == 0
        assert await asyncio.to_thread(consumer.wait_for, ids, 20) == set()
        assert result.sent >= 3000
        retried = [a for i in ids[:3000:50] for a in outbox.attempts(i) if a.outcome == "retry"]
        print(f"{cuts} cuts, {proxy.connections} connections, {len(consumer.received)} received, "
              f"{len(retried)} retries among a sample")
    finally:
        outbox.close()
        consumer.close()
