"""Vault entries: names, kinds, and the JSON the encrypted body holds."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from siteline.core.vault.errors import VaultCorrupt, VaultError

KINDS = ("password", "ssh-key", "key-passphrase", "mqtt", "token", "provisioning", "other")
# Slash-separated segments such as device/<site>/<device>/password. No spaces or ':' so that a
# reference "vault:<name>" stays one unambiguous token in settings and payloads.
_SEGMENT = r"[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*"
NAME_RE = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
MAX_NAME = 200
MAX_VALUE = 1024 * 1024  # an SSH key is a few KiB; a megabyte is plenty and bounds the file
REF_PREFIX = "vault:"
BODY_FORMAT = "siteline-vault-entries"


@dataclass(frozen=True)
class EntryInfo:
    """What may be shown about an entry: everything but its value."""

    name: str
    kind: str
    created: float
    updated: float
    note: str


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    value: str
    created: float
    updated: float
    note: str = ""

    def info(self) -> EntryInfo:
        return EntryInfo(self.name, self.kind, self.created, self.updated, self.note)

    def __repr__(self) -> str:  # a stray log line or traceback must not print the value
        return f"Entry(name={self.name!r}, kind={self.kind!r}, value=<hidden>)"


def check_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_RE.match(name):
        raise VaultError(
            f"{name!r} is not a valid vault entry name",
            "use letters, digits and . _ @ + - in segments joined by '/', e.g. device/site-a/gw1/password",
        )
    return name


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise VaultError(f"unknown entry kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    return kind


def check_value(value: str) -> str:
    if not isinstance(value, str):
        raise VaultError("a vault value must be text", "store binary keys as PEM or base64 text")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE:
        raise VaultError("the value is larger than 1 MiB", "a vault holds passwords and keys, not files")
    return value


def ref(name: str) -> str:
    """The string that points at an entry from settings or outbox payloads (never the value)."""
    return REF_PREFIX + check_name(name)


def parse_ref(text: str) -> str | None:
    """The entry name inside "vault:<name>", or None when ``text`` is not a reference."""
    if not text.startswith(REF_PREFIX):
        return None
    name = text[len(REF_PREFIX):]
    return name if len(name) <= MAX_NAME and NAME_RE.match(name) else None


def dump_entries(entries: dict[str, Entry]) -> bytes:
    rows = [
        {"name": e.name, "kind": e.kind, "value": e.value, "created": e.created, "updated": e.updated, "note": e.note}
        for e in sorted(entries.values(), key=lambda e: e.name)
    ]
    return json.dumps({"format": BODY_FORMAT, "entries": rows}, separators=(",", ":")).encode()


def load_entries(data: bytes) -> dict[str, Entry]:
    """Parse a decrypted body. It passed the cipher's check, so a bad shape means a bug or a foreign writer."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != BODY_FORMAT or not isinstance(doc.get("entries"), list):
            raise ValueError("not a vault body")
        return {e.name: e for e in (_entry(row) for row in doc["entries"])}
    except (ValueError, TypeError, KeyError, VaultError) as exc:
        raise VaultCorrupt("the vault decrypted but its contents are not in the expected form",
                           "restore it from your export (siteline vault import)") from exc


def _entry(row: Any) -> Entry:
    if not isinstance(row, dict):
        raise ValueError("entry is not an object")
    created, updated = row["created"], row["updated"]
    if not isinstance(created, int | float) or not isinstance(updated, int | float):
        raise ValueError("bad times")
    note = row.get("note", "")
    if not isinstance(note, str):
        raise ValueError("bad note")
    return Entry(check_name(row["name"]), check_kind(row["kind"]), check_value(row["value"]),
                 float(created), float(updated), note)
