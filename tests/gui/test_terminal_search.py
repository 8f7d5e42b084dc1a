"""Search in the scrollback: the matcher, the widget's highlights and view, the find bar in the tab."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from siteline.ui.console_tab import ConsoleTab
from siteline.ui.terminal_search import Match, find_matches, next_index
from siteline.ui.terminal_widget import TerminalWidget
from tests.gui.conftest import Loop, until
from tests.gui.test_console_tab import _open, _screen, _type, console
from tests.gui.test_terminal_fullscreen import _shot

__all__ = ["console"]


def test_find_matches_case_and_overlap() -> None:
    lines = [(7, "Error: disk error"), (8, "no problem"), (9, "ERROR again, errorerror")]
    assert find_matches(lines, "error") == [
        Match(7, 0, 5), Match(7, 12, 5), Match(9, 0, 5), Match(9, 13, 5), Match(9, 18, 5)]
    assert find_matches(lines, "Error", case_sensitive=True) == [Match(7, 0, 5)]
    assert find_matches(lines, "aa") == []
    assert find_matches([(1, "aaaa")], "aa") == [Match(1, 0, 2), Match(1, 2, 2)]  # not overlapping
    assert find_matches(lines, "") == []
    assert find_matches([(1, "Straße STRASSE")], "straße") == [Match(1, 0, 6)]  # columns never drift


def test_next_index_wraps() -> None:
    matches = [Match(1, 0, 1), Match(2, 0, 1), Match(3, 0, 1)]
    assert next_index(matches, None, forward=False) == 2
    assert next_index(matches, 2, forward=True) == 0
    assert next_index(matches, 0, forward=False) == 2
    assert next_index([], None, forward=True) is None


@pytest.fixture
def term(qtbot) -> TerminalWidget:
    widget = TerminalWidget(history=500)
    qtbot.addWidget(widget)
    widget.resize(600, 300)
    widget.show()
    return widget


def test_search_scrolls_to_an_old_match_and_highlights_it(term: TerminalWidget) -> None:
    term.feed(b"".join(b"line %d%s\r\n" % (i, b" needle" if i in (40, 300) else b"") for i in range(400)))
    term.flush()
    term.search("NEEDLE")
    assert [m.line for m in term.matches] == [40, 300]
    assert term.current_match == 1  # the newest first, as a person searches back from the bottom
    assert any(line.startswith("line 300 needle") for line in term.display_lines())
    term.step_match(forward=False)
    assert any(line.startswith("line 40 needle") for line in term.display_lines())
    spans = term._highlights()
    assert spans == {40: [(8, 14, True)]}
    term.grab()  # paints the highlight without error
    term.search("needle", case_sensitive=True)
    assert len(term.matches) == 2
    term.clear_search()
    assert term.matches == []


def test_highlights_land_on_the_cells_after_wide_glyphs(term: TerminalWidget) -> None:
    term.feed("你好 needle\r\n".encode())
    term.flush()
    term.search("needle")
    assert term._highlights() == {0: [(5, 11, True)]}  # 你 and 好 take two cells each
    term.search("好")
    assert term._highlights() == {0: [(2, 4, True)]}


def test_matches_stay_on_their_lines_while_output_arrives(term: TerminalWidget) -> None:
    term.feed(b"".join(b"old %d\r\n" % i for i in range(100)) + b"the needle\r\n")
    term.flush()
    term.search("needle")
    (match,) = term.matches
    term.step_match(forward=True)
    term.scroll_by(30)  # reading back
    shown = term.display_lines()
    term.feed(b"".join(b"new %d\r\n" % i for i in range(200)))
    term.flush()
    assert term.display_lines() == shown  # the view stays on what the person reads
    assert term.matches == [match]  # the same absolute line
    term.feed(b"".join(b"more %d\r\n" % i for i in range(600)))  # the needle falls out of the history
    term.flush()
    assert term.matches == []
    assert len(term.vt.history) == 500


def test_find_bar_in_the_tab(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    _type(qtbot, term, "clear; for i in $(seq 1 120); do echo row-$i; done; echo Marker-A; seq 1 80")
    aloop.run(until(lambda: "80" in _screen(term), what="the output"))
    assert console.find_bar.isHidden()
    qtbot.keyClick(term, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert console.find_bar.isVisible()
    qtbot.keyClicks(console.find_bar.field, "row-1")
    assert console.find_bar.count.text() == "32 of 32"  # row-1, row-10..19, row-100..120
    qtbot.keyClick(console.find_bar.field, Qt.Key.Key_Return)  # next: wraps to the oldest
    assert console.find_bar.count.text() == "1 of 32"
    assert "row-1" in _screen(term)
    console.find_bar.prev_button.click()
    assert console.find_bar.count.text() == "32 of 32"
    console.find_bar.case.setChecked(True)
    console.find_bar.field.setText("marker-a")
    assert console.find_bar.count.text() == "No matches"
    console.find_bar.case.setChecked(False)
    assert console.find_bar.count.text() == "1 of 1"
    _type(qtbot, term, "echo marker-a")  # typed in the terminal while the bar is open: new matches appear
    aloop.run(until(lambda: console.find_bar.count.text().endswith("of 3"), what="the echo and its output found"))
    console.find_bar.field.setText("row-11")
    _shot(console, "find")
    qtbot.keyClick(console.find_bar.field, Qt.Key.Key_Escape)
    assert console.find_bar.isHidden()
    assert term.matches == []
