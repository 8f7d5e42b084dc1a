"""The outbox store: ordering, state transitions, attempts, usage, transactions, a full disk."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from siteline.core.outbox.model import InvalidItemError, NewItem, Priority, State
from siteline.core.outbox.store import Outbox, OutboxError, OutboxFullError, default_path, month_of


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox.open(tmp_path / "outbox.sqlite3") as ob:
        yield ob


def item(kind: str = "note", n: int = 0, **kw: object) -> NewItem:
    return NewItem(kind=kind, site="site-a", device="gw1", payload={"n": n}, **kw)  # type: ignore[arg-type]


def test_put_returns_a_durable_pending_item(outbox: Outbox, tmp_path: Path) -> None:
    put = outbox.put(item("note", 1))
    assert put.state is State.PENDING
    assert put.attempts == 0
    assert put.priority == Priority.NORMAL
    assert put.payload == '{"n":1}'
    assert put.payload_obj() == {"n": 1}
    with Outbox.open(tmp_path / "outbox.sqlite3") as other:  # a second connection (another process) sees it
        assert other.get(put.id) == put


def test_pending_orders_by_priority_then_time(outbox: Outbox) -> None:
    low = outbox.put(item("telemetry", 1))
    normal = outbox.put(item("note", 2))
    high1 = outbox.put(item("audit", 3))
    high2 = outbox.put(item("flash-result", 4))
    forced = outbox.put(item("telemetry", 5, priority=Priority.HIGH))
    assert [i.id for i in outbox.pending()] == [high1.id, high2.id, forced.id, normal.id, low.id]
    assert [i.id for i in outbox.pending(max_priority=Priority.HIGH)] == [high1.id, high2.id, forced.id]
    assert len(outbox.pending(limit=2)) == 2


def test_many_items_in_one_millisecond_keep_their_order(outbox: Outbox) -> None:
    made = outbox.put_many(item("note", n) for n in range(300))
    assert [i.id for i in outbox.pending(limit=1000)] == [i.id for i in made]
    assert [i.id for i in made] == sorted(i.id for i in made)


def test_state_transitions_and_attempt_history(outbox: Outbox) -> None:
    a, b, c = outbox.put_many([item(n=1), item(n=2), item(n=3)])
    outbox.record_failure([a.id, b.id], "broker unreachable")
    outbox.record_failure([b.id], "payload refused", permanent=True)
    outbox.mark_sent([a.id, c.id], bytes_on_wire=101, at=1_800_000_000.0)
    got_a, got_b, got_c = (outbox.get(x.id) for x in (a, b, c))
    assert got_a is not None
    assert got_b is not None
    assert got_c is not None
    assert (got_a.state, got_a.attempts, got_a.last_error, got_a.sent_at) == (State.SENT, 2, "", 1_800_000_000.0)
    assert (got_b.state, got_b.attempts, got_b.last_error) == (State.FAILED, 2, "payload refused")
    assert [(t.outcome, t.error) for t in outbox.attempts(a.id)] == [("retry", "broker unreachable"), ("sent", "")]
    assert [t.outcome for t in outbox.attempts(b.id)] == ["retry", "failed"]
    assert sum(t.bytes for t in outbox.attempts(a.id) + outbox.attempts(c.id)) == 101
    assert outbox.pending() == []
    outbox.mark_sent([a.id], 50)  # a duplicate PUBACK: no second attempt, but the bytes did go out
    assert len(outbox.attempts(a.id)) == 2
    outbox.record_failure([a.id], "late error", permanent=True)  # a sent item stays sent
    assert outbox.get(a.id).state is State.SENT  # type: ignore[union-attr]
    assert outbox.retry() == 1
    assert [i.id for i in outbox.pending()] == [b.id]
    assert outbox.retry([b.id]) == 0


def test_items_newest_first_and_by_state(outbox: Outbox) -> None:
    made = outbox.put_many(item(n=n) for n in range(5))
    outbox.mark_sent([made[0].id], 10)
    assert [i.id for i in outbox.items()] == [i.id for i in reversed(made)]
    assert [i.id for i in outbox.items(State.SENT)] == [made[0].id]
    assert [i.id for i in outbox.items(limit=2, offset=1)] == [made[3].id, made[2].id]


def test_status_counts_and_usage_per_month(outbox: Outbox) -> None:
    made = outbox.put_many([item("audit"), item("telemetry"), item("telemetry"), item("note")])
    outbox.mark_sent([made[0].id], 300)
    outbox.record_failure([made[3].id], "no", permanent=True)
    outbox.add_usage(40)
    outbox.add_usage(1000, at=1_790_000_000.0)  # another month
    outbox.add_usage(0)
    status = outbox.status()
    assert (status.pending, status.sent, status.failed) == (2, 1, 1)
    assert status.pending_by_priority == {Priority.LOW: 2}
    assert status.oldest_pending == made[1].created
    assert status.month == month_of()
    assert status.bytes_this_month == 340
    assert outbox.usage(month_of(1_790_000_000.0)) == 1000
    assert outbox.usage("1999-01") == 0


def test_put_many_is_all_or_nothing(outbox: Outbox) -> None:
    with pytest.raises(InvalidItemError, match="kind"):
        outbox.put_many([item(n=1), item("Bad/Kind")])
    assert outbox.status().pending == 0


def test_transaction_writes_other_tables_atomically(outbox: Outbox) -> None:
    with outbox.transaction() as tx:
        put = tx.put(item("audit"))
        tx.conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    assert outbox.get(put.id) is not None
    lost: list[str] = []

    def failing_writer() -> None:
        with outbox.transaction() as tx:
            lost.append(tx.put(item("audit")).id)
            tx.conn.execute("INSERT INTO meta (key, value) VALUES ('k2', 'v')")
            raise RuntimeError("the audit writer failed")

    with pytest.raises(RuntimeError):
        failing_writer()
    assert outbox.get(lost[0]) is None
    with outbox.transaction() as tx:
        assert tx.conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 1
        with pytest.raises(OutboxError, match="nest"), outbox.transaction():
            pass


def test_a_full_disk_is_a_clear_error_and_loses_nothing(outbox: Outbox) -> None:
    kept = outbox.put_many(item(n=n) for n in range(20))
    conn = outbox._conn
    assert conn is not None
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as a full disk gives
    big = NewItem("snapshot", "site-a", "gw1", {"blob": "x" * 200_000})
    with pytest.raises(OutboxFullError, match="full; free space on /") as caught:
        outbox.put(big)
    assert "Everything saved before is kept" in str(caught.value)
    assert [i.id for i in outbox.pending(limit=100)] == [i.id for i in kept]
    conn.execute("PRAGMA max_page_count = 1073741823")  # space freed: the store keeps working
    assert outbox.put(big).kind == "snapshot"


def test_threads_share_one_outbox(outbox: Outbox) -> None:
    def work(k: int) -> None:
        for n in range(25):
            outbox.put(item(n=k * 100 + n))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outbox.status().pending == 100


def test_closed_outbox_says_so(tmp_path: Path) -> None:
    ob = Outbox.open(tmp_path / "o.sqlite3")
    ob.close()
    ob.close()
    with pytest.raises(OutboxError, match="closed"):
        ob.pending()


def test_default_path_is_private_under_siteline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    with Outbox.open() as ob:
        assert ob.path == default_path() == tmp_path / "data" / "outbox.sqlite3"
        ob.put(item())
    assert ob.path.stat().st_mode & 0o777 == 0o600
    assert ob.path.parent.stat().st_mode & 0o777 == 0o700
    with sqlite3.connect(ob.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_two_connections_write_at_once_without_lock_errors(tmp_path: Path) -> None:
    # The GUI, the CLI and a sync each hold their own connection to one file.
    path = tmp_path / "shared.sqlite3"
    with Outbox.open(path) as first, Outbox.open(path) as second:
        errors: list[BaseException] = []

        def work(ob: Outbox, k: int) -> None:
            try:
                for n in range(60):
                    ob.put(item(n=k * 1000 + n))
                    if n % 10 == 0:
                        ob.mark_sent([i.id for i in ob.pending(limit=3)], 30)
            except BaseException as exc:  # reported below: a thread's exception is otherwise lost
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(ob, k)) for k, ob in enumerate((first, second, first, second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors
        st = first.status()
        assert st.pending + st.sent == 240
        assert st.bytes_this_month == second.status().bytes_this_month > 0
