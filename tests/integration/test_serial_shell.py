"""The interactive shell over a serial console: raw bytes both ways, the size set, the line given back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyte
import pytest
from tests.peers.sim import PASSWORD, running_device
from tests.peers.socat_shell import SocatShell

from siteline.core.errors import TransportError
from siteline.core.loopwatch import LoopWatch
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials
from siteline.core.transports.serial import SerialTransport
from siteline.core.transports.serial_shell import SerialShell
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio


class Screen:
    """Everything the shell printed, collected through an output listener (as the Console tab does)."""

    def __init__(self, shell: SerialShell) -> None:
        self.data = bytearray()
        self.grew = asyncio.Event()
        self.closed: list[str] = []
        self.ended = asyncio.Event()
        shell.add_output_listener(self._on_output)
        shell.add_closed_listener(self._on_closed)

    def _on_closed(self, reason: str) -> None:
        self.closed.append(reason)
        self.ended.set()

    def _on_output(self, chunk: bytes) -> None:
        self.data += chunk
        self.grew.set()

    async def wait_for(self, needle: bytes, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.data:
                self.grew.clear()
                await self.grew.wait()


def _transport(path: Path, creds: Credentials | None = None, query: str = "") -> SerialTransport:
    return SerialTransport(parse_target(f"serial://{path}{query}"), creds or Credentials(), wake_timeout=1.0,
                           login_timeout=5.0)


@pytest.mark.peer("socat")
async def test_shell_sets_size_and_term_and_gives_the_line_back(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell(cols=101, rows=33)
        screen = Screen(shell)
        await screen.wait_for(b"# ")  # the prompt, with its escape sequences, reaches the terminal raw
        assert b"\x1b[1;32m" in screen.data
        assert b"__SL_RDY" not in screen.data  # the setup line stays out of the person's terminal
        shell.write(b"echo size=$(stty size) term=$TERM\r")
        await screen.wait_for(b"size=33 101 term=xterm")
        with pytest.raises(TransportError, match="in use by the interactive console") as info:
            await t.run("true")
        assert "Close the interactive console" in info.value.hint
        with pytest.raises(TransportError, match="in use"):
            await t.open_shell()
        shell.resize(120, 40)  # no window-size signal on a serial line: nothing is typed
        # (A program still running when the shell closes is left alone: tests/integration/test_serial_shell_close.py.)
        await asyncio.wait_for(shell.close(), 8)
        assert shell.closed
        assert screen.closed == ["closed"]
        assert t.state.state is ConnState.UP
        assert (await t.run("echo back")).stdout == "back\n"
    finally:
        await t.close()


@pytest.mark.peer("socat")
async def test_a_full_screen_program_fills_the_size_set_on_open(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell(cols=70, rows=15)
        vt = pyte.Screen(70, 15)
        stream = pyte.ByteStream(vt)
        shell.add_output_listener(stream.feed)
        screen = Screen(shell)
        shell.write(b"seq 101 300 | less\r")
        await screen.wait_for(b"114")  # less drew a page
        await asyncio.sleep(0.2)
        # 14 lines of text and less's own prompt on the 15th row: it read rows=15 from the tty.
        assert vt.display[0].strip() == "101"
        assert vt.display[13].strip() == "114"
        assert vt.display[14].startswith(":")
        shell.write(b"q")
        shell.write(b"echo after-less\r")
        await screen.wait_for(b"after-less\r\n")
        await shell.close()
        assert (await t.run("echo ok")).stdout == "ok\n"
    finally:
        await t.close()


@pytest.mark.peer("socat")
async def test_async_iteration_and_a_flood_of_output(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell()
        shell.write(b"seq 1 20000; echo DONE-$((40+2))\r")
        received = bytearray()

        async def read_all() -> None:
            async for chunk in shell:
                received.extend(chunk)
                if b"DONE-42" in received:
                    return

        watch = LoopWatch(interval=0.02)
        watch.start()
        try:
            await asyncio.wait_for(read_all(), 10)
        finally:
            await watch.stop()
        assert b"\r\n19999\r\n20000\r\n" in received
        assert watch.worst_stall < 1.0, watch.stats.describe()  # a hang detector, not a benchmark
        await shell.close()
        assert (await t.run("echo ok")).stdout == "ok\n"
    finally:
        await t.close()


@pytest.mark.peer("socat")
async def test_cable_pulled_under_the_shell_tells_the_listeners(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell()
        screen = Screen(shell)
        socat_shell.stop()
        await asyncio.wait_for(screen.ended.wait(), 5)
        assert shell.closed
        assert screen.closed == [f"the serial cable was pulled ({socat_shell.path} is gone)"]
        assert t.state.state is ConnState.DOWN
        with pytest.raises(TransportError, match="Not connected"):
            await t.run("true")
        shell.write(b"ignored\r")  # typing into an ended shell is harmless
        await shell.close()  # and closing it again too
        assert screen.closed == [f"the serial cable was pulled ({socat_shell.path} is gone)"]
    finally:
        await t.close()


async def test_shell_on_the_simulated_console_and_logout_on_close(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttySH"
    async with running_device(sim_state, ssh=False, serial_link=link):
        t = _transport(link, Credentials("root", PASSWORD), "?baud=115200")
        await t.connect()
        try:
            shell = await t.open_shell(cols=90, rows=30)
            screen = Screen(shell)
            shell.write(b"echo rows=$(tput lines 2>/dev/null || stty size)\r")
            await screen.wait_for(b"rows=30")
            await shell.close()
            r = await t.run("echo after-shell")
            assert r.stdout == "after-shell\n"
            assert t.state.state is ConnState.UP
        finally:
            await t.close()
        # The next person finds the login prompt, not our root shell (close() logged out).
        await t.connect()
        assert t._logged_in_by_us
        await t.close()
