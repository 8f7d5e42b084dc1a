"""Handing a serial console back after a person used it: never type into a program, only at a prompt.

A real bash on a pty (socat) with real vi; plus the bounded output fan-out that the serial and the
SSH shell share (a Console tab that only listens must not make the queue grow for hours).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import serial
from tests.peers import require_tool
from tests.peers.socat_shell import SocatShell
from tests.peers.sshd import SshdHandle

from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials
from siteline.core.transports.console import ConsoleState
from siteline.core.transports.serial import LEFT_IN_PROGRAM, SerialTransport
from siteline.core.transports.serial_shell import ScreenWatch, SerialShell, TypedLine, shown_at_hand_back
from siteline.core.transports.shell import OutputFanout, ShellChannel
from siteline.core.transports.ssh import SshTransport

PROMPT = b"\x1b]0;sim-console\x07\x1b[1;32mroot@sim\x1b[0m:\x1b[1;34m~\x1b[0m# \x1b[?2004h"


def _transport(path: Path) -> SerialTransport:
    return SerialTransport(parse_target(f"serial://{path}"), Credentials(), wake_timeout=1.0, login_timeout=5.0)


class Seen:
    """Everything a shell printed, through an output listener (as the Console tab reads it)."""

    def __init__(self, shell: SerialShell | ShellChannel) -> None:
        self.data = bytearray()
        self._grew = asyncio.Event()
        shell.add_output_listener(self._on_output)

    def _on_output(self, chunk: bytes) -> None:
        self.data += chunk
        self._grew.set()

    async def wait_for(self, needle: bytes, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.data:
                self._grew.clear()
                await self._grew.wait()


def _raw_write(path: Path, data: bytes) -> None:
    """Type on the console as the person at the cabinet would (after Siteline let go of the port)."""
    with serial.Serial(str(path), timeout=0.1) as port:
        port.write(data)
        port.flush()


# -- against a real bash and a real vi ----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_closing_with_vi_open_types_nothing_into_the_file(socat_shell: SocatShell, tmp_path: Path) -> None:
    require_tool("vi")
    f = tmp_path / "interfaces"
    f.write_text("auto eth0\niface eth0 inet dhcp\n")
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell(cols=80, rows=24)
        seen = Seen(shell)
        shell.write(f"vi {f}\r".encode())
        await seen.wait_for(b"iface eth0")  # vi drew the file
        await asyncio.sleep(0.2)
        await asyncio.wait_for(shell.close(), 5)
        assert t.state.state is ConnState.DOWN
        assert t.state.reason == LEFT_IN_PROGRAM
        assert "quit it at the device, then press Reconnect" in t.state.reason
    finally:
        await t.close()  # no Ctrl-C / 'exit' either: in vi's normal mode 'x' would delete a character
    # Save and quit vi as the person would: anything Siteline typed would now be in the file.
    _raw_write(socat_shell.path, b"\x1b:wq\r")
    await asyncio.sleep(0.5)
    assert f.read_text() == "auto eth0\niface eth0 inet dhcp\n"


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_closing_the_transport_under_an_open_vi_types_nothing(socat_shell: SocatShell, tmp_path: Path) -> None:
    require_tool("vi")
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1 localhost\n")
    t = _transport(socat_shell.path)
    await t.connect()
    shell = await t.open_shell()
    seen = Seen(shell)
    shell.write(f"vi {f}\r".encode())
    await seen.wait_for(b"localhost")
    await t.close()  # the app quits with the Console tab open: no Ctrl-C, no 'exit' into vi
    assert shell.closed
    _raw_write(socat_shell.path, b"\x1b:wq\r")
    await asyncio.sleep(0.5)
    assert f.read_text() == "127.0.0.1 localhost\n"


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_quitting_the_program_in_a_new_console_brings_the_line_back(socat_shell: SocatShell,
                                                                          tmp_path: Path) -> None:
    require_tool("vi")
    f = tmp_path / "notes"
    f.write_text("keep me\n")
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell()
        seen = Seen(shell)
        shell.write(f"vi {f}\r".encode())
        await seen.wait_for(b"keep me")
        await asyncio.wait_for(shell.close(), 5)
        assert t.state.state is ConnState.DOWN
        # The Console tab opens the console again: nothing is typed for it (no TERM/stty setup line).
        again = await t.open_shell()
        seen = Seen(again)
        await asyncio.sleep(0.3)
        assert seen.data == b""
        again.write(b"\x0c")  # Ctrl-L: vi redraws (on the alternate screen it entered before)
        await seen.wait_for(b"keep me")
        await asyncio.wait_for(again.close(), 5)
        assert t.state.state is ConnState.DOWN  # still inside vi: still nothing typed
        again = await t.open_shell()
        seen = Seen(again)
        again.write(b"\x1b:q!\r")  # the person quits vi
        await seen.wait_for(b"# ")
        await asyncio.wait_for(again.close(), 5)
        assert t.state.state is ConnState.UP, t.state.reason
        assert (await t.run("echo back")).stdout == "back\n"
    finally:
        await t.close()
    assert f.read_text() == "keep me\n"


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_half_typed_line_at_the_prompt_is_cleared_not_run(socat_shell: SocatShell) -> None:
    marker = socat_shell.workdir / "home" / "HALF"
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell()
        seen = Seen(shell)
        await seen.wait_for(b"# ")
        shell.write(b"touch HALFX\x7f")  # typed, one character rubbed out, no Enter
        await seen.wait_for(b"HALFX")  # the person saw the echo
        await asyncio.sleep(0.1)
        await asyncio.wait_for(shell.close(), 5)
        assert t.state.state is ConnState.UP, t.state.reason
        r = await t.run("ls; echo done")
        assert r.stdout.endswith("done\n")
        assert not marker.exists()  # Ctrl-C dropped the half-typed line: it never ran
    finally:
        await t.close()


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_a_command_still_running_is_left_alone(socat_shell: SocatShell) -> None:
    out = socat_shell.workdir / "home" / "typed.txt"
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell()
        seen = Seen(shell)
        await seen.wait_for(b"# ")
        shell.write(b"cat > typed.txt\r")  # reads the console: every line typed now would land in the file
        await asyncio.sleep(0.2)
        await asyncio.wait_for(shell.close(), 5)
        assert t.state.state is ConnState.DOWN
        assert t.state.reason == LEFT_IN_PROGRAM
    finally:
        await t.close()
    await asyncio.sleep(0.3)
    assert out.exists()
    assert out.read_text() == ""  # neither the marker command nor 'exit' reached cat


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_back_at_the_prompt_after_a_pager_the_line_returns(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell.path)
    await t.connect()
    try:
        shell = await t.open_shell(cols=70, rows=15)
        seen = Seen(shell)
        shell.write(b"seq 1 300 | less\r")
        await seen.wait_for(b"14")
        shell.write(b"q")  # out of less (it leaves the alternate screen), back at the prompt
        await seen.wait_for(b"\x1b[?1049l")
        await asyncio.sleep(0.2)
        await asyncio.wait_for(shell.close(), 5)
        assert t.state.state is ConnState.UP, t.state.reason
        assert (await t.run("echo ok")).stdout == "ok\n"
    finally:
        await t.close()


# -- the judgement itself, on recorded bytes ----------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "typed", "alternate", "state"),
    [
        (PROMPT, "", False, ConsoleState.SHELL),
        (PROMPT + b"rm -rf /tm", "rm -rf /tm", False, ConsoleState.SHELL),
        (PROMPT + b"echo hallo\x08\x1b[K", "echo hall", False, ConsoleState.SHELL),  # readline's rub-out
        (PROMPT + b"echo x", None, False, ConsoleState.UNKNOWN),  # edited with cursor keys: not provable
        (PROMPT + b"echo x", "", False, ConsoleState.UNKNOWN),  # text nobody typed follows the prompt
        (PROMPT + b"sleep 30\r\n\x1b[?2004l\r", "", False, ConsoleState.UNKNOWN),  # a command runs
        (PROMPT, "", True, ConsoleState.UNKNOWN),  # a full-screen program holds the screen
        (b"\x1b[1;1H~\r\n~\r\n\"f\" 2L, 30B\x1b[1;1H", "", False, ConsoleState.UNKNOWN),  # BusyBox vi
        (b"\x1b[H\x1b[J# comment\r\n~\r\n\x1b[1;2H", "", False, ConsoleState.UNKNOWN),  # vi, cursor after "#"
        (b"\x1b[H\x1b[2J# ", "", False, ConsoleState.SHELL),  # `clear`, then BusyBox ash's prompt
        (b"logout\r\n\r\ngw-01 login: ", "", False, ConsoleState.LOGIN),
        (b"", "", False, ConsoleState.UNKNOWN),
        (b"\xff\xfe\x00\x9b\x1b[", "", False, ConsoleState.UNKNOWN),
    ],
)
def test_what_the_console_shows_at_hand_back(tail: bytes, typed: str | None, alternate: bool,
                                              state: ConsoleState) -> None:
    assert shown_at_hand_back(tail, typed, 80, 24, alternate) is state


def test_typed_line_follows_the_keystrokes() -> None:
    line = TypedLine()
    line.feed(b"ls -l\x7f\x7fa")
    assert line.text == "ls a"
    line.feed(b"\r")
    assert line.text == ""
    line.feed(b"\x1b[200~pasted text\x1b[201~")
    assert line.text == "pasted text"
    line.feed(b"\x1b[D")  # a cursor key: the line can no longer be known from keystrokes
    assert line.text is None
    line.feed(b"more\x03")  # Ctrl-C starts a fresh line
    assert line.text == ""


def test_screen_watch_sees_a_switch_split_across_chunks() -> None:
    watch = ScreenWatch()
    watch.feed(b"text\x1b[?10")
    watch.feed(b"49hvi screen")
    assert watch.alternate
    watch.feed(b"\x1b[?1049l\x1b[?1049h\x1b[?1049")
    assert watch.alternate
    watch.feed(b"l")
    assert not watch.alternate


# -- the bounded output fan-out -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_fanout_keeps_listeners_whole_and_the_queue_bounded() -> None:
    fanout = OutputFanout("test", max_chunks=10, max_bytes=1000)
    seen = bytearray()
    fanout.add_output_listener(seen.extend)
    for i in range(500):
        fanout.deliver(b"%05d\n" % i)
    assert len(seen) == 500 * 6  # listeners see everything
    assert fanout.queued == 10
    assert fanout.dropped == 490
    fanout.deliver(b"x" * 5000)  # one chunk bigger than the byte cap still gets through, alone
    assert fanout.queued == 1
    fanout.finish("closed")
    got = [chunk async for chunk in fanout.iterate()]
    assert got == [b"x" * 5000]
    assert fanout.tail.endswith(b"x" * 100)


@pytest.mark.asyncio
@pytest.mark.peer("sshd")
async def test_ssh_shell_queue_is_bounded_when_only_listeners_read(sshd: SshdHandle, tmp_path: Path) -> None:
    target = parse_target(f"ssh://{sshd.user}@{sshd.host}:{sshd.port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    t = SshTransport(target, creds, tmp_path / "kh", accept_new_host_key=True)
    await t.connect()
    try:
        shell = await t.open_shell()
        seen = Seen(shell)
        shell.output.max_chunks, shell.output.max_bytes = 8, 64 * 1024
        shell.write(b"seq 1 200000; echo DONE-$((40+2))\r")
        await seen.wait_for(b"DONE-42\r\n", 20)
        assert shell.output.queued <= 8
        assert shell.output.dropped > 0
        assert b"\n199999\r\n200000\r\n" in seen.data  # listeners got every byte
        await shell.close()
    finally:
        await t.close()


@pytest.mark.parametrize("line", [
    "######################                        45.2%",  # curl -#
    "[=========>              ] 45%",  # pv -p
    "|=====                   / 40.0%",  # e2fsck -C0
])
def test_a_progress_display_is_no_prompt(line: str) -> None:
    """Ctrl-C at the hand-back would kill the person's download or fsck."""
    assert shown_at_hand_back(line.encode(), None) is not ConsoleState.SHELL


def test_typed_text_ending_in_a_prompt_sign_is_no_prompt() -> None:
    """'price 5$' typed into `cat > notes`: the line ends in $, but no prompt comes before the typing."""
    assert shown_at_hand_back(b"price 5$", "price 5$") is not ConsoleState.SHELL
    assert shown_at_hand_back(b"root@gw:~# price 5$", "price 5$") is ConsoleState.SHELL
