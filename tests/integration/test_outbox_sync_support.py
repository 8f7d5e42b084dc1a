"""Helpers for the sync tests (no tests here): a consumer that collects what reached the broker, a gate that
makes the broker unreachable and reachable again on one port, and outbox fillers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from tests.peers.faultproxy import FaultProxy

from siteline.core.outbox.envelope import decode
from siteline.core.outbox.model import NewItem
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.store import Outbox

TECH = "tech1"
TOPICS = f"siteline/v1/{TECH}/outbox/#"


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def settings_for(port: int, **extra: Any) -> ControlPlaneSettings:
    return ControlPlaneSettings(url=f"mqtt://127.0.0.1:{port}", technician=TECH, allow_plain=True, **extra)


def fill(outbox: Outbox, n: int, kinds: Iterable[str] = ("telemetry", "note", "audit"), size: int = 40) -> list[str]:
    """``n`` items cycling through ``kinds`` in one transaction; returns their ids."""
    kinds = list(kinds)
    items = [NewItem(kinds[i % len(kinds)], "site-a", f"gw{i % 7}", {"seq": i, "v": "x" * size}) for i in range(n)]
    return [i.id for i in outbox.put_many(items)]


class Consumer:
    """What an operator's consumer sees: a paho subscriber (QoS 1) on the technician's outbox topics.

    It records every envelope's (id, priority) in arrival order; after a broker restart paho reconnects and
    on_connect subscribes again (``subscriptions`` counts SUBACKs)."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[str, str]] = []
        self.bad: list[str] = []
        self.subscriptions = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"consumer-{port}-{time.time_ns()}")
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        c.on_connect = lambda cl, _u, _f, _rc, _p: cl.subscribe(TOPICS, qos=1)
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, 30)
        c.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError("the consumer could not subscribe")

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscriptions += 1
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            envelopes = decode(bytes(msg.payload))
        except Exception as exc:  # a test consumer: keep going, the test fails on self.bad
            self.bad.append(f"{msg.topic}: {exc}")
            return
        with self._lock:
            self.received.extend((e["id"], e["priority"]) for e in envelopes)

    def ids(self) -> set[str]:
        with self._lock:
            return {i for i, _p in self.received}

    def wait_for(self, ids: Iterable[str], timeout: float = 20.0) -> set[str]:
        """Wait until every id arrived; returns those still missing."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = wanted - self.ids()
            if not missing:
                return set()
            time.sleep(0.05)
        return wanted - self.ids()

    def wait_subscribed(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.subscriptions < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the consumer did not subscribe again ({self.subscriptions} of {count})")
            time.sleep(0.02)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Gate(FaultProxy):
    """A FaultProxy on a port chosen beforehand: not started, the broker is unreachable on that port
    (connection refused); started, it is reachable; stopped again, unreachable."""

    def __init__(self, peer_port: int, port: int) -> None:
        super().__init__(peer_port)
        self.fixed_port = port

    async def _start(self) -> None:
        self._flowing.set()
        self.port = self.fixed_port
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)


def open_outbox(tmp: Path, name: str = "outbox.sqlite3") -> Outbox:
    return Outbox.open(tmp / name)


def high_before_low(received: list[tuple[str, str]]) -> bool:
    """Every HIGH envelope arrived before the first LOW one (first arrival of each id counts)."""
    seen: set[str] = set()
    first_low = None
    last_high = -1
    for n, (item_id, prio) in enumerate(received):
        if item_id in seen:
            continue
        seen.add(item_id)
        if prio == "low" and first_low is None:
            first_low = n
        if prio == "high":
            last_high = n
    return first_low is None or last_high < first_low

