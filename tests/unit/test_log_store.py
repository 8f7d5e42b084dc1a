"""The columnar log store (filters, regex search, next/previous, time jump) and the lazy file index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.logs import LogFile, LogRecord, LogStore, Source

UNITS = ("ModemManager", "NetworkManager", "rauc", "sshd")


def _lines(n: int) -> list[str]:
    return [f"Nov 27 11:{i // 60 % 60:02d}:{i % 60:02d} gw daemon.{('err', 'warn', 'info', 'debug')[i % 4]} "
            f"{UNITS[i % 3]}[{100 + i}]: line {i} {'ALARM ' if i % 7 == 0 else ''}é" for i in range(n)]


@pytest.fixture
def store() -> LogStore:
    s = LogStore()
    assert s.ingest(_lines(600), Source.LOGREAD, year=2026) == 600
    return s


def test_round_trip(store: LogStore) -> None:
    rec = store[7]
    assert (rec.unit, rec.pid, rec.priority, rec.host, rec.source) == ("NetworkManager", 107, 7, "gw", Source.LOGREAD)
    assert rec.message == "line 7 ALARM é"
    assert rec.problem is None
    assert store[-1].message == "line 599 é"
    assert len(store) == 600
    assert store.units() == ["ModemManager", "NetworkManager", "rauc"]
    with pytest.raises(IndexError):
        store[600]


def test_append_records_with_newlines_problems_and_unknowns() -> None:
    s = LogStore()
    s.append(LogRecord(None, "", "", None, None, "two\nlines", Source.JOURNAL, problem="x"))
    s.append(LogRecord(1.5, "h", "u", 2**40, 7, "ünï", Source.TEXT))
    assert s[0] == LogRecord(None, "", "", None, None, "two\u2028lines", Source.JOURNAL, "x")
    assert s[1] == LogRecord(1.5, "h", "u", None, 7, "ünï", Source.TEXT)  # a pid that does not fit is dropped
    assert s.filter(regex="^two") == s.filter(regex="lines$")
    assert list(s.filter(regex="^lines")) == []


def test_out_of_range_priority_is_unknown() -> None:
    s = LogStore()
    s.append(LogRecord(None, "", "", -5, 9, "m", Source.TEXT))
    assert s[0].priority is None
    assert s[0].pid is None


def test_filters(store: LogStore) -> None:
    assert list(store.filter(max_priority=3)) == list(range(0, 600, 4))
    assert list(store.filter(units=["rauc"])) == list(range(2, 600, 3))
    assert list(store.filter(units=["nope"])) == []
    t = store[100].time
    assert t is not None
    assert list(store.filter(since=t, until=t + 9)) == list(range(100, 110))
    both = store.filter(max_priority=4, units=["ModemManager", "rauc"], regex="ALARM")
    assert list(both) == [i for i in range(0, 600, 7) if i % 4 <= 1 and i % 3 != 1]
    assert len(store.filter()) == 600


def test_unknown_priority_kept_or_not() -> None:
    s = LogStore()
    s.ingest(["plain line"], Source.TEXT)
    assert list(s.filter(max_priority=3)) == [0]
    assert list(s.filter(max_priority=3, keep_unknown_priority=False)) == []


def test_regex_search_next_previous(store: LogStore) -> None:
    alarms = list(range(0, 600, 7))
    assert list(store.filter(regex=r"ALARM")) == alarms
    assert list(store.filter(regex=r"alarm", ignore_case=True)) == alarms
    assert list(store.filter(regex=r"é$")) == list(range(600))
    assert store.find("ALARM", 0) == 7
    assert store.find("ALARM", 7) == 14
    assert store.find("ALARM", 595) is None
    assert store.find("ALARM", 14, backward=True) == 7
    assert store.find("ALARM", 0, backward=True) is None
    assert store.find("ALARM", 600, backward=True) == 595
    assert store.find("ALARM", -1, backward=True) is None
    assert store.find(r"line 3 ", -1) == 3
    with pytest.raises(re.error):
        store.filter(regex="(")


def test_backward_search_over_big_gap() -> None:
    s = LogStore()
    s.ingest(["needle"] + ["x" * 200] * 5000, Source.TEXT)
    assert s.find("needle", len(s) - 1, backward=True) == 0


def test_time_jump_and_memory(store: LogStore) -> None:
    t = store[250].time
    assert t is not None
    assert store.first_at_or_after(t) == 250
    assert store.first_at_or_after(t + 1e6) is None
    assert store.nbytes() / len(store) < 40 + 20  # columns ~30 bytes + a ~20-byte message


def test_journal_ingest_with_a_torn_line() -> None:
    data = Path(__file__).resolve().parents[1] / "data" / "logs" / "journal.jsonl"
    s = LogStore()
    s.ingest(data.read_text().splitlines(), Source.JOURNAL)
    assert len(s) == 6
    assert s[5].problem
    assert list(s.filter(units=["kernel"])) == [1]


def test_log_file_index(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    lines = [f"line {i} " + "x" * (i % 50) for i in range(20000)]
    path.write_text("\n".join(lines) + "\nlast without newline")
    with LogFile(path, Source.TEXT) as log:
        log.BLOCK = 4096
        assert not log.index_more(max_bytes=100_000)
        assert 0 < len(log) < 20000
        assert log.raw_lines(0, 3) == lines[:3]
        while not log.index_more(max_bytes=100_000):
            pass
        assert len(log) == 20001
        assert log.complete
        assert log.raw_lines(12345, 4) == lines[12345:12349]
        assert log.raw_lines(19999, 5) == [lines[-1], "last without newline"]
        assert log.records(5, 1)[0].message == lines[5]
        assert log.raw_lines(30000, 2) == []


def test_log_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "grow.log"
    path.write_text("a\nb\nc")
    with LogFile(path) as log:
        log.index_more()
        assert log.raw_lines(0, 10) == ["a", "b", "c"]
        with path.open("a") as fh:
            fh.write("\nd\n")
        log.index_more()
        assert log.raw_lines(0, 10) == ["a", "b", "c", "d"]  # the unfinished "c" is read again
        with path.open("a") as fh:
            fh.write("e")
        log.index_more()
        assert log.raw_lines(3, 10) == ["d", "e"]
        assert len(log) == 5


_word = st.sampled_from(["ab", "b", "x", "é", " ", "\\", "a\nb"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(_word, max_size=5).map("".join), st.sampled_from([None, 0, 3, 7]),
                          st.sampled_from(["u1", "u2", ""])), max_size=30),
       st.sampled_from(["ab", "^b", "b$", "x|é", r"\\"]), st.integers(-2, 32))
def test_matches_a_naive_model(rows: list[tuple[str, int | None, str]], regex: str, start: int) -> None:
    s = LogStore()
    for message, prio, unit in rows:
        s.append(LogRecord(None, "h", unit, None, prio, message, Source.TEXT))
    texts = [m.replace("\n", "\u2028") for m, _, _ in rows]
    pattern = re.compile(regex, re.MULTILINE)
    hits = [i for i, t in enumerate(texts) if pattern.search(t)]
    assert list(s.filter(regex=regex)) == hits
    assert list(s.filter(max_priority=3, units=["u1"])) == [
        i for i, (_, p, u) in enumerate(rows) if (p is None or p <= 3) and u == "u1"]
    assert s.find(regex, start) == next((i for i in hits if i > start), None)
    assert s.find(regex, start, backward=True) == next((i for i in reversed(hits) if i < start), None)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 20).map(float)), max_size=25), st.integers(-1, 21),
       st.integers(-1, 21), st.booleans())
def test_time_filters_ordered_or_not(times: list[float | None], since: int, until: int, ordered: bool) -> None:
    if ordered:
        times = sorted(t for t in times if t is not None)
    s = LogStore()
    for t in times:
        s.append(LogRecord(t, "", "", None, None, "m", Source.TEXT))
    assert list(s.filter(since=since, until=until)) == [
        i for i, t in enumerate(times) if t is not None and since <= t <= until]
    assert list(s.filter(since=since)) == [i for i, t in enumerate(times) if t is not None and since <= t]
    assert s.first_at_or_after(since) == next((i for i, t in enumerate(times) if t is not None and t >= since), None)


def test_a_message_that_is_not_valid_unicode_leaves_the_columns_aligned() -> None:
    """journald JSON may carry "\\ud800": it is stored as U+FFFD, and every row keeps its own message."""
    from siteline.core.logs.record import Source as Src
    from siteline.core.logs.store import LogStore as Store

    store = Store()
    store.ingest(['{"MESSAGE": "bad \\ud800 here", "PRIORITY": "3", "__REALTIME_TIMESTAMP": "1700000000000000"}',
                  '{"MESSAGE": "next", "PRIORITY": "6", "__REALTIME_TIMESTAMP": "1700000001000000"}'], Src.JOURNAL)
    store.ingest(["plain after"], Src.TEXT)
    assert [store.message(i) for i in range(len(store))] == ["bad \ufffd here", "next", "plain after"]
    assert store[1].priority == 6
