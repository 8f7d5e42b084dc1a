"""The link keeps one persistent session per installation, and run() reacts to wake() at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tests.integration.test_outbox_sync_support import Consumer, open_outbox, settings_for, until

from siteline.core.outbox.link import ControlLink
from siteline.core.outbox.model import NewItem
from siteline.core.outbox.sync import Syncer, SyncState, SyncStatus
from siteline.simulator.broker import BrokerHandle

pytestmark = [pytest.mark.peer("mosquitto"), pytest.mark.asyncio]


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_the_broker_keeps_our_session_between_connections(mosquitto: BrokerHandle, protocol: str) -> None:
    settings = settings_for(mosquitto.port, protocol=protocol)
    first = ControlLink(settings)
    await first.connect()
    await first.close()
    second = ControlLink(settings)
    await second.connect()
    try:
        assert second.client_id == first.client_id
        assert second.session_present
    finally:
        await second.close()


async def test_run_sends_a_new_item_as_soon_as_it_is_woken(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    consumer = Consumer(mosquitto.port)
    outbox = open_outbox(tmp_path)
    states: list[SyncStatus] = []
    syncer = Syncer(outbox, settings_for(mosquitto.port))
    remove = syncer.add_listener(states.append)
    task = asyncio.create_task(syncer.run())
    try:
        await until(lambda: syncer.status.state is SyncState.IDLE, "idle")
        item = outbox.put(NewItem("note", "site-a", "gw1", {"text": "replaced the antenna"}))
        start = time.monotonic()
        syncer.wake()
        await until(lambda: item.id in consumer.ids(), "the note at the consumer", 5)
        assert time.monotonic() - start < 2.0  # not the idle poll (5 s): the wake
        await until(lambda: syncer.status.state is SyncState.IDLE and syncer.status.waiting == 0, "idle again")
        assert [s.state for s in states][:2] == [SyncState.CONNECTING, SyncState.IDLE]
        assert SyncState.SYNCING in [s.state for s in states]
        remove()
        remove()  # twice is harmless
    finally:
        await syncer.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
        consumer.close()


async def test_run_says_offline_while_the_broker_is_away_and_probes_again(tmp_path: Path,
                                                                          mosquitto: BrokerHandle) -> None:
    outbox = open_outbox(tmp_path)
    outbox.put(NewItem("audit", "site-a", "gw1", {"action": "connect"}))
    mosquitto.stop()
    syncer = Syncer(outbox, settings_for(mosquitto.port))
    task = asyncio.create_task(syncer.run())
    try:
        assert syncer.status.waiting == 1
        await until(lambda: "refused" in syncer.status.message, "offline, saying why")
        assert syncer.status.state is SyncState.OFFLINE
        await asyncio.to_thread(mosquitto.restart)
        start = time.monotonic()
        await until(lambda: syncer.status.waiting == 0, "the item sent after the broker came back", 5)
        assert time.monotonic() - start < 4.0  # a probe at least every second
    finally:
        await syncer.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
