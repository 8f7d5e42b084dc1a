"""The hand-carry file: outbox items moved on a USB stick when there is no network at all.

One gzip'd JSON-lines file. Line 1 is a header::

    {"format":"siteline-outbox","version":1,"exported":"2026-11-27T09:00:00.000000Z","count":N}

then one item per line: id, kind, site, device, created (ISO 8601, UTC, "Z"), priority, payload (the
canonical JSON text, so its hash can be checked), payload_sha256 and vault_refs. Reading trusts
nothing: every line is checked (fields, sizes, the payload's hash, no secrets); a file that is cut
short or unreadable imports nothing and says which line broke; a newer format is refused.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siteline.core.atomic import atomic_file
from siteline.core.outbox.ids import is_uuid7
from siteline.core.outbox.model import (
    MAX_PAYLOAD_BYTES,
    InvalidItemError,
    Item,
    OutboxError,
    State,
    canonical_json,
    canonical_payload,
    check_kind,
    check_name,
    check_vault_refs,
    resolve_priority,
    sha256_text,
)

FORMAT = "siteline-outbox"
VERSION = 1
MAX_LINE_BYTES = 8 * MAX_PAYLOAD_BYTES  # a payload's JSON quoted once more, with room for escapes
MAX_ITEMS = 1_000_000
# Everything read is held until the one import transaction: a small gzip that unpacks to gigabytes (a bomb,
# or a mistake) stops here. 512 MiB is about 500,000 typical items; a bigger outbox is carried in parts.
MAX_TOTAL_BYTES = 512 * 1024 * 1024
_FIELDS = ("id", "kind", "site", "device", "created", "priority", "payload", "payload_sha256")


class HandCarryError(OutboxError):
    """The file cannot be imported at all (not ours, too new, cut short); nothing was imported."""


@dataclass
class Parsed:
    items: list[tuple[int, Item]] = field(default_factory=list)  # (line number, item), in file order
    rejected: list[str] = field(default_factory=list)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_iso(text: object) -> float:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError("created must be an ISO 8601 UTC time ending in 'Z'")
    return datetime.fromisoformat(text[:-1] + "+00:00").timestamp()


def _line(item: Item) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "site": item.site, "device": item.device, "created": iso(item.created),
            "priority": item.priority, "payload": item.payload, "payload_sha256": item.payload_sha256,
            "vault_refs": list(item.vault_refs)}


def write_file(path: Path, items: Sequence[Item]) -> int:
    """Write atomically (temp file, fsync, rename): a cut-off export never leaves a half file under ``path``."""
    header = {"format": FORMAT, "version": VERSION, "exported": iso(datetime.now(tz=UTC).timestamp()),
              "count": len(items)}
    with atomic_file(path, 0o600) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:  # payloads inside
        gz.write((canonical_json(header) + "\n").encode())
        for item in items:
            gz.write((canonical_json(_line(item)) + "\n").encode())
    return len(items)


def _broken(path: Path, line: int, why: str) -> HandCarryError:
    return HandCarryError(f"{path.name} cannot be imported: {why} (at line {line}). Nothing was imported.",
                          "Export the file again on the other machine and copy it whole.")


def _check_header(path: Path, first: bytes) -> int:
    try:
        header = json.loads(first)
    except ValueError as exc:
        raise _broken(path, 1, "it is not a Siteline outbox export") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _broken(path, 1, "it is not a Siteline outbox export")
    version, count = header.get("version"), header.get("count")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _broken(path, 1, f"its format version {version!r} is not valid")
    if version > VERSION:
        raise HandCarryError(
            f"{path.name} was exported by a newer Siteline (format version {version}; this one reads {VERSION}). "
            "Nothing was imported.", "Update Siteline on this machine, then import it again.")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_ITEMS:
        raise _broken(path, 1, f"its item count {count!r} is not valid")
    return count


def _item(obj: Any) -> Item:
    """One exported line as an Item (pending, no attempts); ValueError/InvalidItemError say what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [f for f in _FIELDS if f not in obj]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    if not isinstance(obj["id"], str) or not is_uuid7(obj["id"]):
        raise ValueError("id is not a UUIDv7")
    payload = obj["payload"]
    if not isinstance(payload, str) or len(payload.encode("utf-8", "surrogatepass")) > MAX_PAYLOAD_BYTES:
        raise ValueError("payload is not text, or too big")
    if sha256_text(payload) != obj["payload_sha256"]:
        raise ValueError("payload does not match its SHA-256 (changed after export?)")
    if canonical_payload(json.loads(payload)) != payload:
        raise ValueError("payload is not canonical JSON")
    kind = check_kind(obj["kind"])
    return Item(id=obj["id"], kind=kind, site=check_name("site", obj["site"]),
                device=check_name("device", obj["device"]), created=parse_iso(obj["created"]),
                priority=int(resolve_priority(kind, _priority(obj["priority"]))), payload=payload,
                payload_sha256=obj["payload_sha256"], state=State.PENDING, attempts=0, last_error="", sent_at=None,
                vault_refs=check_vault_refs(obj.get("vault_refs", [])))


def _priority(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("priority is not 0, 1 or 2")
    return value


def read_file(path: Path) -> Parsed:
    """Read and check the whole file before anything is written; raise HandCarryError when it is unusable."""
    parsed = Parsed()
    line_no = 1
    try:
        with gzip.open(path, "rb") as gz:
            count = _check_header(path, gz.readline(MAX_LINE_BYTES + 1))
            total = 0
            for line_no, raw in enumerate(iter(lambda: gz.readline(MAX_LINE_BYTES + 1), b""), start=2):
                if len(raw) > MAX_LINE_BYTES or not raw.endswith(b"\n"):
                    raise _broken(path, line_no, "the line is too long or cut short")
                total += len(raw)
                if total > MAX_TOTAL_BYTES:
                    raise _broken(path, line_no, f"it unpacks to more than {MAX_TOTAL_BYTES >> 20} MiB; export "
                                  "in parts")
                if line_no - 1 > count:
                    raise _broken(path, line_no, f"there are more items than the {count} the header announces")
                _parse_line(parsed, line_no, raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _broken(path, line_no + 1, f"the file is cut short or damaged ({exc})") from exc
    except OSError as exc:
        raise HandCarryError(f"{path} cannot be read: {exc}.", "Check the file name and the USB stick.") from exc
    seen = len(parsed.items) + len(parsed.rejected)
    if seen != count:
        raise _broken(path, line_no + 1, f"the header announces {count} items but the file holds {seen}; it was "
                      "cut short")
    return parsed


def _parse_line(parsed: Parsed, line_no: int, raw: bytes) -> None:
    try:
        parsed.items.append((line_no, _item(json.loads(raw))))
    except InvalidItemError as exc:
        parsed.rejected.append(f"line {line_no}: {exc.message}")
    except (ValueError, TypeError, OverflowError) as exc:
        parsed.rejected.append(f"line {line_no}: {exc}")
