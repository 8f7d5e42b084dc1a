"""The device-side MQTT contract, shared by the MQTT transport and the simulator.

For a device whose target is ``mqtt://broker/edge/<site>/<device>`` (the *prefix*):

``<prefix>/status``            retained, QoS 1: ``{"state": "online"|"offline", "ts": <epoch>}``;
                               the device sets "offline" as its MQTT will.
``<prefix>/telemetry/<metric>`` QoS 1, metric one of cpu, signal, link: ``{"ts": <epoch>, ...}``.
``<prefix>/cmd/req``           QoS 1, from Siteline: ``{"id", "cmd", "timeout", "reply_to"}``.
``<reply_to>``                 QoS 1, from the device: ``{"id", "exit_code", "stdout", "stderr", "truncated"}``.

Every payload is UTF-8 JSON. Anything else on these topics is dropped with a log line.

A device answers only requests that arrive on its own ``<prefix>/cmd/req``, are not retained (a
retained command would run again on every reconnect) and whose ``reply_to`` lies under
``<prefix>/cmd/res/``. Who may send requests is decided by the broker: security rests on broker
authentication and ACLs (docs/mqtt-device-contract.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from siteline.core.transports.base import Result

MAX_PAYLOAD = 4 * 1024 * 1024
MAX_COMMAND = 64 * 1024
METRICS = ("cpu", "signal", "link")
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class ContractError(ValueError):
    """A payload that does not follow the contract."""


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


def telemetry_topic(prefix: str, metric: str) -> str:
    return f"{prefix}/telemetry/{metric}"


def request_topic(prefix: str) -> str:
    return f"{prefix}/cmd/req"


def reply_topic(prefix: str, client_id: str) -> str:
    return f"{prefix}/cmd/res/{client_id}"


def check_request_delivery(prefix: str, topic: str, retained: bool) -> None:
    """Raise ContractError unless a request arrived as the device should take it.

    Some brokers (amqtt) hand a new client retained messages for topics it never subscribed to,
    so the topic is checked here and not assumed from the subscription.
    """
    if topic != request_topic(prefix):
        raise ContractError(f"message on {topic[:120]!r} is not a request for {prefix}")
    if retained:
        raise ContractError("a retained request is never run: it would run again on every reconnect")


def check_reply_to(prefix: str, reply_to: str) -> None:
    """Raise ContractError unless ``reply_to`` is ``<prefix>/cmd/res/<one or more levels>``.

    A device must not publish wherever a request says: that would let anyone who can send a
    request make the device write to other devices' or the control plane's topics.
    """
    base = reply_topic(prefix, "")
    rest = reply_to[len(base):] if reply_to.startswith(base) else ""
    if not rest or any(not level or level in ("+", "#") for level in rest.split("/")) or "\0" in rest:
        raise ContractError(f"reply_to {reply_to[:120]!r} is not under {base}; the request is dropped")


@dataclass(frozen=True)
class CommandRequest:
    id: str
    cmd: str
    timeout: float
    reply_to: str

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "cmd": self.cmd, "timeout": self.timeout, "reply_to": self.reply_to}).encode()


@dataclass(frozen=True)
class CommandReply:
    id: str
    result: Result
    truncated: bool = False

    def encode(self) -> bytes:
        r = self.result
        doc = {"id": self.id, "exit_code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr}
        return json.dumps({**doc, "truncated": self.truncated}).encode()


def _load(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise ContractError(f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"payload is not UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ContractError("payload is not a JSON object")
    return doc


def decode_request(payload: bytes) -> CommandRequest:
    doc = _load(payload)
    rid, cmd, timeout, reply_to = doc.get("id"), doc.get("cmd"), doc.get("timeout", 30), doc.get("reply_to")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise ContractError("request has no valid id")
    if not isinstance(cmd, str) or not cmd or len(cmd) > MAX_COMMAND:
        raise ContractError("request has no valid cmd")
    if not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ContractError("request timeout must be 0 < t <= 3600 seconds")
    if not isinstance(reply_to, str) or not reply_to or "#" in reply_to or "+" in reply_to:
        raise ContractError("request has no valid reply_to topic")
    return CommandRequest(rid, cmd, float(timeout), reply_to)


def decode_reply(payload: bytes) -> CommandReply:
    doc = _load(payload)
    rid, code = doc.get("id"), doc.get("exit_code")
    stdout, stderr = doc.get("stdout", ""), doc.get("stderr", "")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise ContractError("reply has no valid id")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ContractError("reply has no integer exit_code")
    if not isinstance(stdout, str) or not isinstance(stderr, str):
        raise ContractError("reply stdout/stderr must be text")
    return CommandReply(rid, Result(code, stdout, stderr), bool(doc.get("truncated", False)))
