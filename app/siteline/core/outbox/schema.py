"""The outbox database file: its schema, migrations (``PRAGMA user_version``), and the checks on open.

Version 0 is a file Siteline did not set up yet: a brand-new empty file, or one from before the
schema was versioned (its ``items`` table may lack later columns). ``migrate`` brings a file from
its version up to :data:`SCHEMA_VERSION` in one transaction: a failure leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from siteline.core.atomic import fsync_dir
from siteline.core.outbox.model import OutboxError, OutboxTooNewError, full_error, is_full

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Columns as sqlite-utils takes them; NOT NULL everywhere except items.sent_at.
_TABLES: dict[str, tuple[dict[str, type], str | None, dict[str, object]]] = {
    # name: (columns in order, primary key, defaults)
    "items": (
        {"id": str, "kind": str, "site": str, "device": str, "created": float, "priority": int, "payload": str,
         "payload_sha256": str, "vault_refs": str, "state": str, "attempts": int, "last_error": str,
         "sent_at": float},
        "id",
        {"vault_refs": "[]", "attempts": 0, "last_error": ""},
    ),
    "attempts": ({"item_id": str, "at": float, "outcome": str, "error": str, "bytes": int}, None,
                 {"error": "", "bytes": 0}),
    "audit": (
        {"seq": int, "id": str, "ts": float, "technician": str, "site": str, "device": str, "action": str,
         "detail": str, "result": str, "prev_hash": str, "hash": str},
        "seq",
        {},
    ),
    "inbound": ({"topic": str, "kind": str, "payload": str, "sha256": str, "received": float}, "topic", {}),
    "inbound_rejects": ({"at": float, "topic": str, "reason": str, "size": int}, None, {}),
    "usage": ({"month": str, "bytes": int}, "month", {}),
    "meta": ({"key": str, "value": str}, "key", {}),
}
_NULLABLE = {("items", "sent_at")}
_INDEXES = (
    ("items", ("state", "priority", "created", "id"), "items_queue"),
    ("items", ("created",), "items_created"),
    ("attempts", ("item_id",), "attempts_item"),
    ("audit", ("device", "seq"), "audit_device"),
)


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _create_tables(db: sqlite_utils.Database) -> None:
    for name, (columns, pk, defaults) in _TABLES.items():
        not_null = {c for c in columns if (name, c) not in _NULLABLE}
        table = db.table(name)
        if not table.exists():
            table.create(columns, pk=pk, not_null=not_null, defaults=defaults)
            continue
        # A pre-version file: keep its rows, add what is missing (NOT NULL needs a default to be added).
        have = {col.name for col in table.columns}
        for column, kind in columns.items():
            if column in have:
                continue
            if (name, column) in _NULLABLE:
                table.add_column(column, kind)
            else:
                table.add_column(column, kind, not_null_default=defaults.get(column, _ZERO[kind]))
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS audit_id ON audit(id)")
    for table_name, cols, index_name in _INDEXES:
        db.table(table_name).create_index(cols, index_name=index_name, if_not_exists=True)


_ZERO: dict[type, object] = {str: "", int: 0, float: 0.0}


def _to_1(db: sqlite_utils.Database) -> None:
    _create_tables(db)


_STEPS: dict[int, Callable[[sqlite_utils.Database], None]] = {0: _to_1}


def migrate(conn: sqlite3.Connection) -> int:
    """Run the steps from the file's version up to SCHEMA_VERSION in one transaction; returns the old version.

    The caller refuses a file newer than SCHEMA_VERSION before calling this. ``conn`` is in autocommit
    mode (isolation_level None): BEGIN IMMEDIATE takes the write lock at once, so two processes opening
    one new file do not both try to create it.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = user_version(conn)  # read again under the lock: another process may have migrated it
        if found == SCHEMA_VERSION:
            conn.execute("COMMIT")
            return found
        # Only creating or migrating needs sqlite-utils; imported here because it costs ~100 ms at start-up.
        import sqlite_utils

        db = sqlite_utils.Database(conn, execute_plugins=False, recursive_triggers=False)
        for version in range(found, SCHEMA_VERSION):
            _STEPS[version](db)
        if found < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


BUSY_TIMEOUT_S = 15.0  # the GUI, the CLI and a sync share the file; a writer holds the lock for milliseconds
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_MAGIC = b"SQLite format 3\x00"
SUPPORT_HINT = "Send the kept file to support: items in it that were not sent yet may be recoverable."


class DamagedError(Exception):
    """The file is not a readable SQLite database, or its check failed."""


def prepare_file(path: Path, private_folder: bool) -> None:
    """Folder 0700, file 0600 where the OS allows; SQLite gives -wal/-shm the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    elif private_folder:
        with contextlib.suppress(OSError):
            os.chmod(path.parent, 0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        fsync_dir(path.parent)  # the new name itself survives a power cut, not only the data SQLite syncs


def _check_header(path: Path) -> None:
    """Look at the file before SQLite does: SQLite deletes a -wal beside a file whose header is not WAL mode,
    and that -wal may hold the last commits support needs. So a file that is not SQLite is set aside whole
    (its -wal with it), and a -wal next to a rollback-mode file is kept under another name."""
    with path.open("rb") as fh:
        head = fh.read(20)
    if not head:
        return  # an empty file: a new database
    if len(head) < 20 or not head.startswith(_MAGIC):
        raise DamagedError("file is not a database")
    wal = Path(f"{path}-wal")
    if head[18] != 2 and wal.exists() and wal.stat().st_size > 0:
        kept = wal.with_name(f"{wal.name}.orphan-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(wal, kept)
        log.warning("A journal %s was found beside an outbox not in WAL mode; it was kept as %s. %s",
                    wal, kept, SUPPORT_HINT)


def connect(path: Path) -> sqlite3.Connection:
    """Open, check and migrate; raises DamagedError, OutboxTooNewError or OutboxError."""
    _check_header(path)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        found = user_version(conn)  # reads only: a newer file must stay untouched
        if found > SCHEMA_VERSION:
            raise OutboxTooNewError(
                f"The outbox {path} was written by a newer Siteline (schema {found}; this one knows up to "
                f"{SCHEMA_VERSION}). It was not opened and not changed.",
                "Update Siteline on this machine, or move the file away to start an empty outbox.",
            )
        # quick_check, not integrity_check: it finds damaged pages, b-trees and records but skips the
        # index-vs-table cross-check. Measured on a 100k-item outbox (55 MB, warm cache; bench/outbox_write.py
        # prints both): quick_check 0.06-0.10 s, integrity_check 0.17-0.29 s. The file only grows (sent items
        # are kept), and a laptop with a cold cache reads it all at every start: start-up pays the cheaper one.
        rows = conn.execute("PRAGMA quick_check(5)").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            raise DamagedError("; ".join(str(r[0]) for r in rows))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("the outbox %s is in journal mode %s, not WAL: writes are still durable, slower", path, mode)
        conn.execute("PRAGMA synchronous = FULL")  # fsync the WAL on every commit: a commit survives power loss
        conn.execute("PRAGMA foreign_keys = ON")
        old = migrate(conn)
        if old != SCHEMA_VERSION:
            log.info("the outbox %s was migrated from schema %d to %d", path, old, SCHEMA_VERSION)
        return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            raise DamagedError(str(exc)) from exc
        if is_full(exc):
            raise full_error(path, exc) from exc
        raise OutboxError(f"The outbox {path} could not be opened: {exc}.",
                          "Close other Siteline windows using it and try again; check the disk.") from exc
    except BaseException:
        conn.close()
        raise


def set_aside(path: Path) -> Path:
    """Rename the damaged file (and its -wal/-shm) beside itself; never delete it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{target}{suffix}"))
    fsync_dir(path.parent)
    return target
