"""The MQTT intake child process: ``python -m siteline.core.mqtt_intake_child``, frames on stdin/stdout.

It subscribes with MqttSubscriber, absorbs the flood into a TopicTree in steps of INGEST_CHUNK messages
and answers the UI's polls between steps (the protocol is in :mod:`siteline.core.mqtt_intake`). It ends
with the UI: when its stdin closes (the parent exited or crashed) and, on Linux, by a parent-death signal.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from siteline.core.errors import SitelineError, TransportError
from siteline.core.mqtt_intake import (
    MAX_NEW,
    FrameDecoder,
    ProtocolError,
    Query,
    encode_frame,
    error_to_wire,
    get_field,
    parse_query,
    payload_to_wire,
)
from siteline.core.mqtt_subscriber import MqttSubscriber
from siteline.core.mqtt_topics import TopicNode, TopicTree, payload_preview
from siteline.core.tasks import cancel_and_wait
from siteline.core.transports.base import ConnectionState, ConnState, Credentials

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>

INGEST_CHUNK = 2000  # messages per ingest step (~8 ms): polls are answered between steps
IDLE = 0.01  # seconds the ingest rests when the buffer is empty
OPEN_TIMEOUT = 30.0  # seconds the child waits for its ``open`` frame
SWITCH_INTERVAL = 0.0005  # seconds; see main


class Intake:
    """The child's state: the subscriber, the tree, and the new topics not yet told to the UI."""

    def __init__(self, sub: MqttSubscriber, tree: TopicTree, send: Callable[[Mapping[str, Any]], None]) -> None:
        self.sub, self.tree, self.send = sub, tree, send
        self.pending: deque[str] = deque()
        self.first = self.last = 0.0

    def ingest(self) -> int:
        batch = self.sub.drain(INGEST_CHUNK)
        if batch:
            self.tree.ingest_batch(batch)
            self.pending.extend(n.topic for n in self.tree.take_added())
            self.first = self.first or batch[0][4]
            self.last = time.time()
        return len(batch)

    async def feed(self) -> None:
        # Polling a deque that paho's thread fills: there is no event to wait on.
        while True:  # noqa: ASYNC110
            await asyncio.sleep(0 if self.ingest() else IDLE)

    def answer(self, ident: int, query: Query) -> dict[str, Any]:
        now, tree, pending = time.time(), self.tree, self.pending
        new = [pending.popleft() for _ in range(min(MAX_NEW, len(pending)))]
        stats: dict[str, list[Any]] = {}
        for topic in query.visible:
            node = tree.find(topic)
            if node is not None:
                stats[topic] = [node.total, round(node.rate.per_second(now), 2), _preview(node)]
        return {"t": "snapshot", "id": ident, "new": new, "more": bool(pending), "stats": stats,
                "selected": self._selected(query, now), "totals": self._totals(now)}

    def _selected(self, query: Query, now: float) -> dict[str, Any] | None:
        node = None if query.selected is None else self.tree.find(query.selected)
        if node is None:
            return None
        fresh = node.count != query.selected_count  # only then the payloads travel
        payloads = [payload_to_wire(p) for p in node.payloads or ()] if fresh else None
        return {"topic": node.topic, "count": node.count, "total": node.total,
                "rate": round(node.rate.per_second(now), 2), "payloads": payloads}

    def _totals(self, now: float) -> dict[str, Any]:
        tree, sub = self.tree, self.sub
        return {"messages": tree.messages, "topics": tree.nodes - 1, "received": sub.received, "dropped": sub.dropped,
                "overflow": tree.overflow_messages, "rate": round(tree.root.rate.per_second(now), 1),
                "warnings": tree.warnings[:100], "first": self.first, "last": self.last}

    def publish(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        ident = get_field(obj, "id", int)
        try:
            data = base64.b64decode(get_field(obj, "payload", str), validate=True)
            self.sub.publish(get_field(obj, "topic", str), data, get_field(obj, "qos", int), bool(obj.get("retain")))
        except SitelineError as exc:
            return {"t": "published", "id": ident, "error": error_to_wire(exc)}
        except (binascii.Error, ValueError) as exc:
            return {"t": "published", "id": ident, "error": error_to_wire(TransportError(f"Bad publish: {exc}."))}
        return {"t": "published", "id": ident, "error": None}


def _preview(node: TopicNode) -> str:
    last = node.last
    return "" if last is None else ("[retained] " if last.retain else "") + payload_preview(last.data)


def _state_frame(state: ConnectionState, error: SitelineError | None = None) -> dict[str, Any]:
    return {"t": "state", "state": state.state.value, "reason": state.reason,
            "error": None if error is None else error_to_wire(error)}


class _Pipe:
    """The child's end: frames in from ``read_fd`` on the loop, frames out to ``write_fd`` (blocking: the UI
    reads them on its loop at once, and a stuck UI may as well hold the child up)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self.inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._decoder = FrameDecoder()

    def start(self) -> None:
        os.set_blocking(self.read_fd, False)
        asyncio.get_running_loop().add_reader(self.read_fd, self._on_readable)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_reader(self.read_fd)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.read_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the UI is gone: stop
            self.stop()
            self.inbox.put_nowait(None)
            return
        try:
            for message in self._decoder.feed(data):
                self.inbox.put_nowait(message)
        except ProtocolError as exc:
            log.error("the MQTT explorer sent a bad frame (%s); the intake stops", exc)
            self.stop()
            self.inbox.put_nowait(None)

    def send(self, message: Mapping[str, Any]) -> None:
        try:
            frame = encode_frame(message)
        except ProtocolError as exc:
            log.error("a reply was too big to send (%s); dropped", exc)
            return
        view = memoryview(frame)
        with contextlib.suppress(BrokenPipeError):
            while view:
                view = view[os.write(self.write_fd, view):]


async def _open(pipe: _Pipe) -> Intake | None:
    """Wait for ``open``, connect, and report the outcome as a state frame."""
    try:
        first = await asyncio.wait_for(pipe.inbox.get(), OPEN_TIMEOUT)
    except TimeoutError:
        return None
    if first is None or first.get("t") != "open":
        return None
    try:
        creds = Credentials(username=first.get("username") or None, password=first.get("password") or None)
        sub = MqttSubscriber(str(first.get("url")), [str(f) for f in first.get("filters") or ["#"]],
                             credentials=creds, qos=int(first.get("qos") or 0))
        await sub.connect()
    except SitelineError as exc:
        pipe.send(_state_frame(ConnectionState(ConnState.DOWN, exc.message), exc))
        return None
    intake = Intake(sub, TopicTree(), pipe.send)
    pipe.send(_state_frame(sub.state))
    sub.add_state_listener(lambda state: pipe.send(_state_frame(state)))
    return intake


async def serve(read_fd: int, write_fd: int) -> int:
    """The child's life: open, then answer polls and publishes until the UI says ``close`` or goes away."""
    pipe = _Pipe(read_fd, write_fd)
    pipe.start()
    intake = await _open(pipe)
    if intake is None:
        pipe.stop()
        return 1
    feeder = asyncio.create_task(intake.feed())
    try:
        while (message := await pipe.inbox.get()) is not None and message.get("t") != "close":
            try:
                if message.get("t") == "poll":
                    pipe.send(intake.answer(*parse_query(message)))
                elif message.get("t") == "publish":
                    pipe.send(intake.publish(message))
            except ProtocolError as exc:
                log.error("the MQTT explorer sent a bad request (%s); ignored", exc)
    finally:
        await cancel_and_wait(feeder)
        pipe.stop()
        await intake.sub.close()
    return 0


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the parent ends (Linux); the stdin EOF covers the rest. Exit now if it is already gone."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != parent:
        raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m siteline.core.mqtt_intake [--parent PID] [--pdeathsig]``: frames on stdin/stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    parent = int(args[args.index("--parent") + 1]) if "--parent" in args else 0
    if "--pdeathsig" in args:
        _die_with_parent(parent)
    # paho's network thread and the ingest share this process's GIL: with the default 5 ms switch interval paho
    # waits that long after each ingest step before it reads the socket again.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # Frames own the real stdout; anything printed by mistake goes to stderr instead of corrupting them.
    out = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="mqtt-intake: %(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(0, out))


if __name__ == "__main__":
    raise SystemExit(main())
