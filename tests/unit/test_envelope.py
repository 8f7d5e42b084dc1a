"""The wire form of outbox items: round trips, hashes, batching, and garbage that must not get through."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.outbox import envelope
from siteline.core.outbox.envelope import (
    BATCH_MAGIC,
    EnvelopeError,
    canonical_json,
    decode,
    encode_batch,
    encode_item,
    outbox_topic,
    payload_hash,
    plan_messages,
)


@dataclass(frozen=True)
class FakeItem:
    """The fields of outbox.model.Item the encoder reads (built by hand so this test needs no database)."""

    id: str
    kind: str
    site: str
    device: str
    created: float
    priority: int
    payload: str
    payload_sha256: str


def uuid7(ts: float, rng: random.Random) -> str:
    value = (int(ts * 1000) << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_RNG = random.Random(4)


_NOTE = {"text": "fan replaced"}


def make_item(kind: str = "note", payload: Any = _NOTE, priority: int = 1, created: float | None = None) -> FakeItem:
    created = time.time() if created is None else created
    text = canonical_json(payload)
    return FakeItem(uuid7(created, _RNG), kind, "site-a", "gw-7", created, priority, text, payload_hash(text))


def telemetry(n: int, start: float = 1_795_000_000.0) -> list[FakeItem]:
    rng = random.Random(7)
    items = []
    for i in range(n):
        payload = {
            "metric": "signal",
            "rssi": -60 - rng.randint(0, 30),
            "rsrp": -90 - rng.randint(0, 25),
            "rsrq": -rng.randint(5, 15),
            "sinr": round(rng.uniform(-2, 25), 1),
            "band": "B20",
            "ts": start + i * 10,
        }
        items.append(make_item("telemetry", payload, priority=2, created=start + i * 10))
    return items


def test_topic_and_plain_round_trip() -> None:
    item = make_item(payload={"text": "Lüfter getauscht ✓", "n": 3, "nested": {"b": [1, 2.5, None, True]}})
    msg = encode_item(item, "alice")
    assert msg.topic == "siteline/v1/alice/outbox/note" == outbox_topic("alice", "note")
    assert msg.content_type == "application/json"
    assert msg.item_ids == (item.id,)
    assert msg.payload.startswith(b"{")
    (env,) = decode(msg.payload)
    assert env["id"] == item.id
    assert env["v"] == 1
    assert (env["kind"], env["site"], env["device"], env["technician"]) == ("note", "site-a", "gw-7", "alice")
    assert env["priority"] == "normal"
    assert env["payload"] == json.loads(item.payload)
    assert env["payload_sha256"] == item.payload_sha256
    # the payload is embedded verbatim: the canonical text the store hashed is inside the message bytes
    assert item.payload.encode() in msg.payload


def test_created_is_iso_utc_with_ms() -> None:
    item = make_item(created=1_795_000_000.1234)
    (env,) = decode(encode_item(item, "alice").payload)
    assert env["created"] == "2026-11-18T11:06:40.123Z"


def test_priority_names() -> None:
    names = [decode(encode_item(make_item(priority=p), "bob").payload)[0]["priority"] for p in (0, 1, 2)]
    assert names == ["high", "normal", "low"]


def test_tampered_payload_is_refused() -> None:
    item = make_item(payload={"amount": 1})
    body = encode_item(item, "alice").payload.replace(b'"amount":1', b'"amount":2')
    with pytest.raises(EnvelopeError, match="does not match its payload_sha256"):
        decode(body)


@pytest.mark.parametrize(
    ("technician", "kind"),
    [
        ("Alice", "note"),
        ("a/b", "note"),
        ("a+", "note"),
        ("#", "note"),
        ("", "note"),
        ("x" * 65, "note"),
        ("fleet", "note"),
        ("alice", "No"),
        ("alice", "a/b"),
        ("alice", "a+"),
        ("alice", ""),
        ("a\x00", "note"),
    ],
)
def test_unsafe_names_are_refused(technician: str, kind: str) -> None:
    with pytest.raises(EnvelopeError):
        outbox_topic(technician, kind)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Jane.Doe", "jane.doe"),
        ("CORP\\jdoe", "corp-jdoe"),
        ("José García", "jose-garcia"),
        ("", "technician"),
        ("////", "technician"),
        ("fleet", "fleet-user"),
        ("x" * 100, "x" * 64),
        ("a+b#c/d", "a-b-c-d"),
    ],
)
def test_make_technician_id(name: str, expected: str) -> None:
    assert envelope.make_technician_id(name) == expected
    assert envelope.technician_problem(expected) is None


def test_default_technician_uses_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope.getpass, "getuser", lambda: "Field Tech 1")
    assert envelope.default_technician() == "field-tech-1"

    def no_user() -> str:
        raise OSError("no user")

    monkeypatch.setattr(envelope.getpass, "getuser", no_user)
    assert envelope.default_technician() == "technician"


def test_batch_round_trip() -> None:
    items = telemetry(20)
    msg = encode_batch(items, "alice")
    assert msg.topic == "siteline/v1/alice/outbox/telemetry/batch"
    assert msg.content_type == "application/vnd.siteline.batch+zlib"
    assert msg.payload.startswith(BATCH_MAGIC)
    assert msg.item_ids == tuple(i.id for i in items)
    envs = decode(msg.payload)
    assert [e["id"] for e in envs] == [i.id for i in items]
    assert [e["payload"] for e in envs] == [json.loads(i.payload) for i in items]


def test_batch_needs_one_kind() -> None:
    with pytest.raises(EnvelopeError, match="one kind"):
        encode_batch([make_item("note"), make_item("telemetry")], "alice")
    with pytest.raises(EnvelopeError):
        encode_batch([], "alice")


def test_plan_without_batching_is_one_plain_message_per_item_in_order() -> None:
    items = [make_item("audit", priority=0), *telemetry(3), make_item("note")]
    msgs = plan_messages(items, "alice", batching=False)
    assert [m.item_ids for m in msgs] == [(i.id,) for i in items]
    assert all(m.content_type == "application/json" for m in msgs)


def test_plan_with_batching_groups_by_priority_and_kind_in_order() -> None:
    t0 = 1_795_000_000.0
    audits = [make_item("audit", {"n": i}, 0, t0 + i) for i in range(5)]
    flash = make_item("flash-result", {"ok": True}, 0, t0 + 2.5)
    notes = [make_item("note", {"n": i}, 1, t0 + i) for i in range(3)]
    tel = telemetry(50, t0)
    ordered = sorted([*audits, flash, *notes, *tel], key=lambda i: (i.priority, i.created, i.id))
    msgs = plan_messages(ordered, "alice", batching=True)
    kinds = [m.topic.split("/")[4] for m in msgs]
    assert kinds == ["audit", "flash-result", "note", "telemetry"]
    assert msgs[1].content_type == "application/json"  # a group of one stays plain
    assert [m.item_ids for m in msgs if m.topic.endswith("/audit/batch")] == [tuple(i.id for i in audits)]
    sent = [iid for m in msgs for iid in m.item_ids]
    assert sorted(sent) == sorted(i.id for i in ordered)  # every item exactly once
    for msg in msgs:  # within a message, the drain order is kept
        assert [e["id"] for e in decode(msg.payload)] == list(msg.item_ids)


def test_plan_respects_max_bytes_and_sends_large_items_alone() -> None:
    items = telemetry(300)
    big = make_item("telemetry", {"blob": "x" * 40_000}, 2, items[150].created + 0.5)
    items.insert(151, big)
    msgs = plan_messages(items, "alice", batching=True, max_bytes=8 * 1024)
    assert len(msgs) > 3
    for msg in msgs:
        assert len(msg.payload) <= 8 * 1024 or msg.item_ids == (big.id,)
        if msg.payload.startswith(BATCH_MAGIC):
            assert len(zlib.decompress(msg.payload[4:])) <= 8 * 1024
    alone = [m for m in msgs if big.id in m.item_ids]
    assert alone[0].item_ids == (big.id,)
    assert alone[0].content_type == "application/json"
    assert [iid for m in msgs for iid in m.item_ids] == [i.id for i in items]  # one group: order fully kept


def test_plan_caps_items_per_batch() -> None:
    msgs = plan_messages(telemetry(envelope.MAX_BATCH_ITEMS + 10), "alice", batching=True, max_bytes=10**7)
    assert [len(m.item_ids) for m in msgs] == [envelope.MAX_BATCH_ITEMS, 10]


def _mqtt_bytes(topic: str, payload: bytes, content_type: str) -> int:
    """Bytes on the wire for one QoS 1 publish under MQTT 5, plus its PUBACK, plus TCP/IP headers.

    PUBLISH: fixed header (1 + remaining-length varint), topic (2 + len), packet id (2), properties
    (varint length + content type property 1 + 2 + len); PUBACK: 4 bytes. 40 bytes of IPv4+TCP headers each
    way for small messages (the ACKs ride along at best; counting one segment per message is generous).
    """
    props = 1 + 2 + len(content_type)
    body = 2 + len(topic.encode()) + 2 + 1 + props + len(payload)
    varint = 1 if body < 128 else 2 if body < 16384 else 3
    return 1 + varint + body + 4 + 40 * 2


def test_batching_sends_at_least_five_times_fewer_bytes_for_telemetry() -> None:
    items = telemetry(100)
    plain = sum(_mqtt_bytes(m.topic, m.payload, m.content_type) for m in plan_messages(items, "alice", batching=False))
    batched = sum(_mqtt_bytes(m.topic, m.payload, m.content_type) for m in plan_messages(items, "alice", batching=True))
    ratio = plain / batched
    print(f"100 telemetry items: {plain} bytes one per item, {batched} batched, ratio {ratio:.1f}")
    assert ratio >= 5.0


# --- garbage --------------------------------------------------------------------------------------------


def _batch_of(doc_text: bytes) -> bytes:
    return BATCH_MAGIC + zlib.compress(doc_text)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b"123",
        b"{}",
        b'{"v":2}',
        b"[" * 100_000 + b"]" * 100_000,
        BATCH_MAGIC,
        BATCH_MAGIC + b"garbage",
        _batch_of(b"[]"),
        _batch_of(b'{"v":1,"batch":{}}'),
        _batch_of(b'{"v":1,"batch":[1]}'),
        _batch_of(b'{"v":2,"batch":[]}'),
        zlib.compress(b"{}"),
    ],
)
def test_garbage_is_refused(payload: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(payload)


def _valid_env(item: FakeItem | None = None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(encode_item(item or make_item(), "alice").payload)
    return result


@pytest.mark.parametrize(
    "change",
    [
        {"v": True},
        {"v": "1"},
        {"id": 5},
        {"id": "a b"},
        {"kind": "A"},
        {"technician": "Al/ice"},
        {"priority": "urgent"},
        {"payload_sha256": "ABC"},
        {"created": "yesterday"},
        {"site": None},
    ],
)
def test_bad_fields_are_refused(change: dict[str, Any]) -> None:
    env = {**_valid_env(), **change}
    with pytest.raises(EnvelopeError):
        decode(json.dumps(env).encode())


def test_missing_fields_and_nan_are_refused() -> None:
    env = _valid_env()
    del env["payload_sha256"]
    with pytest.raises(EnvelopeError, match="lacks payload_sha256"):
        decode(json.dumps(env).encode())
    text = json.dumps(_valid_env()).replace('"fan replaced"', "NaN").encode()
    with pytest.raises(EnvelopeError):
        decode(text)


def test_decompression_bomb_is_refused_quickly() -> None:
    bomb = BATCH_MAGIC + zlib.compress(b'{"v":1,"batch":[' + b" " * (64 * 1024 * 1024), 9)
    assert len(bomb) < 100_000
    start = time.perf_counter()
    with pytest.raises(EnvelopeError, match="inflates to more than"):
        decode(bomb)
    assert time.perf_counter() - start < 2.0


def test_truncated_and_trailing_batches_are_refused() -> None:
    good = encode_batch(telemetry(10), "alice").payload
    with pytest.raises(EnvelopeError, match="truncated"):
        decode(good[:-5])
    with pytest.raises(EnvelopeError, match="after the end"):
        decode(good + b"extra")


def test_too_many_envelopes_are_refused() -> None:
    doc = b'{"v":1,"batch":[' + b",".join([b"0"] * (envelope.MAX_BATCH_ENVELOPES + 1)) + b"]}"
    with pytest.raises(EnvelopeError, match="over the"):
        decode(_batch_of(doc))


def test_one_bad_envelope_spoils_the_batch() -> None:
    items = telemetry(3)
    bad = replace(items[1], payload_sha256="0" * 64)
    with pytest.raises(EnvelopeError, match="does not match"):
        decode(encode_batch([items[0], bad, items[2]], "alice").payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash(data: bytes) -> None:
    for payload in (data, BATCH_MAGIC + data, BATCH_MAGIC + zlib.compress(data)):
        with contextlib.suppress(EnvelopeError):
            decode(payload)


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_payload_round_trips_with_a_valid_hash(payload: Any) -> None:
    item = make_item(payload=payload)
    for msg in (encode_item(item, "alice"), encode_batch([item, item], "alice")):
        assert all(env["payload"] == payload for env in decode(msg.payload))


def test_encoding_is_fast() -> None:
    items = telemetry(2000)
    start = time.perf_counter()
    plan_messages(items, "alice", batching=True)
    elapsed = time.perf_counter() - start
    assert elapsed < (5.0 if os.environ.get("CI") else 2.0)


def test_the_stores_item_encodes() -> None:
    """The real outbox Item (not only the hand-made one above) satisfies the encoder, hash included."""
    from siteline.core.outbox import model

    text = model.canonical_json({"text": "Zählerstand 42", "n": 1.5})
    item = model.Item(
        id=uuid7(1_795_000_000.0, _RNG),
        kind="note",
        site="s",
        device="d",
        created=1_795_000_000.0,
        priority=1,
        payload=text,
        payload_sha256=model.sha256_text(text),
        state=model.State.PENDING,
        attempts=0,
        last_error="",
        sent_at=None,
    )
    (env,) = decode(encode_item(item, "alice").payload)
    assert env["payload"] == item.payload_obj()
    assert canonical_json(env["payload"]) == text


def _example_consumer() -> Any:
    """docs/examples/consumer.py, loaded as a module (it is documentation, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / "consumer.py"
    spec = importlib.util.spec_from_file_location("siteline_example_consumer", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_consumer_reads_what_siteline_sends(tmp_path: Path) -> None:
    consumer = _example_consumer()
    items = [make_item("audit", {"action": "flash", "ok": True}, 0), *telemetry(30), make_item("note", {"t": "Ω"})]
    messages = plan_messages(items, "alice", batching=True) + plan_messages(items, "alice", batching=False)
    assert any(m.payload.startswith(BATCH_MAGIC) for m in messages)
    seen = consumer.SeenIds(str(tmp_path / "seen.sqlite3"))
    got = [consumer.on_message(seen, m.topic, m.payload) for m in messages]
    assert sum(got) == len(items)  # every item once: the second, unbatched round is all duplicates
    for msg in messages:
        assert consumer.unpack(msg.payload) == decode(msg.payload)
    tampered = encode_item(items[0], "alice").payload.replace(b'"ok":true', b'"ok":false')
    with pytest.raises(consumer.BadMessageError, match="hash"):
        consumer.unpack(tampered)
    bomb = BATCH_MAGIC + zlib.compress(b" " * (32 * 1024 * 1024))
    with pytest.raises(consumer.BadMessageError, match="too large"):
        consumer.unpack(bomb)
    seen.db.close()


def test_the_documented_telegraf_config_matches_the_envelope() -> None:
    """Telegraf is not installed here: check the example's TOML, topics and JSON paths against real output."""
    import tomllib

    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / "telegraf-siteline.conf"
    conf = tomllib.loads(path.read_text())
    (mqtt,) = conf["inputs"]["mqtt_consumer"]
    assert mqtt["qos"] == 1
    assert mqtt["data_format"] == "json_v2"
    topic = encode_item(telemetry(1)[0], "alice").topic
    (parsing,) = mqtt["topic_parsing"]
    pattern, tags = parsing["topic"].split("/"), parsing["tags"].split("/")
    assert len(pattern) == len(topic.split("/")) == len(tags)
    assert all(p in ("+", level) for p, level in zip(pattern, topic.split("/"), strict=True))
    assert dict(zip(tags, topic.split("/"), strict=True))["technician"] == "alice"
    assert mqtt["topics"] == ["siteline/v1/+/outbox/telemetry"]
    (j,) = mqtt["json_v2"]
    env = decode(encode_item(telemetry(1)[0], "alice").payload)[0]
    assert j["timestamp_path"] in env
    assert all(t["path"] in env for t in j["tag"])
    (obj,) = j["object"]
    assert isinstance(env[obj["path"]], dict)
    assert all(k in env[obj["path"]] for k in obj["tags"])


def test_a_damaged_item_is_reported_not_sent() -> None:
    good_items = telemetry(3)
    damaged = replace(make_item(), payload='{"text":"edited"}')  # hash no longer matches
    items = [good_items[0], damaged, *good_items[1:]]
    with pytest.raises(EnvelopeError, match="does not match") as info:
        plan_messages(items, "alice", batching=False)
    assert info.value.item_id == damaged.id
    bad: list[tuple[str, str]] = []
    msgs = plan_messages(items, "alice", batching=True, on_invalid=lambda item, why: bad.append((item.id, why)))
    assert [b[0] for b in bad] == [damaged.id]
    assert "damaged" in bad[0][1]
    assert [i for m in msgs for i in m.item_ids] == [i.id for i in good_items]
    assert envelope.item_problem(good_items[0]) is None
    assert envelope.item_problem(replace(good_items[0], kind="Bad/Kind")) is not None
    assert "not valid Unicode" in (envelope.item_problem(replace(good_items[0], site="caf\udce9")) or "")


@pytest.mark.parametrize(
    ("ts", "text"),
    [(0.0, "1970-01-01T00:00:00.000Z"), (-5.0, "1970-01-01T00:00:00.000Z"), (float("nan"), "1970-01-01T00:00:00.000Z"),
     (1e20, "9999-12-31T23:59:59.999Z"), (float("inf"), "1970-01-01T00:00:00.000Z")],
)  # fmt: skip
def test_odd_created_times_still_encode(ts: float, text: str) -> None:
    assert envelope.format_created(ts) == text
    (env,) = decode(encode_item(make_item(created=1.0), "alice").payload)
    assert env["created"] == "1970-01-01T00:00:01.000Z"


def test_a_batch_that_compresses_too_little_is_split_in_order() -> None:
    """Only incompressible data can make a batch outgrow its uncompressed cap; force it with a tiny limit."""
    items = telemetry(8)
    chunk = [(item, envelope.envelope_text(item, "alice")) for item in items]
    limit = len(encode_batch(items[:3], "alice").payload)
    msgs = envelope._pack("telemetry", chunk, "alice", limit)
    assert len(msgs) > 1
    assert all(len(m.payload) <= limit or len(m.item_ids) == 1 for m in msgs)
    assert [i for m in msgs for i in m.item_ids] == [i.id for i in items]
