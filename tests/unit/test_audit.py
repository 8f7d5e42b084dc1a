"""The audit trail: records hash-chained with their outbox copies; any edit, removal or insertion named."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.audit import (
    CONNECT,
    CONSOLE_COMMAND,
    HEAD_KEY,
    ZERO_HASH,
    AuditError,
    AuditTrail,
    AuditUnreadable,
    record_hash,
)
from siteline.core.audit_verify import verify_file
from siteline.core.outbox.model import Priority
from siteline.core.outbox.store import Outbox


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def trail(db: Path) -> Iterator[AuditTrail]:
    outbox = Outbox.open(db)
    yield AuditTrail(outbox, "tech-ana")
    outbox.close()


def fill(trail: AuditTrail, n: int = 4) -> None:
    for i in range(n):
        trail.record(CONNECT if i % 2 == 0 else CONSOLE_COMMAND, site="north", device=f"gw-0{i % 2 + 1}",
                     detail={"n": i, "line": f"ls /tmp/{i}"})


def sql(db: Path, statement: str, params: tuple[object, ...] = ()) -> None:
    """Tamper as someone with the file would: a separate connection, committed."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(statement, params)
    conn.close()


def test_records_chain_and_land_in_the_outbox(trail: AuditTrail) -> None:
    first = trail.record(CONNECT, site="north", device="gw-01", detail={"via": "ssh"})
    second = trail.record(CONSOLE_COMMAND, site="north", device="gw-01", detail={"line": "reboot"}, result="sent")
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == ZERO_HASH
    assert second.prev_hash == first.hash
    item = trail.outbox.get(second.id)  # the record's id is its outbox item's id
    assert item is not None
    assert item.kind == "audit"
    assert item.priority == Priority.HIGH
    assert item.payload_obj()["prev_hash"] == first.hash
    assert item.payload_obj()["detail"] == {"line": "reboot"}
    assert trail.verify().ok
    assert trail.verify().count == 2


def test_the_control_plane_can_recompute_the_chain_from_the_items_alone(trail: AuditTrail) -> None:
    """What the module doc (and docs/control-plane.md) promise: json + sha256 over the payload and the item id."""
    fill(trail, 3)
    prev = ZERO_HASH
    for item in sorted((i for i in trail.outbox.items() if i.kind == "audit"), key=lambda i: i.payload_obj()["seq"]):
        p = item.payload_obj()
        assert p["prev_hash"] == prev
        assert json.loads(p["detail_json"]) == p["detail"]
        fields = [p["hash_version"], p["seq"], item.id, p["ts_us"], p["technician"], p["site"], p["device"],
                  p["action"], p["detail_json"], p["result"], p["prev_hash"]]
        prev = hashlib.sha256(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    assert prev == trail.records()[0].hash


def test_chain_continues_across_restarts(db: Path) -> None:
    for _round in range(3):
        with Outbox.open(db) as outbox:
            fill(AuditTrail(outbox, "tech-ana"), 2)
    result = verify_file(db)
    assert result.ok
    assert result.count == 6


def test_records_newest_first_per_device(trail: AuditTrail) -> None:
    fill(trail, 5)
    everything = trail.records()
    assert [r.seq for r in everything] == [5, 4, 3, 2, 1]
    assert [r.seq for r in trail.records("gw-02")] == [4, 2]
    assert [r.seq for r in trail.records(limit=2)] == [5, 4]
    assert everything[0].detail_obj() == {"n": 4, "line": "ls /tmp/4"}
    assert everything[0].describe().startswith("connect gw-01 at ")


def test_a_secret_in_the_detail_is_refused_and_nothing_written(trail: AuditTrail) -> None:
    fill(trail, 1)
    with pytest.raises(AuditError, match="looks like a secret"):
        trail.record(CONNECT, site="north", device="gw-01", detail={"password": "hunter2"})
    trail.record(CONNECT, site="north", device="gw-01", detail={"password": "vault:device/north/gw-01/password"})
    assert [r.seq for r in trail.records()] == [2, 1]
    assert trail.verify().ok


@pytest.mark.parametrize("bad", [{"action": ""}, {"result": "x" * 500}, {"detail": {"f": float("nan")}},
                                 {"device": ""}])
def test_bad_arguments_are_refused(trail: AuditTrail, bad: dict[str, object]) -> None:
    args: dict[str, object] = {"action": CONNECT, "site": "north", "device": "gw-01", "detail": {}, "result": "ok"}
    args.update(bad)
    action = args.pop("action")
    with pytest.raises(AuditError):
        trail.record(action, **args)  # type: ignore[arg-type]
    assert trail.records() == []


# -- tampering -----------------------------------------------------------------------------------------

FIELDS = ["id", "ts", "technician", "site", "device", "action", "detail", "result", "prev_hash", "hash"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("seq", [1, 2, 4])
def test_editing_any_field_of_any_record_is_named(trail: AuditTrail, db: Path, field: str, seq: int) -> None:
    fill(trail, 4)
    value: object = 1.0 if field == "ts" else '{"n":99}' if field == "detail" else "edited"
    sql(db, f"UPDATE audit SET {field} = ? WHERE seq = ?", (value, seq))
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, seq), result
    assert f"record {seq}" in result.reason


def test_changing_the_seq_shows_a_gap(trail: AuditTrail, db: Path) -> None:
    fill(trail, 4)
    sql(db, "UPDATE audit SET seq = 99 WHERE seq = 2")
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "record 2 is missing" in result.reason


def test_edit_with_the_sqlite3_cli_is_named(trail: AuditTrail, db: Path) -> None:
    import subprocess

    from tests.peers import require_tool

    sqlite = require_tool("sqlite3")
    fill(trail, 3)
    trail.outbox.close()
    subprocess.run([sqlite, str(db), "UPDATE audit SET result = 'ok' , detail = '{}' WHERE seq = 2;"], check=True,
                   timeout=30)
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "was changed after it was written" in result.reason


def test_a_value_of_the_wrong_type_is_named_not_a_crash(trail: AuditTrail, db: Path) -> None:
    fill(trail, 3)
    sql(db, "UPDATE audit SET ts = 'yesterday', detail = x'00ff' WHERE seq = 2")
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert [r.seq for r in trail.records()] == [3, 1]  # the list leaves it out; verify names it


def test_a_consistent_rewrite_is_caught_by_the_outbox_copy(trail: AuditTrail, db: Path) -> None:
    """Edit record 2 and recompute every hash after it, and the head: the chain alone looks fine."""
    fill(trail, 4)
    rewrite_chain_from(db, 2, result="refused")
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "copy queued for the control plane" in result.reason


def test_what_only_the_control_plane_can_catch(trail: AuditTrail, db: Path) -> None:
    """A rewrite that also deletes the local outbox copies leaves a consistent file: no local check can
    tell. The control plane holds the records already sent and recomputes the chain (see docs)."""
    fill(trail, 4)
    rewrite_chain_from(db, 2, result="refused")
    sql(db, "DELETE FROM items WHERE kind = 'audit'")
    assert verify_file(db).ok


def rewrite_chain_from(db: Path, start: int, **changes: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        rows = conn.execute("SELECT seq, id, ts, technician, site, device, action, detail, result, prev_hash "
                            "FROM audit ORDER BY seq").fetchall()
        prev = ZERO_HASH
        for row in rows:
            fields = dict(zip(("seq", "id", "ts", "technician", "site", "device", "action", "detail", "result"),
                              row[:9], strict=True))
            if fields["seq"] >= start:
                if fields["seq"] == start:
                    fields.update(changes)
                digest = record_hash(*fields.values(), prev)  # type: ignore[arg-type]
                conn.execute("UPDATE audit SET result = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                             (fields["result"], prev, digest, fields["seq"]))
                prev = digest
            else:
                prev = conn.execute("SELECT hash FROM audit WHERE seq = ?", (fields["seq"],)).fetchone()[0]
        conn.execute("UPDATE meta SET value = json_set(value, '$.seq', ?, '$.hash', ?) WHERE key = ?",
                     (rows[-1][0], prev, HEAD_KEY))
    conn.close()


def test_deleted_middle_record(trail: AuditTrail, db: Path) -> None:
    fill(trail, 5)
    sql(db, "DELETE FROM audit WHERE seq = 3")
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq, result.count) == (False, 3, 2)
    assert "record 3 is missing: the trail jumps from record 2 to record 4" in result.reason


def test_deleted_first_record(trail: AuditTrail, db: Path) -> None:
    fill(trail, 3)
    sql(db, "DELETE FROM audit WHERE seq = 1")
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "record 1 is missing" in result.reason


def test_deleted_last_record_is_caught_by_the_head(trail: AuditTrail, db: Path) -> None:
    # A chain alone cannot see a truncated tail: what is left is still a valid chain. The head (seq and
    # hash of the last record) written in `meta` in the same transaction shows it.
    fill(trail, 4)
    sql(db, "DELETE FROM audit WHERE seq = 4")
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "record 4 was deleted from the end of the trail" in result.reason


def test_deleted_tail_and_head_rewritten_is_caught_by_the_outbox_copy(trail: AuditTrail, db: Path) -> None:
    fill(trail, 4)
    head = next(r for r in trail.records() if r.seq == 2)
    sql(db, "DELETE FROM audit WHERE seq >= 3")
    sql(db, "UPDATE meta SET value = json_set(value, '$.seq', 2, '$.hash', ?) WHERE key = ?", (head.hash, HEAD_KEY))
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "its copy is still in the outbox" in result.reason


def test_deleted_head_mark(trail: AuditTrail, db: Path) -> None:
    fill(trail, 2)
    sql(db, "DELETE FROM meta WHERE key = ?", (HEAD_KEY,))
    result = verify_file(db)
    assert not result.ok
    assert "head mark is missing" in result.reason


def test_a_record_added_by_hand_is_named(trail: AuditTrail, db: Path) -> None:
    fill(trail, 2)
    last = trail.records()[0]
    digest = record_hash(3, "forged", 1.0, "x", "north", "gw-01", "note", "{}", "ok", last.hash)
    sql(db, "INSERT INTO audit VALUES (3, 'forged', 1.0, 'x', 'north', 'gw-01', 'note', '{}', 'ok', ?, ?)",
        (last.hash, digest))
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "added to the trail without Siteline" in result.reason


def test_writing_after_a_truncation_keeps_the_gap_visible(trail: AuditTrail, db: Path) -> None:
    fill(trail, 4)
    sql(db, "DELETE FROM audit WHERE seq = 4")
    nxt = trail.record(CONNECT, site="north", device="gw-01")
    assert nxt.seq == 5  # continues after the head, not after what is left
    result = verify_file(db)
    assert (result.ok, result.first_bad_seq) == (False, 4)


# -- the file itself ---------------------------------------------------------------------------------


def test_missing_or_empty_file_is_an_empty_trail_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite3"
    assert verify_file(missing).ok
    assert verify_file(missing).count == 0
    assert not missing.exists()
    empty = tmp_path / "empty.sqlite3"
    empty.write_bytes(b"")
    assert verify_file(empty).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sqlite3"]


def test_verify_leaves_a_closed_file_as_it_was(trail: AuditTrail, db: Path) -> None:
    fill(trail, 3)
    trail.outbox.close()
    before = (db.read_bytes(), sorted(p.name for p in db.parent.iterdir()))
    assert verify_file(db).ok
    assert (db.read_bytes(), sorted(p.name for p in db.parent.iterdir())) == before


def test_verify_while_a_writer_is_open(trail: AuditTrail, db: Path) -> None:
    fill(trail, 3)
    assert verify_file(db).count == 3
    fill(trail, 1)
    assert verify_file(db).count == 4


def test_not_a_database_is_unreadable(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(AuditUnreadable, match="cannot be read"):
        verify_file(junk)


def test_a_database_without_a_trail_is_empty(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert verify_file(other).ok


def test_a_colleagues_audit_items_imported_by_hand_carry_are_not_ours(trail: AuditTrail, tmp_path: Path) -> None:
    fill(trail, 2)
    with Outbox.open(tmp_path / "colleague.sqlite3") as theirs:
        fill(AuditTrail(theirs, "tech-bo"), 3)
        theirs.export(tmp_path / "handcarry.jsonl.gz")
    assert trail.outbox.import_file(tmp_path / "handcarry.jsonl.gz").added == 3
    result = trail.verify()
    assert result.ok, result.reason
    assert result.count == 2
    trails = {i.payload_obj()["trail"] for i in trail.outbox.items() if i.kind == "audit"}
    assert len(trails) == 2


def damage_and_restart(db: Path) -> Path:
    """The review's case: the outbox is damaged, Outbox.open sets it aside and starts anew, a record follows."""
    with Outbox.open(db) as outbox:
        fill(AuditTrail(outbox, "tech-ana"), 3)
    with db.open("r+b") as fh:
        fh.write(b"this is no longer a database" * 8)
    with Outbox.open(db) as outbox:
        assert outbox.recovered_from is not None
        AuditTrail(outbox, "tech-ana").record(CONNECT, site="north", device="gw-01")
        return outbox.recovered_from


def test_a_damaged_outbox_kept_beside_it_is_reported_not_silently_intact(db: Path) -> None:
    kept = damage_and_restart(db)
    result = verify_file(db)
    assert result.ok
    assert result.count == 1
    assert result.damaged == (kept,)  # ... but it restarted: the earlier records are in the kept file
    assert not result.clean
    assert Path(f"{kept}-wal") not in result.damaged


def test_damaged_files_of_another_outbox_or_none_are_not_counted(tmp_path: Path, db: Path) -> None:
    with Outbox.open(db) as outbox:
        fill(AuditTrail(outbox, "tech-ana"), 2)
    (tmp_path / "other.sqlite3.damaged-20261127T100854Z").write_bytes(b"x")
    (tmp_path / f"{db.name}.damaged-20261127T100854Z-wal").write_bytes(b"x")  # a side file, not a kept outbox
    result = verify_file(db)
    assert (result.ok, result.damaged, result.clean) == (True, (), True)
    assert verify_file(tmp_path / "missing" / "outbox.sqlite3").damaged == ()


@pytest.mark.parametrize(("also", "named"), [
    ((), "head mark says 4 records were written"),
    (("DELETE FROM meta WHERE key = 'audit_head'",), "outbox still holds 4 audit item(s)"),
    (("DELETE FROM items WHERE kind = 'audit'",), "head mark says 4 records were written"),
])
def test_a_dropped_audit_table_is_broken_not_an_empty_trail(trail: AuditTrail, db: Path, also: tuple[str, ...],
                                                            named: str) -> None:
    fill(trail)
    trail.outbox.close()
    for statement in ("DROP TABLE audit", *also):
        sql(db, statement)
    result = verify_file(db)
    assert (result.ok, result.count, result.first_bad_seq) == (False, 0, 1)
    assert "audit table is missing" in result.reason
    assert named in result.reason


def test_a_fresh_outbox_without_audit_items_still_verifies_after_the_table_is_gone(db: Path) -> None:
    """Nothing says a trail ever existed (no head, no audit items): an empty trail, as before."""
    Outbox.open(db).close()
    sql(db, "DROP TABLE audit")
    assert verify_file(db).ok
