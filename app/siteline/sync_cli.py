"""`siteline outbox sync`: send what waits in the outbox to the control plane, then exit.

    siteline outbox sync                                   # the broker in control-plane.json
    siteline outbox sync --broker mqtts://cp.example:8883 --ca ca.pem --username jane

Exits 0 once the broker acknowledged every item that may go (printing "sent N items (B bytes) in S s"),
else non-zero with the reason. The password comes from SITELINE_CONTROL_PLANE_PASSWORD, or from the vault
entry the settings name (the vault must be unlocked: `siteline vault unlock`); nothing prompts.
The saved login and TLS files belong to the saved broker: a --broker elsewhere gets only what the command
line gives it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

from siteline.core.errors import SitelineError
from siteline.core.outbox.envelope import default_technician
from siteline.core.outbox.link import Endpoint, SyncConfigError, installation_client_id, parse_url
from siteline.core.outbox.settings import ControlPlaneSettings, SettingsError, default_path, load_settings
from siteline.core.outbox.store import Outbox, OutboxError
from siteline.core.outbox.sync import DrainResult, Syncer, SyncError

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH, EXIT_OUTBOX, EXIT_HELD, EXIT_REFUSED = 0, 2, 4, 5, 6, 7, 8
PASSWORD_ENV = "SITELINE_CONTROL_PLANE_PASSWORD"
EXIT_OF_KIND = {"unreachable": EXIT_UNREACHABLE, "timeout": EXIT_UNREACHABLE, "auth": EXIT_AUTH,
                "config": EXIT_USAGE, "outbox": EXIT_OUTBOX}
SYNC_EPILOG = f"""exit codes:
  0  the broker acknowledged everything that was waiting
  2  usage: no control plane set up, a bad URL or file, plain mqtt:// without --plain-ok
  4  unreachable: no broker, TLS failed, or not finished within --timeout
  5  authentication failed: user name/password or client certificate refused
  6  outbox error: the outbox cannot be read or written
  7  held: items wait because this month's data budget is nearly used up
  8  refused: items failed for good (the broker refused them, e.g. not authorised by its ACL, or an outbox
     row no longer matches its hash); see `siteline outbox list --state failed`, fix, `siteline outbox retry`
The password comes from {PASSWORD_ENV}, or from the vault entry the settings name (unlock the vault first).
With --broker naming another host:port than the saved broker, the saved user name, password, client
certificate, key and CA are not used: give --username, --cert, --key, --ca again for that broker."""
# The saved settings' fields that hold a login or TLS files: they belong to the saved broker only.
LOGIN_FIELDS = ("username", "password_ref", "key_passphrase_ref", "ca", "cert", "key")


def add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = SYNC_EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--broker", metavar="URL",
                        help="mqtts://host:8883 instead of the settings' broker; if its host:port differs, the "
                             "saved login and TLS files are not sent to it (give them again)")
    parser.add_argument("--plain-ok", action="store_true", help="allow plain mqtt:// (sends the outbox unencrypted)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="give up after this long (default 120)")
    parser.add_argument("--technician", help="technician id (default: the settings', else the OS user name)")
    parser.add_argument("--ca", help="CA certificate (PEM) that signed the broker's certificate")
    parser.add_argument("--cert", help="client certificate (PEM)")
    parser.add_argument("--key", help="client key (PEM)")
    parser.add_argument("--username", help="user name at the broker")


def _settings(args: argparse.Namespace) -> ControlPlaneSettings:
    """The saved settings with the command line's overrides; SyncConfigError/SettingsError when unusable."""
    return _settings_and_dropped(args)[0]


def _same_broker(saved_url: str, endpoint: Endpoint) -> bool:
    try:
        saved = parse_url(saved_url, True)
    except SyncConfigError:
        return False
    return (saved.host.lower(), saved.port, saved.tls) == (endpoint.host.lower(), endpoint.port, endpoint.tls)


def _settings_and_dropped(args: argparse.Namespace) -> tuple[ControlPlaneSettings, list[str]]:
    """:func:`_settings`, and the saved login fields left out because --broker names another broker (or the
    same one without TLS): the saved login must not go to whatever broker the command line names."""
    saved = load_settings()
    broker = getattr(args, "broker", None)
    if saved is None and not broker:
        raise SyncConfigError(f"No control plane is set up (no {default_path()}).",
                              "Set it up in Siteline's control-plane settings, or give --broker mqtts://host:8883.")
    plain_ok = bool(getattr(args, "plain_ok", False)) or (saved is not None and saved.allow_plain and not broker)
    url = broker or (saved.url if saved is not None else "")
    endpoint = parse_url(url, plain_ok)  # refuses plain mqtt:// with the words that say how to allow it
    changes: dict[str, Any] = {"url": url, "allow_plain": plain_ok}
    dropped: list[str] = []
    if saved is not None and broker and not _same_broker(saved.url, endpoint):
        dropped = [name for name in LOGIN_FIELDS if getattr(saved, name)]
        changes.update(dict.fromkeys(LOGIN_FIELDS))
    for name in ("technician", "ca", "cert", "key", "username"):
        value = getattr(args, name, None)
        if value:
            changes[name] = value
    dropped = [name for name in dropped if changes.get(name) is None]
    if saved is not None:
        return dataclasses.replace(saved, **changes), dropped
    changes.setdefault("technician", default_technician())
    return ControlPlaneSettings(**changes), dropped


def _secret(env: str | None, ref: str | None, what: str) -> str | None:
    """From the environment, else from the running vault agent (an unlocked vault); never a prompt."""
    if env and os.environ.get(env):
        return os.environ[env]
    if not ref:
        return None
    name = ref.removeprefix("vault:")
    from siteline.core.vault.agent import get_secret  # only when a secret is named: the vault is not loaded else

    value = get_secret(name)
    if value is None:
        raise SyncConfigError(f"The {what} is in the vault entry '{name}', and the vault is locked.",
                              "Unlock it first (siteline vault unlock)" + (f", or set {env}." if env else "."))
    return value


def _report(result: DrainResult, held_message: str) -> int:
    print(f"sent {result.sent} items ({result.bytes} bytes) in {result.seconds:.1f} s")
    if result.failed:
        why = "; ".join(f"{reason} ({n})" for reason, n in result.failures[:3])
        more = f"; and {len(result.failures) - 3} other reason(s)" if len(result.failures) > 3 else ""
        print(f"siteline: {result.failed} items failed for good: {why}{more}. They stay in the outbox as failed: "
              "see `siteline outbox list --state failed`, fix the cause (the broker's ACL, say), then "
              "`siteline outbox retry`.", file=sys.stderr)
    if result.held:
        print(f"siteline: {result.held} items wait: {held_message}", file=sys.stderr)
    if result.failed:
        return EXIT_REFUSED
    if result.held:
        return EXIT_HELD
    return EXIT_OK


async def _drain(outbox: Outbox, settings: ControlPlaneSettings, password: str | None,
                 key_passphrase: str | None, timeout: float) -> int:
    # Its own client id: with the GUI's, the broker would drop the GUI's link (and the GUI this one) at every connect.
    cid = f"{installation_client_id(settings.technician)}-cli"
    syncer = Syncer(outbox, settings, password=password, key_passphrase=key_passphrase, client_id=cid)
    try:
        result = await syncer.drain(timeout=timeout)
    finally:
        await syncer.close()
    return _report(result, syncer.status.message)


def sync_command(args: argparse.Namespace) -> int:
    try:
        settings, dropped = _settings_and_dropped(args)
        if dropped:
            print(f"siteline: --broker names another broker than the saved one: the saved {', '.join(dropped)} "
                  "are not used for it (give them on the command line if that broker needs them).",
                  file=sys.stderr)
        password = _secret(PASSWORD_ENV, settings.password_ref, "control plane's password")
        passphrase = _secret(None, settings.key_passphrase_ref, "client key's passphrase")
    except (SyncConfigError, SettingsError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    timeout = float(getattr(args, "timeout", 120.0) or 120.0)
    try:
        with Outbox.open() as outbox:
            return asyncio.run(_drain(outbox, settings, password, passphrase, timeout))
    except SyncError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_OF_KIND.get(exc.kind, EXIT_UNREACHABLE)
    except OutboxError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_OUTBOX
    except SitelineError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("siteline: interrupted; what was not acknowledged stays in the outbox.", file=sys.stderr)
        return 130
