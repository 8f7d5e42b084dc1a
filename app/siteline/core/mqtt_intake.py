"""The MQTT explorer's intake in a child process: paho and the TopicTree run there, the UI asks once per tick.

Why a process: under a flood paho's network thread and the tree's ingest are CPU-bound Python; in the
UI process they hold the GIL and the UI loop stalls 100-200 ms (bench/mqtt_topics.py). In a child the
UI process keeps no CPU-bound Python thread at all.

The protocol is frames of a 4-byte big-endian length and a JSON object, both ways over the child's
stdin/stdout (``python -m siteline.core.mqtt_intake_child``). The UI sends ``open`` once, then a ``poll`` per
tick with the topics it shows; the child answers with a bounded snapshot (new topic paths, capped per
reply; stats of the asked topics; the selected topic's last payloads when they changed; totals) and
pushes ``state`` frames when the connection changes. Payload bytes travel as base64. Everything read is
checked: a malformed frame is a :class:`ProtocolError`, never a crash. The UI side (spawning, non-blocking
reads on the loop) is :class:`siteline.core.mqtt_intake_client.IntakeClient`.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from siteline.core.errors import AuthError, SitelineError, TargetError, TransportError
from siteline.core.mqtt_topics import Payload
from siteline.core.transports.base import ConnState

HEADER = struct.Struct(">I")
MAX_FRAME = 8 * 1024 * 1024  # 10 payloads of 64 KiB in base64 fit easily; a bigger length is garbage
MAX_NEW = 400  # new topic paths per reply: building a row costs ~30 µs of UI time, so a burst shows over ticks
MAX_ASKED = 1000  # topics a poll may ask stats for


class ProtocolError(ValueError):
    """A frame from the other side is not what the protocol says."""


# ---- frames -------------------------------------------------------------------------------------

def encode_frame(message: Mapping[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes is over the {MAX_FRAME} limit")
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Bytes in (any split), JSON objects out; raises ProtocolError on a bad length or body."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self._max:
                raise ProtocolError(f"frame length {size} is over the {self._max} limit")
            if len(self._buf) < HEADER.size + size:
                break
            body = bytes(self._buf[HEADER.size:HEADER.size + size])
            del self._buf[:HEADER.size + size]
            try:
                obj = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise ProtocolError(f"frame is not JSON: {exc}") from exc
            if not isinstance(obj, dict):
                raise ProtocolError(f"frame is a {type(obj).__name__}, not an object")
            out.append(obj)
        return out


# ---- typed messages -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    """What the UI asks each tick: stats for ``visible`` topics, and the ``selected`` one's payloads when its
    message count differs from ``selected_count`` (what the UI already shows)."""

    visible: tuple[str, ...] = ()
    selected: str | None = None
    selected_count: int = -1
    expanded: tuple[str, ...] = ()

    def to_wire(self, ident: int) -> dict[str, Any]:
        return {"t": "poll", "id": ident, "visible": list(self.visible[:MAX_ASKED]), "selected": self.selected,
                "selected_count": self.selected_count, "expanded": list(self.expanded[:MAX_ASKED])}


@dataclass(frozen=True)
class TopicStats:
    """One row's numbers: messages in the subtree, its rate, and a preview of the topic's last payload."""

    total: int
    rate: float
    preview: str


@dataclass(frozen=True)
class Selected:
    """The selected topic; ``payloads`` (oldest first) is None when the UI's copy is current."""

    topic: str
    count: int
    total: int
    rate: float
    payloads: tuple[Payload, ...] | None


@dataclass(frozen=True)
class Totals:
    messages: int = 0  # stored in the tree
    topics: int = 0  # topic levels in the tree
    received: int = 0  # from the broker
    dropped: int = 0  # dropped by the buffer (the tree fell behind)
    overflow: int = 0  # messages on new topics refused because the tree is full
    rate: float = 0.0
    warnings: tuple[str, ...] = ()
    first: float = 0.0  # wall-clock time the first message was received (0: none yet)
    last: float = 0.0  # wall-clock time the latest batch was absorbed into the tree


@dataclass(frozen=True)
class Snapshot:
    """The child's answer to one :class:`Query`."""

    ident: int
    new: tuple[str, ...] = ()
    more: bool = False  # more new topics wait for the next poll
    stats: Mapping[str, TopicStats] = field(default_factory=dict)
    selected: Selected | None = None
    totals: Totals = Totals()


@dataclass(frozen=True)
class StateReport:
    """A connection change in the child (``error`` set when it is a failure to report as such)."""

    state: ConnState
    reason: str
    error: SitelineError | None = None


@dataclass(frozen=True)
class Published:
    ident: int
    error: SitelineError | None = None


Reply = Snapshot | StateReport | Published


def get_field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise ProtocolError(f"'{key}' is missing or not {getattr(kind, '__name__', kind)}")
    return value


def _str_list(obj: Mapping[str, Any], key: str, limit: int) -> tuple[str, ...]:
    items = get_field(obj, key, list)
    if len(items) > limit or not all(isinstance(i, str) for i in items):
        raise ProtocolError(f"'{key}' is not a list of at most {limit} strings")
    return tuple(items)


def _number(obj: Mapping[str, Any], key: str) -> float:
    try:
        return float(get_field(obj, key, (int, float)))
    except OverflowError as exc:  # an integer past a float's range: garbage, not a crash
        raise ProtocolError(f"'{key}' is out of range") from exc


def parse_query(obj: Mapping[str, Any]) -> tuple[int, Query]:
    selected = obj.get("selected")
    if selected is not None and not isinstance(selected, str):
        raise ProtocolError("'selected' is not a topic")
    query = Query(_str_list(obj, "visible", MAX_ASKED), selected, get_field(obj, "selected_count", int),
                  _str_list(obj, "expanded", MAX_ASKED))
    return get_field(obj, "id", int), query


def error_to_wire(exc: SitelineError) -> dict[str, str]:
    kind = "auth" if isinstance(exc, AuthError) else "target" if isinstance(exc, TargetError) else "transport"
    return {"kind": kind, "message": exc.message, "hint": exc.hint}


def error_from_wire(obj: object) -> SitelineError | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ProtocolError("'error' is not an object")
    cls = {"auth": AuthError, "target": TargetError}.get(str(obj.get("kind")), TransportError)
    return cls(str(get_field(obj, "message", str)), str(obj.get("hint") or ""))


def payload_to_wire(p: Payload) -> list[Any]:
    return [p.time, base64.b64encode(p.data).decode("ascii"), p.qos, p.retain, p.size]


def _payload_from_wire(item: object) -> Payload:
    if not isinstance(item, list) or len(item) != 5:
        raise ProtocolError("a payload is not [time, data, qos, retain, size]")
    ts, data, qos, retain, size = item
    ok = (isinstance(ts, (int, float)) and isinstance(data, str) and isinstance(qos, int)
          and isinstance(retain, bool) and isinstance(size, int) and not isinstance(qos, bool)
          and not isinstance(size, bool))
    if not ok:
        raise ProtocolError("a payload has fields of the wrong type")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("a payload is not base64") from exc
    return Payload(float(ts), raw, qos, retain, size)


def _stats_from_wire(obj: object) -> dict[str, TopicStats]:
    if not isinstance(obj, dict) or len(obj) > MAX_ASKED:
        raise ProtocolError("'stats' is not an object of at most {MAX_ASKED} topics")
    out: dict[str, TopicStats] = {}
    for topic, row in obj.items():
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], int) and not isinstance(row[0], bool)
                and isinstance(row[1], (int, float)) and not isinstance(row[1], bool) and isinstance(row[2], str)):
            raise ProtocolError(f"stats of '{str(topic)[:60]}' are not [total, rate, preview]")
        out[topic] = TopicStats(row[0], float(row[1]), row[2])
    return out


def _selected_from_wire(obj: object) -> Selected | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ProtocolError("'selected' is not an object")
    raw = obj.get("payloads")
    if raw is not None and not isinstance(raw, list):
        raise ProtocolError("'payloads' is not a list")
    payloads = None if raw is None else tuple(_payload_from_wire(p) for p in raw)
    return Selected(get_field(obj, "topic", str), get_field(obj, "count", int), get_field(obj, "total", int),
                    _number(obj, "rate"), payloads)


def _totals_from_wire(obj: object) -> Totals:
    if not isinstance(obj, dict):
        raise ProtocolError("'totals' is not an object")
    messages, topics, received, dropped, overflow = (
        get_field(obj, k, int) for k in ("messages", "topics", "received", "dropped", "overflow"))
    return Totals(messages, topics, received, dropped, overflow, _number(obj, "rate"), _str_list(obj, "warnings", 100),
                  _number(obj, "first"), _number(obj, "last"))


def parse_reply(obj: Mapping[str, Any]) -> Reply:
    """A typed reply from the child's frame; ProtocolError when it is not one."""
    kind = obj.get("t")
    if kind == "snapshot":
        return Snapshot(get_field(obj, "id", int), _str_list(obj, "new", MAX_NEW), bool(obj.get("more")),
                        _stats_from_wire(obj.get("stats")), _selected_from_wire(obj.get("selected")),
                        _totals_from_wire(obj.get("totals")))
    if kind == "state":
        try:
            state = ConnState(obj.get("state"))
        except ValueError as exc:
            raise ProtocolError("'state' is not a connection state") from exc
        return StateReport(state, get_field(obj, "reason", str), error_from_wire(obj.get("error")))
    if kind == "published":
        return Published(get_field(obj, "id", int), error_from_wire(obj.get("error")))
    raise ProtocolError(f"unknown reply type {str(kind)[:40]!r}")


if __name__ == "__main__":  # the child's entry point under this name too
    from siteline.core.mqtt_intake_child import main

    raise SystemExit(main())
