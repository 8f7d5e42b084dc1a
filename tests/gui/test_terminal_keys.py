"""The bytes the terminal sends: control keys, cursor and function keys, Alt, copy and (bracketed) paste."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QClipboard, QGuiApplication, QKeySequence, QShortcut, QWheelEvent
from PySide6.QtWidgets import QMainWindow

from siteline.ui.console_tab import ConsoleTab
from siteline.ui.terminal_keys import encode_key, paste_bytes
from siteline.ui.terminal_widget import TerminalWidget
from tests.gui.conftest import Loop, until
from tests.gui.test_console_tab import _open, _screen, _type, console

__all__ = ["console"]
K, M = Qt.Key, Qt.KeyboardModifier
NONE, CTRL, ALT, SHIFT = M.NoModifier, M.ControlModifier, M.AltModifier, M.ShiftModifier

CASES = [
    (K.Key_C, CTRL, "", False, b"\x03"), (K.Key_D, CTRL, "", False, b"\x04"), (K.Key_Z, CTRL, "", False, b"\x1a"),
    (K.Key_BracketLeft, CTRL, "", False, b"\x1b"), (K.Key_Space, CTRL, "", False, b"\x00"),
    (K.Key_Backslash, CTRL, "", False, b"\x1c"), (K.Key_Underscore, CTRL | SHIFT, "", False, b"\x1f"),
    (K.Key_Up, NONE, "", False, b"\x1b[A"), (K.Key_Down, NONE, "", True, b"\x1bOB"),
    (K.Key_Right, CTRL, "", False, b"\x1b[1;5C"), (K.Key_Left, SHIFT | ALT, "", True, b"\x1b[1;4D"),
    (K.Key_Home, NONE, "", False, b"\x1b[H"), (K.Key_End, NONE, "", True, b"\x1bOF"),
    (K.Key_PageUp, NONE, "", False, b"\x1b[5~"), (K.Key_PageDown, NONE, "", False, b"\x1b[6~"),
    (K.Key_Insert, NONE, "", False, b"\x1b[2~"), (K.Key_Delete, NONE, "", False, b"\x1b[3~"),
    (K.Key_Delete, CTRL, "", False, b"\x1b[3;5~"),
    (K.Key_F1, NONE, "", False, b"\x1bOP"), (K.Key_F4, NONE, "", False, b"\x1bOS"),
    (K.Key_F5, NONE, "", False, b"\x1b[15~"), (K.Key_F6, NONE, "", False, b"\x1b[17~"),
    (K.Key_F10, NONE, "", False, b"\x1b[21~"), (K.Key_F11, NONE, "", False, b"\x1b[23~"),
    (K.Key_F12, NONE, "", False, b"\x1b[24~"), (K.Key_F1, SHIFT, "", False, b"\x1b[1;2P"),
    (K.Key_F5, CTRL, "", False, b"\x1b[15;5~"),
    (K.Key_B, ALT, "b", False, b"\x1bb"), (K.Key_F, ALT, "ƒ", False, b"\x1bf"),
    (K.Key_X, CTRL | ALT, "", False, b"\x1b\x18"),
    (K.Key_Backspace, NONE, "\x08", False, b"\x7f"), (K.Key_Backspace, ALT, "", False, b"\x1b\x7f"),
    (K.Key_Backspace, CTRL, "", False, b"\x08"), (K.Key_Return, NONE, "\r", False, b"\r"),
    (K.Key_Tab, NONE, "\t", False, b"\t"), (K.Key_Backtab, SHIFT, "", False, b"\x1b[Z"),
    (K.Key_Escape, NONE, "\x1b", False, b"\x1b"), (K.Key_A, NONE, "a", False, b"a"),
    (K.Key_unknown, NONE, "é", False, "é".encode()), (K.Key_Shift, SHIFT, "", False, b""),
]  # fmt: skip


@pytest.mark.parametrize(("key", "mods", "text", "app_cursor", "expected"), CASES)
def test_xterm_sequences(key: Qt.Key, mods: M, text: str, app_cursor: bool, expected: bytes) -> None:
    assert encode_key(key, mods, text, app_cursor) == expected


def test_paste_bytes() -> None:
    assert paste_bytes("a\r\nb\nc", bracketed=False) == b"a\rb\rc"
    assert paste_bytes("ls\n", bracketed=True) == b"\x1b[200~ls\r\x1b[201~"
    # A paste cannot close the bracket itself and have the rest run as if typed.
    assert paste_bytes("x\x1b[201~rm -rf /\n", bracketed=True) == b"\x1b[200~xrm -rf /\r\x1b[201~"


def _sent(qtbot, term: TerminalWidget) -> list[bytes]:
    got: list[bytes] = []
    term.sig_input.connect(got.append)
    return got


def test_widget_keys_follow_the_programs_modes(qtbot) -> None:
    term = TerminalWidget()
    qtbot.addWidget(term)
    got = _sent(qtbot, term)
    qtbot.keyClick(term, K.Key_Up)
    term.feed(b"\x1b[?1h")  # the program asks for application cursor keys (DECCKM), as vi and less do
    term.flush()
    qtbot.keyClick(term, K.Key_Up)
    qtbot.keyClick(term, K.Key_C, CTRL)
    qtbot.keyClick(term, K.Key_D, CTRL)
    qtbot.keyClick(term, K.Key_F12)
    assert got == [b"\x1b[A", b"\x1bOA", b"\x03", b"\x04", b"\x1b[24~"]


def test_terminal_keys_win_over_window_shortcuts(qtbot) -> None:
    window = QMainWindow()
    term = TerminalWidget()
    window.setCentralWidget(term)
    qtbot.addWidget(window)
    fired: list[str] = []
    for keys in ("F5", "F2", "Ctrl+W", "Ctrl+Shift+F"):
        shortcut = QShortcut(QKeySequence(keys), window)
        shortcut.activated.connect(lambda k=keys: fired.append(k))
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # window shortcuts fire only in the active window
    term.setFocus()
    got = _sent(qtbot, term)
    qtbot.keyClick(term, K.Key_F5)
    qtbot.keyClick(term, K.Key_F2)
    qtbot.keyClick(term, K.Key_W, CTRL)  # bash: delete the word before the cursor
    qtbot.keyClick(term, K.Key_F, CTRL | SHIFT)  # the app's own find shortcut still works
    assert got == [b"\x1b[15~", b"\x1bOQ", b"\x17"]
    assert fired == ["Ctrl+Shift+F"]


def test_copy_selection_and_paste(qtbot) -> None:
    term = TerminalWidget()
    qtbot.addWidget(term)
    term.resize(600, 300)
    got = _sent(qtbot, term)
    term.feed(b"alpha beta\r\ngamma delta\r\n")
    term.flush()
    term.select((0, 6), (1, 4))
    qtbot.keyClick(term, K.Key_C, CTRL | SHIFT)
    assert QGuiApplication.clipboard().text() == "beta\ngamma"
    assert got == []  # Ctrl+Shift+C copies; it sends nothing
    QGuiApplication.clipboard().setText("one\ntwo")
    qtbot.keyClick(term, K.Key_V, CTRL | SHIFT)
    term.feed(b"\x1b[?2004h")  # bracketed paste asked for (bash does this at its prompt)
    term.flush()
    qtbot.keyClick(term, K.Key_V, CTRL | SHIFT)
    assert got == [b"one\rtwo", b"\x1b[200~one\rtwo\x1b[201~"]


def test_scrollback_keys_and_the_wheel(qtbot) -> None:
    term = TerminalWidget()
    qtbot.addWidget(term)
    term.resize(600, 300)
    got = _sent(qtbot, term)
    term.feed(b"".join(b"n%d\r\n" % i for i in range(200)))
    term.flush()
    rows = term.vt.lines
    qtbot.keyClick(term, K.Key_PageUp, SHIFT)
    assert term.top_line == term.vt.pushed - rows // 2
    qtbot.keyClick(term, K.Key_Home, SHIFT)
    assert term.display_lines()[0].rstrip() == "n0"
    qtbot.keyClick(term, K.Key_End, SHIFT)
    assert term.top_line == term.vt.pushed
    term.scroll_by(5)
    qtbot.keyClick(term, K.Key_A)  # typing brings the view back to the prompt
    assert term.top_line == term.vt.pushed
    term.feed(b"\x1b[?1049h\x1b[?1h")  # less/vi on the alternate screen: the wheel becomes arrow keys
    term.flush()
    qtbot.keyClick(term, K.Key_PageUp, SHIFT)  # no scrollback there: the key goes to the program
    wheel = QWheelEvent(QPointF(5, 5), QPointF(5, 5), QPoint(), QPoint(0, 120), Qt.MouseButton.NoButton,
                        NONE, Qt.ScrollPhase.NoScrollPhase, False)
    term.wheelEvent(wheel)
    assert got == [b"a", b"\x1b[5;2~", b"\x1bOA" * 3]


def test_double_click_selects_a_word(qtbot) -> None:
    term = TerminalWidget()
    qtbot.addWidget(term)
    term.resize(600, 300)
    term.feed(b"inet 192.168.7.21/24 brd x\r\n")
    term.flush()
    cw, ch = term.cell_size()
    qtbot.mouseDClick(term, Qt.MouseButton.LeftButton, pos=QPoint(8 * cw + 2, ch // 2))
    assert term.selected_text() == "192.168.7.21/24"


def test_middle_click_pastes_the_primary_selection(qtbot) -> None:
    clipboard = QGuiApplication.clipboard()
    if not clipboard.supportsSelection():
        pytest.skip("this Qt platform has no primary selection (X11 has; offscreen and Windows have not)")
    term = TerminalWidget()
    qtbot.addWidget(term)
    got = _sent(qtbot, term)
    clipboard.setText("from-selection", QClipboard.Mode.Selection)
    qtbot.mouseClick(term, Qt.MouseButton.MiddleButton, pos=QPoint(10, 10))
    assert got == [b"from-selection"]


def test_bash_asks_for_bracketed_paste_and_runs_the_paste(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    term.flush()
    assert term.vt.bracketed_paste  # bash/readline turned it on at the prompt
    QGuiApplication.clipboard().setText("echo pasted-$((6*7))")
    qtbot.keyClick(term, K.Key_V, CTRL | SHIFT)
    qtbot.keyClick(term, K.Key_Return)
    aloop.run(until(lambda: "pasted-42" in _screen(term), what="the pasted command's output"))
    # Keys go to the foreground program once it runs (the marker proves the tty is no longer readline's).
    _type(qtbot, term, "echo cat-now; cat; echo cat-ended-$((2+2))")
    aloop.run(until(lambda: "cat-now" in _screen(term), what="cat running"))
    qtbot.keyClick(term, K.Key_D, CTRL)  # end of input
    aloop.run(until(lambda: "cat-ended-4" in _screen(term), what="cat ended by Ctrl-D"))
    _type(qtbot, term, "echo z-now; sleep 30")
    aloop.run(until(lambda: "z-now" in _screen(term), what="sleep running"))
    qtbot.keyClick(term, K.Key_Z, CTRL)  # suspend the job
    aloop.run(until(lambda: any("Stopped" in line for line in _screen(term)), what="job stopped by Ctrl-Z"))
    _type(qtbot, term, "kill -9 %1")
