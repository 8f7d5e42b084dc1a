"""The audit trail: every action that changes a device or Siteline's trust, hash-chained, never edited.

A record is written in ONE outbox transaction (``BEGIN IMMEDIATE``: two Siteline processes cannot
fork the chain) together with an outbox item of kind ``audit`` carrying the record, so the control
plane receives it and can check the chain too. Records are never updated, deleted or pruned.

The hash of a record (lower-case hex SHA-256) is taken over the UTF-8 bytes of this JSON array, written
with no spaces and non-ASCII characters as they are (``json.dumps(..., separators=(",", ":"),
ensure_ascii=False)``), every field except the hash itself::

    ["siteline-audit-v1", seq, id, ts_us, technician, site, device, action, detail, result, prev_hash]

``seq`` counts from 1; ``id`` is the record's outbox item id (the envelope's id, a UUIDv7); ``ts_us``
is the time in integer microseconds since the epoch (UTC); ``detail`` is the canonical JSON text of
the detail object (sorted keys, no spaces); ``prev_hash`` is the previous record's hash, 64 zeros for
record 1. Only strings and integers: any language recomputes it. The item's payload holds every field
but the id and the hash (``detail_json`` is the hashed text), plus ``trail``, a random id of this
laptop's chain: a consumer recomputes each hash and checks that the next record's ``prev_hash`` names it.

What a hash chain alone cannot catch is the loss of its END: deleting the last records leaves a
shorter chain that is still intact. So every write also stores the head (seq and hash of the last
record) in ``meta`` in the same transaction, and the outbox items hold a copy of every record: verify
compares both. Someone who deletes the tail AND rewrites the head AND deletes the outbox items is only
caught by the control plane, which already has the records it received.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from siteline.core.errors import SitelineError
from siteline.core.outbox.model import InvalidItemError, NewItem, canonical_json, find_secret
from siteline.core.outbox.store import Outbox, Tx

__all__ = [
    "ACTIONS", "INPUT_NOT_RECORDED", "AuditError", "AuditRecord", "AuditTrail", "AuditUnreadable", "VerifyResult",
    "record_hash",
]

CONNECT = "connect"
DISCONNECT = "disconnect"
CONSOLE_COMMAND = "console-command"
FILE_PUT = "file-put"
FILE_GET = "file-get"
HOST_KEY_PINNED = "host-key-pinned"
HOST_KEY_REPLACED = "host-key-replaced"
TRUSTED_KEY_ADDED = "trusted-key-added"
VAULT_CREATED = "vault-created"
VAULT_EXPORTED = "vault-exported"
VAULT_IMPORTED = "vault-imported"
NOTE = "note"
FLASH = "flash"
ROLLBACK = "rollback"
SLOT_MARK = "slot-mark"
OVERRIDE = "override"
PROVISION_STEP = "provision-step"
PROVISION = "provision"
PROVISION_CERTIFICATE = "provision-certificate"
FLASH_STEP = "flash-step"
ROLLOUT = "rollout"
IMAGE_IMPORT = "image-import"
IMAGE_REMOVE = "image-remove"
BOOT_COUNTERS_RESET = "boot-counters-reset"
ACTIONS = frozenset({
    CONNECT, DISCONNECT, CONSOLE_COMMAND, FILE_PUT, FILE_GET, HOST_KEY_PINNED, HOST_KEY_REPLACED, TRUSTED_KEY_ADDED,
    VAULT_CREATED, VAULT_EXPORTED, VAULT_IMPORTED, NOTE, FLASH, ROLLBACK, SLOT_MARK, OVERRIDE, PROVISION_STEP,
    PROVISION, PROVISION_CERTIFICATE,
    FLASH_STEP, ROLLOUT, IMAGE_IMPORT, IMAGE_REMOVE, BOOT_COUNTERS_RESET,
})
# What the console recorder's withheld lines become (console_audit.py): the fact, never the text.
INPUT_NOT_RECORDED = "input not recorded: echo was off"

HASH_VERSION = "siteline-audit-v1"
ZERO_HASH = "0" * 64
HEAD_KEY = "audit_head"  # meta: {"seq": n, "hash": h, "trail": id} of the last record, written with it
KIND = "audit"
MAX_FIELD_CHARS = 200  # action and result
_ACTION = re.compile(r"^[a-z][a-z0-9-]{0,63}$")  # the constants above, or a plugin's own in the same form
_T = TypeVar("_T")
_COLUMNS = "seq, id, ts, technician, site, device, action, detail, result, prev_hash, hash"


class AuditError(SitelineError):
    """A record could not be written or the trail read."""


class AuditUnreadable(AuditError):  # noqa: N818 (reads as the state it names)
    """The database holding the trail cannot be opened or read (not a database, unreadable, damaged)."""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    id: str  # the same UUIDv7 as the record's outbox item
    ts: float  # UNIX seconds, UTC
    technician: str
    site: str
    device: str
    action: str
    detail: str  # canonical JSON text of an object
    result: str
    prev_hash: str
    hash: str

    def detail_obj(self) -> Any:
        return json.loads(self.detail)

    def describe(self) -> str:
        """How a person names it: "connect gw-01 at 2026-11-27 10:02Z"."""
        return f"{self.action} {self.device} at {_minute(self.ts)}"

    def as_json(self) -> dict[str, Any]:
        """The whole record for ``siteline audit list --json``: its outbox copy plus id and hash."""
        copy = outbox_copy(self.seq, self.ts, self.technician, self.site, self.device, self.action, self.detail,
                           self.result, self.prev_hash)
        return {**copy, "id": self.id, "hash": self.hash}


def outbox_copy(seq: int, ts: float, technician: str, site: str, device: str, action: str, detail: str,
                result: str, prev_hash: str) -> dict[str, Any]:
    """The payload of a record's outbox item: every field the hash covers but the id, which is the
    item's own id (the envelope's), and the hash, which needs that id. A consumer recomputes the hash
    from these plus the id and checks that the next record's ``prev_hash`` names it."""
    return {
        "seq": seq, "ts": _iso(ts), "ts_us": ts_micros(ts), "technician": technician, "site": site,
        "device": device, "action": action, "detail": json.loads(detail), "detail_json": detail, "result": result,
        "prev_hash": prev_hash, "hash_version": HASH_VERSION,
    }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # records checked
    first_bad_seq: int | None = None
    reason: str = ""
    last_ts: float | None = None  # the newest record's time (None: an empty trail)
    # Outbox files set aside as damaged beside this one (outbox.sqlite3.damaged-*): the trail here restarted
    # after them, so "intact" covers only this file. Never repaired or opened here; the person keeps them.
    damaged: tuple[Path, ...] = ()

    @property
    def clean(self) -> bool:
        """Intact, and no earlier outbox (with an earlier part of the trail) was set aside as damaged."""
        return self.ok and not self.damaged


def ts_micros(ts: float) -> int:
    return round(ts * 1_000_000)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _minute(ts: float) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%MZ")
    except (OverflowError, OSError, ValueError):
        return "an impossible time"


def record_hash(seq: int, record_id: str, ts: float, technician: str, site: str, device: str, action: str,
                detail: str, result: str, prev_hash: str) -> str:
    """The documented hash (see the module doc) of one record's fields."""
    return _hash([seq, record_id, ts_micros(ts), technician, site, device, action, detail, result, prev_hash])


def _hash(values: list[Any]) -> str:
    fields = [HASH_VERSION, *values]
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_text(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD_CHARS:
        raise AuditError(f"The audit {what} {str(value)[:40]!r} is not valid.",
                         f"Give a non-empty {what} of at most {MAX_FIELD_CHARS} characters (a bug in the caller).")
    return value


def _detail_text(detail: Mapping[str, Any] | None) -> str:
    obj = dict(detail or {})
    where = find_secret(obj)
    if where is not None:
        raise AuditError(
            f"The audit detail field '{where}' looks like a secret: the audit trail is kept in clear and sent to "
            "the control plane, so secrets never go into it.",
            "Record a reference 'vault:<entry name>' instead of the value.",
        )
    try:
        return canonical_json(obj)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"The audit detail cannot be written as JSON: {exc}.",
                         "Use strings, numbers, booleans, None, lists and dicts (a bug in the caller).") from exc


class AuditTrail:
    """Append records and read or check the trail of one outbox file."""

    def __init__(self, outbox: Outbox, technician: str) -> None:
        self.outbox = outbox
        self.technician = _check_text("technician", technician)

    def record(self, action: str, *, device: str, site: str, detail: Mapping[str, Any] | None = None,
               result: str = "ok") -> AuditRecord:
        """Append one record and its outbox item in one transaction; durable when it returns."""
        with self.outbox.transaction() as tx:
            return self.record_in(tx, action, device=device, site=site, detail=detail, result=result)

    def record_in(self, tx: Tx, action: str, *, device: str, site: str, detail: Mapping[str, Any] | None = None,
                  result: str = "ok") -> AuditRecord:
        """Append one record inside the caller's transaction: an action's own outbox item (a note, a flash
        result) and its audit record are then kept together or not at all."""
        if not isinstance(action, str) or not _ACTION.match(action):
            raise AuditError(f"{str(action)[:40]!r} is not an audit action.",
                             "Use one of the action constants in siteline.core.audit (a-z, 0-9 and '-').")
        _check_text("result", result)
        detail_text, tech = _detail_text(detail), self.technician
        try:
            seq, prev, trail = _head(tx.conn)
            ts = time.time()
            copy = {**outbox_copy(seq, ts, tech, site, device, action, detail_text, result, prev), "trail": trail}
            item = tx.put(NewItem(kind=KIND, site=site, device=device, payload=copy))
            digest = record_hash(seq, item.id, ts, tech, site, device, action, detail_text, result, prev)
            record = AuditRecord(seq, item.id, ts, tech, site, device, action, detail_text, result, prev, digest)
            _insert(tx, record, trail)
        except InvalidItemError as exc:
            raise AuditError(f"The audit record was not written: {exc.message}", exc.hint) from exc
        return record

    def records(self, device: str | None = None, limit: int = 1000) -> list[AuditRecord]:
        """Newest first; one device's or all (see audit_verify.read_records)."""
        from siteline.core.audit_verify import read_records  # it imports this module

        return read_records(self.outbox.path, device, limit)

    def verify(self) -> VerifyResult:
        """Walk the whole chain (all devices: one chain); see audit_verify.verify_file."""
        from siteline.core.audit_verify import verify_file

        return verify_file(self.outbox.path)


class _Head(NamedTuple):
    """What ``meta`` keeps of the trail's end, written with every record: the last seq and hash, and the
    trail's id (a random id made with record 1: the control plane keeps one chain per laptop, and the
    outbox may also hold a colleague's audit items imported from a hand-carry file)."""

    seq: int
    hash: str
    trail: str


def _head(conn: sqlite3.Connection) -> _Head:
    """The next seq, the hash it links to and the trail id: after the last row, or after the head in meta
    if that is further (rows at the end were deleted: the gap stays visible instead of being papered over)."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    last_seq, last_hash = (int(row[0]), str(row[1])) if row else (0, ZERO_HASH)
    meta = _meta_head(conn)
    if meta is not None and meta.seq > last_seq:
        last_seq, last_hash = meta.seq, meta.hash
    trail = meta.trail if meta is not None and meta.trail else uuid.uuid4().hex
    return _Head(last_seq + 1, last_hash, trail)


def _meta_head(conn: sqlite3.Connection) -> _Head | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
    if row is None:
        return None
    try:
        head = json.loads(row[0])
        return _Head(int(head["seq"]), str(head["hash"]), str(head.get("trail", "")))
    except (ValueError, TypeError, KeyError, AttributeError):
        return _Head(-1, "", "")  # unreadable: verify says so; a writer continues after its own rows


def _insert(tx: Tx, record: AuditRecord, trail: str) -> None:
    """The row and the head, in the transaction that put the outbox copy."""
    tx.conn.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (record.seq, record.id, record.ts, record.technician, record.site, record.device, record.action,
                     record.detail, record.result, record.prev_hash, record.hash))
    tx.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (HEAD_KEY, json.dumps({"seq": record.seq, "hash": record.hash, "trail": trail})))


def _row_to_record(row: tuple[Any, ...]) -> AuditRecord | None:
    """A row as a record, or None when a column holds the wrong type (someone wrote into the table)."""
    seq, rid, ts, tech, site, device, action, detail, result, prev, digest = row
    if not isinstance(seq, int) or not isinstance(ts, int | float) or isinstance(ts, bool):
        return None
    texts = (rid, tech, site, device, action, detail, result, prev, digest)
    if not all(isinstance(t, str) for t in texts):
        return None
    return AuditRecord(seq, rid, float(ts), tech, site, device, action, detail, result, prev, digest)
