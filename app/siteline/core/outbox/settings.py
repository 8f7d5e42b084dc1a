"""How Siteline reaches the control plane: broker URL, technician id, TLS files, budget — never a secret.

Kept in ``paths.config_dir()/control-plane.json``. Passwords and key passphrases live in the vault; the
file names the vault entries (``password_ref``). A settings object is checked when it is made, so a
bad one never reaches the sync loop; every refusal says what to change.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from siteline import paths
from siteline.core.atomic import write_atomic
from siteline.core.errors import SitelineError
from siteline.core.outbox.envelope import default_technician, technician_problem
from siteline.core.redact import safe_url

FILE_NAME = "control-plane.json"
FILE_FORMAT = "siteline-control-plane"
FILE_VERSION = 1
MAX_FILE_BYTES = 64 * 1024
MIN_BUDGET_BYTES = 64 * 1024  # below this not even a connect and one batch fit in a month
MAX_BUDGET_BYTES = 10**15
PROTOCOLS = ("5", "3.1.1")
VAULT_PREFIX = "vault:"
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")
_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?$|secret|token|private_?key$", re.IGNORECASE)
_PLAIN_REFUSED = "plain MQTT sends your data readable by anyone on the path; use mqtts:// or tick 'allow unencrypted'"


class SettingsError(SitelineError):
    """Control-plane settings that cannot be used (or a settings file that cannot be read).

    ``field`` names the setting at fault (a ControlPlaneSettings field name) when there is one, so a
    dialog can put the message beside it.
    """

    def __init__(self, message: str, hint: str = "", field: str | None = None) -> None:
        super().__init__(message, hint)
        self.field = field


@dataclass(frozen=True)
class ControlPlaneSettings:
    url: str  # mqtts://host:8883 (mqtt:// only when the user chose it: allow_plain=True)
    technician: str
    allow_plain: bool = False
    ca: str | None = None  # CA bundle (PEM file); None: the system's trust store
    cert: str | None = None  # client certificate (PEM), may hold the key too
    key: str | None = None  # client key (PEM) when not inside ``cert``
    username: str | None = None
    password_ref: str | None = None  # vault entry name holding the password (never the password)
    key_passphrase_ref: str | None = None  # vault entry name holding the client key's passphrase
    metered: bool = False
    monthly_budget_bytes: int | None = None
    hold_low_priority_at: float = 0.9  # fraction of the budget after which LOW items wait
    protocol: str = "5"  # "5" or "3.1.1"

    def __post_init__(self) -> None:
        _check_types(self)
        _check_url(self.url, self.allow_plain)
        problem = technician_problem(self.technician)
        if problem:
            raise SettingsError(
                problem[0].upper() + problem[1:] + ".",
                "Change the technician id in the control-plane settings.",
                field="technician",
            )
        _check_tls(self)
        _check_budget(self)
        if self.protocol not in PROTOCOLS:
            raise SettingsError(
                f"MQTT protocol {self.protocol!r} is not supported.", 'Use "5" or "3.1.1".', field="protocol"
            )

    @property
    def tls(self) -> bool:
        return self.url.lower().startswith("mqtts://")

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").strip("[]")

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


def _check_types(s: ControlPlaneSettings) -> None:
    for name, kind in (("url", str), ("technician", str), ("protocol", str)):
        if not isinstance(getattr(s, name), kind):
            raise SettingsError(f"The setting {name!r} must be text.", "Fix the control-plane settings.", field=name)
    for name in ("allow_plain", "metered"):
        if not isinstance(getattr(s, name), bool):
            raise SettingsError(
                f"The setting {name!r} must be true or false.", "Fix the control-plane settings.", field=name
            )
    for name in ("ca", "cert", "key", "username", "password_ref", "key_passphrase_ref"):
        value = getattr(s, name)
        if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > 4096):
            raise SettingsError(
                f"The setting {name!r} must be non-empty text or absent.", "Fix or remove it.", field=name
            )
        if isinstance(value, str) and any(ord(c) < 32 for c in value):
            raise SettingsError(f"The setting {name!r} contains control characters.", "Type it again.", field=name)
    for name in ("password_ref", "key_passphrase_ref"):
        value = getattr(s, name)
        if isinstance(value, str) and value.startswith(VAULT_PREFIX):
            raise SettingsError(
                f"The setting {name!r} should be the vault entry name without 'vault:'.",
                f"Use {value[len(VAULT_PREFIX) :]!r}.",
                field=name,
            )


def _check_url(url: str, allow_plain: bool) -> None:
    if url != url.strip() or any(c.isspace() for c in url):
        raise SettingsError(f"The broker URL {safe_url(url)!r} contains spaces.", "Remove them.", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SettingsError(
            f"The broker URL {safe_url(url)!r} cannot be read ({exc}).",
            "Write mqtts://host:8883.",
            field="url",
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("mqtts", "mqtt"):
        raise SettingsError(
            f"The broker URL {safe_url(url)!r} is not an MQTT URL.", "Write mqtts://host:8883.", field="url"
        )
    if parts.password is not None:
        raise SettingsError(
            "The broker URL holds a password; Siteline keeps passwords only in the vault.",
            "Remove it from the URL, put it in the vault, and set password_ref to the entry name.",
            field="url",
        )
    if parts.username is not None:
        raise SettingsError(
            "The broker URL holds a user name.", "Remove it from the URL and set 'username'.", field="url"
        )
    if not parts.hostname or not _HOST.match(parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc):
        raise SettingsError(
            f"The broker URL {safe_url(url)!r} has no valid host name.", "Write mqtts://host:8883.", field="url"
        )
    if port == 0:
        raise SettingsError("The broker port cannot be 0.", "Use 8883 for mqtts:// (1883 for mqtt://).", field="url")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SettingsError(
            f"The broker URL {safe_url(url)!r} has a path or options.",
            "Give only mqtts://host:port; TLS files, user and protocol are separate settings.",
            field="url",
        )
    if scheme == "mqtt" and not allow_plain:
        raise SettingsError(f"Refused {safe_url(url)!r}: {_PLAIN_REFUSED}.", field="url")


def _check_tls(s: ControlPlaneSettings) -> None:
    if not s.tls and (s.ca or s.cert or s.key):
        raise SettingsError(
            "TLS files are set but the URL is plain mqtt://.", "Use mqtts:// or remove the TLS files.", field="url"
        )
    if s.key and not s.cert:
        raise SettingsError(
            "A client key is set without a client certificate.", "Set 'cert' too, or remove 'key'.", field="key"
        )
    if s.key_passphrase_ref and not (s.key or s.cert):
        raise SettingsError(
            "A key passphrase is set without a client key.",
            "Set 'cert'/'key', or remove it.",
            field="key_passphrase_ref",
        )
    if s.password_ref and not s.username:
        raise SettingsError("A password entry is set without a user name.", "Set 'username' too.", field="username")


def _check_budget(s: ControlPlaneSettings) -> None:
    budget = s.monthly_budget_bytes
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise SettingsError(
            "The monthly data budget must be a whole number of bytes.",
            "Fix or remove it.",
            field="monthly_budget_bytes",
        )
    if budget is not None and not MIN_BUDGET_BYTES <= budget <= MAX_BUDGET_BYTES:
        raise SettingsError(
            f"A monthly data budget of {budget:,} bytes is not sensible.",
            f"Give between {MIN_BUDGET_BYTES:,} bytes and {MAX_BUDGET_BYTES:,} bytes, or no budget.",
            field="monthly_budget_bytes",
        )
    hold = s.hold_low_priority_at
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0.0 < hold <= 1.0:
        raise SettingsError(
            f"hold_low_priority_at {hold!r} is not a fraction of the budget.",
            "Give a number above 0 and up to 1.",
            field="hold_low_priority_at",
        )


def default_path() -> Path:
    return paths.config_dir() / FILE_NAME


def load_settings(path: Path | None = None) -> ControlPlaneSettings | None:
    """The saved settings; None when none were saved. A bad or newer file is refused and left as it is."""
    path = default_path() if path is None else Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"Cannot read {path}: {exc.strerror}.", "Check the file's permissions.") from None
    if len(data) > MAX_FILE_BYTES:
        raise SettingsError(f"{path} is larger than {MAX_FILE_BYTES} bytes.", _REDO)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SettingsError(f"{path} is not valid JSON.", _REDO) from None
    return _from_doc(doc, path)


_REDO = "The file was left as it is; fix it, or move it away and set up the control plane again."


def _from_doc(doc: Any, path: Path) -> ControlPlaneSettings:
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise SettingsError(f"{path} is not a Siteline control-plane settings file.", _REDO)
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SettingsError(f"{path} has no valid version number.", _REDO)
    if version > FILE_VERSION:
        raise SettingsError(
            f"{path} was written by a newer Siteline (settings version {version}; this one reads {FILE_VERSION}).",
            "Update Siteline; the file was left as it is.",
        )
    body = {k: v for k, v in doc.items() if k not in ("format", "version")}
    secrets = sorted(k for k in body if _SECRET_KEY.search(k))
    if secrets:
        raise SettingsError(
            f"{path} holds {', '.join(secrets)}: Siteline never keeps a secret in its settings.",
            "Delete it from the file, put the secret in the vault and name the entry in password_ref.",
        )
    known = {f.name for f in fields(ControlPlaneSettings)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise SettingsError(
            f"{path} has settings this Siteline does not know: {', '.join(unknown)[:300]}.",
            "It may come from a newer Siteline: update, or remove those settings. The file was left as it is.",
        )
    for required in ("url", "technician"):
        if required not in body:
            raise SettingsError(f"{path} lacks the {required!r} setting.", _REDO)
    try:
        return ControlPlaneSettings(**body)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc.message}", exc.hint, exc.field) from None


def save_settings(settings: ControlPlaneSettings, path: Path | None = None) -> None:
    """Write ``settings`` atomically (temp file, fsync, rename): a power cut leaves the old file or the new."""
    path = default_path() if path is None else Path(path)
    doc: dict[str, Any] = {"format": FILE_FORMAT, "version": FILE_VERSION}
    doc.update({k: v for k, v in asdict(settings).items() if v is not None})
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise SettingsError(f"Cannot save {path}: {exc.strerror}.", "Check free space and permissions.") from None


def current_technician(path: Path | None = None) -> str:
    """Who is recorded as acting: the settings' technician id, else the OS user's (unreadable settings too)."""
    try:
        settings = load_settings(path)
    except SettingsError:
        settings = None
    return settings.technician if settings is not None else default_technician()
