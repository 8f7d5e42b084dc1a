"""What the outbox holds: items, their states and priorities, and the checks every new item passes.

An item's payload is kept as canonical JSON text (sorted keys, no spaces, UTF-8) so that its SHA-256
is the same on every machine: the hash travels with the item and the control plane can check it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from siteline.core.errors import SitelineError


class Priority(IntEnum):
    """Smaller drains first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


KIND_PRIORITY: dict[str, Priority] = {
    "audit": Priority.HIGH,
    "flash-result": Priority.HIGH,
    "rollback-result": Priority.HIGH,
    "provisioning": Priority.HIGH,
    "csr": Priority.HIGH,
    "note": Priority.NORMAL,
    "snapshot": Priority.NORMAL,
    "diagnostics": Priority.NORMAL,
    "telemetry": Priority.LOW,
}
KIND_RE = r"^[a-z][a-z0-9-]{0,31}$"  # a kind is an MQTT topic level: no '/', '+', '#'
_KIND = re.compile(KIND_RE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PAYLOAD_BYTES = 1 << 20  # canonical JSON; an item must fit one MQTT message with room to spare
MAX_NAME_CHARS = 128  # site and device
MAX_ERROR_CHARS = 2000  # last_error and attempt errors are shown, not archived
_SQLITE_FULL = 13
# Key words that mark a value as a secret (matched inside key names, case and '_'/'-' ignored).
SECRET_WORDS = ("password", "passphrase", "passwd", "secret", "token", "privatekey", "apikey")
_SECRET_KEY = re.compile("|".join(SECRET_WORDS).replace("key", "[-_]?key"), re.IGNORECASE)
VAULT_PREFIX = "vault:"


class State(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # permanent, until someone asks for a retry


class OutboxError(SitelineError):
    """Something went wrong with the outbox; ``message`` says what, ``hint`` what to do."""


class InvalidItemError(OutboxError):
    """An item was refused before anything was written (bad kind, names, payload, a secret in it)."""


class OutboxFullError(OutboxError):
    """The disk holding the outbox is full; the write was rolled back, nothing saved before was lost."""


class OutboxTooNewError(OutboxError):
    """The file was written by a newer Siteline: refused, not touched."""


@dataclass(frozen=True)
class NewItem:
    kind: str
    site: str
    device: str
    payload: Mapping[str, Any]
    priority: Priority | None = None  # None: KIND_PRIORITY (NORMAL for a kind not listed)
    vault_refs: tuple[str, ...] = ()  # names of vault entries the payload refers to (never values)


@dataclass(frozen=True)
class Item:
    id: str  # UUIDv7 text: the id consumers deduplicate on
    kind: str
    site: str
    device: str
    created: float
    priority: int
    payload: str  # canonical JSON text
    payload_sha256: str
    state: State
    attempts: int
    last_error: str
    sent_at: float | None
    vault_refs: tuple[str, ...] = ()

    def payload_obj(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True)
class Attempt:
    at: float
    outcome: str  # "sent", "retry" (will be tried again), "failed" (permanent)
    error: str
    bytes: int


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    sent: int
    failed: int
    pending_by_priority: dict[int, int]
    oldest_pending: float | None
    bytes_this_month: int
    month: str  # "2026-11" (UTC)


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int
    rejected: list[str] = field(default_factory=list)  # "line 7: <reason>", one per line not imported


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise InvalidItemError(
            f"'{str(kind)[:40]}' is not a valid item kind.",
            "A kind is 1-32 characters of a-z, 0-9 and '-', starting with a letter (it becomes an MQTT topic level).",
        )
    return kind


def check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise InvalidItemError(
            f"The {what} name {str(value)[:40]!r} is not valid.",
            f"Give a non-empty {what} name of at most {MAX_NAME_CHARS} characters.",
        )
    if _CONTROL.search(value):
        raise InvalidItemError(f"The {what} name contains control characters.", f"Type the {what} name again.")
    return value


def canonical_payload(payload: object) -> str:
    """The payload as canonical JSON, refused when it is not a JSON object, too big, or holds a secret."""
    if not isinstance(payload, Mapping):
        raise InvalidItemError("An item's payload must be a JSON object (a mapping).", "Wrap the value in a dict.")
    try:
        text = canonical_json(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidItemError(
            f"The payload cannot be written as JSON: {exc}.",
            "Use only strings (as keys too), numbers (no NaN), booleans, None, lists and dicts.",
        ) from exc
    size = len(text.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidItemError(
            f"The payload is {size:,} bytes of JSON, over the outbox limit of {MAX_PAYLOAD_BYTES:,}.",
            "Store big data (logs, images) as a file and put its name and hash in the payload.",
        )
    # Walk the payload only when a secret word appears somewhere in its text (keys are in the text too).
    where = find_secret(payload) if _SECRET_KEY.search(text) else None
    if where is not None:
        raise InvalidItemError(
            f"The payload field '{where}' looks like a secret: secrets never go into the outbox, because it is "
            "sent to the control plane and kept on disk in clear.",
            "Keep the secret in the vault and put the reference 'vault:<entry name>' in the payload instead.",
        )
    return text


def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _safe_secret_value(value: Any) -> bool:
    """What may stand under a secret-looking key: nothing, a flag, or vault references."""
    if value is None or isinstance(value, bool) or value == "":
        return True
    if isinstance(value, str):
        return value.startswith(VAULT_PREFIX) and len(value) > len(VAULT_PREFIX)
    if isinstance(value, Mapping):
        return all(_safe_secret_value(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_safe_secret_value(v) for v in value)
    return False


def find_secret(obj: Any, path: str = "") -> str | None:
    """The dotted path of the first secret-looking field holding something other than a vault reference."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _is_secret_key(key) and not _safe_secret_value(value):
                return here
            found = find_secret(value, here)
            if found is not None:
                return found
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            found = find_secret(value, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def check_vault_refs(refs: object) -> tuple[str, ...]:
    if not isinstance(refs, list | tuple) or not all(isinstance(r, str) and 0 < len(r) <= 256 for r in refs):
        raise InvalidItemError("vault_refs must be a list of vault entry names.", "Pass entry names, not values.")
    return tuple(refs)


def resolve_priority(kind: str, priority: object) -> Priority:
    if priority is None:
        return KIND_PRIORITY.get(kind, Priority.NORMAL)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidItemError(f"Priority {priority!r} is not 0, 1 or 2.", "Use Priority.HIGH/NORMAL/LOW.")
    try:
        return Priority(priority)
    except ValueError as exc:
        raise InvalidItemError(f"Priority {priority!r} is not 0, 1 or 2.", "Use Priority.HIGH/NORMAL/LOW.") from exc


def mount_of(path: Path) -> Path:
    here = path.resolve().parent
    while not os.path.ismount(here) and here.parent != here:
        here = here.parent
    return here


def is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        return code == _SQLITE_FULL or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def full_error(path: Path, exc: BaseException) -> OutboxFullError:
    return OutboxFullError(
        f"The disk holding the outbox is full; free space on {mount_of(path)}. Everything saved before is kept "
        f"(nothing already saved was lost); this last change was not saved ({exc}).",
        "Free some space, then do it again.",
    )


def check_item(item: NewItem) -> tuple[NewItem, str, int, tuple[str, ...]]:
    """Everything ``put`` refuses, checked before a transaction starts."""
    check_kind(item.kind)
    check_name("site", item.site)
    check_name("device", item.device)
    payload = canonical_payload(item.payload)
    return item, payload, int(resolve_priority(item.kind, item.priority)), check_vault_refs(item.vault_refs)
