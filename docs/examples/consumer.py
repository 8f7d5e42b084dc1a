#!/usr/bin/env python3
"""A minimal control-plane consumer for Siteline outbox messages (see docs/control-plane.md).

It subscribes to every technician's outbox, unpacks plain and batched messages, checks each payload's
hash, drops duplicates by ``id`` (QoS 1 is at-least-once) and prints one JSON line per new item.
Needs only the standard library and paho-mqtt 2.x::

    python consumer.py --host broker.example.net --port 8883 --ca ca.pem --user ops --seen seen.sqlite3

Copy it and replace ``handle`` with whatever your system does with an item. Siteline's test suite runs
``unpack`` on messages made by Siteline's own encoder, so this file stays in step with the contract.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import sqlite3
import sys
import zlib
from typing import Any

BATCH_MAGIC = b"SLZ1"  # batches: b"SLZ1" + zlib({"v":1,"batch":[envelope, ...]})
MAX_INFLATED = 16 * 1024 * 1024  # refuse decompression bombs
MAX_ENVELOPES = 10_000


class BadMessageError(ValueError):
    pass


def unpack(payload: bytes) -> list[dict[str, Any]]:
    """The envelopes in one message (one for plain JSON, many for a batch), each with its hash checked."""
    if payload.startswith(BATCH_MAGIC):
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(payload[len(BATCH_MAGIC) :], MAX_INFLATED + 1)
        except zlib.error as exc:
            raise BadMessageError(f"bad zlib data: {exc}") from None
        if len(body) > MAX_INFLATED or not inflater.eof:
            raise BadMessageError("batch too large or truncated")
        doc = _json(body)
        if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("batch"), list):
            raise BadMessageError("not a version-1 batch")
        if len(doc["batch"]) > MAX_ENVELOPES:
            raise BadMessageError("too many envelopes")
        envelopes: list[dict[str, Any]] = doc["batch"]
    else:
        envelopes = [_json(payload)]
    for env in envelopes:
        _check(env)
    return envelopes


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadMessageError(f"not JSON: {exc}") from None


def _check(env: Any) -> None:
    if not isinstance(env, dict) or env.get("v") != 1 or not isinstance(env.get("id"), str) or "payload" not in env:
        raise BadMessageError("not a version-1 envelope")
    # The hash is over the payload's canonical JSON: sorted keys, no spaces, non-ASCII kept as UTF-8.
    canonical = json.dumps(env["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if hashlib.sha256(canonical.encode("utf-8")).hexdigest() != env.get("payload_sha256"):
        raise BadMessageError(f"payload hash mismatch on item {env['id']}")


class SeenIds:
    """Ids already handled, on disk, so a redelivery after a restart is still recognised."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")

    def first_time(self, item_id: str) -> bool:
        cur = self.db.execute("INSERT OR IGNORE INTO seen (id) VALUES (?)", (item_id,))
        return cur.rowcount == 1

    def commit(self) -> None:
        self.db.commit()


def handle(topic: str, env: dict[str, Any]) -> None:
    print(json.dumps({"topic": topic, **env}, ensure_ascii=False), flush=True)


def on_message(seen: SeenIds, topic: str, payload: bytes) -> int:
    """Handle one MQTT message; returns how many new items it held. Runs before paho sends PUBACK."""
    try:
        envelopes = unpack(payload)
    except BadMessageError as exc:
        print(f"dropped a message on {topic}: {exc}", file=sys.stderr)
        return 0
    new = 0
    for env in envelopes:
        if seen.first_time(env["id"]):
            handle(topic, env)
            new += 1
    seen.commit()  # committed before the callback returns, i.e. before the broker gets its PUBACK
    return new


def main() -> None:
    import paho.mqtt.client as mqtt  # imported here so tests can use unpack() without paho
    from paho.mqtt.enums import CallbackAPIVersion

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8883)
    ap.add_argument("--ca", help="CA file; TLS is on unless --plain")
    ap.add_argument("--plain", action="store_true", help="no TLS (loopback tests only)")
    ap.add_argument("--user")
    ap.add_argument("--client-id", default="siteline-consumer")
    ap.add_argument("--seen", default="seen.sqlite3")
    args = ap.parse_args()
    seen = SeenIds(args.seen)
    # A fixed client id and no clean session: the broker queues QoS 1 messages while we are away.
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False)
    if args.user:
        client.username_pw_set(args.user, getpass.getpass(f"MQTT password for {args.user}: "))
    if not args.plain:
        client.tls_set(ca_certs=args.ca)

    def connected(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        c.subscribe("siteline/v1/+/outbox/#", qos=1)  # plain (.../<kind>) and batches (.../<kind>/batch)

    def received(c: Any, userdata: Any, msg: Any) -> None:
        on_message(seen, msg.topic, bytes(msg.payload))

    client.on_connect = connected
    client.on_message = received
    client.connect(args.host, args.port)
    client.loop_forever()


if __name__ == "__main__":
    main()
