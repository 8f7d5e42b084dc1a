"""Outbox sync figures against a real Mosquitto on loopback.

    .venv/bin/python bench/outbox_sync.py [--items 10000] [--telemetry 2000]

Prints:
  1. drain rate: ``--items`` mixed items (audit, note, telemetry) drained by ``Syncer.drain`` one JSON message per
     item, QoS 1, each marked sent on its PUBACK (items/s, fsync'd bookkeeping included);
  2. bytes on the wire per telemetry item, one JSON message per item vs batched + zlib-compressed (the metered
     mode), counted at the broker side by a TCP proxy in front of it (every byte the client sent and received:
     MQTT framing, CONNECT/SUBSCRIBE, PUBACKs; not TCP/IP headers) (goal: >= 5x fewer);
  3. time from broker start to the first item acknowledged, while the syncer probes every second
     (goal: < 2 s), from the moment the broker process is launched and from the moment it listens.
Every run uses its own temporary SITELINE_HOME, outbox files and broker.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["SITELINE_HOME"] = tempfile.mkdtemp(prefix="siteline-bench-sync-")

from tests.peers import free_port
from tests.peers.faultproxy import FaultProxy

from siteline.core.outbox.model import NewItem
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import Syncer
from siteline.simulator.broker import start_mosquitto

TECH = "bench"


def settings(port: int, metered: bool = False) -> ControlPlaneSettings:
    return ControlPlaneSettings(url=f"mqtt://127.0.0.1:{port}", technician=TECH, allow_plain=True, metered=metered)


def telemetry(n: int, rng: random.Random) -> list[NewItem]:
    """Modem readings as a field laptop collects them: a few numbers and names per sample."""
    return [NewItem("telemetry", "site-a", f"gw{i % 5}", {
        "rssi": rng.randint(-110, -50), "rsrp": rng.randint(-140, -80), "rsrq": rng.randint(-20, -3),
        "sinr": round(rng.uniform(-5, 30), 1), "tech": "lte", "band": rng.choice([3, 7, 20]),
        "cell": f"26201-{rng.randint(0, 0xFFFF):04x}", "uptime": 86_400 + i * 10}) for i in range(n)]


def mixed(n: int) -> list[NewItem]:
    kinds = ("telemetry", "note", "audit")
    return [NewItem(kinds[i % 3], "site-a", f"gw{i % 7}", {"seq": i, "text": "x" * 60}) for i in range(n)]


async def drain_rate(work: Path, port: int, n: int) -> None:
    with Outbox.open(work / "rate.sqlite3") as outbox:
        outbox.put_many(mixed(n))
        result = await Syncer(outbox, settings(port)).drain(timeout=300)
    print(f"drain rate: {result.sent} items in {result.seconds:.2f} s = {result.sent / result.seconds:,.0f} items/s "
          "(one message per item, QoS 1, MQTT 5: Mosquitto takes 20 in flight)")


async def wire_bytes(work: Path, port: int, n: int) -> None:
    per_item: dict[bool, float] = {}
    for metered in (False, True):
        with FaultProxy(port) as proxy, Outbox.open(work / f"wire-{metered}.sqlite3") as outbox:
            outbox.put_many(telemetry(n, random.Random(7)))
            result = await Syncer(outbox, settings(proxy.port, metered)).drain(timeout=300)
            await asyncio.sleep(0.2)  # the proxy forwards the last PUBACK and DISCONNECT
            total = proxy.bytes_up + proxy.bytes_down
            per_item[metered] = total / result.sent
            label = "batched + compressed" if metered else "one JSON message per item"
            print(f"bytes per telemetry item, {label}: {per_item[metered]:.1f} "
                  f"(up {proxy.bytes_up:,}, down {proxy.bytes_down:,} for {result.sent} items; "
                  f"the syncer counted {result.bytes:,})")
    print(f"  -> {per_item[False] / per_item[True]:.1f}x fewer bytes with batching (goal >= 5x)")


async def first_ack(work: Path) -> None:
    port = free_port()
    with Outbox.open(work / "first.sqlite3") as outbox:
        outbox.put_many(mixed(100))
        syncer = Syncer(outbox, settings(port))
        acked = asyncio.Event()
        syncer.add_listener(lambda st: acked.set() if st.last_ack is not None else None)
        task = asyncio.create_task(syncer.run())
        await asyncio.sleep(2.5)  # the syncer is probing a port nobody listens on
        launched = time.monotonic()
        broker = await asyncio.to_thread(start_mosquitto, work / "late-broker", port)
        listening = time.monotonic()
        try:
            await asyncio.wait_for(acked.wait(), 30)
            now = time.monotonic()
            print(f"broker start to first ack: {now - launched:.2f} s from launch, {now - listening:.2f} s from "
                  "listening (goal < 2 s; probes every 1 s)")
        finally:
            await syncer.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            broker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--telemetry", type=int, default=2_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="siteline-bench-sync-work-"))
    broker = start_mosquitto(work / "broker", 0)
    try:
        await drain_rate(work, broker.port, args.items)
        await wire_bytes(work, broker.port, args.telemetry)
    finally:
        broker.stop()
    await first_ack(work)


if __name__ == "__main__":
    asyncio.run(main())
