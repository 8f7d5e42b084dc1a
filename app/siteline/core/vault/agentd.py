"""The vault agent's process: `python -m siteline.core.vault.agentd VAULT SOCKET IDLE_SECONDS`.

Reads the base64 data key from stdin, forks into the background, binds the socket, says
"ready <pid>" on stdout, and serves one JSON request per connection until idle or told to lock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from siteline.core.vault.agent import read_line, request
from siteline.core.vault.errors import VaultError
from siteline.core.vault.vault import Vault


class Agent:
    def __init__(self, vault: Vault, sock_path: Path, idle_timeout: float) -> None:
        self.vault = vault
        self.sock_path = sock_path
        self.idle_timeout = idle_timeout
        self.deadline = time.monotonic() + idle_timeout
        self.stopping = False

    def bind(self) -> socket.socket:
        if self.sock_path.exists():
            if request(self.sock_path, {"op": "ping"}, timeout=1.0) is not None:
                raise VaultError("another vault agent already runs for this vault", "siteline vault lock first")
            self.sock_path.unlink()  # stale: its agent died without cleaning up
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            server.bind(str(self.sock_path))
        finally:
            os.umask(old_umask)
        server.listen(8)
        return server

    def serve(self, server: socket.socket) -> None:
        while not self.stopping:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                break
            server.settimeout(min(remaining, 1.0))
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(2.0)
        try:
            if not _same_user(conn):
                return
            message = json.loads(read_line(conn) or b"null")
            reply = self.answer(message if isinstance(message, dict) else {})
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError):
            return  # a client that hung up or sent garbage gets nothing; the agent carries on

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "vault": str(self.vault.path), "idle_timeout": self.idle_timeout,
                    "expires_in": max(0.0, self.deadline - time.monotonic())}
        if op == "lock":
            self.stopping = True
            return {"ok": True}
        if op not in ("get", "entries"):
            return {"ok": False, "error": "unknown request"}
        self.deadline = time.monotonic() + self.idle_timeout  # only real use keeps the agent alive
        try:
            entries = self.vault.fresh_entries()
        except VaultError as exc:
            return {"ok": False, "error": str(exc)}
        if op == "entries":
            return {"ok": True, "entries": [
                {"name": e.name, "kind": e.kind, "created": e.created, "updated": e.updated, "note": e.note}
                for _, e in sorted(entries.items())]}
        entry = entries.get(str(message.get("name")))
        return {"ok": True, "value": entry.value} if entry else {"ok": False, "error": "no such entry"}


def _same_user(conn: socket.socket) -> bool:
    """Defence in depth beside the 0600 socket: on Linux, ask the kernel who is calling."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return True
    creds = conn.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)


def _detach() -> None:
    """Classic double fork: the starter reaps the first child; the daemon is adopted by init."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.chdir("/")


def main(argv: list[str]) -> int:
    vault_path, sock_path, idle = Path(argv[0]), Path(argv[1]), float(argv[2])
    key = base64.b64decode(sys.stdin.buffer.readline().strip(), validate=True)
    vault = Vault(vault_path, None)
    vault.unlock_with_data_key(key)
    del key
    vault.idle_timeout = float("inf")  # the agent's own idle deadline rules, not the vault's
    _detach()
    agent = Agent(vault, sock_path, idle)
    server = agent.bind()
    signal.signal(signal.SIGTERM, lambda *_: setattr(agent, "stopping", True))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print(f"ready {os.getpid()}", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # let the starter's pipes close: it waits for EOF
        os.dup2(devnull, fd)
    try:
        agent.serve(server)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        vault.lock()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (VaultError, ValueError, IndexError, OSError) as exc:
        print(f"error {exc}", flush=True)
        sys.exit(1)
