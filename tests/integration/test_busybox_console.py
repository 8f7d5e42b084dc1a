"""A Buildroot-style console: BusyBox's ash on a pty, no login, nothing but BusyBox applets on its PATH.

Until now the serial tests ran against bash and dash. Many boxes in the field run BusyBox's ash,
whose line editor follows every prompt with a cursor-position query (``ESC[6n``) and keeps at
most 1022 typed characters before the Enter, and whose ``vi`` (1.35: on the alternate screen)
takes an ESC with more bytes right behind it for an escape sequence.
The shell's PATH holds only links to the busybox binary, so these tests also prove that
commands, console transfers and the interactive console need nothing else on the device.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import serial
from tests.peers import require_tool
from tests.peers.socat_shell import BUSYBOX_APPLETS, SocatShell, start_busybox_shell

from siteline.core.errors import CommandTimeout, TransportError
from siteline.core.targets import parse_target
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import ConnState, Credentials, Result
from siteline.core.transports.console import MAX_TYPED_LINE
from siteline.core.transports.console_transfer import RunCommand, get_over_console, put_over_console
from siteline.core.transports.serial import LEFT_IN_PROGRAM, SerialTransport
from siteline.core.transports.serial_shell import SerialShell

pytestmark = [pytest.mark.peer("socat"), pytest.mark.timeout(60)]
ODD_DIR = "dir with 'quotes' and \"spaces\""
APPEND = "printf %s "  # how an upload chunk command starts
READ = "| base64 &&"  # in every download chunk command
CS = 400  # fits a typed line to a long pytest tmp path: 20 KB is 50 chunks


# -- helpers ------------------------------------------------------------------------------------


def _transport(path: Path) -> SerialTransport:
    return SerialTransport(parse_target(f"serial://{path}"), Credentials(), wake_timeout=1.0, login_timeout=5.0)


# Small sync helpers: the async tests touch local files only through these (ruff ASYNC240).
def _read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _size_of(path: str | Path) -> int:
    return Path(path).stat().st_size


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def _payload(size: int, seed: int = 1) -> bytes:
    """Binary data with every byte value, NULs and newlines included."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest() + bytes(range(256))
        counter += 1
    return bytes(out[:size])


def _cut_after(run: RunCommand, marker: str, n: int) -> RunCommand:
    """``run`` that raises like a pulled cable when the (n+1)-th command containing ``marker`` is sent."""
    seen = [0]

    async def cut(command: str, timeout: float) -> Result:
        if marker in command:
            if seen[0] >= n:
                raise TransportError("The serial port went away (cable pulled).")
            seen[0] += 1
        return await run(command, timeout)

    return cut


def _recording(run: RunCommand, sent: list[str]) -> RunCommand:
    async def rec(command: str, timeout: float) -> Result:
        sent.append(command)
        return await run(command, timeout)

    return rec


def _type_raw(path: Path, keys: tuple[bytes, ...], wait_for: bytes, timeout: float = 3.0,
              abandon: bool = True) -> bytes:
    """Type ``keys`` on the console as a person would (no Siteline) and read until ``wait_for`` shows.

    The keys go out 0.15 s apart: BusyBox vi takes an ESC with more bytes right behind it for the
    start of an escape sequence (an arrow key), so ESC and ``:wq`` must come as two keystrokes.
    ``abandon``: end with Ctrl-C, so whatever was left half-typed or waiting for more input is dropped.
    """
    with serial.Serial(str(path), timeout=0.05) as port:
        port.reset_input_buffer()
        got = bytearray()
        for i, key in enumerate(keys):
            if i:
                time.sleep(0.15)
            port.write(key)
            port.flush()
        deadline = time.monotonic() + timeout
        while wait_for not in got and time.monotonic() < deadline:
            got += port.read(4096)
        if abandon:
            port.write(b"\x03")
            port.flush()
            time.sleep(0.1)
        return bytes(got)


class Seen:
    """Everything a shell printed, through an output listener (as the Console tab reads it)."""

    def __init__(self, shell: SerialShell) -> None:
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


@pytest_asyncio.fixture
async def busybox(busybox_shell: SocatShell) -> AsyncIterator[SerialTransport]:
    t = _transport(busybox_shell.path)
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


# -- commands -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connects_to_a_shell_with_no_login_and_runs_commands(tmp_path: Path) -> None:
    """``/ # `` as a Buildroot box shows it: no login asked, exit codes and output come through."""
    shell = start_busybox_shell(tmp_path / "bb", require_tool("busybox"), cwd=Path("/"))
    try:
        raw = _type_raw(shell.path, (b"\r",), b"# ")
        assert b"/ # \x1b[6n" in raw  # ash's prompt, then its cursor-position query that nobody answers
        t = _transport(shell.path)
        await t.connect()  # no credentials: none are asked for
        try:
            assert t.state.state is ConnState.UP
            assert await t.run("pwd; echo $((6 * 7))") == Result(0, "/\n42\n", "")
            assert (await t.run("exit 7")).exit_code == 7
            assert (await t.run("false")).exit_code == 1
            missing = await t.run("bash -c true")
            assert missing.exit_code == 127  # BusyBox applets only: the device has no bash
            assert "not found" in missing.stdout
            assert (await t.run("cd /tmp; echo $PWD")).stdout == "/tmp\n"
            assert (await t.run("pwd")).stdout == "/\n"  # each command in a subshell, as over SSH
            with pytest.raises(CommandTimeout, match="interrupted with Ctrl-C"):
                await t.run("sleep 30", timeout=0.5)
            assert (await t.run("echo after; exit 3")) == Result(3, "after\n", "")
        finally:
            await t.close()
        # Nothing of ours to log out of: the console is left at its prompt, as found.
        assert b"/ # " in _type_raw(shell.path, (b"\r",), b"# ")
        again = _transport(shell.path)
        await again.connect()
        try:
            assert (await again.run("echo again")).stdout == "again\n"
        finally:
            await again.close()
    finally:
        shell.stop()


@pytest.mark.asyncio
async def test_path_holds_only_busybox(busybox: SerialTransport) -> None:
    names = (await busybox.run('for f in "${PATH%%:*}"/*; do echo "${f##*/}"; done')).stdout.split()
    assert sorted(names) == sorted(BUSYBOX_APPLETS)
    assert (await busybox.run("readlink /proc/$$/exe || echo no readlink")).stdout.endswith("no readlink\n")


@pytest.fixture
def no_job_control(tmp_path: Path) -> Iterator[SocatShell]:
    """ash as inittab's ``::respawn:-/bin/sh`` runs it on a console: "can't access tty; job control turned off"."""
    require_tool("socat")
    shell = start_busybox_shell(tmp_path / "nojc", require_tool("busybox"), job_control=False)
    try:
        yield shell
    finally:
        shell.stop()


@pytest.mark.asyncio
async def test_without_job_control_ctrl_c_stops_nothing_but_the_line_comes_back(no_job_control: SocatShell) -> None:
    t = _transport(no_job_control.path)
    await t.connect()
    try:
        began = time.monotonic()
        with pytest.raises(CommandTimeout):
            await t.run("sleep 2; echo slept", timeout=0.3)
        # Ctrl-C reached no process group: the recovery command waited for the sleep's end behind it.
        assert time.monotonic() - began > 1.5
        assert t.state.state is ConnState.UP, t.state.reason
        assert (await t.run("echo next")).stdout == "next\n"
    finally:
        await t.close()


@pytest.mark.asyncio
async def test_a_command_ctrl_c_cannot_stop_is_not_reported_as_interrupted(no_job_control: SocatShell) -> None:
    t = _transport(no_job_control.path)
    await t.connect()
    try:
        with pytest.raises(CommandTimeout) as info:
            await t.run("sleep 8", timeout=0.3)  # outlasts the 5 s the recovery waits for a prompt
        assert t.state.state is ConnState.DOWN
        assert "stopped answering after Ctrl-C" in t.state.reason
        # What the person needs: it was NOT interrupted, it may still run; wait, then reconnect.
        assert "interrupted with Ctrl-C" not in info.value.message
        assert "econnect" in info.value.hint
    finally:
        await t.close()


def _command_of_length(typed: int, prefix: str = "echo ") -> tuple[str, str]:
    """A command whose framed, typed line (Enter included) is ``typed`` bytes, and the word it echoes."""
    overhead = cmds.typed_length(prefix)
    word = "".join(chr(ord("a") + i % 26) for i in range(typed - overhead))
    command = prefix + word
    assert cmds.typed_length(command) == typed
    return command, word


@pytest.mark.asyncio
async def test_a_line_of_the_longest_framed_length_runs_whole(busybox: SerialTransport) -> None:
    command, word = _command_of_length(MAX_TYPED_LINE)
    assert await busybox.run(command) == Result(0, word + "\n", "")


@pytest.mark.asyncio
async def test_a_longer_line_is_refused_before_a_byte_is_typed(busybox: SerialTransport) -> None:
    command, _ = _command_of_length(MAX_TYPED_LINE + 1)
    with pytest.raises(TransportError, match=rf"too long to type on a serial console \({MAX_TYPED_LINE + 1} "
                                             rf"characters, limit {MAX_TYPED_LINE}") as info:
        await busybox.run(command)
    assert "siteline put" in info.value.hint
    assert (await busybox.run("echo still here")).stdout == "still here\n"


def test_busybox_ash_really_cuts_a_typed_line_after_1022_characters(busybox_shell: SocatShell) -> None:
    """Why the limit exists: ash keeps 1022 typed characters (+ Enter) and runs what it kept, silently."""

    def typed(length: int) -> bytes:
        tail = "; echo ok_$((40+2))"  # the output form "ok_42" never appears in the echo of the line
        line = ": " + "x" * (length - 2 - len(tail)) + tail
        assert len(line) == length
        # Every prompt ash draws (PS1 "# ", PS2 "> ") is followed by its cursor-position query.
        return _type_raw(busybox_shell.path, (line.encode() + b"\r",), b" \x1b[6n", timeout=3)

    assert b"\nok_42\r\n" in typed(1022)
    cut = typed(1023)  # the last ")" was dropped: "$((40+2)" is open, ash waits for more at its PS2
    assert b"ok_42" not in cut
    assert cut.endswith(b"\r\n> \x1b[6n")
    cut = typed(1100)  # the whole "; echo ..." was dropped: ":" ran, and nothing says so
    assert b"ok_42" not in cut
    assert cut.endswith(b" # \x1b[6n")
    assert b"\nok_42\r\n" in typed(100)  # and the console is fine afterwards


# -- files over the console ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_put_and_get_a_binary_file_with_busybox_applets_only(busybox: SerialTransport, tmp_path: Path) -> None:
    data = _payload(20_000, 3)
    src = tmp_path / "image.bin"
    src.write_bytes(data)
    remote_dir = tmp_path / ODD_DIR
    remote_dir.mkdir()
    up = await busybox.put(src, str(remote_dir) + "/")
    assert up.path == str(remote_dir / "image.bin")
    assert _read(up.path) == data
    assert (up.size, up.transferred, up.sha256) == (len(data), len(data), hashlib.sha256(data).hexdigest())
    assert sorted(p.name for p in remote_dir.iterdir()) == ["image.bin"]  # no .part left behind
    down = await busybox.get(up.path, tmp_path / "back.bin")
    assert _read(down.path) == data
    assert down.sha256 == up.sha256
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    up = await busybox.put(empty, str(remote_dir / "empty"))
    assert (_read(up.path), _read((await busybox.get(up.path, tmp_path / "empty.back")).path)) == (b"", b"")


@pytest.mark.asyncio
async def test_upload_resumes_after_a_cut(busybox: SerialTransport, tmp_path: Path) -> None:
    data = _payload(20_000, 4)
    src, remote = tmp_path / "up.bin", str(tmp_path / "on device.bin")
    src.write_bytes(data)
    with pytest.raises(TransportError, match=rf"stopped after {12 * CS} bytes of 20000 bytes") as info:
        await put_over_console(_cut_after(busybox.run, APPEND, 12), src, remote, chunk_size=CS)
    assert "Run it again to resume" in info.value.hint
    assert _size_of(remote + ".part") == 12 * CS
    sent: list[str] = []
    again = await put_over_console(_recording(busybox.run, sent), src, remote, chunk_size=CS)
    assert (again.resumed_from, again.transferred) == (12 * CS, len(data) - 12 * CS)
    assert len([c for c in sent if APPEND in c]) == -(-len(data) // CS) - 12  # only the rest went over
    assert _read(remote) == data


@pytest.mark.asyncio
async def test_download_resumes_after_a_cut(busybox: SerialTransport, tmp_path: Path) -> None:
    data = _payload(20_000, 5)
    remote = tmp_path / "log archive.bin"
    remote.write_bytes(data)
    local = tmp_path / "local.bin"
    with pytest.raises(TransportError, match="stopped"):
        await get_over_console(_cut_after(busybox.run, READ, 7), str(remote), local, chunk_size=CS)
    assert _size_of(tmp_path / "local.bin.part") == 7 * CS
    again = await get_over_console(busybox.run, str(remote), local, chunk_size=CS)
    assert again.resumed_from == 7 * CS
    assert _read(local) == data
    assert not (tmp_path / "local.bin.part").exists()


# -- the interactive console --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_interactive_console_sets_the_size_and_gives_the_line_back(busybox: SerialTransport,
                                                                        busybox_shell: SocatShell) -> None:
    prompt = f"{busybox_shell.workdir / 'home'} # \x1b[6n".encode()  # PS1 \w \$ as root, then the query
    shell = await busybox.open_shell(cols=101, rows=33)
    seen = Seen(shell)
    await seen.wait_for(prompt)  # ash asks where the cursor is after every prompt ...
    assert b"__SL_RDY" not in seen.data  # (the setup line stays out of the person's terminal)
    shell.write(b"\x1b[33;12R")  # ... and a terminal answers (row 33, column 12): ash takes it in silence
    shell.write(b"echo size=$(stty size) term=$TERM\r")
    await seen.wait_for(b"size=33 101 term=xterm")
    assert b"33;12R" not in seen.data.replace(b"\x1b[33;12R", b"")  # the answer was not taken for typed text
    shell.write(b"echo $((6 * 7))\r")
    await seen.wait_for(b"\r\n42\r\n" + prompt)
    await asyncio.wait_for(shell.close(), 8)
    assert busybox.state.state is ConnState.UP, busybox.state.reason
    assert (await busybox.run("echo back")).stdout == "back\n"
    # A terminal that leaves the query unanswered (the prompt line then ends in ESC[6n) hands back as well.
    shell = await busybox.open_shell()
    seen = Seen(shell)
    shell.write(b"echo $((6 * 9))\r")
    await seen.wait_for(b"54\r\n" + prompt)
    await asyncio.wait_for(shell.close(), 8)
    assert busybox.state.state is ConnState.UP, busybox.state.reason
    assert (await busybox.run("echo again")).stdout == "again\n"


async def _open_vi(t: SerialTransport, f: Path, shown: bytes) -> SerialShell:
    shell = await t.open_shell(cols=80, rows=24)
    seen = Seen(shell)
    shell.write(f"vi '{f}'\r".encode())
    await seen.wait_for(shown)  # vi drew the file
    await asyncio.sleep(0.2)
    return shell


async def _assert_untouched(busybox_shell: SocatShell, f: Path, text: str) -> None:
    """Save and quit vi as the person would: anything Siteline typed would now be in the file."""
    before = _mtime(f)
    # BusyBox vi asks "[Hit return to continue]" when its "written" message is wider than the screen.
    shown = await asyncio.to_thread(_type_raw, busybox_shell.path, (b"\x1b", b":wq\r", b"\r"), b" # \x1b[6n",
                                    abandon=False)
    assert b"\x1b[?1049l" in shown  # vi left its screen: the prompt is back
    assert _mtime(f) != before  # ... after it wrote the file (so the check below means something)
    assert _read(f).decode() == text


@pytest.mark.asyncio
async def test_closing_the_console_with_busybox_vi_open_types_nothing(busybox_shell: SocatShell,
                                                                      tmp_path: Path) -> None:
    f = tmp_path / "interfaces"
    f.write_text("auto eth0\niface eth0 inet dhcp\n")
    t = _transport(busybox_shell.path)
    await t.connect()
    try:
        shell = await _open_vi(t, f, b"iface eth0")
        await asyncio.wait_for(shell.close(), 5)
        assert t.state.state is ConnState.DOWN
        assert t.state.reason == LEFT_IN_PROGRAM
    finally:
        await t.close()  # no Ctrl-C, no 'exit': in vi's command mode they would edit the file
    await _assert_untouched(busybox_shell, f, "auto eth0\niface eth0 inet dhcp\n")


@pytest.mark.asyncio
async def test_closing_the_transport_under_busybox_vi_types_nothing(busybox_shell: SocatShell,
                                                                    tmp_path: Path) -> None:
    f = tmp_path / "hosts"
    f.write_text("127.0.0.1 localhost\n")
    t = _transport(busybox_shell.path)
    await t.connect()
    shell = await _open_vi(t, f, b"localhost")
    await t.close()  # the app quits with the Console tab open
    assert shell.closed
    await _assert_untouched(busybox_shell, f, "127.0.0.1 localhost\n")


def test_every_applet_a_console_transfer_names_is_linked() -> None:
    """The transfer's lines name these tools; the BusyBox PATH above holds each (else the tests prove nothing)."""
    lines = " ".join((cmds.upload_probe("/d/f", "f"), cmds.append_chunk("/d/f", "base64", "QQ=="),
                      cmds.read_chunk("/d/f", "base64", 0, CS), cmds.truncate("/d/f", 1, CS),
                      cmds.prefix_hash("/d/f", 1, CS), cmds.finish_upload("/d/f")))
    for tool in ("base64", "sha256sum", "dd", "df", "wc", "mv", "sync", "tee"):
        assert tool in lines
        assert tool in BUSYBOX_APPLETS

