"""The MQTT intake child process: its protocol (garbage never crashes the reader) and the real thing against
Mosquitto (a flood, bounded replies, publishing, clear connection errors, a child that never outlives its UI)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from tests.peers import free_port
from tests.peers.pki import Pki

from siteline.core.errors import AuthError, TargetError, TransportError
from siteline.core.mqtt_intake import (
    HEADER,
    MAX_NEW,
    FrameDecoder,
    ProtocolError,
    Published,
    Query,
    Snapshot,
    StateReport,
    encode_frame,
    parse_query,
    parse_reply,
    payload_to_wire,
)
from siteline.core.mqtt_intake_client import IntakeClient
from siteline.core.mqtt_topics import Payload
from siteline.core.transports.base import ConnState, Credentials
from siteline.simulator.broker import BrokerHandle, start_mosquitto

GOOD_SNAPSHOT = {"t": "snapshot", "id": 3, "new": ["a", "a/b"], "more": False,
                 "stats": {"a": [5, 1.5, "x"], "a/b": [5, 1.5, "[retained] x"]},
                 "selected": {"topic": "a/b", "count": 5, "total": 5, "rate": 1.0,
                              "payloads": [payload_to_wire(Payload(1.0, b"\x00\xff", 1, True, 9))]},
                 "totals": {"messages": 5, "topics": 2, "received": 5, "dropped": 0, "overflow": 0, "rate": 2.0,
                            "warnings": [], "first": 1.0, "last": 2.0}}


# ---- the protocol ---------------------------------------------------------------------------------

def test_a_snapshot_survives_the_wire_split_anywhere() -> None:
    frame = encode_frame(GOOD_SNAPSHOT) + encode_frame({"t": "state", "state": "up", "reason": "ok", "error": None})
    for cut in range(len(frame) + 1):
        dec = FrameDecoder()
        objs = dec.feed(frame[:cut]) + dec.feed(frame[cut:])
        assert len(objs) == 2
    snap, state = (parse_reply(o) for o in objs)
    assert isinstance(snap, Snapshot)
    assert snap.new == ("a", "a/b")
    assert snap.stats["a/b"].preview == "[retained] x"
    assert snap.selected is not None
    assert snap.selected.payloads == (Payload(1.0, b"\x00\xff", 1, True, 9),)
    assert snap.totals.messages == 5
    assert state == StateReport(ConnState.UP, "ok")


def test_errors_keep_their_kind_and_hint() -> None:
    reply = parse_reply({"t": "state", "state": "down", "reason": "r",
                         "error": {"kind": "auth", "message": "The broker refused the login.", "hint": "Check it."}})
    assert isinstance(reply, StateReport)
    assert isinstance(reply.error, AuthError)
    assert str(reply.error) == "The broker refused the login. Check it."
    published = parse_reply({"t": "published", "id": 1, "error": {"kind": "target", "message": "m"}})
    assert isinstance(published, Published)
    assert isinstance(published.error, TargetError)


def test_queries_round_trip_and_are_bounded() -> None:
    q = Query(("a", "b"), "a", 3, ("x",))
    assert parse_query(q.to_wire(7)) == (7, q)
    with pytest.raises(ProtocolError):
        parse_query({"id": 1, "visible": ["a"] * 5000, "selected": None, "selected_count": 0, "expanded": []})
    with pytest.raises(ProtocolError):
        parse_query({"id": True, "visible": [], "selected": None, "selected_count": 0, "expanded": []})


def test_a_huge_length_is_refused_before_reading_it() -> None:
    with pytest.raises(ProtocolError, match="limit"):
        FrameDecoder().feed(HEADER.pack(2**31) + b"{}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_garbage_bytes_give_protocol_errors_only(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        for obj in FrameDecoder().feed(data):
            parse_reply(obj)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["snapshot", "state", "published", "other"]),
       st.dictionaries(st.sampled_from(["id", "new", "more", "stats", "selected", "totals", "state", "reason",
                                        "error", "payloads"]), _json, max_size=8))
def test_garbage_replies_give_protocol_errors_only(kind: str, fields: dict[str, object]) -> None:
    with contextlib.suppress(ProtocolError):
        parse_reply({**fields, "t": kind})


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(GOOD_SNAPSHOT)), _json)
def test_one_bad_field_in_a_good_snapshot_is_caught(key: str, value: object) -> None:
    with contextlib.suppress(ProtocolError):
        parse_reply({**GOOD_SNAPSHOT, key: value})


# ---- the child against a real broker -----------------------------------------------------------------

pytestmark_peer = pytest.mark.peer("mosquitto")


async def until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def flood(broker: BrokerHandle, topics: int, per_topic: int) -> int:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{time.monotonic_ns()}")
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        for n in range(per_topic):
            for t in range(topics):
                c.publish(f"site/{t % 10}/dev/{t}/metric", b'{"n": %d}' % n)
            time.sleep(0.005)
        c.publish("done", b"1", qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
    return topics * per_topic + 1


class Poller:
    """Polls like the explorer's model does, and keeps what arrived."""

    def __init__(self, client: IntakeClient) -> None:
        self.client = client
        self.snapshots: list[Snapshot] = []
        self.topics: list[str] = []
        self.query = Query()
        client.on_snapshot = self._on_snapshot

    def _on_snapshot(self, snap: Snapshot) -> None:
        self.snapshots.append(snap)
        self.topics.extend(snap.new)

    async def until(self, cond: Callable[[Snapshot], bool], what: str) -> Snapshot:
        deadline = time.monotonic() + 15
        while True:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.client.poll(self.query)
            await asyncio.sleep(0.02)
            if self.snapshots and cond(self.snapshots[-1]):
                return self.snapshots[-1]


@pytestmark_peer
@pytest.mark.asyncio
async def test_a_flood_reaches_the_tree_in_the_child_and_replies_stay_bounded(mosquitto: BrokerHandle) -> None:
    client = IntakeClient(mosquitto.url, ["site/#", "done"])
    await client.connect()
    try:
        assert client.state.state is ConnState.UP
        poller = Poller(client)
        sent = await asyncio.to_thread(flood, mosquitto, 300, 10)
        last = await poller.until(lambda s: s.totals.messages >= sent and not s.more, "every message and topic")
        assert last.totals.dropped == 0
        assert max(len(s.new) for s in poller.snapshots) <= MAX_NEW
        assert len(poller.snapshots) > 1  # 300 topics + their parents did not fit in one reply
        assert len(poller.topics) == len(set(poller.topics)) == last.totals.topics
        assert poller.topics.index("site") < poller.topics.index("site/3") < poller.topics.index("site/3/dev/13")
        poller.query = Query(("site", "site/3/dev/13/metric"), "site/3/dev/13/metric", -1)
        snap = await poller.until(lambda s: s.selected is not None, "the selected topic")
        assert snap.stats["site"].total == 3000
        assert snap.stats["site/3/dev/13/metric"].preview == '{"n": 9}'
        assert snap.selected is not None
        assert snap.selected.payloads is not None
        assert [p.data for p in snap.selected.payloads][-1] == b'{"n": 9}'
        poller.query = Query((), "site/3/dev/13/metric", snap.selected.count)  # the UI has these already
        snap = await poller.until(lambda s: s.ident > snap.ident, "another snapshot")
        assert snap.selected is not None
        assert snap.selected.payloads is None
        published: list[Published] = []
        client.on_published = published.append
        client.publish("site/echo", b"hi", qos=1)
        await until(lambda: bool(published), "the publish outcome")
        assert published[0].error is None
        await poller.until(lambda s: "site/echo" in poller.topics, "our own message")
        with pytest.raises(TransportError, match="wildcard"):
            client.publish("site/+/x", b"")
    finally:
        pid = client.pid
        await client.close()
    assert client.state.state is ConnState.DOWN
    assert pid is not None
    assert not _alive(pid)


@pytestmark_peer
@pytest.mark.asyncio
async def test_connection_errors_read_as_in_the_ui_process(tmp_path: Path) -> None:
    client = IntakeClient(f"mqtt://127.0.0.1:{free_port()}", ["#"])
    with pytest.raises(TransportError, match="refused the connection"):
        await client.connect()
    assert client.state.state is ConnState.DOWN
    assert "refused" in client.state.reason
    with pytest.raises(TargetError, match="not an MQTT broker URL"):
        await IntakeClient("ssh://host", ["#"]).connect()
    broker = start_mosquitto(tmp_path / "m", users={"ops": "right"}, acl={"ops": [("read", "#")]})
    try:
        bad = IntakeClient(f"mqtt://ops@{broker.host}:{broker.port}", ["#"], credentials=Credentials(password="wrong"))
        with pytest.raises(AuthError, match="refused the login"):
            await bad.connect()
        ok = IntakeClient(f"mqtt://ops@{broker.host}:{broker.port}", ["#"], credentials=Credentials(password="right"))
        await ok.connect()
        await ok.close()
    finally:
        broker.stop()


@pytestmark_peer
@pytest.mark.asyncio
async def test_tls_errors_name_the_ca(tls_broker: BrokerHandle, pki: Pki) -> None:
    base = f"mqtts://{tls_broker.host}:{tls_broker.port}"
    client = IntakeClient(f"{base}?ca={pki.other_ca}&cert={pki.client}&key={pki.client_key}", ["#"])
    with pytest.raises(TransportError, match="not signed by the CA"):
        await client.connect()


@pytestmark_peer
@pytest.mark.asyncio
async def test_a_dead_child_is_reported(mosquitto: BrokerHandle) -> None:
    client = IntakeClient(mosquitto.url, ["#"])
    await client.connect()
    assert client.pid is not None
    os.kill(client.pid, signal.SIGKILL)
    await until(lambda: client.state.state is ConnState.DOWN, "the loss noticed")
    assert "intake process ended" in client.state.reason
    await client.close()


@pytest.mark.asyncio
async def test_a_child_that_speaks_garbage_is_refused(tmp_path: Path) -> None:
    liar = tmp_path / "liar.py"
    liar.write_text("import sys\nsys.stdin.buffer.read(4)\nsys.stdout.buffer.write(b'\\x00\\x00\\x00\\x02[]')\n"
                    "sys.stdout.flush()\nsys.stdin.buffer.read()\n")
    client = IntakeClient("mqtt://127.0.0.1:1", ["#"], command=[sys.executable, str(liar)])
    with pytest.raises(TransportError, match="malformed reply"):
        await client.connect()
    assert client.pid is None


PARENT = """
import asyncio, sys
from siteline.core.mqtt_intake_client import IntakeClient

async def main():
    client = IntakeClient(sys.argv[1], ["#"])
    await client.connect()
    print(client.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytestmark_peer
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_child_dies_with_its_parent(mosquitto: BrokerHandle, how: signal.Signals) -> None:
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PARENT), mosquitto.url], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert Path(f"/proc/{child}").exists()
        parent.send_signal(how)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the intake child outlived its parent"
            time.sleep(0.02)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status  # reaped by init later; it is gone for us


def test_the_child_module_answers_nothing_but_frames(tmp_path: Path) -> None:
    """An ``open`` with a bad URL: exactly one state frame on stdout, the reason on it; exit code 1."""
    out = subprocess.run([sys.executable, "-m", "siteline.core.mqtt_intake"],
                         input=encode_frame({"t": "open", "url": "http://x", "filters": ["#"]}),
                         capture_output=True, timeout=30, check=False)
    assert out.returncode == 1
    objs = FrameDecoder().feed(out.stdout)
    assert len(objs) == 1
    assert json.dumps(objs[0])
    reply = parse_reply(objs[0])
    assert isinstance(reply, StateReport)
    assert isinstance(reply.error, TargetError)


@pytestmark_peer
@pytest.mark.asyncio
async def test_closing_or_cancelling_a_connect_ends_the_child_at_once(tmp_path: Path) -> None:
    """A child that never answers its ``open`` (a broker that hangs): close() and cancel() do not wait for it."""
    mute = tmp_path / "mute.py"
    mute.write_text("import sys\nsys.stdin.buffer.read()\n")
    client = IntakeClient("mqtt://127.0.0.1:1", ["#"], command=[sys.executable, str(mute)], connect_timeout=30)
    task = asyncio.create_task(client.connect())
    await until(lambda: client.pid is not None, "the child started")
    t0 = time.monotonic()
    await client.close()
    with pytest.raises(TransportError, match="Closed before"):
        await task
    assert time.monotonic() - t0 < 5
    task = asyncio.create_task(client.connect())
    await until(lambda: client.pid is not None, "the child started")
    pid = client.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.state.state is ConnState.DOWN
    assert not _alive(pid)
