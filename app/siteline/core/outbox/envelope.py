"""The wire form of outbox items: topics, the JSON envelope, compressed batches, and decoding them.

The contract for operators is docs/control-plane.md; this module is its reference implementation.

- One item is one UTF-8 JSON object (``application/json``) on ``siteline/v1/<technician>/outbox/<kind>``.
- On metered links small items of one kind travel together: ``{"v":1,"batch":[...]}`` compressed with
  zlib, prefixed with the 4-byte marker ``SLZ1``, on ``.../outbox/<kind>/batch``. The separate topic
  keeps compressed bytes away from consumers that subscribed to ``.../outbox/+`` and only read JSON
  (Telegraf, rules engines); the marker lets a consumer that reads both tell them apart from the bytes
  alone (no MQTT 5 properties needed, so it works on 3.1.1 brokers too).

The payload is embedded as the exact canonical text the store hashed, so ``payload_sha256`` can be
checked by re-serialising the parsed payload canonically (see :func:`canonical_json`).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import re
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from siteline.core.errors import SitelineError

TOPIC_ROOT = "siteline/v1"
ENVELOPE_VERSION = 1
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_BATCH = "application/vnd.siteline.batch+zlib"
BATCH_MAGIC = b"SLZ1"
BATCH_SUFFIX = "batch"
# Level 9 vs 6: ~3 % fewer bytes on telemetry batches for well under a millisecond per 100 items.
ZLIB_LEVEL = 9
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a message (plain, or compressed batch) bigger than this is refused
MAX_INFLATED_BYTES = 16 * 1024 * 1024  # decompression-bomb cap for one batch
MAX_BATCH_ENVELOPES = 10_000  # a consumer refuses batches with more envelopes than this
MAX_BATCH_ITEMS = 500  # the encoder puts at most this many items in one batch
# An item whose envelope is at least this big goes alone as plain JSON: batching it gains little and
# it would crowd out small items.
LARGE_ITEM_BYTES = 16 * 1024
TECHNICIAN_MAX = 64
RESERVED_TECHNICIANS = frozenset({"fleet"})  # siteline/v1/fleet/... carries fleet-wide inbound data
PRIORITY_NAMES = {0: "high", 1: "normal", 2: "low"}
PRIORITY_VALUES = {name: value for value, name in PRIORITY_NAMES.items()}
KIND_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
TECHNICIAN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ID_RE = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CREATED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_ENVELOPE_KEYS = ("v", "id", "kind", "site", "device", "technician", "created", "priority", "payload_sha256")


class EnvelopeError(SitelineError):
    """A message that is not a valid Siteline envelope or batch, or a name that cannot be a topic level.

    ``item_id`` names the outbox item when the problem is one item that cannot be sent.
    """

    def __init__(self, message: str, hint: str = "", item_id: str | None = None) -> None:
        super().__init__(message, hint)
        self.item_id = item_id


class ItemLike(Protocol):
    """The fields of ``siteline.core.outbox.model.Item`` the wire form needs."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def created(self) -> float: ...
    @property
    def priority(self) -> int: ...
    @property
    def payload(self) -> str: ...
    @property
    def payload_sha256(self) -> str: ...


@dataclass(frozen=True)
class WireMessage:
    """One MQTT publish: the sync loop sends it at QoS 1 and marks ``item_ids`` sent on PUBACK."""

    topic: str
    payload: bytes
    content_type: str
    item_ids: tuple[str, ...]


def canonical_json(obj: Any) -> str:
    """The text the store hashes: sorted keys, no spaces, UTF-8 kept as is, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def payload_hash(payload_text: str) -> str:
    return hashlib.sha256(payload_text.encode("utf-8")).hexdigest()


# --- names -----------------------------------------------------------------------------------


def technician_problem(technician: str) -> str | None:
    """Why ``technician`` cannot be a technician id (one MQTT topic level), or None when it can."""
    if not TECHNICIAN_RE.match(technician):
        return (
            f"technician id {technician[:80]!r} must be 1-{TECHNICIAN_MAX} characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit (it is a level of MQTT topics and of the broker's ACL)"
        )
    if technician in RESERVED_TECHNICIANS:
        return f"technician id {technician!r} is reserved for fleet-wide topics"
    return None


def check_technician(technician: str) -> str:
    problem = technician_problem(technician)
    if problem:
        raise EnvelopeError(problem, f"Use for example {make_technician_id(technician)!r}.")
    return technician


def make_technician_id(name: str) -> str:
    """Turn any user name into a valid technician id: ASCII-folded, lowercased, unsafe characters to '-'."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    safe = re.sub(r"[^a-z0-9._-]+", "-", folded).strip("-._")[:TECHNICIAN_MAX].strip("-._")
    if not safe:
        return "technician"
    return f"{safe}-user"[-TECHNICIAN_MAX:] if safe in RESERVED_TECHNICIANS else safe


def default_technician() -> str:
    """The id given in the first-run guide, else the OS user name made topic-safe (``Jane.Doe`` -> ``jane.doe``,
    ``CORP\\jdoe`` -> ``corp-jdoe``). Control-plane settings, when there are some, hold the id instead."""
    from siteline.core.first_run import saved_technician  # here: first_run imports this module

    given = saved_technician()
    if given:
        return given
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in a bare container or service
        name = ""
    return make_technician_id(name)


def outbox_topic(technician: str, kind: str) -> str:
    """``siteline/v1/<technician>/outbox/<kind>``; raises EnvelopeError for an unsafe name."""
    check_technician(technician)
    if not KIND_RE.match(kind):
        raise EnvelopeError(f"item kind {kind[:80]!r} cannot be an MQTT topic level", "Kinds match [a-z][a-z0-9-]*.")
    return f"{TOPIC_ROOT}/{technician}/outbox/{kind}"


def batch_topic(technician: str, kind: str) -> str:
    return f"{outbox_topic(technician, kind)}/{BATCH_SUFFIX}"


# --- encoding --------------------------------------------------------------------------------


_LAST_TS = 253402300799.9995  # 9999-12-31T23:59:59.999Z, the last instant ISO 8601 years of 4 digits can say


def format_created(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and Z: ``2026-11-27T09:41:07.123Z`` (clamped to years 1970-9999)."""
    ts = min(max(ts, 0.0), _LAST_TS) if math.isfinite(ts) else 0.0
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_problem(item: ItemLike) -> str | None:
    """Why ``item`` cannot be sent as it is (its payload no longer matches its hash, a bad kind), or None.

    The store hashes the payload when the item is written, so a mismatch means the database row was
    damaged or edited: sending it would only make every consumer reject it.
    """
    if not KIND_RE.match(item.kind):
        return f"item {item.id} has the kind {item.kind[:40]!r}, which cannot be an MQTT topic level"
    try:
        if payload_hash(item.payload) != item.payload_sha256:
            return f"item {item.id}: its payload does not match its payload_sha256 (the outbox row was damaged)"
        (item.id + item.site + item.device).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a name read with surrogateescape
        return f"item {item.id!r} holds text that is not valid Unicode and cannot be sent as UTF-8"
    return None


def envelope_text(item: ItemLike, technician: str) -> str:
    """One envelope as JSON text. The payload is spliced in verbatim: it is already canonical JSON."""
    head = {
        "v": ENVELOPE_VERSION,
        "id": item.id,
        "kind": item.kind,
        "site": item.site,
        "device": item.device,
        "technician": technician,
        "created": format_created(item.created),
        "priority": PRIORITY_NAMES.get(item.priority, "normal"),
        "payload_sha256": item.payload_sha256,
    }
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)
    return f'{text[:-1]},"payload":{item.payload}}}'


def encode_item(item: ItemLike, technician: str) -> WireMessage:
    """One item as plain JSON on its kind's topic."""
    topic = outbox_topic(technician, item.kind)
    body = envelope_text(item, technician).encode("utf-8")
    return WireMessage(topic, body, CONTENT_TYPE_JSON, (item.id,))


def encode_batch(items: Sequence[ItemLike], technician: str) -> WireMessage:
    """Items of one kind as one compressed batch on ``.../outbox/<kind>/batch``."""
    if not items:
        raise EnvelopeError("a batch needs at least one item")
    kind = items[0].kind
    if any(item.kind != kind for item in items):
        raise EnvelopeError("a batch holds items of one kind only", "Group items by kind first (plan_messages does).")
    return _batch_message(kind, [envelope_text(item, technician) for item in items], items, technician)


def _batch_message(kind: str, texts: list[str], items: Sequence[ItemLike], technician: str) -> WireMessage:
    body = f'{{"v":{ENVELOPE_VERSION},"batch":[{",".join(texts)}]}}'.encode()
    payload = BATCH_MAGIC + zlib.compress(body, ZLIB_LEVEL)
    return WireMessage(batch_topic(technician, kind), payload, CONTENT_TYPE_BATCH, tuple(item.id for item in items))


def plan_messages(
    items: Sequence[ItemLike],
    technician: str,
    *,
    batching: bool,
    max_bytes: int = 256 * 1024,
    on_invalid: Callable[[ItemLike, str], None] | None = None,
) -> list[WireMessage]:
    """The messages that carry ``items`` (given in drain order: priority, then created).

    Without batching: one plain message per item, in the given order. With batching: items are grouped by
    (priority, kind); groups go out in the order of their first item, so a higher priority never waits
    behind a lower one, but within one priority kinds are no longer interleaved by time. Each group is cut
    into batches whose uncompressed JSON stays under ``max_bytes`` (so the compressed message does too);
    a large item, or a group of one, goes alone as plain JSON.

    An item that cannot be sent (see :func:`item_problem`) is handed to ``on_invalid`` with the reason
    and left out (the caller marks it failed); without ``on_invalid`` it raises EnvelopeError(item_id=...).
    """
    check_technician(technician)
    items = _sendable(items, on_invalid)
    if not batching:
        return [encode_item(item, technician) for item in items]
    groups: dict[tuple[int, str], list[tuple[ItemLike, str]]] = {}
    for item in items:
        groups.setdefault((item.priority, item.kind), []).append((item, envelope_text(item, technician)))
    messages: list[WireMessage] = []
    budget = max(max_bytes - 64, 1)  # room for the batch wrapper and zlib's own header
    for (_, kind), members in groups.items():
        for chunk in _chunks(members, budget):
            messages.extend(_pack(kind, chunk, technician, max_bytes))
    return messages


def _pack(kind: str, chunk: list[tuple[ItemLike, str]], technician: str, max_bytes: int) -> list[WireMessage]:
    """One plain message, or one batch; a batch that compressed to more than ``max_bytes`` (only data
    that does not compress at all can) is split in two, in order."""
    if len(chunk) == 1:
        return [encode_item(chunk[0][0], technician)]
    message = _batch_message(kind, [t for _, t in chunk], [i for i, _ in chunk], technician)
    if len(message.payload) <= max_bytes:
        return [message]
    half = len(chunk) // 2
    return _pack(kind, chunk[:half], technician, max_bytes) + _pack(kind, chunk[half:], technician, max_bytes)


def _sendable(items: Sequence[ItemLike], on_invalid: Callable[[ItemLike, str], None] | None) -> list[ItemLike]:
    good: list[ItemLike] = []
    for item in items:
        problem = item_problem(item)
        if problem is None:
            good.append(item)
        elif on_invalid is None:
            raise EnvelopeError(problem, "Mark the item failed; the rest can still be sent.", item_id=item.id)
        else:
            on_invalid(item, problem)
    return good


def _chunks(members: list[tuple[ItemLike, str]], budget: int) -> list[list[tuple[ItemLike, str]]]:
    chunks: list[list[tuple[ItemLike, str]]] = []
    current: list[tuple[ItemLike, str]] = []
    size = 0
    for member in members:
        length = len(member[1].encode("utf-8")) + 1
        if length >= min(LARGE_ITEM_BYTES, budget):
            if current:  # flush first, so the group's order holds
                chunks.append(current)
                current, size = [], 0
            chunks.append([member])
            continue
        if current and (size + length > budget or len(current) >= MAX_BATCH_ITEMS):
            chunks.append(current)
            current, size = [], 0
        current.append(member)
        size += length
    if current:
        chunks.append(current)
    return chunks


# --- decoding --------------------------------------------------------------------------------


def decode(payload: bytes) -> list[dict[str, Any]]:
    """The envelopes in one message, plain or batch, each checked (fields, types, payload hash).

    Raises EnvelopeError on anything else: not JSON, a wrong shape, a bad hash, a truncated or
    over-large batch (more than 16 MiB inflated or 10,000 envelopes).
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise EnvelopeError(f"message of {len(payload)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    if payload.startswith(BATCH_MAGIC):
        doc = _parse_json(_inflate(payload[len(BATCH_MAGIC) :]))
        if not isinstance(doc, dict) or doc.get("v") != ENVELOPE_VERSION or not isinstance(doc.get("batch"), list):
            raise EnvelopeError('batch is not {"v":1,"batch":[...]}', "Is it from a newer Siteline?")
        if len(doc["batch"]) > MAX_BATCH_ENVELOPES:
            raise EnvelopeError(f"batch holds {len(doc['batch'])} envelopes, over the {MAX_BATCH_ENVELOPES} limit")
        return [check_envelope(env) for env in doc["batch"]]
    return [check_envelope(_parse_json(payload))]


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise EnvelopeError(f"batch is not valid zlib data ({exc})") from None
    if len(out) > MAX_INFLATED_BYTES:
        raise EnvelopeError(f"batch inflates to more than {MAX_INFLATED_BYTES} bytes; refused")
    if not inflater.eof:
        raise EnvelopeError("batch is truncated (the zlib stream does not end)")
    if inflater.unused_data:
        raise EnvelopeError("batch has bytes after the end of its zlib stream")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise EnvelopeError("message is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"message is not valid JSON ({str(exc)[:120]})") from None


def check_envelope(env: Any) -> dict[str, Any]:
    """``env`` as a valid version-1 envelope dict (payload hash verified), or EnvelopeError."""
    if not isinstance(env, dict):
        raise EnvelopeError("envelope is not a JSON object")
    missing = [key for key in (*_ENVELOPE_KEYS, "payload") if key not in env]
    if missing:
        raise EnvelopeError(f"envelope lacks {', '.join(missing)}")
    if env["v"] != ENVELOPE_VERSION or isinstance(env["v"], bool):
        raise EnvelopeError(f"envelope version {env['v']!r} is not 1", "It may come from a newer Siteline.")
    for key in ("id", "kind", "site", "device", "technician", "created", "priority", "payload_sha256"):
        if not isinstance(env[key], str):
            raise EnvelopeError(f"envelope field {key!r} is not a string")
    _check_fields(env)
    try:
        text = canonical_json(env["payload"])
    except ValueError:
        raise EnvelopeError("envelope payload holds a number JSON cannot carry") from None
    if payload_hash(text) != env["payload_sha256"]:
        raise EnvelopeError(f"payload of item {env['id']} does not match its payload_sha256")
    return env


def _check_fields(env: dict[str, Any]) -> None:
    if not _ID_RE.match(env["id"]):
        raise EnvelopeError("envelope id is not 1-64 letters, digits and '-'")
    if not KIND_RE.match(env["kind"]):
        raise EnvelopeError(f"envelope kind {env['kind'][:40]!r} is not a valid kind")
    if technician_problem(env["technician"]):
        raise EnvelopeError(f"envelope technician {env['technician'][:40]!r} is not a valid technician id")
    if env["priority"] not in PRIORITY_VALUES:
        raise EnvelopeError(f"envelope priority {env['priority'][:20]!r} is not high, normal or low")
    if not _SHA_RE.match(env["payload_sha256"]):
        raise EnvelopeError("envelope payload_sha256 is not 64 lowercase hex digits")
    if not _CREATED_RE.match(env["created"]):
        raise EnvelopeError(f"envelope created {env['created'][:40]!r} is not ISO 8601 UTC with ms and Z")
