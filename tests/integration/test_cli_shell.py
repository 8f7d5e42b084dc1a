"""`siteline shell` in a real pty against a real sshd, and `siteline forward` to a web server behind it."""

from __future__ import annotations

import fcntl
import http.server
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_cli import siteline

pytestmark = pytest.mark.timeout(60)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SITELINE_PASSWORD"}
    env.update({"SITELINE_HOME": str(home), "TERM": "xterm"})
    return env


class Pty:
    """A terminal for the CLI: the child gets the slave side, the test types into and reads the master."""

    def __init__(self, cols: int = 100, rows: int = 30) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.seen = b""

    def read_until(self, needle: bytes, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} within {timeout} s; got {self.seen[-800:]!r}")
            if select.select([self.master], [], [], min(left, 0.2))[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # EIO: every slave handle is closed
                    break
            elif proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
        return self.seen

    def drain(self, seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    return

    def close(self) -> None:
        for fd in (self.master, self.slave):
            os.close(fd)


@pytest.fixture
def pty_term() -> Iterator[Pty]:
    term = Pty()
    try:
        yield term
    finally:
        term.close()


def _shell(sshd: Any, term: Pty, home: Path) -> subprocess.Popen[bytes]:
    target = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    return subprocess.Popen(
        [sys.executable, "-m", "siteline", "shell", target, "-i", str(sshd.client_key), "--accept-new-host-key"],
        stdin=term.slave, stdout=term.slave, stderr=term.slave, env=_env(home), start_new_session=True,
    )


def _wait(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


def _typed_after_shell_is_up(term: Pty, proc: subprocess.Popen[bytes], line: bytes) -> None:
    """Type only once the remote shell printed something: typed earlier, the keys would meet a cooked tty."""
    os.write(term.master, b"echo __RE''ADY__\r")
    term.read_until(b"__READY__\r\n", proc)
    os.write(term.master, line)


def _wait_for_prompt(term: Pty, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Until the shell's prompt (ending in '# ' or '$ ') follows the __READY__ line."""
    deadline = time.monotonic() + timeout
    while not term.seen.split(b"__READY__\r\n")[-1].rstrip(b" ").endswith((b"#", b"$")):
        assert time.monotonic() < deadline, f"no prompt; got {term.seen[-300:]!r}"
        term.drain(0.05)


def test_shell_runs_a_command_and_restores_the_terminal(sshd: Any, pty_term: Pty, tmp_path: Path) -> None:
    before = termios.tcgetattr(pty_term.slave)
    proc = _shell(sshd, pty_term, tmp_path)
    _typed_after_shell_is_up(pty_term, proc, b"")
    # At the prompt, as a person types (a line typed ahead of the prompt is withheld from the audit trail:
    # the terminal echoes it before the program that reads it could turn the echo off for a password).
    _wait_for_prompt(pty_term, proc)
    os.write(pty_term.master, b"stty size; echo h''i; exit\r")
    assert _wait(proc) == 0
    pty_term.drain()
    out = pty_term.seen
    assert b"\r\nhi\r\n" in out
    assert b"30 100" in out  # the remote pty got our window size
    assert b"siteline: the shell ended" in out
    assert termios.tcgetattr(pty_term.slave) == before  # cooked mode, echo and all, came back
    # The session is in the audit trail: connect, each command line as the device echoed it, disconnect.
    from siteline.core.audit_verify import read_records

    records = read_records(tmp_path / "data" / "outbox.sqlite3")
    assert records[-1].action == "connect"
    assert records[0].action == "disconnect"
    lines = [r.detail_obj().get("line") for r in records if r.action == "console-command"]
    assert "stty size; echo h''i; exit" in lines


def test_tilde_dot_disconnects(sshd: Any, pty_term: Pty, tmp_path: Path) -> None:
    before = termios.tcgetattr(pty_term.slave)
    proc = _shell(sshd, pty_term, tmp_path)
    _typed_after_shell_is_up(pty_term, proc, b"~.")
    assert _wait(proc) == 0
    pty_term.drain()
    assert b"disconnected (~.)" in pty_term.seen
    assert termios.tcgetattr(pty_term.slave) == before


def test_sigterm_restores_the_terminal(sshd: Any, pty_term: Pty, tmp_path: Path) -> None:
    before = termios.tcgetattr(pty_term.slave)
    proc = _shell(sshd, pty_term, tmp_path)
    _typed_after_shell_is_up(pty_term, proc, b"")
    assert termios.tcgetattr(pty_term.slave) != before  # raw while the shell runs
    proc.send_signal(signal.SIGTERM)
    assert _wait(proc) == 0
    pty_term.drain()
    assert b"terminated (SIGTERM)" in pty_term.seen
    assert termios.tcgetattr(pty_term.slave) == before


def test_shell_refuses_without_a_terminal_and_over_mqtt(tmp_path: Path) -> None:
    no_tty = siteline("shell", "ssh://root@127.0.0.1:1", home=tmp_path)
    assert no_tty.returncode == 2
    assert "siteline run" in no_tty.stderr
    mqtt = siteline("shell", "mqtt://127.0.0.1:1/edge/a/b", home=tmp_path)
    assert mqtt.returncode == 2
    assert "MQTT has no interactive shell" in mqtt.stderr


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the device's web UI"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass


def test_forward_reaches_a_web_server_on_the_device(sshd: Any, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    target = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "siteline", "forward", target, str(server.server_address[1]),
         "-i", str(sshd.client_key), "--accept-new-host-key"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("Open http://127.0.0.1:"), line
        assert line.rstrip().endswith("(Ctrl-C to stop)")
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=10) as reply:  # a loopback URL we printed
            assert reply.read() == b"hello from the device's web UI"
        proc.send_signal(signal.SIGINT)
        assert _wait(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_escape_filter_like_openssh() -> None:
    from siteline.shell_cli import EscapeFilter

    f = EscapeFilter()
    assert f.feed(b"~~ls\r") == (b"~ls\r", False)  # ~~ at line start: one tilde
    assert f.feed(b"a~.b\r") == (b"a~.b\r", False)  # not at line start: typed as is
    assert f.feed(b"~") == (b"", False)  # held back until the next key says what it is
    assert f.feed(b"x") == (b"~x", False)
    assert f.feed(b"\r~.") == (b"\r", True)


def test_forward_spec_and_progress_text() -> None:
    import io

    from siteline.commands import parse_forward_spec
    from siteline.core.transports.transfer import Progress
    from siteline.transfer_cli import ProgressLine, size_text

    assert parse_forward_spec("80") == (0, 80)
    assert parse_forward_spec("8080:80") == (8080, 80)
    assert parse_forward_spec("x:80") is None
    assert parse_forward_spec("70000") is None
    assert parse_forward_spec("0") is None
    assert size_text(12 * (1 << 20)) == "12.0 MiB"
    out = io.StringIO()
    line = ProgressLine("put a.bin", out)
    line(Progress(1 << 20, 4 << 20, 2e6, 1.5))
    line(Progress(4 << 20, 4 << 20, 2e6, 0.0))
    assert out.getvalue().splitlines() == [
        "put a.bin:  25.0%  1.0 MiB of 4.0 MiB  2.00 MB/s  ETA 0:01",
        "put a.bin: 100.0%  4.0 MiB of 4.0 MiB  2.00 MB/s  ETA 0:00",
    ]


@pytest.mark.peer("socat")
def test_shell_over_a_serial_console(socat_shell: Any, pty_term: Pty, tmp_path: Path) -> None:
    before = termios.tcgetattr(pty_term.slave)
    proc = subprocess.Popen([sys.executable, "-m", "siteline", "shell", socat_shell.url],
                            stdin=pty_term.slave, stdout=pty_term.slave, stderr=pty_term.slave,
                            env=_env(tmp_path), start_new_session=True)
    _typed_after_shell_is_up(pty_term, proc, b"echo h''i\r")
    pty_term.read_until(b"hi\r\n", proc)
    os.write(pty_term.master, b"~.")
    assert _wait(proc) == 0
    pty_term.drain()
    assert b"disconnected (~.)" in pty_term.seen
    assert termios.tcgetattr(pty_term.slave) == before
