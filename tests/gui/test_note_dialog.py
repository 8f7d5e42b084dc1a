"""The technician-note dialog: Save only with something to save, a counter and a limit, the note written
through a real Outbox, and a full outbox (SQLite's own "database or disk is full") keeping the text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from siteline.core.outbox.model import NewItem, State
from siteline.core.outbox.store import Outbox, OutboxFullError
from siteline.ui.note_dialog import SAVED_TEXT, NoteDialog


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox.open(tmp_path / "outbox.sqlite3")
    try:
        yield box
    finally:
        box.close()


def _saver(outbox: Outbox, site: str = "Tower 7", device: str = "gw-01"):
    """What the lead's window passes in: one outbox item of kind "note" per save."""

    def save(text: str) -> None:
        outbox.put(NewItem(kind="note", site=site, device=device, payload={"text": text}))

    return save


def _dialog(qtbot, outbox: Outbox, **kwargs) -> NoteDialog:
    dialog = NoteDialog("Tower 7", "gw-01", _saver(outbox), **kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_empty_or_blank_note_cannot_be_saved(qtbot, outbox: Outbox) -> None:
    dialog = _dialog(qtbot, outbox)
    assert "gw-01" in dialog.findChild(QLabel, "noteHeading").text()
    assert not dialog.save_button.isEnabled()
    dialog.text.setPlainText("   \n\t  ")
    assert not dialog.save_button.isEnabled()
    dialog.text.moveCursor(dialog.text.textCursor().MoveOperation.End)
    qtbot.keyClicks(dialog.text, "x")
    assert dialog.save_button.isEnabled()
    assert dialog.counter.text() == f"{len(dialog.note())} / 20,000 characters"


def test_limit_with_counter(qtbot, outbox: Outbox) -> None:
    dialog = _dialog(qtbot, outbox, limit=10)
    dialog.text.setPlainText("0123456789")
    assert dialog.save_button.isEnabled()
    assert dialog.counter.text() == "10 / 10 characters"
    dialog.text.setPlainText("0123456789AB")
    assert not dialog.save_button.isEnabled()
    assert "2 characters too long" in dialog.status.text()
    dialog.save_button.click()
    assert outbox.status().pending == 0


def test_note_saved_through_a_real_outbox(qtbot, outbox: Outbox) -> None:
    dialog = _dialog(qtbot, outbox)
    text = "Replaced the antenna cable.\nSignal now -71 dBm; ask NOC to watch it overnight. ✓"
    dialog.text.setPlainText(text)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow, timeout=5000)  # window shortcuts fire in the active window only
    with qtbot.waitSignal(dialog.sig_note_saved, timeout=5000) as saved:
        qtbot.keyClick(dialog.text, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert saved.args == [text]
    assert dialog.status.text() == f"✓ {SAVED_TEXT}"
    assert dialog.text.isReadOnly()
    assert not dialog.save_button.isEnabled()  # a second click cannot queue the note twice
    [item] = outbox.items(State.PENDING)
    assert (item.kind, item.site, item.device) == ("note", "Tower 7", "gw-01")
    assert json.loads(item.payload) == {"text": text}
    dialog.close_button.click()
    assert dialog.result() == NoteDialog.DialogCode.Accepted


def test_full_outbox_keeps_the_text(qtbot, outbox: Outbox) -> None:
    """SQLite's page limit makes the database full for real; the dialog says so and keeps every character."""
    outbox.put(NewItem(kind="note", site="s", device="d", payload={"text": "already saved"}))
    with outbox.transaction() as tx:
        pages = tx.conn.execute("PRAGMA page_count").fetchone()[0]
        tx.conn.execute(f"PRAGMA max_page_count = {pages}")
    dialog = _dialog(qtbot, outbox)
    text = "A long note. " * 1000  # 13,000 characters: more than the last free page holds
    dialog.text.setPlainText(text)
    dialog.save_button.click()
    assert dialog.saved_text is None
    assert dialog.status.text().startswith("Not saved: ")
    assert "nothing was lost" in dialog.status.text()
    assert dialog.note() == text
    assert not dialog.text.isReadOnly()
    assert dialog.save_button.isEnabled()  # try again once there is room
    with pytest.raises(OutboxFullError) as full:
        _saver(outbox)(text)
    assert f"Not saved: {full.value}" in dialog.status.text()  # the store's own words: what happened, what to do
    with outbox.transaction() as tx:
        tx.conn.execute("PRAGMA max_page_count = 1073741823")
    dialog.save_button.click()
    assert dialog.status.text() == f"✓ {SAVED_TEXT}"
    texts = sorted(json.loads(i.payload)["text"] for i in outbox.items())
    assert texts == sorted([text, "already saved"])


def test_cancel_asks_before_dropping_a_typed_note(qtbot, outbox: Outbox) -> None:
    dialog = _dialog(qtbot, outbox)
    dialog.text.setPlainText("half a thought")
    dialog.close_button.click()
    assert dialog.isVisible()
    assert "Press Cancel again" in dialog.status.text()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert not dialog.isVisible()
    assert dialog.result() == NoteDialog.DialogCode.Rejected
    assert outbox.status().pending == 0
