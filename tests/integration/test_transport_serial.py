"""SerialTransport against a real bash on a pty (socat), opened with pyserial like a USB-serial cable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.peers import require_tool
from tests.peers.socat_shell import SocatShell, start_socat_shell

from siteline.core.errors import AuthError, CommandTimeout, TransportError
from siteline.core.loopwatch import LoopWatch
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnState, Credentials, Transport
from siteline.core.transports.console import MAX_TYPED_LINE, CommandFrame
from siteline.core.transports.serial import SerialTransport

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("socat")]


# A getty in miniature, only to drive the login path here (the simulator's console is the full one).
LOGIN_SCRIPT = r"""
while :; do
  printf 'gw1 login: '; IFS= read -r u
  printf 'Password: '; stty -echo; IFS= read -r p; stty echo; printf '\n'
  if [ "$u" = tech ] && [ "$p" = s3cret ]; then exec /bin/bash --norc --noprofile -i; fi
  sleep 0.6; printf '\nLogin incorrect\n'  # longer than the transport's quiet time, like getty's delay
done
"""


@pytest.fixture
def login_console(tmp_path: Path) -> Iterator[SocatShell]:
    require_tool("socat")
    script = tmp_path / "getty.sh"
    script.write_text(LOGIN_SCRIPT)
    shell = start_socat_shell(tmp_path / "login", program=f"/bin/bash {script}")
    try:
        yield shell
    finally:
        shell.stop()


def _transport(shell: SocatShell, query: str = "") -> SerialTransport:
    return SerialTransport(parse_target(shell.url + query), Credentials(), wake_timeout=1.0)


async def test_run_exit_codes_through_fancy_prompt(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    assert isinstance(t, Transport)
    await t.connect()
    try:
        assert t.state.state is ConnState.UP
        r = await t.run("echo hello")
        assert (r.exit_code, r.stdout, r.stderr) == (0, "hello\n", "")
        assert (await t.run("sh -c 'exit 7'")).exit_code == 7
        assert (await t.run("exit 3")).exit_code == 3  # a subshell: the console's shell survives
        assert (await t.run("printf 'no newline'")).stdout == "no newline"
        assert (await t.run("true")).stdout == ""
        quoted = await t.run("echo \"it's\" 'a $HOME' # comment")
        assert quoted.stdout == "it's a $HOME\n"
        colour = await t.run("printf '\\033[1;31mred\\033[0m\\r\\n'")
        assert colour.stdout == "red\n"
    finally:
        await t.close()
    assert t.state.state is ConnState.DOWN


async def test_kernel_lines_in_the_middle_are_dropped(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    await t.connect()
    try:
        cmd = "echo one; echo '[   12.345678] usb 1-1: new device'; echo two; echo '[ 3.1] x' >&2; echo three"
        r = await t.run(cmd)
        assert r.stdout == "one\ntwo\nthree\n"
    finally:
        await t.close()


async def test_many_lines_and_one_at_a_time(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    await t.connect()
    try:
        big = await t.run("seq 1 3000")
        assert big.stdout.split() == [str(i) for i in range(1, 3001)]
        results = await asyncio.gather(*(t.run(f"echo {i}") for i in range(5)))
        assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]
    finally:
        await t.close()


async def test_timeout_sends_ctrl_c_and_recovers(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    await t.connect()
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="Ctrl-C"):
            await t.run("sleep 30", timeout=0.3)
        assert time.monotonic() - started < 5
        assert t.state.state is ConnState.UP
        assert (await t.run("echo back")).stdout == "back\n"
        # a command that reads stdin gets /dev/null, not our next keystrokes
        assert (await t.run("cat; echo done", timeout=5)).stdout == "done\n"
    finally:
        await t.close()


async def test_typed_lines_stay_within_what_busybox_ash_accepts(socat_shell: SocatShell) -> None:
    # BusyBox ash cuts a typed line at 1023 characters: the whole framed line, Enter included, stays <= 1000.
    overhead = len(CommandFrame.new("echo ").line()) + 1
    t = _transport(socat_shell)
    await t.connect()
    try:
        fits = "echo " + "x" * (MAX_TYPED_LINE - overhead)
        assert (await t.run(fits)).stdout == "x" * (MAX_TYPED_LINE - overhead) + "\n"
        with pytest.raises(TransportError, match="too long to type on a serial console") as info:
            await t.run(fits + "x")
        assert f"({MAX_TYPED_LINE + 1} characters, limit {MAX_TYPED_LINE}" in info.value.message
        assert "siteline put" in info.value.hint
        assert t.state.state is ConnState.UP  # refused before a byte was typed
        assert (await t.run("echo still-here")).stdout == "still-here\n"
    finally:
        await t.close()


async def test_port_missing_names_ports_seen(tmp_path: Path) -> None:
    t = SerialTransport(parse_target(f"serial://{tmp_path}/ttyNONE"), Credentials())
    with pytest.raises(TransportError, match="does not exist") as info:
        await t.connect()
    assert "cable plugged in" in info.value.hint
    assert "Ports seen" in info.value.hint
    assert t.state.state is ConnState.DOWN


async def test_port_busy(socat_shell: SocatShell) -> None:
    first = _transport(socat_shell)
    await first.connect()
    try:
        with pytest.raises(TransportError, match="busy"):
            await _transport(socat_shell).connect()
    finally:
        await first.close()


async def test_bad_options_are_refused(socat_shell: SocatShell) -> None:
    with pytest.raises(TransportError, match="not valid"):
        _transport(socat_shell, "?parity=q")


async def test_console_gone_sets_down(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    await t.connect()
    down = asyncio.Event()
    t.add_state_listener(lambda s: down.set() if s.state is ConnState.DOWN else None)
    socat_shell.stop()
    await asyncio.wait_for(down.wait(), 5)
    assert t.state.reason == f"the serial cable was pulled ({socat_shell.path} is gone)"
    with pytest.raises(TransportError, match="Not connected"):
        await t.run("true")
    await t.close()


async def test_login_at_login_prompt(login_console: SocatShell) -> None:
    target = parse_target(login_console.url)
    t = SerialTransport(target, Credentials(username="tech", password="s3cret"), wake_timeout=1.0)
    await t.connect()
    try:
        assert (await t.run("echo logged in")).stdout == "logged in\n"
    finally:
        await t.close()


async def test_wrong_password_is_auth_error(login_console: SocatShell) -> None:
    target = parse_target(login_console.url)
    t = SerialTransport(target, Credentials(username="tech", password="nope"), wake_timeout=1.0)
    with pytest.raises(AuthError, match="Login incorrect"):
        await t.connect()
    assert t.state.state is ConnState.DOWN


async def test_login_prompt_without_user_name(login_console: SocatShell) -> None:
    t = SerialTransport(parse_target(login_console.url), Credentials(), wake_timeout=1.0)
    with pytest.raises(AuthError, match="asks for a login"):
        await t.connect()


async def test_a_megabyte_of_output_is_fast_and_never_stalls_the_loop(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    await t.connect()
    watch = LoopWatch(interval=0.02)
    watch.start()
    try:
        started = time.monotonic()
        r = await t.run("head -c 1000000 /dev/zero | base64", timeout=30)
        took = time.monotonic() - started
    finally:
        await watch.stop()
        await t.close()
    assert r.exit_code == 0
    assert len(r.stdout.replace("\n", "")) == 1333336  # base64 of 1 MB, every byte accounted for
    assert took < 15, f"1 MB through the console took {took:.1f} s"
    assert watch.worst_stall < 1.0, watch.stats.describe()  # a hang detector, not a benchmark


async def test_a_stale_reader_cannot_touch_the_new_connection(socat_shell: SocatShell) -> None:
    t = _transport(socat_shell)
    await t.connect()
    first_stop = t._link.stop
    await t.close()
    await t.connect()
    try:
        # A reader whose join timed out keeps its own stop set: a reconnect never clears it.
        assert first_stop.is_set()
        assert t._link.stop is not first_stop
        assert not t._link.stop.is_set()
        # What that reader sends after failing on its old, closed port is ignored.
        t._link.port_lost("[Errno 5] Input/output error", first_stop)
        t._link.received(b"junk from the old port\r\n$ ", first_stop)
        assert t.state.state is ConnState.UP
        assert (await t.run("echo fine")).stdout == "fine\n"
    finally:
        await t.close()


async def test_a_megabyte_in_tiny_chunks_costs_linear_time() -> None:
    # A slow reader thread hands the loop a few bytes at a time; each chunk must cost O(chunk), not O(buffer).
    t = SerialTransport(parse_target("serial:///dev/null"), Credentials())
    data = (b"x" * 70 + b"\r\n") * 14_000
    started = time.perf_counter()
    for i in range(0, len(data), 16):
        t._link.received(data[i : i + 16])
    took = time.perf_counter() - started
    assert t._link.text.total == len(data)
    assert took < 3.0, f"1 MB in 16-byte chunks took {took:.1f} s of event-loop time"
