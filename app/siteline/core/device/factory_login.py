"""Whether a device still accepts a factory-default login: tried over SSH only when the user asks.

Each login is one fresh SSH connection with that user and password and nothing else (no keys, no agent,
no ~/.ssh/config), so a key of the technician's can never make a password look accepted. The device's
host key must already be pinned in Siteline's known_hosts (the same check as the SSH transport): a
password, even a public factory one, is never sent to a host whose identity is unknown or has changed.
The tries are few and paced (``pause`` seconds apart) and stop at the first success, so fail2ban or
sshd's MaxStartups see what a person typing would look like.

The passwords are never logged or put in the result: a login is shown by its ``name`` (for the
well-known defaults, "root/root" is the manual's own words, not a secret of this device).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncssh

from siteline.core.device.posture import PostureCheck
from siteline.core.targets import Target
from siteline.core.transports.known_hosts import HostKeyCheck, KnownHosts, bare_host, host_pattern
from siteline.core.transports.ssh import ENCRYPTION_ALGS, _Client, _connect_error

log = logging.getLogger(__name__)

MAX_TRIES = 5
PAUSE = 2.0  # seconds between tries
TRY_TIMEOUT = 15.0  # connect and login, per try


@dataclass(frozen=True)
class FactoryLogin:
    user: str
    password: str = field(repr=False)
    name: str = ""  # what may be shown and recorded; default "the factory password of USER"

    @property
    def shown(self) -> str:
        return self.name or f"the factory password of {self.user}"


# Logins printed in manuals and images; a device-family plugin may bring its own list.
DEFAULT_LOGINS: tuple[FactoryLogin, ...] = (
    FactoryLogin("root", "root", "root/root"),
    FactoryLogin("admin", "admin", "admin/admin"),
    FactoryLogin("root", "", "root with an empty password"),
    FactoryLogin("pi", "raspberry", "pi/raspberry"),
    FactoryLogin("ubuntu", "ubuntu", "ubuntu/ubuntu"),
)

Outcome = Literal["accepted", "refused", "stop"]


@dataclass(frozen=True)
class Attempt:
    name: str
    outcome: Outcome
    detail: str = ""


def plan(device: str, logins: Sequence[FactoryLogin] = DEFAULT_LOGINS, max_tries: int = MAX_TRIES) -> str:
    """What the check will do, in words, for the confirmation before it runs."""
    count = min(len(logins), max_tries)
    return (f"This tries {count} factory password{'s' if count != 1 else ''} on {device} over SSH; "
            "a device with fail2ban may block this laptop for a while.")


async def check_factory_logins(
    target: Target,
    known_hosts: Path,
    *,
    logins: Sequence[FactoryLogin] = DEFAULT_LOGINS,
    max_tries: int = MAX_TRIES,
    pause: float = PAUSE,
    timeout: float = TRY_TIMEOUT,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> PostureCheck:
    """Try up to ``max_tries`` of ``logins`` on ``target`` (an ssh:// target); the "factory_credentials" check."""
    if not target.is_ssh:
        return _result("unknown", f"not tried: {target.label} is not reached over SSH", [])
    if target.jumps:
        return _result("unknown", "not tried: the device is behind a bastion, and a bastion would need your own "
                                  "credentials on each try", [])
    store = KnownHosts(known_hosts)
    attempts: list[Attempt] = []
    for n, login in enumerate(list(logins)[:max(0, max_tries)]):
        if n and pause > 0:
            await asyncio.sleep(pause)
        attempt = await try_login(target, login, store, timeout)
        attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        if attempt.outcome != "refused":
            break
    return _verdict(target, attempts)


def _verdict(target: Target, attempts: list[Attempt]) -> PostureCheck:
    last = attempts[-1] if attempts else None
    if last is None:
        return _result("unknown", "no factory logins to try", attempts)
    if last.outcome == "accepted":
        return _result("fail", f"{last.name} is still accepted on {target.label}: change that password now", attempts)
    if last.outcome == "stop":
        tried = f" after {len(attempts) - 1} refused" if len(attempts) > 1 else ""
        return _result("unknown", f"stopped{tried}: {last.detail}", attempts)
    names = ", ".join(a.name for a in attempts)
    return _result("pass", f"none of {len(attempts)} factory logins was accepted ({names})", attempts)


def _result(status: Literal["pass", "fail", "unknown"], reason: str, attempts: list[Attempt]) -> PostureCheck:
    raw = "\n".join(f"{a.name}: {a.outcome}{' - ' + a.detail if a.detail else ''}" for a in attempts)
    return PostureCheck("factory_credentials", status, reason, raw)


async def try_login(target: Target, login: FactoryLogin, store: KnownHosts, timeout: float) -> Attempt:
    """One fresh connection with this login's password only; closed at once when it gets in."""
    host, port = bare_host(target.host), target.effective_port
    check = HostKeyCheck(store, host, port, accept_new=False)
    options = asyncssh.SSHClientConnectionOptions(
        username=login.user, password=login.password, known_hosts=check.trusted,
        server_host_key_algs=check.host_key_algs(), encryption_algs=ENCRYPTION_ALGS, config=None,
        client_keys=None, agent_path=None, public_key_auth=False, host_based_auth=False, gss_auth=False,
        # keyboard-interactive too: a PAM device asks for the same password that way.
        password_auth=True, kbdint_auth=True, connect_timeout=timeout, login_timeout=timeout,
        keepalive_interval=0,
    )
    where = host_pattern(host, port)
    try:
        conn, _client = await asyncssh.create_connection(lambda: _Client(check, None), host, port, options=options)
    except asyncssh.HostKeyNotVerifiable:
        problem = check.error()
        return Attempt(login.shown, "stop", problem.message + " " + problem.hint)
    except asyncssh.PermissionDenied:
        log.info("factory login %s refused by %s", login.shown, where)
        return Attempt(login.shown, "refused")
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        return Attempt(login.shown, "stop", str(_connect_error(exc, where)))
    conn.close()
    with contextlib.suppress(Exception):
        await conn.wait_closed()
    log.warning("factory login %s ACCEPTED by %s", login.shown, where)
    return Attempt(login.shown, "accepted")


