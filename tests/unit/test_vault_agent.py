"""The vault agent as a real background process: what it answers, what it refuses, and that garbage cannot kill it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.vault import KdfCost, Vault, agent

CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)
PASS = "agent test passphrase"
pytestmark = pytest.mark.skipif(not agent.supported(), reason="the agent needs Unix sockets")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "h"))
    return tmp_path / "h"


@pytest.fixture
def running(home: Path) -> Iterator[tuple[Vault, agent.AgentInfo]]:
    vault = Vault.create(home / "vault.siteline", PASS, cost=CHEAP)
    vault.put("device/s/d/password", "agent-secret-unique")
    info = agent.start_agent(vault, idle_timeout=30)
    yield vault, info
    if not agent.stop_agent(vault.path) and _alive(info.pid):
        os.kill(info.pid, 9)  # the one we started, by its pid
    for _ in range(300):
        if not _alive(info.pid):
            break
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """Running, not merely a zombie: the daemon's parent is init, which may reap it only a second later."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return not Path("/proc").is_dir()


def test_get_entries_and_later_writes(running: tuple[Vault, agent.AgentInfo]) -> None:
    vault, info = running
    assert info.pid != os.getpid()
    assert agent.get_secret("device/s/d/password", vault.path) == "agent-secret-unique"
    assert agent.get_secret("device/s/d/none", vault.path) is None
    vault.put("token/later", "later-unique")  # the agent re-reads the file: new entries are found
    assert agent.get_secret("token/later", vault.path) == "later-unique"
    entries = agent.agent_entries(vault.path)
    assert entries is not None
    assert [e.name for e in entries] == ["device/s/d/password", "token/later"]


def test_garbage_does_not_kill_the_agent(running: tuple[Vault, agent.AgentInfo]) -> None:
    vault, _ = running
    sock = agent.socket_path(vault.path)
    for junk in (b"", b"not json\n", b"[1,2]\n", b'{"op": "dance"}\n', b"\xff\xfe\n", b'{"op": "get"}\n',
                 b"x" * 100_000):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(5)
        conn.connect(str(sock))
        if junk:
            conn.sendall(junk)
        conn.shutdown(socket.SHUT_WR)
        reply = agent.read_line(conn)
        conn.close()
        if reply:
            assert json.loads(reply)["ok"] is False
    assert agent.get_secret("device/s/d/password", vault.path) == "agent-secret-unique"
    assert agent.agent_info(vault.path) is not None


def test_socket_is_private(running: tuple[Vault, agent.AgentInfo]) -> None:
    vault, _ = running
    sock = agent.socket_path(vault.path)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700


def test_vault_replaced_under_the_agent(running: tuple[Vault, agent.AgentInfo], home: Path) -> None:
    vault, _ = running
    vault.path.unlink()
    Vault.create(vault.path, "another passphrase!", cost=CHEAP).put("device/s/d/password", "other")
    assert agent.get_secret("device/s/d/password", vault.path) is None  # its key opens nothing now


def test_lock_stops_it(running: tuple[Vault, agent.AgentInfo]) -> None:
    vault, _ = running
    assert agent.stop_agent(vault.path)
    assert agent.get_secret("device/s/d/password", vault.path) is None
    assert not agent.socket_path(vault.path).exists()
    assert not agent.stop_agent(vault.path)


def test_a_passphrase_change_stops_the_agent_holding_the_old_key(running: tuple[Vault, agent.AgentInfo]) -> None:
    vault, info = running
    assert agent.get_secret("device/s/d/password", vault.path) == "agent-secret-unique"
    vault.change_passphrase(PASS, "the new agent passphrase")
    assert vault.agent_stopped
    assert not _alive(info.pid) or not agent.socket_path(vault.path).exists()
    assert agent.agent_info(vault.path) is None
    assert agent.get_secret("device/s/d/password", vault.path) is None
    vault.change_passphrase("the new agent passphrase", "and a third passphrase")
    assert not vault.agent_stopped  # none was running


def test_restart_replaces_the_running_agent(running: tuple[Vault, agent.AgentInfo]) -> None:
    vault, first = running
    second = agent.start_agent(vault, idle_timeout=30)
    assert second.pid != first.pid
    for _ in range(300):
        if not _alive(first.pid):
            break
        time.sleep(0.01)
    assert not _alive(first.pid)
    assert agent.get_secret("device/s/d/password", vault.path) == "agent-secret-unique"
    agent.stop_agent(vault.path)


def test_a_frozen_agent_costs_a_command_well_under_a_second(running: tuple[Vault, agent.AgentInfo]) -> None:
    """SIGSTOP leaves the socket accepting (the kernel queues) but nothing answers: lookups give up fast."""
    vault, info = running
    os.kill(info.pid, signal.SIGSTOP)  # the agent this test started, by its pid
    try:
        for lookup in (lambda: agent.get_secret("device/s/d/password", vault.path),
                       lambda: agent.agent_info(vault.path), lambda: agent.agent_entries(vault.path)):
            started = time.monotonic()
            assert lookup() is None
            assert time.monotonic() - started < 1.0
    finally:
        os.kill(info.pid, signal.SIGCONT)
    assert agent.get_secret("device/s/d/password", vault.path) == "agent-secret-unique"  # thawed: answers again


def test_stale_socket_is_replaced(home: Path) -> None:
    vault = Vault.create(home / "vault.siteline", PASS, cost=CHEAP)
    vault.put("a/b", "stale-test")
    sock = agent.socket_path(vault.path, create=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # a socket file nobody listens on: what a killed agent leaves behind
    dead.close()
    info = agent.start_agent(vault, idle_timeout=30)
    try:
        assert agent.get_secret("a/b", vault.path) == "stale-test"
    finally:
        agent.stop_agent(vault.path)
    assert info.pid > 0


def test_no_agent_means_none(home: Path) -> None:
    assert agent.get_secret("a/b", home / "nothing.siteline") is None
    assert agent.agent_info(home / "nothing.siteline") is None


def test_long_paths_fall_back_to_a_short_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = tmp_path / ("d" * 90) / ("e" * 90)
    monkeypatch.setenv("SITELINE_HOME", str(deep))
    # The fallback lands here, a short folder like /tmp itself (tmp_path's length varies with the runner).
    short = Path(tempfile.mkdtemp(prefix="t", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(short))
    try:
        assert not agent.socket_path(deep / "vault.siteline").parent.exists()  # a lookup creates nothing
        path = agent.socket_path(deep / "vault.siteline", create=True)
        assert len(str(path)) <= agent.SUN_PATH_MAX
        assert path.parent.parent == short
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_logs_hold_names_never_values(home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vault = Vault.create(home / "vault.siteline", PASS, cost=CHEAP)
    vault.put("device/s/d/password", "log-secret-unique")
    vault.lock()
    vault.unlock(PASS)
    vault.get("device/s/d/password")
    vault.export_to(tmp_path / "x.export", "export passphrase")
    vault.import_from(tmp_path / "x.export", "export passphrase", overwrite=True)
    vault.change_passphrase(PASS, "changed passphrase")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "device/s/d/password" in text
    for secret in ("log-secret-unique", PASS, "export passphrase", "changed passphrase"):
        assert secret not in text


def test_a_socket_in_a_folder_others_can_enter_is_not_trusted(home: Path) -> None:
    vault = Vault.create(home / "vault.siteline", PASS, cost=CHEAP)
    vault.put("a/b", "trust-test")
    agent.start_agent(vault, idle_timeout=30)
    sock = agent.socket_path(vault.path)
    try:
        sock.parent.chmod(0o755)
        assert agent.get_secret("a/b", vault.path) is None
        sock.parent.chmod(0o700)
        assert agent.get_secret("a/b", vault.path) == "trust-test"
    finally:
        sock.parent.chmod(0o700)
        agent.stop_agent(vault.path)
