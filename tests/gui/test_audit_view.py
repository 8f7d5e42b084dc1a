"""The audit view over a real AuditTrail in a real outbox file: per-device filter, verify intact and edited."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from siteline.core.audit import AuditTrail
from siteline.core.outbox.store import Outbox
from siteline.ui.audit_view import (
    ALL_DEVICES,
    COL_ACTION,
    COL_DETAIL,
    COL_DEVICE,
    COL_RESULT,
    AuditView,
    detail_summary,
)
from tests.gui.conftest import Loop

COLOURS = {"up": QColor("#008000"), "down": QColor("#cc0000")}


def colour(key: str) -> QColor:
    return COLOURS.get(key, QColor("#777777"))


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def trail(outbox: Outbox) -> AuditTrail:
    trail = AuditTrail(outbox, "ana")
    trail.record("connect", device="gw-01", site="Tower 7", detail={"via": "ssh"})
    trail.record("console-command", device="gw-01", site="Tower 7", detail={"command": "reboot"})
    trail.record("flash", device="gw-02", site="Tower 7", detail={"image": "os-2.4.1.raucb"}, result="failed")
    trail.record("note", device="rtr-9", site="Depot", detail={"text": "cabinet door broken"})
    return trail


def test_detail_summary() -> None:
    assert detail_summary({"command": "reboot", "exit": 0}) == "command=reboot, exit=0"
    assert detail_summary('{"a": "b"}') == "a=b"
    assert detail_summary("not json\nat all") == "not json at all"
    assert detail_summary(None) == ""
    assert detail_summary({"text": "x" * 500}).endswith("…")


def test_lists_the_trail_and_filters_per_device(qtbot, qtmodeltester, trail: AuditTrail) -> None:
    view = AuditView(trail, colour)
    qtbot.addWidget(view)
    qtmodeltester.check(view.model)
    m = view.model
    assert m.rowCount() == 4
    assert m.index(0, COL_ACTION).data() == "note"  # newest first
    devices = [view.device_filter.itemText(i) for i in range(view.device_filter.count())]
    assert devices == [ALL_DEVICES, "gw-01", "gw-02", "rtr-9"]
    flash = next(r for r in range(m.rowCount()) if m.index(r, COL_ACTION).data() == "flash")
    assert m.index(flash, COL_RESULT).data() == "failed"
    assert m.index(flash, COL_RESULT).data(Qt.ItemDataRole.ForegroundRole) == COLOURS["down"]
    assert m.index(flash, COL_DETAIL).data() == "image=os-2.4.1.raucb"

    view.device_filter.setCurrentText("gw-01")
    assert m.rowCount() == 2
    assert {m.index(r, COL_DEVICE).data() for r in range(2)} == {"gw-01"}
    trail.record("disconnect", device="gw-01", site="Tower 7")
    trail.record("connect", device="gw-03", site="Tower 7")
    view.refresh()
    assert m.rowCount() == 3
    assert view.device_filter.currentText() == "gw-01"  # a new device in the list keeps the choice
    assert view.device_filter.findText("gw-03") > 0
    view.set_device(None)
    assert m.rowCount() == 6


def click_verify(aloop: Loop, view: AuditView) -> None:
    """The button checks in a worker thread: wait for it (the loop keeps running meanwhile)."""

    async def scenario() -> None:
        view.verify_button.click()
        assert not view.verify_button.isEnabled()
        assert view.task is not None
        await view.task

    aloop.run(scenario())
    assert view.verify_button.isEnabled()


def test_verify_intact(qtbot, aloop: Loop, trail: AuditTrail) -> None:
    view = AuditView(trail, colour)
    qtbot.addWidget(view)
    click_verify(aloop, view)
    assert view.result.text().startswith("Intact: 4 records")
    assert view.result.property("bad") is False


def test_verify_names_an_edited_record_in_red(qtbot, aloop: Loop, outbox: Outbox, trail: AuditTrail) -> None:
    with sqlite3.connect(outbox.path) as other:  # someone edits the file behind Siteline's back
        seq = other.execute("SELECT seq FROM audit WHERE action = 'flash'").fetchone()[0]
        other.execute("UPDATE audit SET result = 'ok' WHERE seq = ?", (seq,))
    other.close()
    view = AuditView(trail, colour)
    qtbot.addWidget(view)
    click_verify(aloop, view)
    assert view.result.property("bad") is True
    assert f"#{seq}" in view.result.text()
    assert "BROKEN" in view.result.text()
    row = view.model.row_of_seq(seq)
    assert row >= 0
    assert view.model.index(row, COL_ACTION).data(Qt.ItemDataRole.ForegroundRole) == COLOURS["down"]
    assert view.model.index(row, COL_ACTION).data(Qt.ItemDataRole.FontRole).bold()
    assert "FAILED VERIFICATION" in view.model.index(row, COL_ACTION).data(Qt.ItemDataRole.ToolTipRole)
    other_row = (row + 1) % view.model.rowCount()
    assert view.model.index(other_row, COL_ACTION).data(Qt.ItemDataRole.FontRole) is None


def test_an_empty_trail(qtbot, outbox: Outbox) -> None:
    view = AuditView(AuditTrail(outbox, "ana"), colour)
    qtbot.addWidget(view)
    assert view.model.rowCount() == 0
    assert view.verify() is not None
    assert view.result.text().startswith("Intact: 0 records")


def test_closing_the_window_while_verify_runs_raises_nothing(qapp, aloop: Loop, trail: AuditTrail,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The window is closed and deleted while the worker thread walks a big trail: the walk's end touches
    no deleted widget (it used to raise RuntimeError from the QPushButton)."""
    gate = threading.Event()
    real = trail.verify

    def slow() -> object:
        gate.wait(5)
        return real()

    monkeypatch.setattr(trail, "verify", slow)
    view = AuditView(trail, colour)
    view.show()
    errors: list[object] = []
    aloop.loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("exception") or ctx.get("message")))

    async def scenario() -> object:
        view.verify_button.click()
        task = view.task
        assert task is not None
        await asyncio.sleep(0.05)
        view.close()
        view.deleteLater()
        QApplication.sendPostedEvents(None, 0)  # 0 = QEvent.DeferredDelete: the C++ objects go now
        await asyncio.sleep(0.02)
        gate.set()
        return await task

    outcome = aloop.run(scenario())
    assert not errors, errors
    assert outcome is not None
    assert outcome.ok


def test_a_damaged_outbox_kept_beside_the_trail_is_said_in_the_result_line(qtbot, aloop: Loop, outbox: Outbox,
                                                                            trail: AuditTrail) -> None:
    kept = outbox.path.with_name(f"{outbox.path.name}.damaged-20261127T100854Z")
    kept.write_bytes(b"what Outbox.open set aside")
    view = AuditView(trail, colour)
    qtbot.addWidget(view)
    click_verify(aloop, view)
    text = view.result.text()
    assert not text.startswith("Intact: 4 records")
    assert "Intact since it restarted: 4 records" in text
    assert str(kept) in text
    assert "Do not delete" in text
    assert view.result.property("bad") is True
    assert view.model.bad_seq is None  # no record is blamed: the chain in this file is fine
