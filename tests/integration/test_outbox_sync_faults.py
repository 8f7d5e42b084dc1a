"""Faults the sync must ride out (review of issue 4): an outbox row damaged on disk, a full disk while acks are
written or a metered connect is counted, and items another process writes while the broker is away."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_outbox_sync_support import Consumer, fill, open_outbox, settings_for, until
from tests.peers import free_port, require_tool

from siteline.core.outbox import sync as sync_module
from siteline.core.outbox.link import ControlLink
from siteline.core.outbox.model import NewItem, State, full_error
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import Syncer, SyncError, SyncState
from siteline.simulator.broker import BrokerHandle, start_mosquitto

pytestmark = [pytest.mark.peer("mosquitto"), pytest.mark.asyncio]


def _damage(outbox: Outbox, item_id: str) -> None:
    """Edit one row's payload behind the store's back (a bad sector, a curious hand with sqlite3)."""
    conn = sqlite3.connect(outbox.path)
    try:
        conn.execute("UPDATE items SET payload = '{\"n\":99}' WHERE id = ?", (item_id,))
        conn.commit()
    finally:
        conn.close()


async def _stop(syncer: Syncer, task: asyncio.Task[None]) -> None:
    await syncer.close()
    await asyncio.wait_for(task, 10)  # run() returns by itself once closed


@pytest.mark.parametrize("metered", [False, True])
async def test_a_damaged_row_fails_for_good_and_the_rest_is_drained(tmp_path: Path, mosquitto: BrokerHandle,
                                                                    metered: bool) -> None:
    consumer = Consumer(mosquitto.port)
    outbox = open_outbox(tmp_path)
    try:
        ids = fill(outbox, 6, kinds=["note"])
        _damage(outbox, ids[0])
        result = await Syncer(outbox, settings_for(mosquitto.port, metered=metered)).drain(timeout=10)
        assert (result.sent, result.failed) == (5, 1)
        assert "payload_sha256" in result.failures[0][0]
        damaged = outbox.get(ids[0])
        assert damaged is not None
        assert damaged.state is State.FAILED
        assert "does not match its payload_sha256" in damaged.last_error
        assert await asyncio.to_thread(consumer.wait_for, ids[1:], 10) == set()
        assert ids[0] not in consumer.ids()
    finally:
        outbox.close()
        consumer.close()


async def test_the_run_loop_goes_on_past_a_damaged_row(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    outbox = open_outbox(tmp_path)
    try:
        ids = fill(outbox, 5, kinds=["note"])
        _damage(outbox, ids[2])
        syncer = Syncer(outbox, settings_for(mosquitto.port))
        task = asyncio.create_task(syncer.run())
        # well within IDLE_POLL (5 s): acks that come in while a failure is written are not left unwritten
        await until(lambda: outbox.status().sent == 4, "the four good items sent", timeout=3)
        assert outbox.status().failed == 1
        later = outbox.put(NewItem("note", "site-a", "gw1", {"after": True}))
        syncer.wake()
        await until(lambda: outbox.get(later.id).state is State.SENT,  # type: ignore[union-attr]
                    "an item put afterwards sent", timeout=3)
        assert not task.done()
        await _stop(syncer, task)
    finally:
        outbox.close()


def _fill_disk(outbox: Outbox, monkeypatch: pytest.MonkeyPatch, *methods: str) -> None:
    """The disk filled up after the items were saved: these writes now fail as the store says they do."""

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise full_error(outbox.path, OSError(28, "No space left on device"))

    for name in methods:
        monkeypatch.setattr(outbox, name, full)


async def test_a_full_disk_while_acks_are_written_leaves_the_loop_running(tmp_path: Path, mosquitto: BrokerHandle,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = open_outbox(tmp_path)
    try:
        fill(outbox, 50)
        with monkeypatch.context() as full:
            _fill_disk(outbox, full, "mark_sent", "add_usage", "record_failure")
            syncer = Syncer(outbox, settings_for(mosquitto.port))
            task = asyncio.create_task(syncer.run())
            await until(lambda: syncer.status.state is SyncState.ERROR, "the ERROR state")
            assert "disk holding the outbox is full" in syncer.status.message
            await asyncio.sleep(0.3)
            assert not task.done()
            assert syncer._link is None  # the link was closed, not left open behind the error
            assert outbox.status().pending == 50  # nothing marked, nothing lost
        syncer.wake()  # space again (the user pressed "retry now")
        await until(lambda: outbox.status().sent == 50, "all 50 sent once the disk has room")
        assert not task.done()
        await _stop(syncer, task)
    finally:
        outbox.close()


async def test_a_full_disk_when_a_metered_connect_is_counted_closes_that_link(
        tmp_path: Path, mosquitto: BrokerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    links: list[ControlLink] = []

    class Recorded(ControlLink):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            links.append(self)

    monkeypatch.setattr(sync_module, "ControlLink", Recorded)
    outbox = open_outbox(tmp_path)
    try:
        fill(outbox, 3)
        _fill_disk(outbox, monkeypatch, "add_usage")
        syncer = Syncer(outbox, settings_for(mosquitto.port, metered=True))
        with pytest.raises(SyncError) as err:
            await syncer.drain(timeout=10)
        assert err.value.kind == "outbox"
        task = asyncio.create_task(syncer.run())
        await until(lambda: syncer.status.state is SyncState.ERROR and len(links) >= 2, "the run loop's error")
        assert not task.done()
        await _stop(syncer, task)
        assert links
        for link in links:  # each one closed: paho's thread stopped, no socket left open
            assert not link.alive
            assert link._client._thread is None
            assert link._client.socket() is None
        assert outbox.status().pending == 3
    finally:
        outbox.close()


async def test_items_another_process_wrote_while_the_broker_was_away_go_within_seconds(tmp_path: Path) -> None:
    """No wake() reaches the GUI's syncer for a `siteline note` run in a terminal: the loop must notice the item
    in the outbox itself and probe every second, not every minute."""
    require_tool("mosquitto")
    port = free_port()
    outbox = open_outbox(tmp_path)
    other = open_outbox(tmp_path)  # another connection to the same file, as the CLI's process has
    broker: BrokerHandle | None = None
    try:
        syncer = Syncer(outbox, settings_for(port))
        task = asyncio.create_task(syncer.run())
        await until(lambda: syncer.status.state is SyncState.OFFLINE, "offline")
        await asyncio.sleep(1.2)  # past the first quick probes: the loop has settled into its idle wait
        note = other.put(NewItem("note", "site-a", "gw1", {"text": "written by the CLI"}))
        await asyncio.sleep(1.5)
        broker = await asyncio.to_thread(start_mosquitto, tmp_path / "late-broker", port)
        started = time.monotonic()
        await until(lambda: outbox.get(note.id).state is State.SENT, "the note sent", timeout=15)  # type: ignore[union-attr]
        assert time.monotonic() - started < 5.0
        await _stop(syncer, task)
    finally:
        other.close()
        outbox.close()
        if broker is not None:
            broker.stop()
