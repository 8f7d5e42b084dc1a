"""The Console tab against OpenSSH's real sshd: keys in, bytes out, pyte screen, resize, colours."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.ssh import SshTransport
from siteline.ui.console_tab import ConsoleTab
from siteline.ui.terminal_paint import ANSI
from siteline.ui.terminal_widget import TerminalWidget
from tests.gui.conftest import Loop, until
from tests.peers.sshd import SshdHandle

pytestmark = [pytest.mark.peer("sshd")]


@pytest.fixture
def console(qtbot, aloop: Loop, sshd: SshdHandle, tmp_path: Path) -> Iterator[ConsoleTab]:
    target = parse_target(f"ssh://{sshd.user}@{sshd.host}:{sshd.port}")
    transport = SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False), tmp_path / "kh",
                             accept_new_host_key=True)
    aloop.run(transport.connect())
    tab = ConsoleTab()  # not qtbot.addWidget: pytest-qt would delete it before the shell is hung up
    tab.resize(900, 500)
    tab.show()
    tab.set_device(target, transport.open_shell)
    try:
        yield tab
    finally:
        aloop.run(tab.close_shell())
        aloop.run(transport.close())
        tab.close()
        tab.deleteLater()


def _type(qtbot, term: TerminalWidget, text: str) -> None:
    qtbot.keyClicks(term, text)
    qtbot.keyClick(term, Qt.Key.Key_Return)


def _screen(term: TerminalWidget) -> list[str]:
    term.flush()
    return [line.rstrip() for line in term.display_lines()]


def _open(console: ConsoleTab, aloop: Loop) -> None:
    assert console.connect_button.isEnabled()
    console.connect_button.click()
    # A prompt ends in a space or '$'/'#': wait for any output, then settle the shell to a known prompt.
    aloop.run(until(lambda: console.channel is not None, what="shell channel"))
    console.channel.write(b"export PS1='PROMPT> '; stty -ixon\r")  # type: ignore[union-attr]
    aloop.run(until(lambda: any(line.startswith("PROMPT>") for line in _screen(console.terminal)), what="prompt"))


def test_echo_hi_reaches_the_pyte_screen(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    _type(qtbot, console.terminal, "echo hi")
    aloop.run(until(lambda: "hi" in _screen(console.terminal), what="'hi' on the screen"))
    assert any(line.endswith("echo hi") for line in _screen(console.terminal))  # the echo of what we typed


def test_resize_propagates_to_stty(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    term = console.terminal
    term.resize(term.width() - 3 * term.cell_size()[0], term.height() - 2 * term.cell_size()[1])
    aloop.run(until(lambda: True))
    cols, rows = term.vt.columns, term.vt.lines
    _type(qtbot, term, "clear; stty size")
    aloop.run(until(lambda: f"{rows} {cols}" in _screen(term), what=f"stty size '{rows} {cols}'"))


def test_sgr_red_gives_a_red_cell(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    _type(qtbot, console.terminal, r"clear; printf '\033[31mred\033[0m\n'")
    aloop.run(until(lambda: "red" in _screen(console.terminal), what="'red'"))
    vt = console.terminal.vt
    row = _screen(console.terminal).index("red")
    assert [vt.buffer[row][x].fg for x in range(3)] == ["red"] * 3
    assert ANSI["red"] == "#cd0000"


def test_ctrl_c_interrupts(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    _type(qtbot, console.terminal, "sleep 30; echo slept")
    aloop.run(until(lambda: any("sleep 30" in line for line in _screen(console.terminal)), what="echo"))
    qtbot.keyClick(console.terminal, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    _type(qtbot, console.terminal, "echo after")
    aloop.run(until(lambda: "after" in _screen(console.terminal), timeout=5.0, what="'after'"))
    assert "slept" not in _screen(console.terminal)


def test_flood_is_parsed_in_slices_and_scrollback_works(qtbot) -> None:
    term = TerminalWidget()
    qtbot.addWidget(term)
    term.resize(600, 300)
    term.feed(b"".join(b"line %d\r\n" % i for i in range(3000)))
    assert term._pending  # nothing parsed inside feed(): the UI loop is never held up
    term.flush()
    rows = term.vt.lines
    assert _screen(term)[rows - 2] == "line 2999"
    term.scroll_by(100)
    assert _screen(term)[rows - 2] == "line 2899"


def test_serial_device_has_a_console_and_mqtt_says_why_not(qtbot) -> None:
    tab = ConsoleTab()
    qtbot.addWidget(tab)
    tab.set_device(parse_target("serial:///dev/ttyUSB0"), None)
    assert tab.connect_button.isEnabled()
    assert "Connect shell" in tab.status.text()
    tab.set_device(parse_target("mqtt://127.0.0.1:1883/edge/site-a/gw1"), None)
    assert not tab.connect_button.isEnabled()
    assert tab.status.text().startswith("Console not available: MQTT has no interactive console; use Run")


@pytest.mark.skipif(not os.environ.get("SITELINE_CONSOLE_SHOT"), reason="screenshot only on request")
def test_screenshot(console: ConsoleTab, aloop: Loop, qtbot) -> None:
    _open(console, aloop)
    styles = r"printf '\033[1;32mbold green\033[0m \033[7mreverse\033[0m \033[38;5;208morange256\033[0m\n'"
    _type(qtbot, console.terminal, f"clear; ls --color=always / /usr; {styles}")
    aloop.run(until(lambda: any("bold green" in line for line in _screen(console.terminal)), what="ls"))
    console.grab().save(os.environ["SITELINE_CONSOLE_SHOT"])
