"""The durable outbox: one SQLite file (WAL, fsync on every commit) shared by the GUI, the CLI and a sync.

Every write is one transaction that is on disk when the call returns. Opening checks the file; a
damaged one is kept aside (never deleted) and a fresh outbox started, with ``recovered_from`` saying
where the old one went. A file from a newer Siteline is refused and left byte for byte as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from siteline import paths
from siteline.core.outbox import handcarry
from siteline.core.outbox.ids import uuid7
from siteline.core.outbox.model import (
    MAX_ERROR_CHARS,
    Attempt,
    ImportResult,
    InvalidItemError,
    Item,
    NewItem,
    OutboxError,
    OutboxFullError,
    OutboxStatus,
    OutboxTooNewError,
    State,
    check_item,
    full_error,
    is_full,
    sha256_text,
)
from siteline.core.outbox.schema import SUPPORT_HINT, DamagedError, connect, prepare_file, set_aside

__all__ = [
    "Attempt", "ImportResult", "InvalidItemError", "Item", "NewItem", "Outbox", "OutboxError", "OutboxFullError",
    "OutboxStatus", "OutboxTooNewError", "State", "Tx", "check_item", "default_path", "month_of",
]

log = logging.getLogger(__name__)

_COLUMNS = ("id, kind, site, device, created, priority, payload, payload_sha256, state, attempts, last_error, "
            "sent_at, vault_refs")
def default_path() -> Path:
    return paths.data_dir() / "outbox.sqlite3"


def month_of(at: float | None = None) -> str:
    return time.strftime("%Y-%m", time.gmtime(time.time() if at is None else at))


def _row_to_item(row: Sequence[Any]) -> Item:
    return Item(id=row[0], kind=row[1], site=row[2], device=row[3], created=row[4], priority=row[5],
                payload=row[6], payload_sha256=row[7], state=State(row[8]), attempts=row[9], last_error=row[10],
                sent_at=row[11], vault_refs=tuple(json.loads(row[12] or "[]")))


class Tx:
    """An open write transaction: items and the other tables (audit, inbound) commit together."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def put(self, item: NewItem) -> Item:
        return self.put_checked(check_item(item))

    def put_checked(self, checked: tuple[NewItem, str, int, tuple[str, ...]]) -> Item:
        new, payload, priority, refs = checked
        created = time.time()
        item = Item(id=uuid7(created), kind=new.kind, site=new.site, device=new.device, created=created,
                    priority=priority, payload=payload, payload_sha256=sha256_text(payload), state=State.PENDING,
                    attempts=0, last_error="", sent_at=None, vault_refs=refs)
        self.insert(item)
        return item

    def insert(self, item: Item) -> None:
        self.conn.execute(
            f"INSERT INTO items ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item.id, item.kind, item.site, item.device, item.created, item.priority, item.payload,
             item.payload_sha256, item.state.value, item.attempts, item.last_error, item.sent_at,
             json.dumps(list(item.vault_refs)) if item.vault_refs else "[]"),
        )


class Outbox:
    """The queue. Thread-safe (one lock around one connection); several processes may open one file."""

    def __init__(self, path: Path, conn: sqlite3.Connection, recovered_from: Path | None = None) -> None:
        self.path = path
        self.recovered_from = recovered_from
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path | None = None) -> Outbox:
        target = Path(path) if path is not None else default_path()
        try:
            return cls._open(target, private_folder=path is None)
        except OSError as exc:  # the folder or file itself: permissions, a full or read-only disk
            if is_full(exc):
                raise full_error(target, exc) from exc
            raise OutboxError(f"The outbox {target} could not be opened: {exc}.",
                              "Check that the folder exists and that you may write to it.") from exc

    @classmethod
    def _open(cls, target: Path, private_folder: bool) -> Outbox:
        prepare_file(target, private_folder)
        recovered: Path | None = None
        try:
            conn = connect(target)
        except DamagedError as exc:
            recovered = set_aside(target)
            log.warning("The outbox %s is damaged (%s). It was kept as %s and a new, empty outbox started. %s",
                        target, exc, recovered, SUPPORT_HINT)
            prepare_file(target, private_folder=False)
            try:
                conn = connect(target)
            except DamagedError as again:  # a brand-new file cannot be damaged: the disk or folder is the problem
                raise OutboxError(f"A new outbox could not be created at {target}: {again}.",
                                  "Check the disk and the folder's permissions.") from again
        return cls(target, conn, recovered)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError("The outbox is closed.", "Open it again (this is a bug in the caller).")
        return self._conn

    # -- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """BEGIN IMMEDIATE ... COMMIT: all or nothing, durable when the block ends without an exception."""
        with self._lock:
            conn = self._live()
            if conn.in_transaction:
                raise OutboxError("An outbox transaction is already open.", "Do not nest outbox transactions.")
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield Tx(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if is_full(exc):
                    raise full_error(self.path, exc) from exc
                if isinstance(exc, sqlite3.Error):
                    raise OutboxError(f"The outbox could not be written: {exc}.",
                                      "Nothing of this change was saved; try again.") from exc
                raise

    def put(self, item: NewItem) -> Item:
        checked = check_item(item)
        with self.transaction() as tx:
            return tx.put_checked(checked)

    def put_many(self, items: Iterable[NewItem]) -> list[Item]:
        checked = [check_item(item) for item in items]  # one bad item: nothing written
        with self.transaction() as tx:
            return [tx.put_checked(c) for c in checked]

    # -- reading ---------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._live().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"The outbox could not be read: {exc}.", "Try again; check the disk.") from exc

    def pending(self, limit: int = 100, max_priority: int | None = None) -> list[Item]:
        """What to send next: priority, then age, then id (UUIDv7: creation order inside one time stamp)."""
        cap = 99 if max_priority is None else int(max_priority)
        rows = self._query(f"SELECT {_COLUMNS} FROM items WHERE state = 'pending' AND priority <= ? "
                           "ORDER BY priority, created, id LIMIT ?", (cap, int(limit)))
        return [_row_to_item(r) for r in rows]

    def get(self, item_id: str) -> Item | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM items WHERE id = ?", (item_id,))
        return _row_to_item(rows[0]) if rows else None

    def items(self, state: State | None = None, limit: int = 500, offset: int = 0) -> list[Item]:
        """Newest first."""
        where, params = ("WHERE state = ?", [State(state).value]) if state is not None else ("", [])
        rows = self._query(f"SELECT {_COLUMNS} FROM items {where} ORDER BY created DESC, id DESC LIMIT ? OFFSET ?",
                           [*params, int(limit), int(offset)])
        return [_row_to_item(r) for r in rows]

    def attempts(self, item_id: str) -> list[Attempt]:
        rows = self._query("SELECT at, outcome, error, bytes FROM attempts WHERE item_id = ? ORDER BY at, rowid",
                           (item_id,))
        return [Attempt(at=r[0], outcome=r[1], error=r[2], bytes=r[3]) for r in rows]

    def status(self) -> OutboxStatus:
        month = month_of()
        with self._lock:
            counts = dict(self._query("SELECT state, count(*) FROM items GROUP BY state"))
            by_priority = dict(self._query("SELECT priority, count(*) FROM items WHERE state = 'pending' "
                                           "GROUP BY priority"))
            oldest = self._query("SELECT min(created) FROM items WHERE state = 'pending'")[0][0]
            used = self.usage(month)
        return OutboxStatus(pending=counts.get("pending", 0), sent=counts.get("sent", 0),
                            failed=counts.get("failed", 0), pending_by_priority=by_priority, oldest_pending=oldest,
                            bytes_this_month=used, month=month)

    def usage(self, month: str | None = None) -> int:
        rows = self._query("SELECT bytes FROM usage WHERE month = ?", (month or month_of(),))
        return int(rows[0][0]) if rows else 0

    def pending_bytes(self, max_priority: int | None = None) -> int:
        """Bytes of payload still waiting to be sent (at ``max_priority`` or more urgent): a budget check counts
        them, since they will be sent before or with whatever is queued now."""
        cap = 99 if max_priority is None else int(max_priority)
        rows = self._query("SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM items "
                           "WHERE state = 'pending' AND priority <= ?", (cap,))
        return int(rows[0][0]) if rows else 0

    # -- delivery bookkeeping (the sync calls these) ----------------------------------------------

    def mark_sent(self, ids: Sequence[str], bytes_on_wire: int, at: float | None = None) -> None:
        """The broker acknowledged these: sent, one attempt each, and the bytes counted for the month."""
        when = time.time() if at is None else at
        share, extra = divmod(max(0, int(bytes_on_wire)), max(1, len(ids)))
        with self.transaction() as tx:
            for n, item_id in enumerate(ids):
                done = tx.conn.execute("UPDATE items SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                                       "last_error = '' WHERE id = ? AND state != 'sent'", (when, item_id)).rowcount
                if done:
                    tx.conn.execute("INSERT INTO attempts (item_id, at, outcome, error, bytes) VALUES (?,?,?,?,?)",
                                    (item_id, when, "sent", "", share + (extra if n == 0 else 0)))
            _add_usage(tx.conn, bytes_on_wire, when)

    def record_failure(self, ids: Sequence[str], error: str, permanent: bool = False) -> None:
        """A failed try: attempts + 1 and the error kept; ``permanent`` moves the item to FAILED until a retry."""
        when, text = time.time(), str(error)[:MAX_ERROR_CHARS]
        state_sql = ", state = 'failed'" if permanent else ""
        with self.transaction() as tx:
            for item_id in ids:
                done = tx.conn.execute(f"UPDATE items SET attempts = attempts + 1, last_error = ?{state_sql} "
                                       "WHERE id = ? AND state != 'sent'", (text, item_id)).rowcount
                if done:
                    tx.conn.execute("INSERT INTO attempts (item_id, at, outcome, error, bytes) VALUES (?,?,?,?,0)",
                                    (item_id, when, "failed" if permanent else "retry", text))

    def retry(self, ids: Sequence[str] | None = None) -> int:
        """FAILED -> PENDING (every failed item when ``ids`` is None); returns how many moved."""
        with self.transaction() as tx:
            if ids is None:
                return int(tx.conn.execute("UPDATE items SET state = 'pending' WHERE state = 'failed'").rowcount)
            return sum(tx.conn.execute("UPDATE items SET state = 'pending' WHERE id = ? AND state = 'failed'",
                                       (i,)).rowcount for i in ids)

    def add_usage(self, nbytes: int, at: float | None = None) -> None:
        """Bytes sent that were not items (connects, probes), counted against the month's budget."""
        with self.transaction() as tx:
            _add_usage(tx.conn, nbytes, time.time() if at is None else at)

    # -- hand-carry --------------------------------------------------------------------------------

    def export(self, path: Path, states: Iterable[State] = (State.PENDING, State.FAILED)) -> int:
        """Write the items in ``states`` to a gzip'd JSON-lines file (see handcarry.py); returns the count."""
        wanted = [State(s).value for s in states]
        marks = ",".join("?" * len(wanted))
        rows = self._query(f"SELECT {_COLUMNS} FROM items WHERE state IN ({marks}) ORDER BY priority, created, id",
                           wanted)
        return handcarry.write_file(Path(path), [_row_to_item(r) for r in rows])

    def import_file(self, path: Path) -> ImportResult:
        """Add the items of a hand-carry file, keeping their ids; a second import of one file adds nothing."""
        parsed = handcarry.read_file(Path(path))
        added = duplicates = 0
        rejected = list(parsed.rejected)
        with self.transaction() as tx:
            for line, item in parsed.items:
                row = tx.conn.execute("SELECT payload_sha256 FROM items WHERE id = ?", (item.id,)).fetchone()
                if row is None:
                    tx.insert(item)
                    added += 1
                elif row[0] == item.payload_sha256:
                    duplicates += 1
                else:
                    rejected.append(f"line {line}: item {item.id} is already here with a different payload; "
                                    "kept the one already here")
        return ImportResult(added=added, duplicates=duplicates, rejected=rejected)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _add_usage(conn: sqlite3.Connection, nbytes: int, at: float) -> None:
    if nbytes > 0:
        conn.execute("INSERT INTO usage (month, bytes) VALUES (?, ?) "
                     "ON CONFLICT(month) DO UPDATE SET bytes = bytes + excluded.bytes", (month_of(at), int(nbytes)))
