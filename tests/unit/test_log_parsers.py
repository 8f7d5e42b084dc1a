"""Log parsers against real-format goldens (tests/data/logs) and garbage: never raise, flag the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.logs import LogRecord, Source, parse_chunk, parse_line
from siteline.core.logs.record import priority_from_name

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"
T0 = 1795778711.0  # 2026-11-27 11:25:11 UTC


def _read(name: str, source: Source, **opts: object) -> list[LogRecord]:
    return parse_chunk((DATA / name).read_text().splitlines(), source, **opts)


def test_journal_json_fields_binary_multiline_and_torn_line() -> None:
    records = _read("journal.jsonl", Source.JOURNAL)
    first, kernel, _rauc, binary, multi, torn = records
    assert first == LogRecord(T0 + 0.123456, "gw-site-a", "ModemManager.service", 612, 3,
                              "<warn>  [modem0] couldn't load operator name: Serial command timed out", Source.JOURNAL)
    assert (kernel.unit, kernel.pid, kernel.priority) == ("kernel", None, 6)
    assert binary.message == "binary \ufffd data"
    assert multi.message.count("\n") == 2
    assert multi.priority == 2
    assert torn.problem is not None
    assert torn.message.startswith('{"__CURSOR"')
    assert torn.time is None


def test_journal_line_by_line_matches_batch() -> None:
    lines = (DATA / "journal.jsonl").read_text().splitlines()
    assert [parse_line(line, Source.JOURNAL) for line in lines] == _read("journal.jsonl", Source.JOURNAL)


@pytest.mark.parametrize("line", ["[1, 2]", "{}", '{"MESSAGE": 5, "PRIORITY": "9", "_PID": "x"}', "null"])
def test_journal_odd_json(line: str) -> None:
    record = parse_line(line, Source.JOURNAL)
    assert record.priority is None
    assert record.pid is None


def test_busybox_logread() -> None:
    records = _read("logread-busybox.txt", Source.LOGREAD, year=2026)
    assert records[0] == LogRecord(T0, "gw-site-a", "udhcpc", 1203, 3, "no lease, failing", Source.LOGREAD)
    assert records[2].priority == 4
    assert records[3].unit == "kernel"
    assert records[3].priority == 5
    assert records[4].time == T0 - (25 * 86400 + 8 * 3600 + 21 * 60 + 6)  # "Nov  2 03:04:05"
    assert records[5].unit == ""
    assert records[5].message.startswith("syslogd started")
    assert records[6].problem
    assert records[6].message == "garbage that is not a logread line"


def test_openwrt_logread_has_its_own_year() -> None:
    records = _read("logread-openwrt.txt", Source.LOGREAD, year=1999)
    assert [(r.time, r.unit, r.pid, r.priority) for r in records] == [
        (T0, "netifd", None, 5), (T0 + 1, "uhttpd", 1450, 3), (T0 + 2, "kernel", None, 4)]


def test_dmesg_plain_keeps_seconds_without_boot_time() -> None:
    records = _read("dmesg.txt", Source.DMESG)
    assert records[1].message == "[    1.234567] mmc0: new high speed SDHC card at address aaaa"
    assert records[1].time is None
    assert records[1].unit == "kernel"
    assert records[-1].problem is not None


@pytest.mark.parametrize("name", ["dmesg-raw.txt", "dmesg-x.txt"])
def test_dmesg_levels_and_boot_time(name: str) -> None:
    records = _read(name, Source.DMESG, boot_time=T0)
    assert [r.priority for r in records] == [6, 3, 4]
    assert records[1].time == pytest.approx(T0 + 5.1)
    assert records[1].message.startswith("mmcblk0: error -110")


@pytest.mark.parametrize("name", ["dmesg-T.txt", "dmesg-iso.txt"])
def test_dmesg_wall_clock_formats(name: str) -> None:
    records = _read(name, Source.DMESG)
    assert records[0].time == pytest.approx(T0, abs=0.2)
    assert records[1].time == pytest.approx(T0 + 12, abs=0.6)  # the ISO line is in +01:00
    assert records[1].message.startswith("usb 1-1:")


def test_syslog_file() -> None:
    records = _read("syslog.txt", Source.SYSLOG, year=2026)
    first = records[0]
    assert (first.unit, first.pid, first.host, first.time) == ("NetworkManager", 588, "gw-site-a", T0)
    assert records[2].unit == "kernel"
    assert records[3].pid == 1
    assert records[5].priority == 6
    assert records[5].unit == "rauc"
    assert records[6].time == pytest.approx(T0 + 5.000001)
    assert records[6].unit == "sshd"
    assert records[7].unit == ""
    assert records[7].message == "message without a tag at all"
    assert records[8].problem
    assert records[8].message == "-- MARK --"


def test_bad_dates_are_flagged_not_raised() -> None:
    record = parse_line("Foo 99 99:99:99 host tag: hi", Source.SYSLOG)
    assert record.time is None
    assert record.problem == "bad time"
    assert parse_line("<30>2026-13-45T99:00:00 host tag: x", Source.SYSLOG).time is None


def test_priority_names() -> None:
    assert [priority_from_name(n) for n in ("err", "error", "warn", "7", "8", "nope")] == [3, 3, 4, 7, None, None]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(list(Source)))
def test_garbage_never_raises(text: str, source: Source) -> None:
    record = parse_line(text, source)
    assert isinstance(record, LogRecord)
    assert record.source is source
    assert parse_chunk([text, text], source) == [record, record]


def test_journal_batch_without_the_torn_line_matches_line_by_line() -> None:
    lines = (DATA / "journal.jsonl").read_text().splitlines()[:-1]
    assert parse_chunk(lines, Source.JOURNAL) == [parse_line(line, Source.JOURNAL) for line in lines]


_KEYS = ["__REALTIME_TIMESTAMP", "_HOSTNAME", "_SYSTEMD_UNIT", "SYSLOG_IDENTIFIER", "_PID", "SYSLOG_PID", "PRIORITY",
         "MESSAGE", "_TRANSPORT"]
_ODD = ["1", "12", "kernel", "", " 7", "1_0", "-5", "9" * 400]
_VALUES = st.one_of(st.text(max_size=5), st.sampled_from(_ODD), st.none(), st.integers(-3, 300),
                    st.lists(st.integers(0, 255), max_size=3))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _VALUES), min_size=1, max_size=6))
def test_journal_batch_path_agrees_with_line_path(entries: list[dict[str, object]]) -> None:
    lines = [json.dumps(e) for e in entries]
    assert parse_chunk(lines, Source.JOURNAL) == [parse_line(line, Source.JOURNAL) for line in lines]
