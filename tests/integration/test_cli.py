"""`siteline run` as a script sees it, against a real OpenSSH sshd: output, exit codes, refusals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.peers import free_port


def siteline(*args: str, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SITELINE_PASSWORD"}
    full_env.update({"SITELINE_HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "siteline", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def target(sshd: Any) -> str:
    return f"ssh://{sshd.user}@127.0.0.1:{sshd.port}"


def test_run_keeps_quoting_and_the_remote_exit_code(sshd: Any, target: str, tmp_path: Path) -> None:
    key = str(sshd.client_key)
    done = siteline("run", target, "-i", key, "--accept-new-host-key", "--", "sh", "-c", "echo out; exit 7",
                    home=tmp_path)
    assert (done.returncode, done.stdout) == (7, "out\n"), done.stderr
    line = siteline("run", target, "-i", key, "--", "echo a b | tr a-b x-y", home=tmp_path)
    assert (line.returncode, line.stdout) == (0, "x y\n"), line.stderr


def test_unknown_host_key_is_refused_without_accept_new(sshd: Any, target: str, tmp_path: Path) -> None:
    done = siteline("run", target, "-i", str(sshd.client_key), "--", "true", home=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "SHA256:" in done.stderr


def test_changed_host_key_is_refused_for_safety(sshd: Any, target: str, tmp_path: Path) -> None:
    key = str(sshd.client_key)
    assert siteline("run", target, "-i", key, "--accept-new-host-key", "--", "true", home=tmp_path).returncode == 0
    sshd.regenerate_host_key()
    done = siteline("run", target, "-i", key, "--accept-new-host-key", "--", "true", home=tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("siteline: ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_refused_key_is_exit_5(sshd: Any, target: str, tmp_path: Path) -> None:
    from tests.peers.sshd import keygen

    stranger = keygen(tmp_path / "stranger")
    done = siteline("run", target, "-i", str(stranger), "--accept-new-host-key", "--", "true", home=tmp_path)
    assert done.returncode == 5, done.stderr


def test_closed_port_and_bad_target(tmp_path: Path) -> None:
    closed = siteline("run", f"ssh://root@127.0.0.1:{free_port()}", "--", "true", home=tmp_path)
    assert closed.returncode == 4, closed.stderr
    bad = siteline("run", "ssh://root:secret@host", "--", "true", home=tmp_path)
    assert bad.returncode == 2
    assert "Passwords do not belong in a target URL" in bad.stderr
    empty = siteline("run", "ssh://root@127.0.0.1", home=tmp_path)
    assert empty.returncode == 2


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word: a black-holed device."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_silent_device_gives_up_after_timeout(silent_server: int, tmp_path: Path) -> None:
    done = siteline("run", f"ssh://root@127.0.0.1:{silent_server}", "--timeout", "1", "--", "true", home=tmp_path)
    assert done.returncode == 4, done.stderr
    assert "did not answer within 1 s" in done.stderr


def test_serial_console_login_takes_the_password_from_the_environment(tmp_path: Path) -> None:
    from tests.peers.sim import PASSWORD, start_sim_process

    link = tmp_path / "ttySIM0"
    device = start_sim_process(tmp_path / "dev", "--serial-link", str(link))
    try:
        target = f"serial://{link}?baud=115200"
        ok = siteline("run", target, "--user", "root", "--", "cat /etc/hostname", home=tmp_path,
                      env={"SITELINE_PASSWORD": PASSWORD})
        assert (ok.returncode, ok.stdout) == (0, "gw-01\n"), ok.stderr
        # No password and no terminal: refused at once with exit 5, never a prompt that hangs.
        refused = siteline("run", target, "--user", "root", "--", "true", home=tmp_path)
        assert refused.returncode == 5, refused.stderr
    finally:
        device.stop()
