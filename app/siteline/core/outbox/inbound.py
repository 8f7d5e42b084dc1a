"""Retained messages from the control plane (work orders, inventory, trusted images, certificates), cached offline.

Topics (all retained, published by the operator; see docs/control-plane.md):

    siteline/v1/<technician>/in/work-orders               this technician's work orders
    siteline/v1/<technician>/in/inventory                 the sites and devices this technician may reach
    siteline/v1/fleet/in/trusted-images                   one fleet-wide list of images allowed to be flashed
    siteline/v1/<technician>/in/certificates/<site>/<device>   a certificate issued for a device (issue 7)

Every message is checked (size, UTF-8 JSON, ``"v": 1``, the shape of its kind) before it replaces the
cached copy; a bad one is logged and recorded in ``inbound_rejects`` and the last good copy stays. An empty
retained payload means the operator cleared the topic: the cached copy is deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from siteline.core.errors import SitelineError
from siteline.core.inventory import DeviceEntry
from siteline.core.outbox.envelope import TOPIC_ROOT, canonical_json, check_technician
from siteline.core.outbox.store import Outbox

log = logging.getLogger(__name__)

MAX_INBOUND_BYTES = 1024 * 1024
MAX_ENTRIES = 10_000  # work orders, devices or images in one document
MAX_REJECTS_KEPT = 1000  # inbound_rejects is a diagnostic log, not an archive: the oldest rows go
MAX_TEXT = 4096
FLEET = "fleet"
KINDS = ("work-orders", "inventory", "trusted-images", "certificate")
Kind = Literal["work-orders", "inventory", "trusted-images", "certificate"]
_LEVEL = re.compile(r"^[^#+\x00/]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PEM_CERT = re.compile(r"^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\s*$")


class InboundError(SitelineError):
    """An inbound message that does not fit its kind's schema (the reason goes to the log and the rejects table)."""


@dataclass(frozen=True)
class InboundResult:
    topic: str
    kind: str | None
    outcome: Literal["stored", "unchanged", "cleared", "rejected"]
    reason: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome != "rejected"


@dataclass(frozen=True)
class CachedDoc:
    topic: str
    kind: str
    data: dict[str, Any]  # the validated document, as published
    sha256: str  # of the payload bytes as received
    received: float


@dataclass(frozen=True)
class WorkOrder:
    id: str
    site: str
    title: str
    device: str | None = None
    due: str | None = None  # ISO 8601 date or date-time, as published
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not interpret


@dataclass(frozen=True)
class TrustedImage:
    name: str
    version: str
    sha256: str
    compatible: tuple[str, ...]
    signature_key_id: str | None = None


def inbound_topics(technician: str) -> list[str]:
    """The retained topics (subscription filters) Siteline subscribes to for ``technician``."""
    check_technician(technician)
    mine = f"{TOPIC_ROOT}/{technician}/in"
    return [
        f"{mine}/work-orders",
        f"{mine}/inventory",
        f"{TOPIC_ROOT}/{FLEET}/in/trusted-images",
        f"{mine}/certificates/+/+",
    ]


def certificate_topic(technician: str, site: str, device: str) -> str:
    check_technician(technician)
    for name in (site, device):
        if not _LEVEL.match(name):
            raise InboundError(f"{name[:40]!r} cannot be a topic level.", "Site and device names hold no / + #.")
    return f"{TOPIC_ROOT}/{technician}/in/certificates/{site}/{device}"


def topic_kind(topic: str, technician: str | None = None) -> Kind:
    """The kind a topic carries; InboundError for a topic that is not one of ours."""
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        raise InboundError("topic is not valid Unicode") from None
    levels = topic.split("/")
    if len(levels) < 5 or "/".join(levels[:2]) != TOPIC_ROOT or levels[3] != "in":
        raise InboundError("not a Siteline inbound topic")
    owner, rest = levels[2], levels[4:]
    if owner == FLEET:
        if rest == ["trusted-images"]:
            return "trusted-images"
        raise InboundError("not a Siteline fleet-wide inbound topic")
    if technician is not None and owner != technician:
        # Some brokers hand a new client retained messages of other clients' subscriptions.
        raise InboundError(f"addressed to technician {owner[:64]!r}, not to {technician!r}")
    if rest in (["work-orders"], ["inventory"]):
        return "work-orders" if rest[0] == "work-orders" else "inventory"
    if len(rest) == 3 and rest[0] == "certificates" and all(_LEVEL.match(x) for x in rest[1:]):
        return "certificate"
    raise InboundError("not a Siteline inbound topic")


# --- schemas ------------------------------------------------------------------------------------------------


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool = True, limit: int = MAX_TEXT) -> None:
    value = entry.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        need = "required" if required else "optional"
        raise InboundError(f"{where}: {key!r} must be non-empty text of at most {limit} characters ({need})")


def _list_of_objects(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = doc.get(key)
    if not isinstance(entries, list):
        raise InboundError(f"{key!r} must be a list")
    if len(entries) > MAX_ENTRIES:
        raise InboundError(f"{key!r} has {len(entries)} entries, over the limit of {MAX_ENTRIES}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InboundError(f"{key}[{index}] is not an object")
    return entries


def _check_due(value: Any, where: str) -> None:
    if value is None:
        return
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00") if isinstance(value, str) else "")
    except ValueError:
        raise InboundError(f"{where}: 'due' must be an ISO 8601 date or time") from None


def _check_work_orders(doc: dict[str, Any], topic: str) -> None:
    seen: set[str] = set()
    for index, order in enumerate(_list_of_objects(doc, "orders")):
        where = f"orders[{index}]"
        for key in ("id", "site", "title"):
            _text(order, key, where)
        _text(order, "device", where, required=False)
        _check_due(order.get("due"), where)
        if order["id"] in seen:
            raise InboundError(f"{where}: id {order['id'][:64]!r} appears twice")
        seen.add(order["id"])


def _check_inventory(doc: dict[str, Any], topic: str) -> None:
    for index, dev in enumerate(_list_of_objects(doc, "devices")):
        where = f"devices[{index}]"
        _text(dev, "name", where)
        _text(dev, "target", where)
        _text(dev, "site", where, required=False)
        fallbacks = dev.get("fallbacks", [])
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            raise InboundError(f"{where}: 'fallbacks' must be a list of target URLs")
        try:  # the same rules as the technician's own device list: names, and every URL through parse_target
            DeviceEntry(
                dev["name"], dev["target"], dev.get("site") or "Unsorted", fallbacks=tuple(fallbacks)
            ).validated()
        except SitelineError as exc:
            raise InboundError(f"{where}: {exc.message}") from None


def _check_trusted_images(doc: dict[str, Any], topic: str) -> None:
    for index, image in enumerate(_list_of_objects(doc, "images")):
        where = f"images[{index}]"
        for key in ("name", "version"):
            _text(image, key, where, limit=256)
        _text(image, "signature_key_id", where, required=False, limit=256)
        if not isinstance(image.get("sha256"), str) or not _SHA256.match(image["sha256"]):
            raise InboundError(f"{where}: 'sha256' must be 64 lowercase hex digits")
        compatible = image.get("compatible")
        if not isinstance(compatible, list) or not compatible:
            raise InboundError(f"{where}: 'compatible' must be a non-empty list of device families")
        if not all(isinstance(c, str) and c.strip() and len(c) <= 256 for c in compatible):
            raise InboundError(f"{where}: 'compatible' must hold non-empty names")


def _check_certificate(doc: dict[str, Any], topic: str) -> None:
    _text(doc, "site", "certificate")
    _text(doc, "device", "certificate")
    site, device = topic.split("/")[-2:]
    if (doc["site"], doc["device"]) != (site, device):
        raise InboundError(f"certificate is for {doc['site'][:64]}/{doc['device'][:64]} but came on {site}/{device}")
    pems = [doc.get("certificate"), *(doc.get("chain") or [])]
    if not isinstance(doc.get("chain", []), list):
        raise InboundError("certificate: 'chain' must be a list of PEM certificates")
    for pem in pems:
        if not isinstance(pem, str) or len(pem) > 64 * 1024 or not _PEM_CERT.match(pem):
            raise InboundError("certificate: 'certificate' and 'chain' must be PEM certificates")


_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "work-orders": _check_work_orders,
    "inventory": _check_inventory,
    "trusted-images": _check_trusted_images,
    "certificate": _check_certificate,
}


def validate(topic: str, payload: bytes, technician: str | None = None) -> tuple[Kind, dict[str, Any]]:
    """The kind and the document of a non-empty inbound message, or InboundError with the reason."""
    kind = topic_kind(topic, technician)
    if len(payload) > MAX_INBOUND_BYTES:
        raise InboundError(f"{len(payload)} bytes is over the {MAX_INBOUND_BYTES} byte limit")
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InboundError("not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise InboundError(f"not valid JSON ({str(exc)[:100]})") from None
    if not isinstance(doc, dict):
        raise InboundError("not a JSON object")
    if doc.get("v") != 1 or isinstance(doc.get("v"), bool):
        raise InboundError(f'"v" is {doc.get("v")!r}, not 1 (a newer control plane? update Siteline)')
    _CHECKS[kind](doc, topic)
    return kind, doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- the cache ----------------------------------------------------------------------------------------------


class InboundCache:
    """The last good copy of each inbound topic, in the outbox database (table ``inbound``)."""

    def __init__(self, outbox: Outbox, *, technician: str | None = None) -> None:
        # technician: when given, messages addressed to another technician are refused.
        self.outbox = outbox
        self.technician = technician

    def accept(self, topic: str, payload: bytes, at: float | None = None) -> InboundResult:
        at = time.time() if at is None else at
        try:
            kind: str | None = topic_kind(topic, self.technician)
        except InboundError:
            kind = None
        if kind is not None and not payload:
            with self.outbox.transaction() as tx:
                tx.conn.execute("DELETE FROM inbound WHERE topic = ?", (topic,))
            log.info("inbound %s cleared by the control plane; cached copy removed", topic)
            return InboundResult(topic, kind, "cleared")
        try:
            kind, doc = validate(topic, payload, self.technician)
        except InboundError as exc:
            return self._reject(topic, kind, exc.message, len(payload), at)
        digest = hashlib.sha256(payload).hexdigest()
        with self.outbox.transaction() as tx:
            row = tx.conn.execute("SELECT sha256 FROM inbound WHERE topic = ?", (topic,)).fetchone()
            if row is not None and row[0] == digest:
                return InboundResult(topic, kind, "unchanged")
            tx.conn.execute(
                "INSERT OR REPLACE INTO inbound (topic, kind, payload, sha256, received) VALUES (?, ?, ?, ?, ?)",
                (topic, kind, canonical_json(doc), digest, at),
            )
        log.info("inbound %s stored (%s, %d bytes)", topic, kind, len(payload))
        return InboundResult(topic, kind, "stored")

    def _reject(self, topic: str, kind: str | None, reason: str, size: int, at: float) -> InboundResult:
        shown = topic[:512].encode("utf-8", "backslashreplace").decode("utf-8")
        log.warning("inbound message on %s rejected: %s; the last good copy is kept", shown, reason)
        with self.outbox.transaction() as tx:
            tx.conn.execute(
                "INSERT INTO inbound_rejects (at, topic, reason, size) VALUES (?, ?, ?, ?)", (at, shown, reason, size)
            )
            tx.conn.execute(
                "DELETE FROM inbound_rejects WHERE rowid <= (SELECT MAX(rowid) FROM inbound_rejects) - ?",
                (MAX_REJECTS_KEPT,),
            )
        return InboundResult(topic, kind, "rejected", reason)

    def get(self, kind: str) -> CachedDoc | None:
        """The last good copy of a kind (the newest one for "certificate": use get_topic for one device)."""
        docs = self._select("WHERE kind = ? ORDER BY received DESC LIMIT 1", (kind,))
        return docs[0] if docs else None

    def work_orders(self) -> list[WorkOrder]:
        """The cached work orders (empty when none were received or the operator cleared them)."""
        doc = self.get("work-orders")
        known = ("id", "site", "title", "device", "due")
        return [
            WorkOrder(o["id"], o["site"], o["title"], o.get("device"), o.get("due"),
                      {k: v for k, v in o.items() if k not in known})
            for o in (doc.data["orders"] if doc else [])
        ]  # fmt: skip

    def inventory(self) -> list[DeviceEntry]:
        """The cached inventory as device-list entries (validated when it was received)."""
        doc = self.get("inventory")
        return [
            DeviceEntry(d["name"], d["target"], d.get("site") or "Unsorted", fallbacks=tuple(d.get("fallbacks", [])))
            for d in (doc.data["devices"] if doc else [])
        ]

    def trusted_images(self) -> list[TrustedImage]:
        doc = self.get("trusted-images")
        return [
            TrustedImage(i["name"], i["version"], i["sha256"], tuple(i["compatible"]), i.get("signature_key_id"))
            for i in (doc.data["images"] if doc else [])
        ]

    def get_topic(self, topic: str) -> CachedDoc | None:
        docs = self._select("WHERE topic = ?", (topic,))
        return docs[0] if docs else None

    def all(self) -> list[CachedDoc]:
        return self._select("ORDER BY topic", ())

    def rejects(self, limit: int = 100) -> list[tuple[float, str, str, int]]:
        """(at, topic, reason, size), newest first: what the control plane sent that Siteline refused."""
        with self.outbox.transaction() as tx:
            rows = tx.conn.execute(
                "SELECT at, topic, reason, size FROM inbound_rejects ORDER BY rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(float(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def _select(self, where: str, params: tuple[Any, ...]) -> list[CachedDoc]:
        with self.outbox.transaction() as tx:
            rows = tx.conn.execute(f"SELECT topic, kind, payload, sha256, received FROM inbound {where}", params)
            found = rows.fetchall()
        return [CachedDoc(r[0], r[1], json.loads(r[2]), r[3], float(r[4])) for r in found]
