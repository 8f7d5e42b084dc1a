"""SSH transport over asyncssh: pinned host keys, key/password/agent auth, bastion chains, keepalive.

Host keys live in Siteline's own OpenSSH-format known_hosts file (``[host]:port`` for ports
other than 22; see known_hosts.py). The first contact with a host is trust-on-first-use and logged
(or, with ``accept_new_host_key=False``, a :class:`HostKeyError` whose ``problem`` the GUI shows); a
key that differs from the pinned one stops the connection with :class:`HostKeyError` and both
fingerprints, because that is what an attacker in the middle looks like.

An idle link is checked as OpenSSH's ServerAliveInterval=30 / ServerAliveCountMax=3 would
(``?keepalive=SECONDS`` in the target changes the interval): a dead radio ends in DOWN with a reason
instead of a hang. Files: transfer.py; local port forwards: forward.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from siteline.core.errors import AuthError, CommandTimeout, TransportError
from siteline.core.targets import Jump, Target
from siteline.core.transports.base import ConnState, Credentials, Result, StatefulLink
from siteline.core.transports.forward import Forward, open_forward
from siteline.core.transports.known_hosts import (
    HostKeyCheck,
    KnownHosts,
    bare_host,
    fingerprint,
    host_pattern,
    public_key_text,
)
from siteline.core.transports.streaming import LineStream, stream_lines
from siteline.core.transports.transfer import ProgressCallback, TransferResult, sftp_get, sftp_put

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
LOGIN_TIMEOUT = 30.0
KEEPALIVE_INTERVAL = 30.0  # OpenSSH's ServerAliveInterval=30 / ServerAliveCountMax=3, as the spec asks
KEEPALIVE_COUNT_MAX = 3

# AES-GCM first: one AEAD call per packet where Python's chacha20-poly1305 needs several (OpenSSH's C
# code does not care). Every default algorithm stays allowed, so any device still negotiates.
_GCM = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
ENCRYPTION_ALGS = list(dict.fromkeys(_GCM + [alg.decode() for alg in get_default_encryption_algs()]))

# Moved to known_hosts.py; names kept here so existing imports keep working.
_HostKeyCheck = HostKeyCheck
__all__ = [
    "KEEPALIVE_COUNT_MAX", "KEEPALIVE_INTERVAL", "Forward", "KnownHosts", "SshTransport",
    "bare_host", "fingerprint", "host_pattern", "public_key_text",
]


class _Client(asyncssh.SSHClient):
    def __init__(self, check: HostKeyCheck, on_lost: Callable[[Exception | None], None] | None) -> None:
        self._check, self._on_lost = check, on_lost

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._check.validate(key)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._on_lost is not None:
            self._on_lost(exc)


def _connect_error(exc: BaseException, where: str) -> TransportError:
    """Turn what the network or asyncssh raised into an error a person can act on."""
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthError(
            f"{where} refused the login: {exc.reason or 'permission denied'}.",
            "Check the user name, password or key (and that the key is in the device's authorized_keys).",
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(f"{where} refused the connection.", "Is SSH running there, and is the port right?")
    if isinstance(exc, socket.gaierror):
        return TransportError(f"Cannot resolve the name in {where}: {exc}.", "Check the host name or use an address.")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return TransportError(
            f"{where} did not answer within {CONNECT_TIMEOUT:.0f} s.",
            "Check the address, the cable or cellular link, and any firewall in between.",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return TransportError(f"No route to {where}.", "Check the network link and the address.")
    if isinstance(exc, asyncssh.Error):
        return TransportError(f"SSH to {where} failed: {exc.reason}.", "Try again; if it persists check the device.")
    return TransportError(f"Cannot reach {where}: {exc}.", "Check the network link and the address.")


def _read_key(path: str, passphrase: str | None) -> asyncssh.SSHKey:
    return asyncssh.read_private_key(os.path.expanduser(path), passphrase)


def _channel_lost(completed: asyncssh.SSHCompletedProcess) -> bool:
    """Neither an exit status nor a signal came back: the channel died, the command did not end."""
    no_status = completed.exit_status is None or completed.exit_status < 0
    return no_status and completed.exit_signal is None


def _exit_code(completed: asyncssh.SSHCompletedProcess) -> int:
    if completed.exit_status is not None and completed.exit_status >= 0:
        return int(completed.exit_status)
    name = (completed.exit_signal or ("",))[0]
    try:
        return 128 + int(signal.Signals[f"SIG{name}"])  # what a shell reports for a killed command
    except KeyError:
        return 255


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


class SshTransport(StatefulLink):
    """A link to one device over SSH (optionally through bastions from ``target.jumps``)."""

    def __init__(
        self,
        target: Target,
        credentials: Credentials,
        known_hosts: Path,
        *,
        accept_new_host_key: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        keepalive_interval: float | None = None,
    ) -> None:
        if not target.is_ssh:
            raise TransportError(f"{target} is not an ssh:// target.")
        self.target = target
        self.credentials = credentials
        self.known_hosts = KnownHosts(known_hosts)
        self.accept_new_host_key = accept_new_host_key
        self.connect_timeout = connect_timeout
        # An explicit argument (tests, bench) wins over ?keepalive= in the URL, which wins over the default.
        if keepalive_interval is None:
            keepalive_interval = target.keepalive or KEEPALIVE_INTERVAL
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = KEEPALIVE_COUNT_MAX
        super().__init__()
        self._conns: list[asyncssh.SSHClientConnection] = []  # bastions first, the device last
        self._closing = False
        self._forwards: list[Forward] = []
        self.log = logging.LoggerAdapter(log, {"target": str(target)})

    def _on_lost(self, exc: Exception | None) -> None:
        if self._closing or self._state.state.state is not ConnState.UP:
            return
        reason = self._lost_reason(exc)
        self.log.info("%s", reason)
        self._state.set(ConnState.DOWN, reason)

    def _lost_reason(self, exc: Exception | None) -> str:
        if exc is None:
            return "connection closed by the device"
        if isinstance(exc, asyncssh.ConnectionLost) and "keepalive" in str(exc.reason):
            return f"the device stopped answering ({self.keepalive_count_max} keepalives missed)"
        return f"connection lost: {exc}"

    # -- connecting --------------------------------------------------------------------------

    async def _auth_options(self) -> dict[str, Any]:
        creds = self.credentials
        opts: dict[str, Any] = {"password": creds.password}
        key_path = creds.key_path or self.target.options.get("key")
        if key_path:
            # A passphrase runs bcrypt's KDF: CPU work that must not stall the event loop.
            try:
                key = await asyncio.to_thread(_read_key, key_path, creds.key_passphrase)
                opts["client_keys"] = [key]
            except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                raise AuthError(
                    f"Cannot use the key file {key_path}: {exc}.",
                    "Check the path and the key's passphrase.",
                ) from exc
        opts["agent_path"] = () if creds.use_agent and os.environ.get("SSH_AUTH_SOCK") else None
        return opts

    async def _open(
        self,
        host: str,
        port: int,
        user: str | None,
        tunnel: asyncssh.SSHClientConnection | None,
        auth: dict[str, Any],
        last: bool,
        via: str = "",
    ) -> asyncssh.SSHClientConnection:
        host = bare_host(host)
        where = f"{host_pattern(host, port)}" + (" (through the bastion)" if tunnel else "")
        check = HostKeyCheck(self.known_hosts, host, port, self.accept_new_host_key, via)
        options = asyncssh.SSHClientConnectionOptions(
            username=user or self.credentials.username or None,
            known_hosts=check.trusted,
            server_host_key_algs=check.host_key_algs(),
            encryption_algs=ENCRYPTION_ALGS,
            config=None,  # Siteline's target URL is the whole truth; ~/.ssh/config must not surprise
            connect_timeout=self.connect_timeout,
            login_timeout=LOGIN_TIMEOUT,
            keepalive_interval=self.keepalive_interval,
            keepalive_count_max=self.keepalive_count_max,
            **auth,
        )
        on_lost = self._on_lost if last else None
        try:
            conn, _client = await asyncssh.create_connection(
                lambda: _Client(check, on_lost), host, port, tunnel=tunnel, options=options
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise check.error() from exc
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise _connect_error(exc, where) from exc
        return conn

    async def connect(self) -> None:
        await self.close()
        self._closing = False
        self._state.set(ConnState.CONNECTING)
        hops: Sequence[Jump] = self.target.jumps
        tunnel: asyncssh.SSHClientConnection | None = None
        try:
            auth = await self._auth_options()
            # The device's password is for the device: a bastion gets keys and the agent, never it.
            bastion_auth = {**auth, "password": None}
            for hop in hops:
                tunnel = await self._open(hop.host, hop.port, hop.user, tunnel, bastion_auth, last=False)
                self._conns.append(tunnel)
            target = self.target
            # Which bastions, not as whom: another login on the same bastion reaches the same device.
            via = ",".join(f"{hop.host}:{hop.port}".lower() for hop in hops)
            conn = await self._open(
                target.host, target.effective_port, target.user, tunnel, auth, last=True, via=via
            )
            self._conns.append(conn)
        except BaseException as exc:
            await self._close_conns()
            self._state.set(ConnState.DOWN, str(exc))
            raise
        self.log.info("connected to %s", self.target)
        self._state.set(ConnState.UP)

    # -- using -------------------------------------------------------------------------------

    def _device(self) -> asyncssh.SSHClientConnection:
        if not self._conns or self._state.state.state is not ConnState.UP:
            raise TransportError(
                f"Not connected to {self.target.label} ({self._state.state.describe()}).", "Connect first."
            )
        return self._conns[-1]

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        conn = self._device()
        try:
            process = await conn.create_process(command, encoding=None, stdin=asyncssh.DEVNULL)
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"Cannot start a command on {self.target.label}: {exc}.") from exc
        try:
            completed = await process.wait(timeout=timeout)
        except asyncio.CancelledError:
            # A probe deadline, a session stop: the remote command must not run on unattended.
            await asyncio.shield(self._stop_process(process))
            raise
        except asyncssh.TimeoutError as exc:
            await self._stop_process(process)
            raise CommandTimeout(
                f"'{command[:80]}' did not finish within {timeout:g} s on {self.target.label}; it was interrupted.",
                "Give it a longer timeout, or check whether the device is overloaded.",
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise TransportError(f"The link to {self.target.label} broke while running a command: {exc}.") from exc
        if _channel_lost(completed):
            raise TransportError(
                f"The link to {self.target.label} broke while running '{command[:80]}'.",
                "Run it again when the device is reachable; check whether it completed first.",
            )
        return Result(_exit_code(completed), _text(completed.stdout), _text(completed.stderr))

    async def _stop_process(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        """Signal the remote command (OpenSSH honours the 'signal' request), then drop its channel."""
        with contextlib.suppress(OSError, asyncssh.Error):
            process.send_signal("TERM")
        process.close()
        with contextlib.suppress(OSError, asyncssh.Error, TimeoutError):
            await asyncio.wait_for(process.wait_closed(), 2.0)

    async def close(self) -> None:
        self._closing = True
        forwards, self._forwards = self._forwards, []
        for fwd in forwards:
            await fwd.close()
        had = bool(self._conns)
        await self._close_conns()
        if had:
            self._state.set(ConnState.DOWN, "closed")

    async def _close_conns(self) -> None:
        conns, self._conns = self._conns, []
        for conn in reversed(conns):
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    # -- files and streams (the logic lives in transfer.py / streaming.py) ----------------------

    async def put(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> TransferResult:
        """Upload with resume and a SHA-256 check; see :func:`transfer.sftp_put`."""
        return await sftp_put(self._device(), local, remote, progress=progress)

    async def get(self, remote: str, local: Path, progress: ProgressCallback | None = None) -> TransferResult:
        """Download with resume and a SHA-256 check; see :func:`transfer.sftp_get`."""
        return await sftp_get(self._device(), remote, local, progress=progress)

    def stream(self, command: str) -> LineStream:
        """``async with t.stream("journalctl -f") as lines: async for line in lines: ...``"""
        return stream_lines(self._device(), command)

    async def open_shell(self, cols: int = 80, rows: int = 24) -> Any:
        """An interactive PTY shell (a :class:`shell.ShellChannel`); see :func:`shell.open_ssh_shell`."""
        # Imported here so this method stays a self-contained addition to the module.
        from siteline.core.transports.shell import open_ssh_shell

        return await open_ssh_shell(self._device(), cols=cols, rows=rows)

    async def forward_local(
        self, remote_host: str = "127.0.0.1", remote_port: int = 80, local_port: int = 0, listen_host: str = "127.0.0.1"
    ) -> Forward:
        """Carry ``listen_host:local_port`` (0: any free port) to ``remote_host:remote_port`` as seen from the device.

        Works through bastions (the device's own sshd opens the far end). Closed with the transport.
        """
        fwd = await open_forward(self._device(), remote_host, remote_port, local_port, listen_host, self.target.label)
        self._forwards = [f for f in self._forwards if f.is_open] + [fwd]
        return fwd
