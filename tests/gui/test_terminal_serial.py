"""The Console tab over a serial console: a real bash on a pty (socat) through SerialTransport."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.serial import SerialTransport
from siteline.ui.console_tab import ConsoleTab
from tests.gui.conftest import Loop, until
from tests.gui.test_console_tab import _screen, _type
from tests.peers.socat_shell import SocatShell

pytestmark = [pytest.mark.peer("socat")]


@pytest.fixture
def serial_console(qtbot, aloop: Loop, socat_shell: SocatShell) -> Iterator[tuple[ConsoleTab, SerialTransport]]:
    target = parse_target(socat_shell.url)
    transport = SerialTransport(target, Credentials(), wake_timeout=1.0, login_timeout=5.0)
    aloop.run(transport.connect())
    tab = ConsoleTab()
    tab.resize(900, 500)
    tab.show()
    tab.set_device(target, transport.open_shell)
    try:
        yield tab, transport
    finally:
        aloop.run(tab.close_shell())
        aloop.run(transport.close())
        tab.close()
        tab.deleteLater()


def test_shell_over_serial(serial_console: tuple[ConsoleTab, SerialTransport], aloop: Loop, qtbot) -> None:
    tab, transport = serial_console
    assert tab.connect_button.isEnabled()
    tab.connect_button.click()
    aloop.run(until(lambda: tab.channel is not None, what="serial shell"))
    term = tab.terminal
    _type(qtbot, term, "clear; echo serial-$((3*4)); stty size")
    aloop.run(until(lambda: "serial-12" in _screen(term), what="output over the serial line"))
    # The size the tab asked for is set on the device's tty (a serial line has no SIGWINCH).
    aloop.run(until(lambda: f"{term.vt.lines} {term.vt.columns}" in _screen(term), what="stty size"))
    tab.disconnect_button.click()
    aloop.run(until(lambda: transport._shell is None, what="the line given back"))
    result = aloop.run(transport.run("echo back-in-command-mode"))
    assert result.stdout.strip() == "back-in-command-mode"
