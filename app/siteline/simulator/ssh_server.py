"""The simulated device's SSH server: password and key auth, exec, a pty shell, SFTP into its rootfs.

Commands run through a real /bin/sh with the device's environment (shims first on PATH), the
way sshd runs them on a real box, and their output is streamed as it is produced, so
``journalctl -f`` behaves as it would on hardware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

from siteline.core.atomic import write_atomic
from siteline.simulator import rootfs
from siteline.simulator.ptyproc import PtyProcess
from siteline.simulator.shell import device_argv, device_cwd, interactive_shell_argv, run_streamed
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.sshd import passwords_allowed

log = logging.getLogger(__name__)
HOST_KEY_NAME = "ssh_host_ed25519_key"
CHUNK = 32768


def rootfs_of(state: DeviceState) -> Path:
    """The folder that stands for the device's ``/``: SFTP is chrooted here."""
    return rootfs.rootfs(state.root)


def load_host_key(state: DeviceState) -> asyncssh.SSHKey:
    """The device's host key, made on first start inside the state dir (a new dir is a new device)."""
    path = state.root / HOST_KEY_NAME
    if path.exists():
        try:
            return asyncssh.read_private_key(str(path))
        except (asyncssh.KeyImportError, OSError, ValueError) as exc:
            # A damaged key file is a damaged device: say so rather than quietly becoming another host.
            raise RuntimeError(f"the SSH host key {path} cannot be read ({exc}); delete it to make a new one") from exc
    key = asyncssh.generate_private_key("ssh-ed25519", comment=f"root@{state.hostname()}")
    write_atomic(path, key.export_private_key(), mode=0o600)
    write_atomic(path.with_name(HOST_KEY_NAME + ".pub"), key.export_public_key())
    return key


class ConfinedSFTPServer(asyncssh.SFTPServer):
    """SFTP into the device's rootfs that never leaves it through a link the device made there.

    asyncssh's chroot only prefixes the client's path, and this server runs in the simulator's own process,
    outside the device's namespaces: the OS would follow a device-planted ``/etc/x -> /usr/lib`` to the host's
    folder. Every path is therefore resolved (links and all) and refused unless it stays in the rootfs. A link
    that leads out can be neither followed nor, through SFTP, removed: ``rm`` in a device shell removes it.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], chroot: bytes) -> None:
        super().__init__(chan, chroot=chroot)
        self._confine = os.path.realpath(chroot)

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        real = os.path.realpath(local)
        if real != self._confine and not real.startswith(self._confine + b"/"):
            log.info("SFTP refused %r: a link there leads out of the device's rootfs", path[:200])
            raise asyncssh.SFTPPermissionDenied(
                f"{os.fsdecode(path[:200])}: a link on this path leads out of the device's filesystem")
        return local


class _DeviceAuth(asyncssh.SSHServer):
    """Decides who gets in, against the passwords and authorized_keys kept in the state dir."""

    def __init__(self, server: SSHDeviceServer) -> None:
        self._server = server
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._server.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._server.connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        # Re-read on every login, as sshd does, so a key added by `ssh-copy-id` works at once. An
        # unknown or malformed name gets no keys and creates nothing (it still has to fail a password).
        path = self._server.state.find_authorized_keys(username)
        if path is None:
            log.info("login attempt for unknown user %r", username[:64])
            return True
        try:
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            if self._conn is not None and any(ln.strip() and not ln.startswith("#") for ln in text.splitlines()):
                self._conn.set_authorized_keys(asyncssh.import_authorized_keys(text))
        except (asyncssh.KeyImportError, OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
        return True  # always ask: the device has no passwordless accounts

    def password_auth_supported(self) -> bool:
        # The device's own sshd_config decides too: a hardened one (PasswordAuthentication no) refuses them.
        return self._server.password_login and passwords_allowed(self._server.state)

    async def validate_password(self, username: str, password: str) -> bool:
        # scrypt takes tens of ms: in a thread, so the loop keeps pacing the console and other sessions.
        ok = await asyncio.to_thread(self._server.state.check_password, username, password)
        if not ok:
            log.info("refused password for %s", username)
        return ok

    def public_key_auth_supported(self) -> bool:
        return True


class SSHDeviceServer:
    """One listening SSH server for a device; ``stop()`` also drops every open connection."""

    def __init__(self, state: DeviceState, port: int = 0, host: str = "127.0.0.1", *,
                 password_login: bool = True) -> None:
        self.state = state
        self.password_login = password_login  # False: public keys only, as a hardened device's sshd
        self.host = host
        self.port = port
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[asyncio.Event] = set()  # one per running channel; set when it has finished
        self._handlers: set[asyncio.Task[Any]] = set()  # the channel tasks asyncssh started: stop() sees them end
        self._acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self) -> int:
        """Listen (port 0 picks a free one, kept for restarts after a reboot); returns the port."""
        if self._acceptor is not None:
            return self.port
        key = load_host_key(self.state)
        self._acceptor = await asyncssh.listen(
            self.host, self.port, server_host_keys=[key], server_factory=lambda: _DeviceAuth(self),
            process_factory=self._handle_process, encoding=None, allow_scp=False,
            sftp_factory=self._make_sftp, reuse_address=True, login_timeout=30, keepalive_interval=0,
        )
        self.port = self._acceptor.get_port()
        log.info("SSH listening on %s:%d", self.host, self.port)
        return self.port

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening; give running commands ``grace`` seconds to end (``reboot`` itself must
        still report its exit status, as systemd lets sessions finish), then drop every connection."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        waiting = [asyncio.ensure_future(done.wait()) for done in self._sessions]
        if waiting:
            _finished, pending = await asyncio.wait(waiting, timeout=grace) if grace > 0 else (set(), set(waiting))
            for task in pending:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        conns = list(self.connections)
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
        self.connections.clear()
        # A closed connection cancels its channel tasks, which still clean up (kill the command, stop its
        # pumps): a stopped device leaves nothing running behind it.
        handlers = list(self._handlers)
        if handlers:
            _done, late = await asyncio.wait(handlers, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    def _make_sftp(self, chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        root = rootfs_of(self.state)
        root.mkdir(parents=True, exist_ok=True)
        return ConfinedSFTPServer(chan, chroot=os.fsencode(root))

    async def _handle_process(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        finished = asyncio.Event()
        self._sessions.add(finished)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(process)
        finally:
            finished.set()
            self._sessions.discard(finished)
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        try:
            if process.command is not None and process.term_type is None:
                code = await run_exec(self.state, process, process.command)
            elif process.subsystem:
                process.stderr.write(f"subsystem {process.subsystem} is not available\n".encode())
                code = 1
            else:
                code = await run_pty_shell(self.state, process)
        except (OSError, asyncssh.Error) as exc:
            log.info("session ended: %s", exc)
            code = 255
        with contextlib.suppress(OSError, asyncssh.Error):
            process.exit(code)


async def run_exec(state: DeviceState, process: asyncssh.SSHServerProcess[bytes], command: str) -> int:
    """``/bin/sh -c command`` with the channel's stdin/stdout/stderr streamed both ways.

    The command is stopped (its whole process group) when the client hangs up, e.g. when it stops
    ``journalctl -f``, or when its output can no longer be delivered.
    """

    def sink(writer: asyncssh.SSHWriter[bytes]) -> Callable[[bytes], Awaitable[None]]:
        async def write(data: bytes) -> None:
            writer.write(data)
            await writer.drain()
        return write

    async def feed(stdin: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):  # the channel went away: nothing more to feed
            while chunk := await process.stdin.read(CHUNK):
                stdin.write(chunk)
                await stdin.drain()

    return await run_streamed(state, command, on_out=sink(process.stdout), on_err=sink(process.stderr),
                              stdin=feed, hangup=process.wait_closed())


async def run_pty_shell(state: DeviceState, process: asyncssh.SSHServerProcess[bytes]) -> int:
    """An interactive shell (or a command, with ``ssh -t``) on a real pty sized like the client's."""
    env = state.shell_env()
    env["TERM"] = process.term_type or "dumb"
    argv = interactive_shell_argv(state) if process.command is None else device_argv(state, ["/bin/sh", "-c",
                                                                                                process.command])
    cols, rows = process.term_size[:2] if process.term_type else (80, 24)

    def out(data: bytes) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            process.stdout.write(data)

    shell = PtyProcess(argv, env, device_cwd(state), out)
    shell.start(cols or 80, rows or 24)
    typing = asyncio.ensure_future(_type_into(process, shell))
    done = asyncio.ensure_future(shell.wait())
    closed = asyncio.ensure_future(process.wait_closed())
    try:
        await asyncio.wait({done, closed}, return_when=asyncio.FIRST_COMPLETED)
        return done.result() if done.done() else 129  # 129: hung up, the shell got SIGHUP
    finally:
        for task in (typing, done, closed):
            task.cancel()
        await asyncio.gather(typing, done, closed, return_exceptions=True)
        await shell.close()


async def _type_into(process: asyncssh.SSHServerProcess[bytes], shell: PtyProcess) -> None:
    """Forward keystrokes and window-size changes until the client closes its side."""
    while True:
        try:
            data = await process.stdin.read(CHUNK)
        except asyncssh.TerminalSizeChanged as change:
            shell.resize(change.width, change.height, change.pixwidth, change.pixheight)
            continue
        except (OSError, asyncssh.Error):
            return
        if not data:
            return
        shell.write(data)
