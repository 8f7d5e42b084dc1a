"""The outbox panel and the status-bar sync widget over a real Outbox on a temp file (no mocks)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QFileDialog

from siteline.core.outbox.model import NewItem, State
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import SyncState, SyncStatus
from siteline.ui.outbox_model import (
    COL_ATTEMPTS,
    COL_CREATED,
    COL_ERROR,
    COL_KIND,
    COL_STATE,
    ItemIdRole,
    OutboxTableModel,
)
from siteline.ui.outbox_panel import OutboxPanel
from siteline.ui.sync_status import SyncStatusWidget, human_bytes, local_time
from tests.gui.conftest import Loop
from tests.peers.stall import assert_no_stall, measure_stalls

COLOURS = {"up": QColor("#008000"), "retrying": QColor("#aa6600"), "down": QColor("#cc0000"),
           "connecting": QColor("#0000cc")}


def colour(key: str) -> QColor:
    return COLOURS.get(key, QColor("#777777"))


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def fill(box: Outbox) -> dict[str, str]:
    """One item of each state; returns state -> id."""
    sent, failed, pending = box.put_many([
        NewItem("snapshot", "Tower 7", "gw-01", {"modem": {"rssi": -71, "operator": "Acme"}}),
        NewItem("flash-result", "Tower 7", "gw-02", {"image": "os-2.4.1.raucb", "result": "ok"}),
        NewItem("note", "Depot", "rtr-9", {"text": "replaced the antenna cable"}),
    ])
    box.mark_sent([sent.id], 420)
    box.record_failure([failed.id], "broker refused: not authorised\nsecond line", permanent=True)
    return {"sent": sent.id, "failed": failed.id, "pending": pending.id}


def by_id(panel: OutboxPanel, item_id: str) -> int:
    return panel.model.row_of(item_id)


def select(panel: OutboxPanel, item_id: str) -> None:
    index = panel.proxy.mapFromSource(panel.model.index(by_id(panel, item_id), 0))
    flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
    panel.table.selectionModel().select(index, flags)


def test_model_passes_the_model_tester(qtmodeltester, outbox: Outbox) -> None:
    fill(outbox)
    model = OutboxTableModel(colour)
    model.set_items(outbox.items())
    qtmodeltester.check(model)
    model.set_items(outbox.items(state=State.FAILED))  # a different set of rows: a reset
    qtmodeltester.check(model)


def test_rows_show_state_attempts_error_and_colour(qtbot, outbox: Outbox) -> None:
    ids = fill(outbox)
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    m = panel.model
    assert m.rowCount() == 3
    for state, key in (("sent", "up"), ("failed", "down"), ("pending", "retrying")):
        row = by_id(panel, ids[state])
        assert m.index(row, COL_STATE).data() == state
        assert m.index(row, COL_STATE).data(Qt.ItemDataRole.ForegroundRole) == COLOURS[key]
    failed = by_id(panel, ids["failed"])
    assert m.index(failed, COL_ATTEMPTS).data() == 1
    assert m.index(failed, COL_ERROR).data() == "broker refused: not authorised"  # first line in the cell
    assert "second line" in m.index(failed, COL_ERROR).data(Qt.ItemDataRole.ToolTipRole)
    assert m.index(failed, COL_KIND).data() == "flash-result"
    assert "1 waiting" in panel.summary.text()
    assert "1 failed" in panel.summary.text()

    panel.state_filter.setCurrentIndex(panel.state_filter.findText("Failed"))
    assert [i.id for i in m.items] == [ids["failed"]]
    panel.state_filter.setCurrentIndex(0)
    panel.search.setText("rtr-9")
    assert panel.proxy.rowCount() == 1


def test_details_show_pretty_payload_hash_and_attempts(qtbot, outbox: Outbox) -> None:
    ids = fill(outbox)
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    select(panel, ids["failed"])
    text = panel.payload_view.toPlainText()
    assert json.loads(text) == {"image": "os-2.4.1.raucb", "result": "ok"}
    assert "\n  " in text  # indented, not the canonical one-liner
    item = outbox.get(ids["failed"])
    assert item is not None
    assert item.payload_sha256 in panel.details_hash.text()
    assert "failed" in panel.attempts_view.toPlainText()
    assert "not authorised" in panel.attempts_view.toPlainText()
    assert panel.payload_view.isReadOnly()


def test_retry_now_moves_failed_to_pending_and_asks_for_a_sync(qtbot, outbox: Outbox) -> None:
    ids = fill(outbox)
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    select(panel, ids["failed"])
    with qtbot.waitSignal(panel.sig_wake_requested, timeout=1000):
        panel.retry_button.click()
    item = outbox.get(ids["failed"])
    assert item is not None
    assert item.state == State.PENDING
    assert "1 failed item waiting again" in panel.message.text()
    assert panel.model.index(by_id(panel, ids["failed"]), COL_STATE).data() == "pending"
    assert panel.selected_ids() == [ids["failed"]]  # the refresh kept the selection
    with qtbot.waitSignal(panel.sig_wake_requested, timeout=1000):
        panel.retry_button.click()  # nothing failed now: still a "send now"
    assert "Nothing had failed" in panel.message.text()


def test_export_then_import_on_another_outbox(qtbot, tmp_path: Path, outbox: Outbox) -> None:
    ids = fill(outbox)
    here = OutboxPanel(outbox, colour)
    qtbot.addWidget(here)
    carried = tmp_path / "usb" / "handover.jsonl.gz"
    carried.parent.mkdir()
    assert here.export_to(carried) == 2  # pending and failed; sent stays home
    assert "Exported 2 items" in here.message.text()
    assert str(carried) in here.message.text()

    with Outbox.open(tmp_path / "other.sqlite3") as other:
        there = OutboxPanel(other, colour)
        qtbot.addWidget(there)
        with qtbot.waitSignal(there.sig_wake_requested, timeout=1000):
            result = there.import_from(carried)
        assert result is not None
        assert "2 new, 0 already here, 0 rejected" in there.message.text()
        assert {i.id for i in there.model.items} == {ids["pending"], ids["failed"]}
        there.import_from(carried)  # idempotent
        assert "0 new, 2 already here" in there.message.text()
        assert there.message.property("error") is False


def test_bad_files_are_said_in_words(qtbot, tmp_path: Path, outbox: Outbox) -> None:
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    junk = tmp_path / "junk.jsonl.gz"
    junk.write_bytes(b"this is not an export")
    panel.import_from(junk)
    assert panel.message.property("error") is True
    assert "Traceback" not in panel.message.text()
    assert panel.message.text().startswith(("Import failed", "Imported"))
    panel.import_from(tmp_path / "missing.jsonl.gz")
    assert panel.message.property("error") is True
    assert "missing.jsonl.gz" in panel.message.text()
    assert panel.export_to(tmp_path / "no-such-dir" / "x.jsonl.gz") is None
    assert panel.message.property("error") is True


def test_a_set_aside_outbox_shows_a_banner(qtbot, tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 4000)  # a damaged database
    with Outbox.open(path) as box:
        assert box.recovered_from is not None
        panel = OutboxPanel(box, colour)
        qtbot.addWidget(panel)
        assert not panel.banner.isHidden()
        assert str(box.recovered_from) in panel.banner.text()
        assert "do not delete it" in panel.banner.text()
        assert "set aside" in panel.banner.text()


def test_no_banner_and_no_crash_on_a_closed_outbox(qtbot, outbox: Outbox) -> None:
    fill(outbox)
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    assert panel.banner.isHidden()
    outbox.close()
    panel.refresh()
    assert panel.message.property("error") is True
    assert "Could not read the outbox" in panel.message.text()


# -- the status-bar widget -------------------------------------------------------------------------


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(999) == "999 B"
    assert human_bytes(312_000) == "312 kB"
    assert human_bytes(1_500) == "1.5 kB"
    assert human_bytes(50_000_000) == "50 MB"
    assert human_bytes(2_400_000_000) == "2.4 GB"


def test_sync_status_words_counts_colours_and_tooltip(qtbot) -> None:
    widget = SyncStatusWidget(colour)
    qtbot.addWidget(widget)
    assert widget.button.text() == "Control plane: not configured"
    ack = 1_790_000_000.0
    widget.set_status(SyncStatus(SyncState.OFFLINE, 12, 312_000, 50_000_000, "connection refused", ack))
    assert widget.button.text() == "Control plane: offline · 12 waiting · 312 kB of 50 MB"
    assert widget.colour == COLOURS["retrying"]
    tip = widget.button.toolTip()
    assert "connection refused" in tip
    assert local_time(ack) in tip
    assert "(1 %)" in tip
    widget.set_status(SyncStatus(SyncState.IDLE, 0, 1_500, None, "", ack))
    assert widget.button.text() == "Control plane: online · 0 waiting · 1.5 kB this month"
    assert widget.colour == COLOURS["up"]
    widget.set_status(SyncStatus(SyncState.HELD, 40, 46_000_000, 50_000_000, "LOW items held: 92 % used", None))
    assert widget.word == "on hold (data budget)"
    assert "never" in widget.button.toolTip()
    widget.set_status(SyncStatus(SyncState.ERROR, 3, 0, None, "not authorised: check the user", None))
    assert widget.colour == COLOURS["down"]
    assert "not authorised" in widget.button.toolTip()
    widget.set_status(SyncStatus(SyncState.NOT_CONFIGURED, 0, 0, None, "", None))
    assert widget.button.text() == "Control plane: not configured · 0 B this month"


def test_sync_status_from_another_thread_and_click(qtbot) -> None:
    widget = SyncStatusWidget(colour)
    qtbot.addWidget(widget)
    status = SyncStatus(SyncState.SYNCING, 5, 0, None, "", None)
    worker = threading.Thread(target=widget.on_status, args=(status,))
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: widget.word == "syncing", timeout=2000)
    with qtbot.waitSignal(widget.sig_clicked, timeout=1000):
        widget.button.click()


def test_new_items_appear_on_the_timer_while_shown(qtbot, outbox: Outbox) -> None:
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    panel.timer.setInterval(20)
    panel.show()
    assert panel.model.rowCount() == 0
    outbox.put(NewItem("note", "Depot", "rtr-9", {"text": "written by the CLI meanwhile"}))
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=2000)
    assert "1 waiting" in panel.summary.text()


def test_sorting_by_a_column_and_back_to_newest_first(qtbot, outbox: Outbox) -> None:
    ids = fill(outbox)
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    assert panel.proxy.index(0, 0).data(ItemIdRole) == ids["pending"]  # the newest first
    panel.table.sortByColumn(COL_ATTEMPTS, Qt.SortOrder.AscendingOrder)
    assert panel.proxy.index(0, COL_ATTEMPTS).data() == 0
    panel.table.sortByColumn(COL_CREATED, Qt.SortOrder.AscendingOrder)
    assert panel.proxy.index(0, 0).data(ItemIdRole) == ids["sent"]  # the oldest first


# -- hand-carry off the UI thread ---------------------------------------------------------------------

BIG = 30_000  # about 1 s to export on the 2-core test machine: long enough that a blocked loop shows
STALL_LIMIT = 0.3  # the worst loop stall allowed meanwhile; exporting on the loop itself stalls it for the lot


@pytest.fixture
def big_outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "big.sqlite3") as box:
        for start in range(0, BIG, 5000):
            box.put_many([NewItem("telemetry", "Tower 7", "gw-01", {"n": n, "pad": "x" * 200})
                          for n in range(start, start + 5000)])
        yield box


def test_a_large_export_runs_off_the_loop_with_the_panel_busy(qtbot, aloop: Loop, tmp_path: Path,
                                                              big_outbox: Outbox, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    panel = OutboxPanel(big_outbox, colour)
    qtbot.addWidget(panel)
    target = tmp_path / "handover.jsonl.gz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_a, **_k: (str(target), ""))
    buttons = (panel.export_button, panel.import_button, panel.retry_button, panel.refresh_button)

    async def scenario() -> None:
        async with measure_stalls() as watch:
            panel.export_button.click()
            assert panel.working
            assert not panel.busy.isHidden()
            assert not any(b.isEnabled() for b in buttons)
            assert not panel.state_filter.isEnabled()  # its refresh would wait for the worker's lock
            panel.export_button.click()  # a second click while busy starts nothing
            assert panel.task is not None
            await panel.task
        assert_no_stall(watch, f"exporting {BIG:,} items", bound=STALL_LIMIT)

    aloop.run(scenario(), timeout=60)
    assert all(b.isEnabled() for b in buttons)
    assert panel.busy.isHidden()
    assert f"Exported {BIG:,} items" in panel.message.text()
    with Outbox.open(tmp_path / "there.sqlite3") as there:
        other = OutboxPanel(there, colour)
        qtbot.addWidget(other)
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_a, **_k: (str(target), ""))

        async def import_it() -> None:
            async with measure_stalls() as watch:
                with qtbot.waitSignal(other.sig_wake_requested, timeout=60_000):
                    other.import_button.click()
                    assert not other.import_button.isEnabled()
                    assert other.task is not None
                    await other.task
            assert_no_stall(watch, f"importing {BIG:,} items", bound=STALL_LIMIT)

        aloop.run(import_it(), timeout=60)
        assert f"{BIG:,} new, 0 already here, 0 rejected" in other.message.text()
        assert there.status().pending == BIG


def test_an_export_error_in_the_worker_is_said_and_the_panel_usable(qtbot, aloop: Loop, tmp_path: Path,
                                                                   outbox: Outbox) -> None:
    fill(outbox)
    panel = OutboxPanel(outbox, colour)
    qtbot.addWidget(panel)
    assert aloop.run(panel.export_async(tmp_path / "no-such-dir" / "x.jsonl.gz")) is None
    assert panel.message.property("error") is True
    assert "Could not write" in panel.message.text()
    assert panel.export_button.isEnabled()
    assert panel.busy.isHidden()
    assert aloop.run(panel.import_async(tmp_path / "missing.jsonl.gz")) is None
    assert "missing.jsonl.gz" in panel.message.text()
    assert panel.import_button.isEnabled()


def test_closing_the_panel_during_an_export_raises_nothing(qapp, aloop: Loop, tmp_path: Path,
                                                           big_outbox: Outbox) -> None:
    panel = OutboxPanel(big_outbox, colour)
    panel.show()
    errors: list[object] = []
    aloop.loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("exception") or ctx.get("message")))

    async def scenario() -> int | None:
        task = asyncio.ensure_future(panel.export_async(tmp_path / "x.jsonl.gz"))
        await asyncio.sleep(0.05)
        panel.close()
        panel.deleteLater()
        QApplication.sendPostedEvents(None, 0)  # 0 = QEvent.DeferredDelete
        return await task

    assert aloop.run(scenario(), timeout=60) == BIG  # the file is still written; nothing is said to a dead panel
    assert not errors, errors
