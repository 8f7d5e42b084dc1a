"""Wizard step 3: replace every factory password with a unique generated one, kept in the vault first.

The order is the point: the new password is written to the vault (atomically, fsynced: Vault.put) BEFORE the
device is told, so a crash, a pulled cable or a full disk at any moment leaves the password somewhere Siteline
can read it. With no unlocked vault the step refuses and the device keeps its password. The device is told
with ``chpasswd`` fed by the shell's printf builtin: the secret is never in the argv of a process that stays
(``ps`` on the device never shows it) and it goes through ``ctx.change(secrets=...)`` so the plan, the audit
trail and any error show it masked. Then it is proven: a fresh login with the old credential must be refused
and one with the new accepted.

Resumable: a password this job already put in the vault (``job.data["credentials"]["vault"]``) is reused,
never a second one generated; if the device already takes it (the cut came after chpasswd), chpasswd is not
run again.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from siteline.core.errors import AuthError
from siteline.core.keep import device_secret_name
from siteline.core.provisioning.api import StepContext, StepFailedError, StepOutcome, StepRefusedError
from siteline.core.transports.base import Credentials

TIMEOUT = 30.0
LOOK_ALIKES = frozenset("0O1lI")  # easy to misread when a technician must read one off the screen
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in LOOK_ALIKES)
UNLOCK_HINT = "Unlock the vault (Siteline > Vault, or `siteline vault unlock`) and run the provisioning again."


def generate_password(length: int) -> str:
    """A password of ``length`` letters and digits (no look-alikes), with at least one of each kind."""
    if length < 8:
        raise ValueError("a generated password needs at least 8 characters")
    while True:
        candidate = "".join(secrets.choice(ALPHABET) for _ in range(length))
        kinds = (any(c.islower() for c in candidate), any(c.isupper() for c in candidate),
                 any(c.isdigit() for c in candidate))
        if all(kinds):
            return candidate


def vault_name(site: str, device: str, user: str, login_user: str) -> str:
    """The login user's entry is the device's "password" (later connections log in with it)."""
    return device_secret_name(site, device, "password" if user == login_user else f"password-{user}")


def chpasswd_command(user: str, password: str) -> str:
    # printf is a shell builtin (bash, dash, BusyBox ash): the secret reaches chpasswd's stdin, no argv.
    # user and password are from [a-z0-9_-] and ALPHABET: nothing to quote.
    return f"printf '%s\\n' '{user}:{password}' | chpasswd"


def _state(ctx: StepContext) -> dict[str, Any]:
    data = ctx.job.data.get("credentials")
    if not isinstance(data, dict):
        data = {}
    data.setdefault("users", [])
    data.setdefault("vault", {})
    data.setdefault("proved", False)
    ctx.job.data["credentials"] = data
    return data


async def credentials_step(ctx: StepContext) -> StepOutcome:
    if ctx.vault_put is None:
        raise StepRefusedError("There is no unlocked vault to keep the device's new passwords in; nothing was "
                               "changed on the device.", UNLOCK_HINT)
    policy = ctx.profile.credentials
    data = _state(ctx)
    await ctx.read("true", TIMEOUT)  # the working connection is up (and, over SSH, the host key known) before a proof
    login = ctx.link.credentials
    reused: list[str] = []
    unproven: list[str] = []
    for user in policy.users:
        again, proved = await _replace(ctx, data, user, login)
        if again:
            reused.append(user)
        if not proved and not ctx.dry_run:
            unproven.append(user)
    data["proved"] = not ctx.dry_run and not unproven
    detail = f"replaced the password of {', '.join(policy.users)}; kept in the vault"
    if unproven:
        detail += f" (the old password of {', '.join(unproven)} is not known, so only the new one was proven)"
    return StepOutcome(detail, {"users": list(policy.users), "vault": dict(data["vault"]), "proved": data["proved"],
                                "reused": reused, "old_unknown": unproven, "link": ctx.link.kind})


async def _replace(ctx: StepContext, data: dict[str, Any], user: str, login: Credentials) -> tuple[bool, bool]:
    """Replace ``user``'s password: (reused this job's vault password, old refused and new accepted were proven)."""
    login_user = login.username or "root"
    device = ctx.job.device or ctx.job.facts.get("serial", "") or "device"
    name = vault_name(ctx.job.site, device, user, login_user)
    password, again = _password_for(ctx, data, user, name)
    # Every password the account may have had: the profile's published ones and the one this run logged in with
    # (a resume that connected with the new one leaves only the published ones).
    olds = [f.password for f in ctx.profile.credentials.factory if f.user == user and f.password]
    if user == login_user and login.password:
        olds.append(login.password)
    olds = [p for p in dict.fromkeys(olds) if p != password]
    if not (again and await _takes(ctx, user, password)):
        result = await ctx.change(chpasswd_command(user, password), what=f"replace {user}'s password",
                                  secrets=[password], timeout=TIMEOUT)
        if not result.ok:
            why = ctx.mask((result.stderr or result.stdout).strip())[-200:] or f"exit {result.exit_code}"
            raise StepFailedError(f"The device did not take {user}'s new password (chpasswd: {why}). The new "
                                  f"password is in the vault as {name}.",
                                  "Check the account exists on the device, then run the provisioning again.")
    if user not in data["users"]:
        data["users"].append(user)
    if ctx.dry_run:
        return again, False
    if user == login_user:
        # Before the proof: over serial a proof login re-opens the working console with these.
        ctx.link.use_credentials(Credentials(user, password))
    try:
        return again, await _prove(ctx, user, olds, password, name)
    except (StepFailedError, AuthError):
        if user == login_user and login.password and login.password != password:
            ctx.link.use_credentials(login)  # what the device still takes, by all we know
        raise


def _password_for(ctx: StepContext, data: dict[str, Any], user: str, name: str) -> tuple[str, bool]:
    """(password, True) when this job already put one in the vault; else a new one, in the vault now."""
    assert ctx.vault_put is not None
    if data["vault"].get(user) == name and ctx.vault_get is not None:
        try:
            kept = ctx.vault_get(name)
        except Exception as exc:  # a vault locked since (VaultLocked) or unreadable: never make a second one
            raise StepRefusedError(f"The vault entry {name} (this job's password for {user}) cannot be read: "
                                   f"{exc}.", UNLOCK_HINT) from exc
        if kept:
            ctx.secrets.append(kept)
            return kept, True
    password = generate_password(ctx.profile.credentials.length)
    ctx.secrets.append(password)
    try:
        ctx.vault_put(name, password)  # atomic and fsynced BEFORE the device ever sees it
    except Exception as exc:  # VaultError, VaultLocked, OSError (a full disk): the device must not change
        raise StepRefusedError(f"The new password for {user} could not be kept in the vault ({exc}); nothing was "
                               "changed on the device.", UNLOCK_HINT) from exc
    data["vault"][user] = name
    return password, False


async def _takes(ctx: StepContext, user: str, password: str) -> bool:
    """Does the device already accept ``password`` for ``user``? (Reads only: also in a dry run.)"""
    current = ctx.link.credentials
    if (current.username or "root") == user and current.password == password:
        return True  # this very connection logged in with it
    return await ctx.link.try_login(Credentials(user, password), TIMEOUT)


async def _prove(ctx: StepContext, user: str, olds: list[str], new: str, name: str) -> bool:
    """New accepted, every old one refused (StepFailedError otherwise). False when no old password is known."""
    try:
        accepted = await ctx.link.try_login(Credentials(user, new), TIMEOUT)
    except AuthError:  # serial: the working console, re-opened with the new password, refused it too
        accepted = False
    if not accepted:
        raise StepFailedError(f"The device refuses {user}'s new password although chpasswd succeeded. The new "
                              f"password is in the vault as {name}.",
                              "Log in over the serial console with the vault's password (or the factory one) and "
                              "check the account (PAM, a read-only /etc/shadow); then run the provisioning again.")
    if not olds:
        return False
    for old in olds:
        if await ctx.link.try_login(Credentials(user, old), TIMEOUT):
            raise StepFailedError(f"The device still accepts {user}'s old password after the change. The new "
                                  f"password is in the vault as {name}.",
                                  "The device may check passwords elsewhere (LDAP, a second shadow file): check it, "
                                  "then run the provisioning again.")
    return True


__all__ = ["ALPHABET", "chpasswd_command", "credentials_step", "generate_password", "vault_name"]
