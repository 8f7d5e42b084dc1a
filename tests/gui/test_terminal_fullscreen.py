"""Full-screen programs in the Console tab against OpenSSH's sshd and a real bash: top, vi, less.

Each test checks what the screen model holds (alternate screen, redraw at a new size, box drawing)
and, when SITELINE_CONSOLE_SHOTS names a folder, saves a screenshot there (scripts/console_screens.py
runs this under Xvfb and lists the PNGs).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.ui.console_tab import ConsoleTab
from tests.gui.conftest import Loop, until
from tests.gui.test_console_tab import _open, _screen, _type, console

pytestmark = [pytest.mark.peer("sshd")]
__all__ = ["console"]  # the fixture, imported for these tests


def _shot(tab: ConsoleTab, name: str) -> None:
    folder = os.environ.get("SITELINE_CONSOLE_SHOTS")
    if folder:
        tab.terminal.flush()
        Path(folder).mkdir(parents=True, exist_ok=True)
        assert tab.grab().save(str(Path(folder) / f"{name}.png"))


def _has(tab: ConsoleTab, text: str) -> bool:
    return any(text in line for line in _screen(tab.terminal))


def _settle(aloop: Loop, tab: ConsoleTab, text: str, timeout: float = 10.0) -> None:
    aloop.run(until(lambda: _has(tab, text), timeout=timeout, what=repr(text)))


def test_top_redraws_at_each_window_size(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    _type(qtbot, term, "clear; echo before-top; top -d 0.3")
    _settle(aloop, console, "load average")
    assert "PID" in "".join(_screen(term))  # procps top draws on the main screen (no alternate buffer)
    _shot(console, "top-900x500")
    cw, ch = term.cell_size()
    for width, height in ((520, 300), (1300, 800)):
        console.resize(width, height)
        aloop.run(until(lambda: (term.vt.columns, term.vt.lines) == (term.width() // cw, term.height() // ch)))
        rows = term.vt.lines
        # top repaints for the new size (SIGWINCH over SSH): its task list reaches the last row, no further.
        aloop.run(until(lambda r=rows: bool(_screen(term)[r - 1].strip()), what=f"top filling {rows} rows"))
        _settle(aloop, console, "load average")
        _shot(console, f"top-{width}x{height}")
    qtbot.keyClick(term, Qt.Key.Key_Q)
    aloop.run(until(lambda: _screen(term)[term.vt.cursor.y].startswith("PROMPT>"), what="the prompt after top"))


def test_vi_edits_and_restores_the_screen(console: ConsoleTab, aloop: Loop, qtbot, tmp_path: Path) -> None:
    _open(console, aloop)
    term = console.terminal
    text = tmp_path / "notes.txt"
    text.write_text("first line\nsecond line\n\tindented — ünïcode 你好\n")
    _type(qtbot, term, f"clear; echo before-vi; LANG=C.UTF-8 vi -u NONE -i NONE -N {text}")
    _settle(aloop, console, "second line")
    assert term.vt.alternate
    assert _screen(term)[3].startswith("~")  # vi marks the lines past the end of the file
    qtbot.keyClicks(term, "Goadded by siteline")
    qtbot.keyClick(term, Qt.Key.Key_Escape)
    _settle(aloop, console, "added by siteline")
    assert _has(console, "indented — ünïcode 你好")
    _shot(console, "vi")
    qtbot.keyClicks(term, ":wq")
    qtbot.keyClick(term, Qt.Key.Key_Return)
    aloop.run(until(lambda: not term.vt.alternate, what="vi leaving the alternate screen"))
    _settle(aloop, console, "before-vi")
    aloop.run(until(lambda: "added by siteline" in text.read_text(), what="the file written"))
    assert not _has(console, "second line")


def test_less_pages_and_searches(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    _type(qtbot, term, "clear; seq 1 500 | LESSHISTFILE=- less")
    aloop.run(until(lambda: _screen(term)[0] == "1" and term.vt.alternate, what="less showing line 1"))
    rows = term.vt.lines
    qtbot.keyClick(term, Qt.Key.Key_Space)
    aloop.run(until(lambda: _screen(term)[0] == str(rows), what="the next page"))
    qtbot.keyClicks(term, "/250")
    qtbot.keyClick(term, Qt.Key.Key_Return)
    aloop.run(until(lambda: _screen(term)[0] == "250", what="less jumping to 250"))
    qtbot.keyClick(term, Qt.Key.Key_End)  # xterm's End: less goes to the last line
    aloop.run(until(lambda: _has(console, "500"), what="the end"))
    _shot(console, "less")
    qtbot.keyClick(term, Qt.Key.Key_Q)
    aloop.run(until(lambda: not term.vt.alternate, what="less leaving the alternate screen"))
    assert not _has(console, "250")


def test_colours_boxes_and_wide_glyphs(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    demo = (r"printf '\033[1;32mbold green\033[0m \033[7mreverse\033[0m \033[4munder\033[0m "
            r"\033[38;5;208morange256\033[0m \033[38;2;80;160;255mtruecolour\033[0m\n"
            r"\033(0lqqqqk\nx\033(B ok \033(0x\nmqqqqj\033(B\n\344\275\240\345\245\275 wide\n'")
    _type(qtbot, term, f"clear; ls --color=always -d /usr /etc /bin /tmp; {demo}")
    _settle(aloop, console, "你好 wide")  # typed as octal escapes: QTest's keyClicks aborts on CJK
    lines = _screen(term)
    assert lines[2:5] == ["┌────┐", "│ ok │", "└────┘"]  # DEC line drawing
    row = lines.index(next(line for line in lines if "orange256" in line))
    col = lines[row].index("orange256")
    assert term.vt.buffer[row][col].fg == "ff8700"
    col = lines[row].index("truecolour")
    assert term.vt.buffer[row][col].fg == "50a0ff"
    _shot(console, "colours")
