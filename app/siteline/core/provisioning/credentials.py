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


HASH_MARK = "siteline-hash="
STRONG_HASHES = ("$6$", "$5$", "$y$", "$7$", "$gy$", "$2b$", "$2y$")  # sha512, sha256, yescrypt, scrypt, bcrypt


def chpasswd_command(user: str, password: str) -> str:
    """Strongest hash the device's chpasswd knows: shadow-utils ``-c SHA512``, BusyBox ``-c sha512``, else its
    default (the output names which). printf is a shell builtin (bash, dash, BusyBox ash) and ``u`` a shell
    variable: the secret reaches chpasswd's stdin, never an argv. user and password are from [a-z0-9_-] and
    ALPHABET: nothing to quote."""
    feed = "printf '%s\\n' \"$u\" | chpasswd"
    return (f"u='{user}:{password}'; if ! command -v chpasswd >/dev/null 2>&1; then "
            f"echo 'chpasswd: not found' >&2; false; "
            f"elif {feed} -c SHA512 2>/dev/null; then echo {HASH_MARK}SHA512; "
            f"elif {feed} -c sha512 2>/dev/null; then echo {HASH_MARK}sha512; "
            f"else {feed}; fi; r=$?; unset u; (exit $r)")


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
    hashes: dict[str, str] = {}  # user -> the hash kind the device keeps (shadow prefix or chpasswd method)
    for user in policy.users:
        again, proved = await _replace(ctx, data, user, login, hashes)
        if again:
            reused.append(user)
        if not proved and not ctx.dry_run:
            unproven.append(user)
    data["proved"] = not ctx.dry_run and not unproven
    detail = f"replaced the password of {', '.join(policy.users)}; kept in the vault"
    if unproven:
        detail += f" (the old password of {', '.join(unproven)} is not known, so only the new one was proven)"
    return StepOutcome(detail, {"users": list(policy.users), "vault": dict(data["vault"]), "proved": data["proved"],
                                "reused": reused, "old_unknown": unproven, "link": ctx.link.kind, "hash": hashes})


async def _replace(ctx: StepContext, data: dict[str, Any], user: str, login: Credentials,
                   hashes: dict[str, str]) -> tuple[bool, bool]:
    """Replace ``user``'s password: (reused this job's vault password, old refused and new accepted were proven)."""
    login_user = login.username or "root"
    device = ctx.job.device or ctx.job.facts.get("serial", "") or "device"
    name = vault_name(ctx.job.site, device, user, login_user)
    password, again = await _password_for(ctx, data, user, name, login)
    # Every password the account may have had: the profile's published ones and the one this run logged in with
    # (a resume that connected with the new one leaves only the published ones).
    olds = [f.password for f in ctx.profile.credentials.factory if f.user == user and f.password]
    if user == login_user and login.password:
        olds.append(login.password)
    olds = [p for p in dict.fromkeys(olds) if p != password]
    method = "-"
    if not (again and await _takes(ctx, user, password)):
        method = await _chpasswd(ctx, user, password, name)
    if user not in data["users"]:
        data["users"].append(user)
    if ctx.dry_run:
        return again, False
    if user == login_user:
        # Before the proof: over serial a proof login re-opens the working console with these.
        ctx.link.use_credentials(Credentials(user, password))
    try:
        proved = await _prove(ctx, user, olds, password, name)
        if method != "-":  # "-": the device already took it (a resume): its hash was checked then
            hashes[user] = await _prove_hash(ctx, user, password, method)
        return again, proved
    except (StepFailedError, AuthError):
        if user == login_user and login.password and login.password != password:
            ctx.link.use_credentials(login)  # what the device still takes, by all we know
        raise


async def _password_for(ctx: StepContext, data: dict[str, Any], user: str, name: str,
                        login: Credentials) -> tuple[str, bool]:
    """(password, True) when the vault holds one to keep using; else a new one, in the vault now.

    Kept: the one this job put there, or (not re-provisioning) one the device already takes, which a resume after a
    crash between the vault write and the job's save finds. A re-provisioning replaces the vault's password, so the
    one the device takes now is kept first as ``<name>-previous``: a chpasswd that then fails locks nobody out."""
    assert ctx.vault_put is not None
    kept = _vault_read(ctx, name, user) if ctx.vault_get is not None else None
    if kept and (data["vault"].get(user) == name or (
            not _reprovision(ctx) and await _takes(ctx, user, kept))):
        ctx.secrets.append(kept)
        data["vault"][user] = name
        return kept, True
    # Overwriting a vault entry: keep the password the device takes now (this connection's, else the entry's).
    on_login = (login.username or "root") == user and login.password
    working = (login.password if on_login else kept) if kept else ""
    password = generate_password(ctx.profile.credentials.length)
    ctx.secrets.append(password)
    try:
        if working:
            if working == kept:
                ctx.secrets.append(working)  # a generated one (a factory password is no secret, and short)
            ctx.vault_put(previous_name(name), working)  # the one the device takes now survives a failed change
        ctx.vault_put(name, password)  # atomic and fsynced BEFORE the device ever sees it
    except Exception as exc:  # VaultError, VaultLocked, OSError (a full disk): the device must not change
        raise StepRefusedError(f"The new password for {user} could not be kept in the vault ({exc}); nothing was "
                               "changed on the device.", UNLOCK_HINT) from exc
    data["vault"][user] = name
    ctx.save()  # the job names the entry on disk now: a resume reuses it, never makes a second one
    return password, False


def previous_name(name: str) -> str:
    """Where a re-provisioning keeps the password the device took before it (the CLI tries it to log in)."""
    return f"{name}-previous"


def _reprovision(ctx: StepContext) -> bool:
    identify = ctx.job.data.get("identify")
    return isinstance(identify, dict) and bool(identify.get("reprovision"))


def _vault_read(ctx: StepContext, name: str, user: str) -> str | None:
    assert ctx.vault_get is not None
    try:
        return ctx.vault_get(name)
    except Exception as exc:  # a vault locked since (VaultLocked) or unreadable: never make a second one
        raise StepRefusedError(f"The vault entry {name} (the password for {user}) cannot be read: {exc}.",
                               UNLOCK_HINT) from exc


async def _chpasswd(ctx: StepContext, user: str, password: str, name: str) -> str:
    """Tell the device; the hash method chpasswd was asked for ("SHA512", "sha512", or "" for its default)."""
    result = await ctx.change(chpasswd_command(user, password), what=f"replace {user}'s password",
                              secrets=[password], timeout=TIMEOUT)
    if not result.ok:
        why = ctx.mask((result.stderr or result.stdout).strip())[-200:] or f"exit {result.exit_code}"
        hint = "Check the account exists on the device, then run the provisioning again."
        if "chpasswd: not found" in why:
            hint = ("The device has no chpasswd: install it (shadow-utils or BusyBox with chpasswd), or set the "
                    "password by hand and put it in the vault, then run the provisioning again.")
        previous = previous_name(name)
        raise StepFailedError(f"The device did not take {user}'s new password (chpasswd: {why}). The new "
                              f"password is in the vault as {name}; the one the device took before, if known, as "
                              f"{previous}.", hint)
    marks = [line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith(HASH_MARK)]
    return marks[-1] if marks else ""


async def _prove_hash(ctx: StepContext, user: str, password: str, method: str) -> str:
    """The kind of hash the device keeps: its shadow prefix when readable, else proven not DES (which keeps only 8
    characters: a login with the 9th changed must be refused). StepFailedError for a weak one."""
    if ctx.dry_run:
        return method
    shown = await ctx.read(f"sed -n 's/^{user}:\\(\\$[0-9a-z]*\\$\\).*/\\1/p' /etc/shadow 2>/dev/null", TIMEOUT)
    prefix = shown.stdout.strip() if shown.ok else ""
    if prefix.startswith(STRONG_HASHES):
        return prefix
    if prefix:  # $1$ (md5) or another old one
        raise StepFailedError(f"The device keeps {user}'s password with a weak hash ({prefix}).",
                              "Configure strong hashes on the device (ENCRYPT_METHOD SHA512 in /etc/login.defs, or "
                              "a chpasswd that knows -c SHA512), then run the provisioning again.")
    if len(password) > 8 and not method:  # chpasswd took -c SHA512/sha512: it hashed with that itself
        ninth = "a" if password[8] != "a" else "b"
        if await ctx.link.try_login(Credentials(user, password[:8] + ninth + password[9:]), TIMEOUT):
            raise StepFailedError(f"The device accepts {user}'s new password with its 9th character changed: it "
                                  "keeps only 8 characters (a DES hash).",
                                  "Configure strong hashes on the device (ENCRYPT_METHOD SHA512 in /etc/login.defs), "
                                  "then run the provisioning again.")
    return method or "not DES"


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


__all__ = ["ALPHABET", "chpasswd_command", "credentials_step", "generate_password", "previous_name", "vault_name"]
