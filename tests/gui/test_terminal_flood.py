"""A flood of output (`yes | head -c N` over real SSH) keeps the UI loop responsive and memory bounded.

N is 8 MB by default to keep the suite quick; SITELINE_FLOOD_BYTES=20000000 runs the brief's full size.
"""

from __future__ import annotations

import os
import time

import pytest

from siteline.core.loopwatch import LoopWatch
from siteline.ui.console_tab import ConsoleTab
from siteline.ui.terminal_widget import MAX_BACKLOG, TerminalWidget
from tests.gui.conftest import Loop, until
from tests.gui.test_console_tab import _open, _screen, _type, console
from tests.gui.test_terminal_fullscreen import _shot

__all__ = ["console"]
# A hang, not a speed target: measured 40-170 ms (up to 455 ms with other suites on the same 2 cores);
# the figure is printed for the notes.
WORST_STALL_S = 2.0
FLOOD_BYTES = int(os.environ.get("SITELINE_FLOOD_BYTES", "8000000"))


@pytest.mark.peer("sshd")
def test_flood_keeps_the_loop_responsive(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    watch = LoopWatch(interval=0.005, threshold=10.0)

    async def flood() -> float:
        watch.start()
        started = time.monotonic()
        _type(qtbot, term, f"yes | head -c {FLOOD_BYTES}; echo flood-$((5*5))")
        await until(lambda: any(line.startswith("flood-25") for line in _screen_quiet(term)), timeout=60.0,
                    what="the end of the flood")
        await watch.stop()
        return time.monotonic() - started

    took = aloop.run(flood(), timeout=90.0)
    skipped = term.skipped_bytes / 1e6
    print(f"\nflood: {FLOOD_BYTES / 1e6:.0f} MB in {took:.1f} s, {watch.stats.describe()}, skipped {skipped:.1f} MB")
    assert watch.worst_stall < WORST_STALL_S, watch.stats.describe()
    assert term.skipped_bytes > 0  # the UI skipped what it could not draw in time, and said so
    assert len(term._pending) <= MAX_BACKLOG
    assert len(term.vt.history) <= 10_000
    assert "flood-25" in _screen(term)
    _shot(console, "flood")


def _screen_quiet(term: TerminalWidget) -> list[str]:
    """The screen as shown now, without forcing the backlog through (that would be the stall we measure)."""
    return [line.rstrip() for line in term.display_lines()]


def test_history_limit_is_configurable(qtbot) -> None:
    term = TerminalWidget(history=50)
    qtbot.addWidget(term)
    term.feed(b"x\r\n" * 500)
    term.flush()
    assert len(term.vt.history) == 50
    term.vt.set_history_limit(20)
    assert len(term.vt.history) == 20
