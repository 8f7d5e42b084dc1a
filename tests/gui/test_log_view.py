"""The Logs panel: a virtual table over the log store, fed in batches, filtered, searched, copied, exported.

Offscreen Qt; lines are generated here in the real formats (busybox logread, journalctl -o json).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication

from siteline.core.logs import LogFile, Source
from siteline.ui.logs.log_model import LogFilter, LogModel
from siteline.ui.logs.log_view import LogView
from siteline.ui.logs.navigate import find_row
from siteline.ui.logs.words import format_time, guess_source, parse_when, sniff_file

DATA = Path(__file__).resolve().parents[1] / "data" / "logs"
UNITS = ["sshd", "ModemManager", "NetworkManager", "rauc", "udhcpc"]
LEVELS = ["err", "warn", "notice", "info", "debug"]
T0 = 1795778711  # 2026-11-27 11:25:11 UTC


def logread_lines(n: int, start: int = 0, needle_every: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        stamp = time.strftime("%b %e %H:%M:%S", time.gmtime(T0 + i // 10))
        extra = " needle" if needle_every and i % needle_every == 0 else ""
        out.append(f"{stamp} gw-site-a daemon.{LEVELS[i % 5]} {UNITS[i % 5]}[{100 + i % 7}]: line {i}{extra}")
    return out


def journal_lines(n: int) -> list[str]:
    return [json.dumps({"__REALTIME_TIMESTAMP": str((T0 + i * 60) * 1_000_000 + 250_000), "PRIORITY": str(i % 8),
                        "_SYSTEMD_UNIT": f"{UNITS[i % 5]}.service", "_HOSTNAME": "gw-01", "_PID": "42",
                        "MESSAGE": f"event {i}"}) for i in range(n)]


@pytest.fixture
def view(qtbot) -> LogView:
    widget = LogView()
    widget.resize(1200, 600)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def feed(view: LogView, lines: list[str], source: Source = Source.LOGREAD, batch: int = 5_000) -> None:
    for i in range(0, len(lines), batch):
        view.append_lines(lines[i:i + batch], source)


def messages(view: LogView) -> list[str]:
    return [view.model.record(r).message for r in range(view.model.rowCount())]


def test_batches_show_in_one_insert_per_tick_and_follow_keeps_the_bottom(view: LogView, qtbot) -> None:
    inserts: list[int] = []
    view.model.rowsInserted.connect(lambda _p, first, last: inserts.append(last - first + 1))
    start = time.monotonic()
    feed(view, logread_lines(100_000), batch=500)
    qtbot.waitUntil(lambda: view.model.rowCount() == 100_000, timeout=10_000)
    ticks = (time.monotonic() - start) / 0.1
    assert len(inserts) <= ticks + 2, "rows are inserted on the view's tick only, never per batch or line"
    assert len(inserts) < 200 / 4
    assert sum(inserts) == 100_000
    assert view.following
    scroll = view.table.verticalScrollBar()
    assert scroll.value() == scroll.maximum() > 0
    feed(view, logread_lines(1_000, start=100_000))
    qtbot.waitUntil(lambda: view.model.rowCount() == 101_000, timeout=5000)
    assert scroll.value() == scroll.maximum()
    assert view.model.record(100_999).message == "line 100999"
    assert "101,000 lines · 101,000 shown · logread" in view.status.text()


def test_scrolling_up_pauses_and_jump_follows_again(view: LogView, qtbot) -> None:
    feed(view, logread_lines(2_000))
    view.flush()
    with qtbot.waitSignal(view.sig_follow_changed) as blocker:
        view.table.verticalScrollBar().setValue(0)
    assert blocker.args == [False]
    assert not view.following
    assert view.bar.paused.isVisible()
    feed(view, logread_lines(1_234, start=2_000))
    view.flush()
    assert view.bar.paused_label.text() == "Paused — 1,234 new lines"
    assert view.table.verticalScrollBar().value() == 0, "paused: the lines being read stay where they are"
    with qtbot.waitSignal(view.sig_follow_changed) as blocker:
        qtbot.mouseClick(view.bar.jump, Qt.MouseButton.LeftButton)
    assert blocker.args == [True]
    scroll = view.table.verticalScrollBar()
    assert scroll.value() == scroll.maximum()
    assert not view.bar.paused.isVisible()


def test_filters_by_priority_unit_and_regex(view: LogView) -> None:
    feed(view, logread_lines(1_000))
    view.flush()
    view.bar.priority.setCurrentIndex(view.bar.priority.findText("Warnings and errors"))
    view._apply_filter()
    assert view.model.rowCount() == 400
    assert {view.model.record(r).priority for r in range(400)} == {3, 4}
    view.bar.unit.setEditText("sshd")
    view._apply_filter()
    assert view.model.rowCount() == 200
    assert {view.model.record(r).unit for r in range(200)} == {"sshd"}
    view.bar.regex.setText(r"line 1\d$")
    view._apply_filter()
    assert messages(view) == ["line 10", "line 15"], "sshd lines (all err) whose message ends 'line 1x'"
    feed(view, logread_lines(20, start=1_000))  # new lines pass through the same filter as they arrive
    view.flush()
    assert messages(view) == ["line 10", "line 15"]
    view.bar.regex.setText(r"line 100\d")
    view._apply_filter()
    assert messages(view) == ["line 1000", "line 1005"]
    view.bar.priority.setCurrentIndex(0)
    view.bar.unit.setEditText("All units")
    view.bar.regex.clear()
    view._apply_filter()
    assert view.model.rowCount() == 1_020
    assert "1,020 lines · 1,020 shown" in view.status.text()


@pytest.mark.parametrize("wanted", [
    LogFilter(max_priority=4), LogFilter(units=frozenset({"rauc", "sshd"})), LogFilter(regex=r"line \d*7$"),
    LogFilter(max_priority=7, units=frozenset({"udhcpc", "nope"}), regex="^line 1"),
])
def test_lines_arriving_under_a_filter_are_filtered_like_the_whole_store(wanted: LogFilter) -> None:
    model = LogModel()
    model.ingest(logread_lines(500), Source.LOGREAD)
    model.set_filter(wanted)
    for start in range(500, 3_000, 500):
        model.ingest(logread_lines(500, start=start), Source.LOGREAD)
        model.flush()
    expected = model.store.filter(max_priority=wanted.max_priority, units=wanted.units, regex=wanted.regex,
                                  keep_unknown_priority=False)
    assert [model.line_of(r) for r in range(model.rowCount())] == list(expected)
    assert model.rowCount() > 0


def test_a_bad_regex_turns_the_field_red_and_says_why_leaving_the_view(view: LogView) -> None:
    feed(view, logread_lines(100))
    view.flush()
    view.bar.regex.setText("line (1")
    view._apply_filter()
    assert view.bar.regex.property("bad") is True
    assert "not a valid pattern" in view.bar.message.text()
    assert "missing )" in view.bar.message.text()
    assert view.model.rowCount() == 100
    view.bar.regex.setText("line 1$")
    view._apply_filter()
    assert view.bar.regex.property("bad") is False
    assert messages(view) == ["line 1"]


def test_search_next_previous_wraps_and_f3_steps(view: LogView, qtbot) -> None:
    feed(view, logread_lines(100, needle_every=40))  # lines 0, 40, 80
    view.flush()
    view.bar.search.setText("NEEDLE".lower())
    assert [view.find_next(True) for _ in range(4)] == [0, 40, 80, 0]
    assert "continued from the top" in view.bar.message.text()
    assert not view.following, "a search result stays in view"
    assert view.find_next(False) == 80
    assert "continued from the end" in view.bar.message.text()
    view.table.setFocus()
    qtbot.keyClick(view.table, Qt.Key.Key_F3)
    assert view.table.currentIndex().row() == 0
    qtbot.keyClick(view.table, Qt.Key.Key_F3, Qt.KeyboardModifier.ShiftModifier)
    assert view.table.currentIndex().row() == 80
    view.bar.priority.setCurrentIndex(view.bar.priority.findText("Errors only"))  # 0, 40, 80 are err
    view.bar.regex.setText("line [04]?0 needle")
    view._apply_filter()
    assert messages(view) == ["line 0 needle", "line 40 needle"]
    assert [view.find_next(True) for _ in range(3)] == [0, 1, 0]
    view.bar.search.setText("not there")
    assert view.find_next(True) is None
    assert view.bar.search.property("bad") is True


def test_search_marks_matches_in_the_message_column(view: LogView) -> None:
    feed(view, logread_lines(50, needle_every=3))
    view.flush()
    view.bar.search.setText("needle")
    assert view.highlighter.pattern is not None
    assert view.highlighter.pattern.search("a Needle")
    assert not view.grab().isNull()  # paints with the marks (the screenshot in the report shows them)


def test_go_to_time_selects_the_first_line_at_or_after(view: LogView) -> None:
    feed(view, journal_lines(300), Source.JOURNAL)  # one line a minute from 11:25 UTC
    view.flush()
    target = view.model.record(123).time
    assert target is not None
    clock = format_time(target)[11:16]  # HH:MM in local time, as the technician reads it on screen
    row = view.go_to_time(clock)
    assert row is not None
    assert view.table.currentIndex().row() == row
    assert view.model.record(row).time >= parse_when(clock, target) > view.model.record(row - 1).time
    assert view.go_to_time(format_time(target)[:16]) == row  # full date form
    assert view.go_to_time("25:99") is None
    assert "not a real time" in view.bar.message.text()
    assert view.go_to_time("yesterday") is None
    assert "14:02" in view.bar.message.text()
    assert view.go_to_time("2099-01-01 00:00") is None
    assert "No line" in view.bar.message.text()


def test_copy_puts_the_selected_lines_on_the_clipboard(view: LogView, qtbot) -> None:
    feed(view, journal_lines(20), Source.JOURNAL)
    view.flush()
    rows = QItemSelectionModel.SelectionFlag.Rows
    selection = view.table.selectionModel()  # not selectRow(): it reads the keyboard modifiers earlier tests left
    selection.select(view.model.index(2, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect | rows)
    selection.select(view.model.index(4, 0), QItemSelectionModel.SelectionFlag.Select | rows)
    assert view.copy_selection() == 2
    text = QGuiApplication.clipboard().text()
    assert text.splitlines()[0].endswith("event 2")
    assert text.splitlines()[1].endswith("event 4")
    assert "gw-01" in text
    assert "sshd.service[42]" not in text.splitlines()[1]
    QGuiApplication.clipboard().clear()
    view.table.setFocus()
    qtbot.keyClick(view.table, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert len(QGuiApplication.clipboard().text().splitlines()) == 2
    view.table.selectAll()
    assert view.copy_selection() == 20
    feed(view, ["plain text line"] * 201_000, Source.TEXT, batch=50_000)
    view.flush()
    view.table.selectAll()
    assert view.copy_selection() == 0
    assert "use Export" in view.bar.message.text()


def test_export_writes_the_filtered_rows(view: LogView, tmp_path: Path) -> None:
    feed(view, logread_lines(1_000))
    view.flush()
    view.bar.unit.setEditText("rauc")
    view._apply_filter()
    out = tmp_path / "export.txt"
    assert view.export_to(out) == 200
    lines = out.read_text().splitlines()
    assert len(lines) == 200
    assert all(" rauc[" in line for line in lines)
    assert lines[0].endswith("line 3")
    assert "  info  " in lines[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp file left behind"
    assert view.export_to(tmp_path / "missing" / "x.txt") == 0
    assert "Could not write" in view.bar.message.text()


def write_big(path: Path, megabytes: float) -> list[str]:
    sample = (DATA / "syslog.txt").read_text().splitlines()
    block = ("\n".join(sample * 2_000) + "\n").encode()
    if megabytes < 1:
        block = block[:block.rindex(b"\n", 0, int(megabytes * 2**20)) + 1]
    with path.open("wb") as fh:
        while fh.tell() < megabytes * 2**20:
            fh.write(block)
    return sample


def test_a_big_export_runs_in_the_background_and_keeps_the_lines_of_its_start(view: LogView, qtbot, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("siteline.ui.logs.view_actions.SYNC_LIMIT", 100)
    monkeypatch.setattr("siteline.ui.logs.exporter.STEP", 300)
    feed(view, logread_lines(3_000))
    view.flush()
    view.bar.priority.setCurrentIndex(view.bar.priority.findText("Errors only"))
    view._apply_filter()
    out = tmp_path / "errors.txt"
    with qtbot.waitSignal(view.sig_export_finished, timeout=10_000) as blocker:
        assert view.export_to(out) is None
        assert not out.exists(), "the target appears only once it is whole"
        assert view.export_to(tmp_path / "other.txt") is None
        assert "still running" in view.bar.message.text()
        feed(view, logread_lines(100, start=3_000))  # lines arriving meanwhile are not in this export
    assert blocker.args == [600, ""]
    lines = out.read_text().splitlines()
    assert len(lines) == 600
    assert lines[-1].endswith("line 2995")
    assert "Exported 600 lines" in view.bar.message.text()


def test_open_a_50_mb_file_shows_the_first_rows_at_once_then_the_rest(view: LogView, qtbot, tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    sample = write_big(path, 50)
    view.file_load_limit = 10 << 20  # this one is browsed from disk, as a 1 GB file would be
    view.open_file(path)
    assert view.model.rowCount() > 0, "the first screen is there before the file is indexed"
    assert not view.model.file.complete
    assert view.model.record(0).message == sample[0].split(": ", 1)[1]
    assert view.model.record(0).unit == "NetworkManager"
    assert "syslog" in view.status.text()
    assert not view.following
    qtbot.waitUntil(lambda: view.model.file.complete, timeout=30_000)
    view.flush()
    total = path.read_bytes().count(b"\n")
    assert view.model.rowCount() == total
    assert "too big to filter" in view.status.text()
    view.bar.search.setText("USB disconnect")
    assert view.find_next(True) == 2
    assert sum("USB disconnect" in line for line in sample) == 1
    assert view.find_next(False) == total - len(sample) + 2, "backwards from the first match wraps to the last"
    stop = view.model.rowCount() // 2
    assert find_row(view.model, "no such text", 0, limit=stop).stopped_at is not None
    assert find_row(view.model, "USB disconnect", 3, limit=stop).row == len(sample) + 2
    with_limit = find_row(view.model, "health-check", 2 * stop - 10, limit=stop)
    assert with_limit.row is not None, "the first line past the end was not searched: wraps"
    row = view.go_to_time(format_time(view.model.record(3).time)[:19])
    assert row is not None
    assert view.model.record(row).time == view.model.record(3).time
    view.bar.regex.setText("x")
    view._apply_filter()
    assert "too big to filter" in view.bar.message.text()
    assert view.model.rowCount() == total
    view.append_lines(logread_lines(3), Source.LOGREAD)  # a live stream replaces the file
    view.flush()
    assert view.model.file is None
    assert view.model.rowCount() == 3


def test_a_file_small_enough_is_read_in_so_filters_work_and_it_is_followed(view: LogView, qtbot,
                                                                            tmp_path: Path) -> None:
    path = tmp_path / "syslog"
    write_big(path, 0.5)
    total = path.read_bytes().count(b"\n")
    view.open_file(path)
    view.bar.unit.setEditText("CRON")
    view._apply_filter()  # typed while the file is still being read: applies by itself once it is
    qtbot.waitUntil(lambda: view.model.file is None, timeout=20_000)
    cron = path.read_bytes().count(b" CRON[")
    assert view.model.rowCount() == cron > 0
    assert len(view.model.store) == total
    with path.open("a") as fh:  # the device (or a tail) writes more: it shows, as tail -F would
        fh.write("Nov 27 11:30:00 gw-site-a CRON[7]: (root) CMD (late)\n")
    qtbot.waitUntil(lambda: view.model.rowCount() == cron + 1, timeout=5_000)
    assert view.model.record(cron).message == "(root) CMD (late)"


def test_a_search_in_a_big_file_goes_on_where_the_last_press_stopped(view: LogView, qtbot, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.log"
    lines = [f"Nov 27 11:25:{i % 60:02d} gw CRON[1]: line {i}" for i in range(60_000)]
    lines[55_000] += " needle"
    path.write_text("\n".join(lines) + "\n")
    view.file_load_limit = 0
    monkeypatch.setattr("siteline.ui.logs.view_actions.find_row",
                        lambda model, text, row, forward: find_row(model, text, row, forward, limit=20_000))
    view.open_file(path)
    qtbot.waitUntil(lambda: view.model.file.complete, timeout=10_000)
    view.flush()
    view.bar.search.setText("needle")
    assert view.find_next(True) is None
    assert "press Next again" in view.bar.message.text()
    assert view.find_next(True) is None
    assert view.find_next(True) == 55_000


def test_open_file_that_cannot_be_read_says_so(view: LogView, tmp_path: Path) -> None:
    view.open_file(tmp_path / "nope.log")
    assert "Could not open" in view.bar.message.text()
    assert view.model.rowCount() == 0


@pytest.mark.parametrize(("name", "source"), [
    ("journal.jsonl", Source.JOURNAL), ("dmesg.txt", Source.DMESG), ("dmesg-x.txt", Source.DMESG),
    ("logread-busybox.txt", Source.LOGREAD), ("syslog.txt", Source.SYSLOG),
])
def test_the_format_of_a_file_is_guessed(name: str, source: Source) -> None:
    assert sniff_file(DATA / name) is source


def test_plain_and_empty_text_is_plain() -> None:
    assert guess_source(["hello world", "no format here"]) is Source.TEXT
    assert guess_source([]) is Source.TEXT


def test_garbage_and_binary_lines_do_not_crash(view: LogView) -> None:
    rnd = random.Random(5)
    garbage = [os.urandom(rnd.randint(0, 300)).decode("utf-8", "surrogateescape") for _ in range(300)]
    garbage += ["\x00\x01\x1b[31mred\x1b[0m", "x" * 100_000, "{\"MESSAGE\": [104, 105]}", "{", "[]", "\ud800",
                '{"MESSAGE": "lone \\ud800 escape", "PRIORITY": "3"}', '{"MESSAGE": "pair \\ud83d\\ude00"}']
    for source in Source:
        view.append_lines(garbage, source)
    view.flush()
    assert view.model.rowCount() == len(garbage) * len(Source)
    for row in range(0, view.model.rowCount(), 37):
        for column in range(5):
            view.model.data(view.model.index(row, column))
            view.model.data(view.model.index(row, column), Qt.ItemDataRole.ToolTipRole)
    view.bar.search.setText("\x00")
    view.find_next(True)
    view.bar.regex.setText("red")
    view._apply_filter()
    assert view.model.rowCount() >= len(Source)
    view.bar.regex.clear()
    view._apply_filter()
    lone = [m for m in messages(view) if m.startswith("lone \ufffd") and m.endswith(" escape")]
    assert lone, "a lone surrogate is replaced, the line kept"
    assert "pair 😀" in messages(view)
    view.table.scrollToBottom()
    assert not view.grab().isNull()


def test_status_and_clear(view: LogView) -> None:
    feed(view, logread_lines(10))
    view.flush()
    view.set_status("following logread on gw-01")
    assert view.status.text() == "10 lines · 10 shown · logread · following logread on gw-01"
    view.clear()
    assert view.model.rowCount() == 0
    assert view.status.text().startswith("0 lines · 0 shown")
    view.bar.priority.setCurrentIndex(view.bar.priority.findText("Errors only"))
    view._apply_filter()
    view.clear()  # a new stream: the technician's filter stays on
    feed(view, logread_lines(10))
    view.flush()
    assert view.bar.priority.currentText() == "Errors only"
    assert messages(view) == ["line 0", "line 5"]


def test_the_model_passes_qt_model_checks(qtmodeltester) -> None:
    model = LogModel()
    model.ingest(logread_lines(50), Source.LOGREAD)
    model.flush()
    qtmodeltester.check(model)
    model.set_filter(LogFilter(max_priority=4, regex="line"))
    qtmodeltester.check(model)


def test_the_model_over_a_file_passes_qt_model_checks(qtmodeltester, tmp_path: Path) -> None:
    path = tmp_path / "dmesg.txt"
    path.write_bytes((DATA / "dmesg.txt").read_bytes() * 20)
    log = LogFile(path, sniff_file(path))
    log.index_more()
    model = LogModel()
    model.reset_to(file=log)
    assert model.rowCount() == len(log) > 0
    qtmodeltester.check(model)
    log.close()
