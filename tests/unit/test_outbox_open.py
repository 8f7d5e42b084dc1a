"""Opening the outbox: damaged files kept aside, a newer file refused untouched, old files migrated."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from siteline.core.outbox import schema
from siteline.core.outbox.model import NewItem, State
from siteline.core.outbox.schema import SCHEMA_VERSION
from siteline.core.outbox.store import Outbox, OutboxError, OutboxTooNewError


def filled(path: Path, count: int = 300) -> list[str]:
    with Outbox.open(path) as ob:
        made = ob.put_many(NewItem("telemetry", "site-a", "gw1", {"n": n, "pad": "p" * 300}) for n in range(count))
    assert not Path(f"{path}-wal").exists()  # the last close checkpointed: everything is in the main file
    return [i.id for i in made]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(16384))
    Path(f"{path}-wal").write_bytes(os.urandom(100))


def truncated(path: Path) -> None:
    filled(path)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)


def page_overwritten(path: Path) -> None:
    filled(path)
    raw = sqlite3.connect(path)
    page = raw.execute("PRAGMA page_size").fetchone()[0]
    raw.close()
    pages = path.stat().st_size // page
    with path.open("r+b") as fh:
        for n in (2, pages // 2):  # the first page of a table's b-tree and one in the middle of the data
            fh.seek(n * page)
            fh.write(os.urandom(page))


@pytest.mark.parametrize("damage", [random_bytes, truncated, page_overwritten])
def test_a_damaged_file_is_kept_aside_and_a_new_outbox_works(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    damage(path)  # type: ignore[operator]
    before = digest(path)
    had_wal = Path(f"{path}-wal").exists()
    with caplog.at_level(logging.WARNING), Outbox.open(path) as ob:
        assert ob.recovered_from is not None
        assert ob.recovered_from.name.startswith("outbox.sqlite3.damaged-")
        assert digest(ob.recovered_from) == before  # kept as it was, never deleted
        assert Path(f"{ob.recovered_from}-wal").exists() == had_wal
        assert ob.status().pending == 0
        put = ob.put(NewItem("note", "site-a", "gw1", {"text": "after the recovery"}))
    assert "damaged" in caplog.text
    assert "support" in caplog.text
    with Outbox.open(path) as again:
        assert again.recovered_from is None
        assert again.get(put.id) is not None


def test_a_newer_file_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    filled(path, 10)
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    before, names = digest(path), sorted(os.listdir(tmp_path))
    with pytest.raises(OutboxTooNewError, match="newer Siteline") as caught:
        Outbox.open(path)
    assert "Update Siteline" in caught.value.hint
    assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == names


def test_a_version_0_file_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    raw = sqlite3.connect(path)  # a file from before the schema was versioned: fewer columns, no other tables
    raw.execute("CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT NOT NULL, site TEXT NOT NULL, device TEXT NOT "
                "NULL, created REAL NOT NULL, priority INTEGER NOT NULL, payload TEXT NOT NULL, payload_sha256 TEXT "
                "NOT NULL, state TEXT NOT NULL)")
    raw.execute("INSERT INTO items VALUES ('0193a000-0000-7000-8000-000000000001', 'note', 's', 'd', 1.5, 1, "
                "'{}', '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', 'pending')")
    raw.commit()
    raw.close()
    with Outbox.open(path) as ob:
        old = ob.get("0193a000-0000-7000-8000-000000000001")
        assert old is not None
        assert (old.state, old.attempts, old.last_error, old.vault_refs) == (State.PENDING, 0, "", ())
        assert old.sent_at is None
        ob.record_failure([old.id], "try again")
        ob.add_usage(5)
        assert ob.status().bytes_this_month == 5
        conn = ob._conn
        assert conn is not None
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"items", "attempts", "audit", "inbound", "inbound_rejects", "usage", "meta"} <= tables


def test_an_empty_file_becomes_a_new_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.touch()
    with Outbox.open(path) as ob:
        assert ob.recovered_from is None
        assert ob.status().pending == 0


def test_a_locked_file_is_an_error_not_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "outbox.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE x (a)")
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(OutboxError, match="could not be opened") as caught:
            Outbox.open(path)
        assert "other Siteline" in caught.value.hint
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert os.listdir(tmp_path) == ["outbox.sqlite3"]  # nothing set aside


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutboxError, match="could not be opened") as caught:
        Outbox.open(blocker / "outbox.sqlite3")
    assert "folder" in caught.value.hint
