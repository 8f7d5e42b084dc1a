"""The link a provisioning run uses: one Transport at a time, re-opened with new credentials when asked.

Serial and SSH only. A serial port has one console, so a proof login (``try_login``) closes the working
connection, tries the login, and opens the working one again; over SSH the proof is a separate connection
with that password and nothing else (no keys, no agent: core.device.factory_login.try_login), so a key of
the technician's can never make a password look accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from siteline.core.device.factory_login import FactoryLogin
from siteline.core.device.factory_login import try_login as ssh_try_login
from siteline.core.errors import AuthError, TransportError
from siteline.core.provisioning.api import StepRefusedError
from siteline.core.targets import Target
from siteline.core.transports.base import Credentials, Result, Transport
from siteline.core.transports.known_hosts import KnownHosts

Opener = Callable[[Credentials], Transport]  # an unconnected transport to the target with these credentials


class TransportProvisionLink:
    def __init__(self, target: Target, credentials: Credentials, opener: Opener, *, known_hosts: Path | None = None,
                 connect_timeout: float = 30.0) -> None:
        if not (target.is_ssh or target.is_serial):
            raise StepRefusedError(f"{target.label} is reached over MQTT, which cannot provision a device.",
                                   "Connect a serial cable (or SSH on the local network) and provision over that.")
        self.target = target
        self.kind = "ssh" if target.is_ssh else "serial"
        self._credentials = credentials
        self._opener = opener
        self._known_hosts = known_hosts
        self._connect_timeout = connect_timeout
        self._transport: Transport | None = None

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    @property
    def connected(self) -> bool:
        return self._transport is not None

    def use_credentials(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def connect(self) -> None:
        """Open the working connection if it is not open (AuthError / TransportError for a person)."""
        if self._transport is not None:
            return
        transport = self._opener(self._credentials)
        if hasattr(transport, "private_history"):
            # Passwords are typed on this console: keep them out of the history of a shell found logged in too.
            transport.private_history = True
        try:
            await transport.connect()
        except BaseException:
            with contextlib.suppress(Exception):
                await transport.close()
            raise
        self._transport = transport

    async def run(self, command: str, timeout: float) -> Result:
        await self.connect()
        assert self._transport is not None
        try:
            return await self._transport.run(command, timeout)
        except TransportError:
            await self.close()  # the next run opens a fresh connection (steps are idempotent)
            raise

    async def reconnect(self, timeout: float) -> None:
        await self.close()
        await self.connect()

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        if self.kind == "ssh":
            return await self._try_ssh(credentials, timeout)
        await self.close()
        trial = self._opener(credentials)
        if hasattr(trial, "fresh_login"):
            # A console left logged in (or with autologin) would "accept" any password without asking for it.
            trial.fresh_login = True
        try:
            await trial.connect()
        except AuthError:
            return False
        finally:
            with contextlib.suppress(Exception):
                await trial.close()
            await self.connect()
        return True

    async def _try_ssh(self, credentials: Credentials, timeout: float) -> bool:
        if self._known_hosts is None or self.target.jumps:
            raise TransportError(f"Cannot prove a password on {self.target.label} with a separate login.",
                                 "Provision over the serial console, or directly (not through a bastion).")
        login = FactoryLogin(credentials.username or "root", credentials.password or "", "the password under test")
        attempt = await ssh_try_login(self.target, login, KnownHosts(self._known_hosts), timeout)
        if attempt.outcome == "stop":
            raise TransportError(f"Could not try a login on {self.target.label}: {attempt.detail}",
                                 "Check the device is still reachable, then run the provisioning again.")
        return attempt.outcome == "accepted"

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()
