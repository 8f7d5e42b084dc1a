"""Technician-side clients for the simulator tests: a pyserial console and a paho MQTT watcher."""

from __future__ import annotations

import asyncio
import json
import queue
import re
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import serial
from paho.mqtt.enums import CallbackAPIVersion

from siteline.simulator.broker import BrokerHandle
from tests.peers.sim import PASSWORD


class Console:
    """A technician at a terminal: pyserial, read in a thread so the device's loop keeps running."""

    def __init__(self, link: Path, baud: int = 115200) -> None:
        self.port = serial.Serial(str(link), baud, timeout=0.05)
        self.port.reset_input_buffer()
        self.seen = b""

    def close(self) -> None:
        self.port.close()

    async def send(self, text: str) -> None:
        await asyncio.to_thread(self.port.write, text.encode())

    async def expect(self, pattern: bytes, timeout: float = 10.0) -> bytes:
        """Read until ``pattern`` (a regex) shows up in what arrived since the last match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.seen)
            if found:
                before, self.seen = self.seen[: found.end()], self.seen[found.end():]
                return before
            self.seen += await asyncio.to_thread(self.port.read, 4096)
        raise AssertionError(f"no {pattern!r} within {timeout} s; got {self.seen[-400:]!r}")

    async def collect(self, seconds: float) -> bytes:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.seen += await asyncio.to_thread(self.port.read, 4096)
        data, self.seen = self.seen, b""
        return data

    async def login(self, password: str = PASSWORD) -> None:
        await self.send("\r")
        await self.expect(rb"login: ")
        await self.send("root\r")
        await self.expect(rb"Password: ")
        await self.send(password + "\r")


class Watcher:
    """A paho client (its own network thread) that records every message it gets."""

    def __init__(self, broker: BrokerHandle, *topics: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watcher-{time.monotonic_ns()}")
        subscribed = [(t, 1) for t in topics]
        self.client.on_connect = lambda c, *_: c.subscribe(subscribed)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def next(self, topic_part: str, timeout: float = 10.0, **match: Any) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await asyncio.to_thread(self.messages.get, True, 0.1)
            except queue.Empty:
                continue
            if topic_part in msg.topic:
                doc = json.loads(msg.payload)
                if all(doc.get(k) == v for k, v in match.items()):
                    return msg
        raise AssertionError(f"no message on *{topic_part}* matching {match} within {timeout} s")
