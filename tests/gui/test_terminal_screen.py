"""The terminal model (no Qt): alternate screen, scrollback rules, resize, DEC graphics, garbage input."""

from __future__ import annotations

import random

from siteline.ui.terminal_screen import TerminalScreen, TerminalStream, line_text


def _term(cols: int = 20, rows: int = 5, history: int = 100) -> tuple[TerminalScreen, TerminalStream]:
    screen = TerminalScreen(cols, rows, history=history)
    return screen, TerminalStream(screen)


def _history(screen: TerminalScreen) -> list[str]:
    return [line_text(line, screen.columns) for line in screen.history]


def test_alternate_screen_restores_the_main_one_and_keeps_no_history() -> None:
    screen, stream = _term()
    stream.feed_bytes(b"one\r\ntwo\r\n$ ")
    stream.feed_bytes(b"\x1b[?1049h\x1b[H\x1b[2J" + b"".join(b"vi %d\r\n" % i for i in range(30)))
    assert screen.alternate
    assert screen.history == type(screen.history)()  # redraws of a full-screen program are not scrollback
    stream.feed_bytes(b"\x1b[?1049l")
    assert not screen.alternate
    assert [line.rstrip() for line in screen.display] == ["one", "two", "$", "", ""]
    assert (screen.cursor.y, screen.cursor.x) == (2, 2)  # 1049 restores the cursor too


def test_scroll_region_lines_do_not_enter_the_history() -> None:
    screen, stream = _term()
    stream.feed_bytes(b"\x1b[2;4r\x1b[4;1H" + b"x\r\n" * 10)  # a status line program scrolling a region
    assert len(screen.history) == 0
    stream.feed_bytes(b"\x1b[r\x1b[5;1H" + b"".join(b"l%d\r\n" % i for i in range(3)))
    assert len(screen.history) == 3
    stream.feed_bytes(b"\x1b[3J")  # "clear" also clears the scrollback
    assert len(screen.history) == 0
    assert screen.pushed == 3  # absolute line numbers never go back


def test_shrinking_keeps_the_cursor_line_and_pushes_the_top_into_history() -> None:
    screen, stream = _term(rows=6)
    stream.feed_bytes(b"a\r\nb\r\nc\r\nd\r\n$ ")
    screen.resize(3, 20)
    assert [line.rstrip() for line in screen.display] == ["c", "d", "$"]
    assert _history(screen) == ["a", "b"]
    assert screen.cursor.y == 2
    screen.resize(6, 10)  # growing adds blank rows below; the prompt stays where it is
    assert [line.rstrip() for line in screen.display][:3] == ["c", "d", "$"]
    screen.resize(2, 30)
    assert screen.lines == 2
    assert screen.cursor.y == 1
    stream.feed_bytes(b"after\r\nmore")
    assert [line.rstrip() for line in screen.display] == ["$ after", "more"]


def test_shrinking_an_almost_empty_screen_keeps_the_prompt() -> None:
    screen, stream = _term(rows=10)
    stream.feed_bytes(b"$ ")
    screen.resize(4, 20)
    assert screen.display[0].rstrip() == "$"  # pyte alone dropped the top rows, prompt included


def test_dec_graphics_and_modes() -> None:
    screen, stream = _term()
    stream.feed_bytes(b"\x1b(0lqk\x1b(B ok \x0etq\x0f!")  # ESC ( 0 for G0; SO/SI switch to G1 (graphics)
    assert screen.display[0].rstrip() == "┌─┐ ok ├─!"
    stream.feed_bytes(b"\x1b[?2004h\x1b[?1h")
    assert screen.bracketed_paste
    assert screen.app_cursor
    stream.feed_bytes(b"\x1b[?2004l\x1b[?25l")
    assert not screen.bracketed_paste
    assert screen.cursor.hidden


def test_unknown_and_odd_sequences_never_stop_the_parser() -> None:
    screen, stream = _term()
    stream.feed_bytes(b"\x1b[>4;1m\x1b[?4mA\x1b%@\xc3\xa9\x1b[38;2;999;0mB\x1b]8;;http://x\x1b\\C")
    assert screen.display[0].rstrip() == "AéBC"


def test_random_garbage_is_survived() -> None:
    rng = random.Random(1234)
    screen, stream = _term(cols=30, rows=8, history=50)
    alphabet = b"\x1b[];?0123456789;mHJKhlr()0B\r\n\x07\x08\x0e\x0fabc\xe4\xbd\xa0\xff"
    for _ in range(300):
        stream.feed_bytes(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 200))))
        if rng.random() < 0.05:
            screen.resize(rng.randint(1, 12), rng.randint(2, 40))
    stream.feed_bytes(b"\x1b[?1049l\x1b[0m\x1b(B\x0f\x1bc" + b"alive")
    assert screen.display[0].startswith("alive")
    assert len(screen.history) <= 50
