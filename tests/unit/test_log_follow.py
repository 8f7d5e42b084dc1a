"""Choosing a device's log source, the commands that read it, batching a stream, resuming after a drop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import pytest

from siteline.core.errors import TransportError
from siteline.core.logs.filters import RecordFilter, parse_priority_range, unit_matches
from siteline.core.logs.follow import (
    FollowEvent,
    FollowStatus,
    LogBatch,
    LogReadError,
    NoLogToolError,
    Resume,
    batched,
    follow,
    read_recent,
)
from siteline.core.logs.parsers import parse_line
from siteline.core.logs.record import Source
from siteline.core.logs.since import parse_since
from siteline.core.logs.sources import (
    GAP_MARK,
    DeviceLogs,
    Kind,
    LogQuery,
    choose,
    detect_command,
    last_cursor,
    parse_detect,
    read_command,
    stream_command,
)
from siteline.core.transports.base import Result

DETECT_ALL = "have journalctl\nhave logread\nhave dmesg\nhave tail\nhave awk\nuptime 100.5 90.1\nnow 1000.5\n"


def _found(*tools: str) -> DeviceLogs:
    return DeviceLogs(frozenset(tools))


# -- choosing -----------------------------------------------------------------------------------------


def test_detection_is_one_posix_command_and_its_answer_is_read() -> None:
    command = detect_command(LogQuery(file="/var/log/my app.log"))
    assert "command -v journalctl" in command
    assert "'/var/log/my app.log'" in command
    found = parse_detect(DETECT_ALL + "file-readable\n", LogQuery(file="/x"))
    assert found.tools == {"journalctl", "logread", "dmesg", "tail", "awk"}
    assert found.boot_time == pytest.approx(900.0)
    assert found.file_readable is True
    assert parse_detect("garbage\x00\nuptime x\nnow\n", LogQuery()) == DeviceLogs(frozenset())


def test_journald_first_then_logread_then_dmesg() -> None:
    assert choose(_found("journalctl", "logread", "dmesg"), LogQuery()) is Kind.JOURNAL
    assert choose(_found("logread", "dmesg"), LogQuery()) is Kind.LOGREAD
    assert choose(_found("dmesg"), LogQuery()) is Kind.DMESG
    assert choose(_found(), LogQuery()) is None
    assert choose(_found("journalctl", "dmesg"), LogQuery(kind=Kind.DMESG)) is Kind.DMESG
    assert choose(_found("journalctl"), LogQuery(kind=Kind.LOGREAD)) is None
    assert choose(_found("journalctl", "tail"), LogQuery(file="/var/log/x")) is Kind.FILE


class Runner:
    """Answers commands from a script: the first whose key is in the command."""

    def __init__(self, answers: dict[str, Result]) -> None:
        self.answers, self.commands = answers, []  # type: ignore[var-annotated]

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        self.commands.append(command)
        for key, result in self.answers.items():
            if key in command:
                return result
        return Result(127, "", "not found")


@pytest.mark.asyncio
async def test_no_tool_and_unreadable_file_say_what_to_do() -> None:
    with pytest.raises(NoLogToolError, match="no log tool"):
        await read_recent(Runner({"command -v": Result(0, "uptime 1 1\n")}), LogQuery())
    with pytest.raises(NoLogToolError, match="Cannot read /nope"):
        await read_recent(Runner({"command -v": Result(0, "have tail\n")}), LogQuery(file="/nope"))


@pytest.mark.asyncio
async def test_a_failing_log_command_is_a_read_error_with_its_message() -> None:
    runner = Runner({"command -v": Result(0, DETECT_ALL),
                     "journalctl": Result(1, "", "Failed to parse timestamp: yesterdayy\n")})
    with pytest.raises(LogReadError, match="Failed to parse timestamp"):
        await read_recent(runner, LogQuery(since="yesterdayy"))


# -- commands ------------------------------------------------------------------------------------------


def test_journal_commands_quote_and_resume_by_cursor() -> None:
    query = LogQuery(unit="my unit';rm -rf /", priority="err", since="-1h", lines=7)
    first = stream_command(Kind.JOURNAL, query)
    assert first.startswith("exec journalctl -o json --no-pager -f -n 7 --since=-1h -u ")
    assert "'my unit'\"'\"';rm -rf /'" in first
    again = stream_command(Kind.JOURNAL, query, cursor="s=a;i=1f")
    assert "'--after-cursor=s=a;i=1f'" in again
    assert " -n " not in again
    assert "--since" not in again
    assert " -f" not in read_command(Kind.JOURNAL, query)


def test_last_cursor_is_taken_from_the_newest_line() -> None:
    lines = [json.dumps({"__CURSOR": 's=1;i=1"x', "MESSAGE": "a"}), json.dumps({"__CURSOR": "s=1;i=2"}), "garbage"]
    assert last_cursor(lines) == "s=1;i=2"
    assert last_cursor(lines[:1]) == 's=1;i=1"x'
    assert last_cursor(["{", ""]) is None


def _sh(command: str) -> list[str]:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=True,
                          timeout=10).stdout.splitlines()


def test_text_catch_up_gives_lines_after_the_last_seen_or_says_gap(tmp_path: Path) -> None:
    log = tmp_path / "app's log"
    log.write_text("".join(f"line {i} 'q' \\n $HOME\n" for i in range(10)))
    query = LogQuery(lines=3, file=str(log))
    assert _sh(read_command(Kind.FILE, query)) == [f"line {i} 'q' \\n $HOME" for i in (7, 8, 9)]
    assert _sh(read_command(Kind.FILE, query, last_line="line 5 'q' \\n $HOME")) == \
        [f"line {i} 'q' \\n $HOME" for i in (6, 7, 8, 9)]
    assert _sh(read_command(Kind.FILE, query, last_line="line 9 'q' \\n $HOME")) == []
    assert _sh(read_command(Kind.FILE, query, last_line="gone")) == [GAP_MARK] + \
        [f"line {i} 'q' \\n $HOME" for i in (7, 8, 9)]


def test_text_stream_catches_up_then_passes_new_lines_at_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f"old {i}\n" for i in range(5)))
    proc = subprocess.Popen(["/bin/sh", "-c", stream_command(Kind.FILE, LogQuery(lines=2, file=str(log)),
                                                            last_line="old 1")],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        assert [proc.stdout.readline() for _ in range(3)] == ["old 2\n", "old 3\n", "old 4\n"]
        began = time.monotonic()
        with log.open("a") as fh:
            fh.write("new 1\n")
        assert proc.stdout.readline() == "new 1\n"
        assert time.monotonic() - began < 5
        proc.send_signal(signal.SIGTERM)  # to the shell alone, as sshd delivers the client's signal
        proc.wait(5)
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _group_alive(proc.pid), "tail -F outlived the stream"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of the group count as gone
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def test_resume_drops_the_gap_mark_and_remembers_where_it_was() -> None:
    resume = Resume()
    lines, gap = resume.take([GAP_MARK, "a", "b"], Kind.LOGREAD)
    assert (lines, gap, resume.last_line) == (["a", "b"], True, "b")
    lines, gap = resume.take(['{"__CURSOR":"s=1;i=9","MESSAGE":"m"}'], Kind.JOURNAL)
    assert resume.cursor == "s=1;i=9"
    assert not gap


# -- batching --------------------------------------------------------------------------------------------


async def _source(lines: list[str], pause_every: int = 0, pause: float = 0.0,
                  fail: Exception | None = None) -> AsyncIterator[str]:
    for i, line in enumerate(lines):
        if pause_every and i and i % pause_every == 0:
            await asyncio.sleep(pause)
        elif i % 500 == 0:
            await asyncio.sleep(0)  # a real stream yields to the loop between network reads
        yield line
    if fail is not None:
        raise fail


@pytest.mark.asyncio
async def test_a_flood_comes_in_a_few_big_batches_in_order() -> None:
    lines = [f"l{i}" for i in range(200_000)]
    batches = [b async for b in batched(_source(lines), window=0.05)]
    assert [x for b in batches for x in b] == lines
    assert len(batches) < 40


@pytest.mark.asyncio
async def test_a_slow_stream_is_handed_on_within_the_window() -> None:
    stamps: list[tuple[int, float]] = []
    began = time.monotonic()
    async for batch in batched(_source([f"l{i}" for i in range(4)], pause_every=1, pause=0.2), window=0.02):
        stamps.append((len(batch), time.monotonic() - began))
    assert [n for n, _ in stamps] == [1, 1, 1, 1]
    assert stamps[0][1] < 0.15  # the first line did not wait for the others


@pytest.mark.asyncio
async def test_a_full_batch_goes_at_once_and_an_error_comes_after_the_lines() -> None:
    got: list[list[str]] = []

    async def drain() -> None:
        async for batch in batched(_source(["a"] * 25, fail=TransportError("broke")), window=5.0, max_lines=10):
            got.append(batch)

    with pytest.raises(TransportError, match="broke"):
        await drain()
    assert sum(map(len, got)) == 25
    assert max(map(len, got)) <= 10


# -- following -------------------------------------------------------------------------------------------


def _entry(seq: int) -> str:
    return json.dumps({"__CURSOR": f"s=x;i={seq:x}", "__REALTIME_TIMESTAMP": str(1_700_000_000_000_000 + seq),
                       "MESSAGE": f"m{seq}", "PRIORITY": "6", "_HOSTNAME": "gw"})


class FakeStream:
    def __init__(self, owner: StreamingDevice, command: str) -> None:
        self.owner, self.command = owner, command
        self.exit_code: int | None = None
        self.stderr_tail = ""

    async def __aenter__(self) -> FakeStream:
        self.owner.open_streams += 1
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.owner.open_streams -= 1

    def __aiter__(self) -> AsyncIterator[str]:
        return self.owner.lines(self.command)


class StreamingDevice(Runner):
    """A device whose journal has entries 1..N; the first stream breaks after 3 entries."""

    def __init__(self) -> None:
        super().__init__({"command -v": Result(0, DETECT_ALL)})
        self.streams: list[str] = []
        self.open_streams = 0
        self.reconnects = 0

    def stream(self, command: str) -> FakeStream:
        self.streams.append(command)
        return FakeStream(self, command)

    async def lines(self, command: str) -> AsyncIterator[str]:
        start = int(command.split("i=")[1].split("'")[0], 16) + 1 if "after-cursor" in command else 1
        for seq in range(start, start + 3):
            yield _entry(seq)
        if len(self.streams) == 1:
            raise TransportError("The link to the device broke.")
        await asyncio.sleep(30)

    async def reconnect(self) -> None:
        self.reconnects += 1


async def _collect(events: AsyncIterator[FollowEvent], records: int) -> list[FollowEvent]:
    seen: list[FollowEvent] = []
    count = 0
    async for event in events:
        seen.append(event)
        count += len(event.lines) if isinstance(event, LogBatch) else 0
        if count >= records:
            break
    return seen


@pytest.mark.asyncio
async def test_a_dropped_stream_resumes_from_the_journal_cursor_without_repeats() -> None:
    device = StreamingDevice()
    events = follow(device, lines=5, window=0.01, poll_interval=0.01, reconnect=device.reconnect)
    async with contextlib.aclosing(events):
        seen = await _collect(events, 6)
    messages = [parse_line(line, Source.JOURNAL).message for e in seen if isinstance(e, LogBatch) for line in e.lines]
    assert messages == ["m1", "m2", "m3", "m4", "m5", "m6"]
    statuses = [e.event for e in seen if isinstance(e, FollowStatus)]
    assert statuses == ["following", "link-lost", "resumed"]
    assert "--after-cursor=s=x;i=3" in device.streams[1]
    assert device.reconnects == 1
    assert device.open_streams == 0  # leaving the loop closed the stream (and so the remote command)


@pytest.mark.asyncio
async def test_without_streams_it_polls_with_the_cursor() -> None:
    runner = Runner({"command -v": Result(0, DETECT_ALL), "--after-cursor": Result(0, _entry(3) + "\n"),
                     "journalctl": Result(0, _entry(1) + "\n" + _entry(2) + "\n")})
    events = follow(runner, poll_interval=0.01)
    async with contextlib.aclosing(events):
        seen = await _collect(events, 4)
    assert isinstance(seen[0], FollowStatus)
    assert seen[0].event == "polling"
    assert "every 0.01 s" in seen[0].text
    polls = [c for c in runner.commands if c.startswith("journalctl")]
    assert "-n 100" in polls[0]
    assert "--after-cursor=s=x;i=2" in polls[1]
    assert "--after-cursor=s=x;i=3" in polls[2]


@pytest.mark.asyncio
async def test_retries_run_out_with_the_transport_error() -> None:
    class Broken(Runner):
        def stream(self, command: str) -> FakeStream:
            raise TransportError("Not connected.")

    events = follow(Broken({"command -v": Result(0, DETECT_ALL)}), retries=2, poll_interval=0.001)
    async def drain() -> None:
        async with contextlib.aclosing(events):
            await _collect(events, 1)

    with pytest.raises(TransportError, match="Not connected"):
        await drain()


# -- filters and times ----------------------------------------------------------------------------------


def test_priority_ranges_units_and_since() -> None:
    assert parse_priority_range("err") == (0, 3)
    assert parse_priority_range("warning..err") == (3, 4)
    assert parse_priority_range("4") == (0, 4)
    assert parse_priority_range("loud") is None
    assert unit_matches("ModemManager.service", "ModemManager")
    assert unit_matches("udhcpc", "udhcpc.service")
    assert not unit_matches("kernel", "ModemManager")
    record = parse_line("Nov 27 11:25:11 gw daemon.err udhcpc[1203]: no lease, failing", Source.LOGREAD, year=2026)
    assert RecordFilter(unit="udhcpc", priorities=(0, 3)).matches(record)
    assert not RecordFilter(priorities=(0, 2)).matches(record)
    assert not RecordFilter(since=(record.time or 0) + 1).matches(record)
    undated = parse_line("[    1.000000] usb 1-1: new", Source.DMESG)
    assert RecordFilter(priorities=(0, 3), since=1e12).matches(undated)  # cannot be judged: kept


def test_since_forms() -> None:
    now = 1_795_778_711.0
    assert parse_since("-1h", now) == now - 3600
    assert parse_since("10 min ago", now) == now - 600
    assert parse_since("@1795778000", now) == 1795778000.0
    assert parse_since("2026-11-27T11:25:11Z", now) == pytest.approx(1795778711.0)
    assert parse_since("today", now) is not None
    assert parse_since("today", now) <= now
    for bad in ("", "soon", "-1 fortnight", "25:00", "x" * 100, "@nan?"):
        assert parse_since(bad, now) is None


def test_the_printer_shows_garbage_as_it_came_and_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    from siteline.logs_cli import Printer

    lines = [_entry(1), '{"MESSAGE": [104, 105], "PRIORITY": "9"}', "not json \x1b[2J\udcff", "", "[]"]
    Printer(RecordFilter(), as_json=False).batch(LogBatch(lines, Source.JOURNAL))
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(" gw -: m1")
    assert out[1] == "- - -: hi"
    assert out[2] == "- - -: not json \\x1b[2J\\udcff"  # no terminal escape reaches the terminal
    Printer(RecordFilter(), as_json=True).batch(LogBatch(["garbage"], Source.LOGREAD))
    doc = json.loads(capsys.readouterr().out)
    assert doc["message"] == "garbage"
    assert doc["problem"].startswith("not a logread line")
