"""A Transport that runs commands in a real local /bin/sh: a real peer for GUI tests that need 'up'.

It keeps the core Transport contract (connect, run with exit code and output, close, state), so the
session, the System probe and the Overview tab run exactly as against a device.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from siteline.core.errors import AuthError, CommandTimeout
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Result, StatefulLink


class LocalShellTransport(StatefulLink):
    def __init__(self, target: Target, credentials: Credentials, password: str | None = None) -> None:
        self.target = target
        self.credentials = credentials
        self._password = password
        self._running: set[asyncio.subprocess.Process] = set()
        super().__init__()

    async def connect(self) -> None:
        self._state.set(ConnState.CONNECTING)
        await asyncio.sleep(0)
        if self._password is not None and self.credentials.password != self._password:
            self._state.set(ConnState.DOWN, "login refused")
            raise AuthError("The device refused the password.", "Type the device's password.")
        self._state.set(ConnState.UP)

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._running.add(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError as exc:
            raise CommandTimeout(f"'{command[:40]}' did not finish in {timeout} s.") from exc
        finally:
            # Timed out, cancelled or closed under it: like a device's link, leave no command behind
            # (a process still running when the test's loop closes is an error in the next test).
            self._running.discard(proc)
            await _end(proc)
        return Result(proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    async def close(self) -> None:
        for proc in list(self._running):
            _kill(proc)
        self._state.set(ConnState.DOWN, "closed")


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _end(proc: asyncio.subprocess.Process) -> None:
    _kill(proc)
    await asyncio.shield(proc.wait())


def local_shell_factory(target: Target, credentials: Credentials) -> LocalShellTransport:
    return LocalShellTransport(target, credentials)


def password_factory(password: str) -> Callable[[Target, Credentials], LocalShellTransport]:
    """A device that refuses every password but ``password``."""

    def make(target: Target, credentials: Credentials) -> LocalShellTransport:
        return LocalShellTransport(target, credentials, password)

    return make
