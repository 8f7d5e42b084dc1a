"""A small agent, like ssh-agent, so CLI commands can use the vault without asking again.

`siteline vault unlock` asks for the passphrase once and starts a background process
(agentd.py) that holds the vault's data key — never the passphrase — and answers on a unix
socket (mode 0600, in a 0700 folder: $XDG_RUNTIME_DIR/siteline, or the state folder when
SITELINE_HOME is set or there is no runtime dir). It re-reads the vault file for each request, so
entries added later are found, and exits after its idle timeout or on `siteline vault lock`.
Other commands call get_secret(name): None when no agent runs, never a prompt.

Unix only: Windows has no AF_UNIX in Python's socket module here, so there the agent is not
offered and get_secret() returns None.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline import paths
from siteline.core.vault.entries import EntryInfo
from siteline.core.vault.errors import VaultError
from siteline.core.vault.vault import Vault, default_path

MAX_MESSAGE = 2 * 1024 * 1024  # a reply may hold one value of up to 1 MiB, JSON-escaped
SUN_PATH_MAX = 103  # sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS, each with the final NUL
START_TIMEOUT = 10.0
# A live agent answers a local socket in milliseconds; a frozen one (SIGSTOP, a suspended laptop's leftover) still
# accepts the connection (the kernel queues it) and never answers. Every `siteline run` asks, so lookups give up fast.
QUICK_TIMEOUT = 0.3
# Where a wait is worth it: a lock the agent must act on, the first answer of an agent just started (unlock handover).
SLOW_TIMEOUT = 3.0


@dataclass(frozen=True)
class AgentInfo:
    pid: int
    vault: str
    idle_timeout: float
    expires_in: float


def supported() -> bool:
    return hasattr(socket, "AF_UNIX") and os.name == "posix"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    if path.stat().st_uid != os.getuid():
        raise VaultError(f"the agent folder {path} belongs to another user", "remove it or set XDG_RUNTIME_DIR")
    return path


def runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and not os.environ.get("SITELINE_HOME"):
        return Path(runtime) / "siteline"
    return paths.state_dir() / "agent"


def socket_path(vault_path: Path | None = None, *, create: bool = False) -> Path:
    """One agent per vault file: the socket's name comes from the vault's absolute path.

    Only starting an agent creates the (0700) folder; looking one up leaves no trace.
    """
    vault_path = Path(vault_path) if vault_path is not None else default_path()
    name = "v-" + hashlib.sha256(str(vault_path.resolve()).encode()).hexdigest()[:12] + ".sock"
    folder = runtime_dir()
    if len(str(folder / name)) > SUN_PATH_MAX:  # deep home folders: a private folder in /tmp instead
        folder = Path(tempfile.gettempdir()) / f"siteline-{os.getuid()}"
    return (_private_dir(folder) if create else folder) / name


def request(sock: Path, message: dict[str, Any], timeout: float = QUICK_TIMEOUT) -> dict[str, Any] | None:
    """One JSON line out, one back. None when nothing answers (no agent, a stale socket, garbage)."""
    if not supported() or not _trusted(sock):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        conn.sendall(json.dumps(message).encode() + b"\n")
        data = read_line(conn)
        reply = json.loads(data) if data else None
        return reply if isinstance(reply, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def _trusted(sock: Path) -> bool:
    """Only talk to a socket of ours in a folder only we can enter: /tmp/siteline-<uid> could be planted."""
    try:
        folder, own = sock.parent.stat(), sock.stat()
    except OSError:
        return False
    uid = os.getuid()
    return folder.st_uid == uid and own.st_uid == uid and not folder.st_mode & 0o077


def read_line(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_MESSAGE:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


def get_secret(name: str, vault_path: Path | None = None) -> str | None:
    """The value of one entry from a running agent; None when no agent runs, it does not answer within
    ``QUICK_TIMEOUT`` (frozen), or there is no such entry."""
    reply = request(socket_path(vault_path), {"op": "get", "name": name})
    value = reply.get("value") if reply and reply.get("ok") else None
    return value if isinstance(value, str) else None


def agent_entries(vault_path: Path | None = None) -> list[EntryInfo] | None:
    reply = request(socket_path(vault_path), {"op": "entries"})
    if not reply or not reply.get("ok") or not isinstance(reply.get("entries"), list):
        return None
    try:
        return [EntryInfo(e["name"], e["kind"], float(e["created"]), float(e["updated"]), e["note"])
                for e in reply["entries"]]
    except (KeyError, TypeError, ValueError):
        return None


def agent_info(vault_path: Path | None = None, *, timeout: float = QUICK_TIMEOUT) -> AgentInfo | None:
    reply = request(socket_path(vault_path), {"op": "ping"}, timeout)
    if not reply or not reply.get("ok"):
        return None
    try:
        return AgentInfo(int(reply["pid"]), str(reply["vault"]), float(reply["idle_timeout"]),
                         float(reply["expires_in"]))
    except (KeyError, TypeError, ValueError):
        return None


def stop_agent(vault_path: Path | None = None) -> bool:
    """Ask the agent to forget the key and exit. True if one was running."""
    sock = socket_path(vault_path)
    reply = request(sock, {"op": "lock"}, SLOW_TIMEOUT)
    if not (reply and reply.get("ok")):
        return False
    deadline = time.monotonic() + 3.0
    while sock.exists() and time.monotonic() < deadline:  # gone means the agent has let go of the key
        time.sleep(0.01)
    return True


def _agent_env() -> dict[str, str]:
    """The agent lives long: it must not carry a passphrase a script put in the environment."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_VAULT_")}


def start_agent(vault: Vault, idle_timeout: float) -> AgentInfo:
    """Hand the unlocked vault's data key to a new background agent (replacing a running one)."""
    if not supported():
        raise VaultError("the vault agent needs Unix sockets, which this system lacks", "unlock the vault in the GUI")
    key = vault.data_key_for_agent()
    stop_agent(vault.path)
    sock = socket_path(vault.path, create=True)
    # The key travels over a pipe: never argv or the environment, which other processes can read.
    proc = subprocess.Popen(
        [sys.executable, "-m", "siteline.core.vault.agentd", str(vault.path.resolve()), str(sock), str(idle_timeout)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
        start_new_session=True, env=_agent_env(),
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    with proc.stdin, proc.stdout:
        proc.stdin.write(base64.b64encode(key) + b"\n")
        proc.stdin.close()
        line = proc.stdout.readline().decode(errors="replace").strip()  # "ready <pid>" from the daemon
    try:
        proc.wait(timeout=START_TIMEOUT)  # the first process exits as soon as the daemon is forked off
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not line.startswith("ready "):
        raise VaultError(f"the vault agent did not start ({line or 'no answer'})",
                         "run the command again with -v; the vault itself is unchanged")
    info = agent_info(vault.path, timeout=SLOW_TIMEOUT)  # just started: give a busy machine time
    if info is None:
        raise VaultError("the vault agent started but does not answer", "run siteline vault unlock again")
    return info
