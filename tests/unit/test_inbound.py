"""Inbound retained messages: good ones cached, bad ones rejected with a reason, the last good copy kept."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.core.outbox.inbound import (
    MAX_INBOUND_BYTES,
    InboundCache,
    InboundError,
    certificate_topic,
    inbound_topics,
    topic_kind,
)
from siteline.core.outbox.store import Outbox

WO = "siteline/v1/alice/in/work-orders"
INV = "siteline/v1/alice/in/inventory"
IMG = "siteline/v1/fleet/in/trusted-images"
CERT = "siteline/v1/alice/in/certificates/site-a/gw-7"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Vy\ndGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def cache(outbox: Outbox) -> InboundCache:
    return InboundCache(outbox, technician="alice")


def js(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def orders(*titles: str) -> bytes:
    items = [{"id": f"WO-{i}", "site": "site-a", "device": "gw-7", "title": t, "due": "2026-12-01"} for i, t in
             enumerate(titles)]  # fmt: skip
    return js({"v": 1, "orders": items})


INVENTORY = {
    "v": 1,
    "devices": [
        {"name": "gw-7", "site": "site-a", "target": "ssh://root@10.0.0.5:22?jump=ops@bastion:2222",
         "fallbacks": ["serial:///dev/ttyUSB0?baud=115200", "mqtts://broker:8883/edge/site-a/gw-7"]},
        {"name": "gw-8", "target": "ssh://10.0.0.6"},
    ],
}  # fmt: skip
IMAGES = {
    "v": 1,
    "images": [
        {
            "name": "edge-os",
            "version": "5.2.1",
            "sha256": "ab" * 32,
            "compatible": ["imx8-gw"],
            "signature_key_id": "k1",
        }
    ],
}


def test_topics() -> None:
    assert inbound_topics("alice") == [WO, INV, IMG, "siteline/v1/alice/in/certificates/+/+"]
    assert certificate_topic("alice", "site-a", "gw-7") == CERT
    assert [topic_kind(t) for t in (WO, INV, IMG, CERT)] == [
        "work-orders",
        "inventory",
        "trusted-images",
        "certificate",
    ]
    for bad in ("siteline/v1/alice/in", "siteline/v1/alice/out/work-orders", "siteline/v1/fleet/in/work-orders",
                "siteline/v2/alice/in/inventory", "siteline/v1/alice/in/certificates/a", "x"):  # fmt: skip
        with pytest.raises(InboundError):
            topic_kind(bad)
    with pytest.raises(InboundError, match="not to 'alice'"):
        topic_kind("siteline/v1/bob/in/work-orders", "alice")


@pytest.mark.parametrize(
    ("topic", "payload"),
    [(WO, orders("replace fan")), (INV, js(INVENTORY)), (IMG, js(IMAGES)),
     (CERT, js({"v": 1, "site": "site-a", "device": "gw-7", "certificate": PEM, "chain": [PEM]}))],
)  # fmt: skip
def test_good_documents_are_cached(cache: InboundCache, topic: str, payload: bytes) -> None:
    result = cache.accept(topic, payload)
    assert (result.outcome, result.accepted) == ("stored", True)
    kind = topic_kind(topic)
    doc = cache.get(kind)
    assert doc is not None
    assert doc.data == json.loads(payload)
    assert doc.topic == topic
    assert cache.accept(topic, payload).outcome == "unchanged"


def test_cache_survives_reopen(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "o.sqlite3") as box:
        InboundCache(box).accept(WO, orders("a", "b"))
    with Outbox.open(tmp_path / "o.sqlite3") as box:
        doc = InboundCache(box).get("work-orders")
    assert doc is not None
    assert [o["title"] for o in doc.data["orders"]] == ["a", "b"]


BAD_WORK_ORDERS = [
    b"not json",
    b"\xff\xfe{}",
    b"[]",
    b'{"orders": []}',
    b'{"v": 2, "orders": []}',
    b'{"v": true, "orders": []}',
    b'{"v": 1}',
    b'{"v": 1, "orders": {}}',
    b'{"v": 1, "orders": [5]}',
    js({"v": 1, "orders": [{"id": "1", "site": "s"}]}),
    js({"v": 1, "orders": [{"id": "1", "site": "s", "title": ""}]}),
    js({"v": 1, "orders": [{"id": 1, "site": "s", "title": "t"}]}),
    js({"v": 1, "orders": [{"id": "1", "site": "s", "title": "t", "due": "soon"}]}),
    js({"v": 1, "orders": [{"id": "1", "site": "s", "title": "t"}, {"id": "1", "site": "s", "title": "u"}]}),
    b'{"v": 1, "orders": [], "x": NaN}',
    b"[" * 50_000 + b"]" * 50_000,
]


@pytest.mark.parametrize("payload", BAD_WORK_ORDERS)
def test_bad_work_orders_keep_the_last_good_copy(
    cache: InboundCache, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache.accept(WO, orders("good one"))
    with caplog.at_level(logging.WARNING, logger="siteline.core.outbox.inbound"):
        result = cache.accept(WO, payload)
    assert result.outcome == "rejected"
    assert result.reason
    assert any("rejected" in r.message and result.reason in r.message for r in caplog.records)
    caplog.clear()  # the warning was expected
    doc = cache.get("work-orders")
    assert doc is not None
    assert doc.data["orders"][0]["title"] == "good one"
    ((_, topic, reason, size),) = cache.rejects()
    assert (topic, reason, size) == (WO, result.reason, len(payload))


def test_huge_payload_is_rejected(cache: InboundCache, caplog: pytest.LogCaptureFixture) -> None:
    huge = js({"v": 1, "orders": [], "pad": "x" * MAX_INBOUND_BYTES})
    with caplog.at_level(logging.ERROR):  # the warning is expected
        result = cache.accept(WO, huge)
    assert result.outcome == "rejected"
    assert "over the" in result.reason
    assert cache.get("work-orders") is None


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 1, "devices": [{"name": "gw-7", "target": "telnet://x"}]},
        {"v": 1, "devices": [{"name": "gw 7/../x", "target": "ssh://x"}]},
        {"v": 1, "devices": [{"name": "gw-7", "target": "ssh://x", "fallbacks": "serial:///dev/ttyS0"}]},
        {"v": 1, "devices": [{"name": "gw-7", "target": "ssh://x", "fallbacks": ["ssh://x"]}]},
        {"v": 1, "devices": [{"name": "gw-7"}]},
        {"v": 1, "sites": []},
    ],
)
def test_bad_inventory_is_rejected(cache: InboundCache, doc: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert cache.accept(INV, js(doc)).outcome == "rejected"


@pytest.mark.parametrize(
    "image",
    [
        {"name": "os", "version": "1", "sha256": "AB" * 32, "compatible": ["x"]},
        {"name": "os", "version": "1", "sha256": "ab" * 31, "compatible": ["x"]},
        {"name": "os", "version": "1", "sha256": "ab" * 32, "compatible": []},
        {"name": "os", "version": "1", "sha256": "ab" * 32, "compatible": "x"},
        {"name": "os", "sha256": "ab" * 32, "compatible": ["x"]},
        {"name": "os", "version": "1", "sha256": "ab" * 32, "compatible": ["x"], "signature_key_id": 5},
    ],
)
def test_bad_trusted_images_are_rejected(
    cache: InboundCache, image: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert cache.accept(IMG, js({"v": 1, "images": [image]})).outcome == "rejected"


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 1, "site": "site-a", "device": "gw-8", "certificate": PEM},
        {"v": 1, "site": "site-a", "device": "gw-7", "certificate": "not a pem"},
        {"v": 1, "site": "site-a", "device": "gw-7", "certificate": PEM, "chain": PEM},
        {"v": 1, "site": "site-a", "device": "gw-7"},
    ],
)
def test_bad_certificates_are_rejected(
    cache: InboundCache, doc: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert cache.accept(CERT, js(doc)).outcome == "rejected"


def test_empty_retained_payload_clears_the_entry(cache: InboundCache) -> None:
    cache.accept(WO, orders("x"))
    assert cache.accept(WO, b"").outcome == "cleared"
    assert cache.get("work-orders") is None
    assert cache.accept(WO, orders("y")).outcome == "stored"


def test_foreign_topics_are_rejected(cache: InboundCache, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert cache.accept("siteline/v1/bob/in/work-orders", orders("not mine")).outcome == "rejected"
        assert cache.accept("edge/site-a/gw-7/status", b"").outcome == "rejected"
        assert cache.accept("siteline/v1/alice/in/certificates/caf\udce9/gw", b"{}").outcome == "rejected"
    assert cache.get("work-orders") is None


def test_rejects_table_is_bounded(cache: InboundCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("siteline.core.outbox.inbound.MAX_REJECTS_KEPT", 5)
    logging.getLogger("siteline.core.outbox.inbound").disabled = True
    try:
        for i in range(12):
            cache.accept(WO, f"garbage {i}".encode())
    finally:
        logging.getLogger("siteline.core.outbox.inbound").disabled = False
    rejects = cache.rejects()
    assert len(rejects) == 5
    assert rejects[0][3] == len(b"garbage 11")


def test_certificates_per_device(cache: InboundCache) -> None:
    for dev in ("gw-1", "gw-2"):
        topic = certificate_topic("alice", "site-a", dev)
        assert cache.accept(topic, js({"v": 1, "site": "site-a", "device": dev, "certificate": PEM})).accepted
    one = cache.get_topic(certificate_topic("alice", "site-a", "gw-1"))
    assert one is not None
    assert one.data["device"] == "gw-1"
    assert len(cache.all()) == 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.sampled_from([WO, INV, IMG, CERT]), payload=st.binary(min_size=1, max_size=512))
def test_random_bytes_never_crash_or_replace_the_good_copy(cache: InboundCache, topic: str, payload: bytes) -> None:
    logging.getLogger("siteline.core.outbox.inbound").disabled = True
    try:
        cache.accept(WO, orders("keep me"))
        cache.accept(topic, payload)
    finally:
        logging.getLogger("siteline.core.outbox.inbound").disabled = False
    doc = cache.get("work-orders")
    assert doc is not None
    assert doc.data["orders"][0]["title"] == "keep me"


def test_typed_views_of_the_cache(cache: InboundCache) -> None:
    assert (cache.work_orders(), cache.inventory(), cache.trusted_images()) == ([], [], [])
    doc = {"v": 1, "orders": [{"id": "WO-1", "site": "site-a", "title": "antenna", "priority": "urgent"}]}
    cache.accept(WO, js(doc))
    cache.accept(INV, js(INVENTORY))
    cache.accept(IMG, js(IMAGES))
    (order,) = cache.work_orders()
    assert (order.id, order.device, order.due, order.extra) == ("WO-1", None, None, {"priority": "urgent"})
    gw7, gw8 = cache.inventory()
    assert gw7.validated().targets[1] == "serial:///dev/ttyUSB0?baud=115200"
    assert gw8.site == "Unsorted"
    (image,) = cache.trusted_images()
    assert (image.version, image.compatible, image.signature_key_id) == ("5.2.1", ("imx8-gw",), "k1")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=st.one_of(st.text(max_size=80), st.builds("siteline/v1/alice/in/{}".format, st.text(max_size=40))),
    payload=st.binary(max_size=64),
)
def test_random_topics_never_crash(cache: InboundCache, topic: str, payload: bytes) -> None:
    logging.getLogger("siteline.core.outbox.inbound").disabled = True
    try:
        result = cache.accept(topic, payload)
    finally:
        logging.getLogger("siteline.core.outbox.inbound").disabled = False
    assert result.outcome in ("stored", "unchanged", "cleared", "rejected")
