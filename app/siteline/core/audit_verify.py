"""Reading and verifying the audit trail without touching the file: no vault, no migration, no lock left.

Split from audit.py (which writes the trail); the functions are re-exported there.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from siteline.core.audit import (
    _COLUMNS,
    KIND,
    ZERO_HASH,
    AuditRecord,
    AuditUnreadable,
    VerifyResult,
    _hash,
    _Head,
    _meta_head,
    _row_to_record,
    record_hash,
)

_T = TypeVar("_T")

# -- reading the file without touching it ------------------------------------------------------------
#
# Every read (verify's walk AND the head it compares with, a listing) happens inside ONE read transaction: in
# WAL mode that is one consistent snapshot, so a Siteline process appending meanwhile is never seen half-way
# (rows of one moment, the head of the next: a false "deleted from the end").
#
# A WAL database with no -wal file beside it has no open connection. A read-only SQLite open would create a
# -wal and -shm it then cannot remove; ``immutable=1`` reads the file alone, without SQLite's locks. That is
# safe while no writer touches the main file, which this module makes sure of: it holds a read lock on the
# byte range where SQLite keeps its SHARED lock for the whole read. A WAL writer changes the main file only
# by checkpointing its -wal; it deletes the -wal only on close, under an EXCLUSIVE lock on that range, which
# the read lock refuses. So when there is still no -wal after the read, no writer checkpointed into the file
# during it; when one appeared, the read is thrown away and done again through SQLite's locks.

_SHARED_FIRST, _SHARED_SIZE = 0x40000002, 510  # SQLite's unix locking bytes (os_unix.c: PENDING_BYTE + 2, 510)
_ATTEMPTS = 5


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def _has_audit(conn: sqlite3.Connection) -> bool:
    return _has_table(conn, "audit")


def _unreadable(path: Path, exc: BaseException) -> AuditUnreadable:
    return AuditUnreadable(f"The audit trail in {path} cannot be read: {exc}.",
                           "Check the path and its permissions; a damaged file needs the copy the control plane has.")


def _idle_wal(path: Path) -> bool:
    """A WAL-mode database (header bytes 18 and 19 are 2) with no -wal file beside it: no writer."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x02\x02" and not Path(f"{path}-wal").exists()


def _shared_lock(path: Path) -> int | None:
    """An open descriptor holding a read lock on SQLite's SHARED range (see above), or None when none can be
    had within a second (a writer closing holds it exclusively for a moment) or on a system without fcntl."""
    try:
        import fcntl  # Unix only: elsewhere the read goes through SQLite's own locks
    except ImportError:
        return None
    fd = os.open(path, os.O_RDONLY)
    for _ in range(100):
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, _SHARED_SIZE, _SHARED_FIRST, os.SEEK_SET)
            return fd
        except OSError:
            time.sleep(0.01)
    os.close(fd)
    return None


def _connect(path: Path, immutable: bool) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=15.0)
    try:
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _attempt(path: Path, read: Callable[[sqlite3.Connection], _T], last: bool) -> tuple[bool, _T | None]:
    """One read in one transaction: (done, value). Not done when a writer appeared during an unlocked read."""
    lock = _shared_lock(path) if _idle_wal(path) and not last else None
    immutable = lock is not None and _idle_wal(path)  # checked again under the lock
    try:
        conn = _connect(path, immutable)
        try:
            conn.execute("BEGIN")
            value = read(conn)
            conn.execute("COMMIT")
            # Before closing the connection: closing any descriptor of the file drops this process's locks.
            return (not immutable or not Path(f"{path}-wal").exists()), value
        finally:
            conn.close()
    finally:
        if lock is not None:
            os.close(lock)


def _snapshot(path: Path, read: Callable[[sqlite3.Connection], _T]) -> _T | None:
    """``read(conn)`` on one consistent snapshot of the file, read-only; None when there is no file (an empty
    trail: nothing is created). Raises AuditUnreadable when it cannot be read."""
    path = Path(path)
    for attempt in range(_ATTEMPTS):
        if not path.exists() or path.stat().st_size == 0:
            return None
        try:
            done, value = _attempt(path, read, last=attempt == _ATTEMPTS - 1)
        except (sqlite3.Error, OSError) as exc:
            raise _unreadable(path, exc) from exc
        if done:
            return value
    raise AssertionError("unreachable: the last attempt reads through SQLite's locks")  # pragma: no cover


def read_records(path: Path, device: str | None = None, limit: int = 1000) -> list[AuditRecord]:
    """Newest first, from the committed trail through a read-only connection (no vault, nothing created).
    A row someone filled with values of the wrong type is left out here; verify names it."""
    where, params = ("WHERE device = ?", [device]) if device is not None else ("", [])

    def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        if not _has_audit(conn):
            return []
        return conn.execute(f"SELECT {_COLUMNS} FROM audit {where} ORDER BY seq DESC LIMIT ?",
                            [*params, max(0, int(limit))]).fetchall()

    rows = _snapshot(Path(path), read) or []
    return [r for r in (_row_to_record(row) for row in rows) if r is not None]


def verify_file(path: Path) -> VerifyResult:
    """Check the chain in the outbox file ``path``: read-only, no vault, no migration, nothing created.

    A missing or empty file, or a database that never held a trail, is an empty trail: ok. A missing audit
    table where the head mark or audit items in the outbox show there was one is broken. ``damaged`` names the
    damaged outbox files kept beside it (see :func:`damaged_beside`). Raises :class:`AuditUnreadable` when
    the file cannot be read.
    """
    path = Path(path)
    result = _snapshot(path, _verify_conn) or VerifyResult(ok=True, count=0)
    return dataclasses.replace(result, damaged=damaged_beside(path))


def _verify_conn(conn: sqlite3.Connection) -> VerifyResult:
    if _has_audit(conn):
        return _walk(conn)
    gone = _dropped_trail(conn)
    if gone:
        return VerifyResult(ok=False, count=0, first_bad_seq=1, reason=f"the audit table is missing, but {gone}: "
                            "the whole trail was removed after it was written")
    return VerifyResult(ok=True, count=0)


def _dropped_trail(conn: sqlite3.Connection) -> str:
    """Why a missing audit table means a deleted trail ("" when nothing says a trail existed)."""
    head = _meta_head(conn) if _has_table(conn, "meta") else None
    if head is not None:
        return (f"the trail's head mark says {head.seq} records were written" if head.seq >= 0
                else "the trail's head mark is still there")
    if _has_table(conn, "items"):
        row = conn.execute("SELECT count(*) FROM items WHERE kind = ?", (KIND,)).fetchone()
        if row and row[0]:
            return f"the outbox still holds {row[0]} audit item(s), copies of its records"
    return ""


def damaged_beside(path: Path) -> tuple[Path, ...]:
    """The damaged outboxes the store set aside next to ``path`` (``<name>.damaged-<UTC stamp>[-n]``, each with
    its own -wal/-shm, which are not listed), oldest first. Their records are not in this file's chain."""
    try:
        found = [p for p in Path(path).parent.glob(f"{glob.escape(Path(path).name)}.damaged-*")
                 if not p.name.endswith(("-wal", "-shm"))]
    except OSError:
        return ()
    return tuple(sorted(found))


def _stream(conn: sqlite3.Connection) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every audit row in seq order with its outbox copy's payload (None when the item is gone)."""
    cols = ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))
    has_items = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'").fetchone()
    sql = (f"SELECT {cols}, i.payload FROM audit a LEFT JOIN items i ON i.id = a.id ORDER BY a.seq" if has_items
           else f"SELECT {cols}, NULL FROM audit a ORDER BY a.seq")
    cursor = conn.execute(sql)
    while batch := cursor.fetchmany(1000):  # a trail of years: never all in memory
        for row in batch:
            yield tuple(row[:-1]), row[-1]


class _BrokenError(Exception):
    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(reason)
        self.seq, self.reason = seq, reason


def _walk(conn: sqlite3.Connection) -> VerifyResult:
    count, last = 0, None
    try:
        for row, copy in _stream(conn):
            record = _row_to_record(row)
            if record is None:
                seq = row[0] if isinstance(row[0], int) else (last.seq + 1 if last else 1)
                raise _BrokenError(seq, f"record {seq} cannot be read: a field holds the wrong kind of value, so it "
                                   "was changed after it was written")
            _check_record(record, last, copy)
            count, last = count + 1, record
        head = _check_head(conn, last)
        if head is not None:
            _check_orphans(conn, head.trail)
    except _BrokenError as broken:
        return VerifyResult(ok=False, count=count, first_bad_seq=broken.seq, reason=broken.reason,
                            last_ts=last.ts if last else None)
    return VerifyResult(ok=True, count=count, last_ts=last.ts if last else None)


def _check_record(record: AuditRecord, last: AuditRecord | None, copy: Any) -> None:
    """Order matters: a gap, then the record's own hash, then its outbox copy, then the link back."""
    expected, named = (last.seq + 1 if last else 1), f"record {record.seq} ({record.describe()})"
    changed = f"{named} was changed after it was written"
    if record.seq != expected and last is None:
        span = "record 1 is" if record.seq == 2 else f"records 1 to {record.seq - 1} are"
        raise _BrokenError(1, f"{span} missing: the trail starts at {named}; deleted after being written")
    if record.seq != expected and last is not None:
        raise _BrokenError(expected, f"record {expected} is missing: the trail jumps from record {last.seq} to "
                                     f"{named}; it was deleted after it was written")
    fields = (record.seq, record.id, record.ts, record.technician, record.site, record.device, record.action,
              record.detail, record.result, record.prev_hash)
    if record_hash(*fields) != record.hash:
        raise _BrokenError(record.seq, changed)
    if copy is not None and not _copy_matches(record, copy):
        raise _BrokenError(record.seq, f"{changed}: it differs from its copy queued for the control plane "
                                       "(the chain was rewritten)")
    if record.prev_hash != (last.hash if last else ZERO_HASH):
        if last is None:
            raise _BrokenError(1, f"{changed}: it links to an earlier record, and record 1 has none")
        raise _BrokenError(last.seq, f"record {last.seq} ({last.describe()}) or record {record.seq} was changed "
                                     f"after they were written: record {record.seq} no longer links to record "
                                     f"{last.seq}")


def _copy_matches(record: AuditRecord, copy: Any) -> bool:
    """The outbox copy (the item with the record's id) hashes to the record's hash."""
    try:
        obj = json.loads(copy)
        names = ("seq", "ts_us", "technician", "site", "device", "action", "detail_json", "result", "prev_hash")
        values = [obj[n] for n in names]
        return _hash([values[0], record.id, *values[1:]]) == record.hash
    except (ValueError, TypeError, KeyError):
        return False


def _check_head(conn: sqlite3.Connection, last: AuditRecord | None) -> _Head | None:
    """The end of the chain against the head written with the last record (what a chain alone cannot see)."""
    head = _meta_head(conn)
    last_seq = last.seq if last else 0
    if head is None:
        if last is not None:
            raise _BrokenError(last_seq, f"the trail's head mark is missing (it is written with every record): it "
                                         f"was removed, and records after record {last_seq} may have been deleted")
        return None
    seq, digest = head.seq, head.hash
    if seq < 0:
        raise _BrokenError(last_seq, "the trail's head mark cannot be read: it was changed")
    if seq > last_seq:
        span = f"record {seq} was" if seq == last_seq + 1 else f"records {last_seq + 1} to {seq} were"
        raise _BrokenError(last_seq + 1, f"{span} deleted from the end of the trail after being written "
                                         f"({seq} records were written, {last_seq} are left)")
    if seq < last_seq:
        raise _BrokenError(seq + 1, f"record {seq + 1} was added to the trail without Siteline (the trail's "
                                    f"head mark says the last record is {seq})")
    if last is not None and digest != last.hash:
        raise _BrokenError(last_seq, f"record {last_seq} ({last.describe()}) was changed after it was written: "
                                     "the trail's head mark holds another hash")
    return head


def _check_orphans(conn: sqlite3.Connection, trail: str) -> None:
    """This trail's audit items in the outbox whose record is gone from the trail: deleted records.
    (Items of another trail, imported from a colleague's hand-carry file, are theirs, not ours.)"""
    if not trail or not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'").fetchone():
        return
    valid = "CASE WHEN json_valid(i.payload) THEN json_extract(i.payload, '$.{}') END"
    row = conn.execute(f"SELECT min({valid.format('seq')}) FROM items i WHERE i.kind = ? AND "
                       f"{valid.format('trail')} = ? AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.id = i.id)",
                       (KIND, trail)).fetchone()
    if row is not None and row[0] is not None:
        seq = row[0]
        raise _BrokenError(seq if isinstance(seq, int) else 0, f"record {seq} was deleted from the trail after it "
                                                               "was written: its copy is still in the outbox")
