"""One URL form for every device.

    serial:///dev/ttyUSB0?baud=115200          serial://COM3?baud=9600 (the Win32 device form of COM12 reads as COM12)
    ssh://root@10.0.0.5:22?jump=ops@bastion:2222
    mqtt://127.0.0.1:1883/edge/site-a/gw1      mqtts://broker:8883/edge/site-a/gw1

Targets come from people typing in a hurry and from files on disk, so parsing is strict,
every rejection says what is wrong, and ``str(target)`` gives back a canonical URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from siteline.core.errors import TargetError

Scheme = Literal["serial", "ssh", "mqtt", "mqtts"]
SCHEMES: tuple[Scheme, ...] = ("serial", "ssh", "mqtt", "mqtts")
DEFAULT_PORTS = {"ssh": 22, "mqtt": 1883, "mqtts": 8883}
MAX_URL_LENGTH = 2048
DEFAULT_BAUD = 115200
_WINDOWS_COM = re.compile(r"^COM[1-9][0-9]{0,2}$", re.IGNORECASE)
# The Win32 device namespace form (\\.\COM12), which Windows tools print for COM10 and up: the same port as COM12
# (pyserial adds the prefix itself when it opens a port above COM8).
_WIN32_DEVICE_COM = re.compile(r"^\\\\\.\\(COM[1-9][0-9]{0,2})$", re.IGNORECASE)
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")
_TOPIC_LEVEL = re.compile(r"^[^#+\x00/]+$")
SERIAL_OPTIONS = {"baud", "parity", "bytesize", "stopbits", "flow", "login"}
SSH_OPTIONS = {"jump", "key", "keepalive"}
# TLS files, skip the name check, MQTT version, seconds between keepalives
MQTT_OPTIONS = {"ca", "cert", "key", "insecure", "v", "keepalive"}


@dataclass(frozen=True)
class Jump:
    """One bastion hop: ``user@host:port``."""

    host: str
    port: int = 22
    user: str | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"


@dataclass(frozen=True)
class Target:
    scheme: Scheme
    host: str = ""
    port: int | None = None
    user: str | None = None
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)
    jumps: tuple[Jump, ...] = ()

    @property
    def is_serial(self) -> bool:
        return self.scheme == "serial"

    @property
    def is_ssh(self) -> bool:
        return self.scheme == "ssh"

    @property
    def is_mqtt(self) -> bool:
        return self.scheme in ("mqtt", "mqtts")

    @property
    def device(self) -> str:
        """The serial device path or COM name."""
        return self.path

    @property
    def autobaud(self) -> bool:
        """``baud=auto``: the transport tries the common rates and keeps the one that reads as text."""
        return self.options.get("baud", "").lower() == "auto"

    @property
    def baud(self) -> int:
        """The configured rate; with ``baud=auto`` the first rate tried (115200), until one is detected."""
        return DEFAULT_BAUD if self.autobaud else int(self.options.get("baud", str(DEFAULT_BAUD)))

    @property
    def keepalive(self) -> float | None:
        """``?keepalive=SECONDS`` (SSH, MQTT): how often an idle link is checked; None = the transport's default."""
        raw = self.options.get("keepalive")
        return float(raw) if raw is not None else None

    @property
    def topic(self) -> str:
        """The MQTT device topic prefix, e.g. ``edge/site-a/gw1``."""
        return self.path

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme, 0)

    @property
    def label(self) -> str:
        """A short human name: the last path element, or the host."""
        if self.is_serial:
            return self.path.rsplit("/", 1)[-1]
        if self.is_mqtt:
            return self.path.rsplit("/", 1)[-1]
        return self.host

    def __str__(self) -> str:
        query = dict(self.options)
        if self.jumps:
            query["jump"] = ",".join(str(j) for j in self.jumps)
        qs = ("?" + urlencode(sorted(query.items()), safe="@:,/")) if query else ""
        if self.is_serial:
            if _WINDOWS_COM.match(self.path):
                return f"serial://{self.path}{qs}"
            return f"serial://{quote(self.path, safe='/-_.+:')}{qs}"
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        host = self.host
        port = f":{self.port}" if self.port is not None else ""
        path = f"/{self.path}" if self.path else ""
        return f"{self.scheme}://{user}{host}{port}{path}{qs}"


def parse_target(text: str) -> Target:
    """Parse a target URL, or raise :class:`TargetError` saying what is wrong with it."""
    if not isinstance(text, str):
        raise TargetError("A target must be text.")
    text = text.strip()
    if not text:
        raise TargetError("The target is empty.", "Type a URL such as ssh://root@10.0.0.5 or serial:///dev/ttyUSB0.")
    if len(text) > MAX_URL_LENGTH:
        raise TargetError(f"The target is {len(text)} characters long; at most {MAX_URL_LENGTH} are accepted.")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise TargetError("The target contains control characters.", "Retype it without pasting terminal output.")
    scheme, sep, _rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise TargetError(
            f"'{text[:40]}' does not start with a known scheme.",
            "Start it with serial://, ssh://, mqtt:// or mqtts://.",
        )
    if scheme == "serial":
        return _parse_serial(text)
    if scheme == "ssh":
        return _parse_ssh(text)
    return _parse_mqtt(text, "mqtts" if scheme == "mqtts" else "mqtt")


def _query(raw: str, allowed: set[str], what: str) -> dict[str, str]:
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=bool(raw))
    except ValueError as exc:
        raise TargetError(f"The options after '?' cannot be read: {raw[:60]}") from exc
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise TargetError(f"'{key}' is not an option for {what} targets.", f"Known options: {known}.")
        options[key] = value
    if "keepalive" in options:
        _check_keepalive(options["keepalive"])
    return options


def _check_keepalive(value: str) -> None:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 3600:
        raise TargetError(
            f"'{value[:20]}' is not a keepalive interval.", "Give seconds between 1 and 3600, e.g. keepalive=30."
        )


def _port(raw: str | None, what: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise TargetError(f"'{raw}' is not a valid {what} port.", "Use a number from 1 to 65535.")
    return int(raw)


def _check_host(host: str) -> str:
    if not host:
        raise TargetError("The target names no host.", "Add the device's address, e.g. ssh://root@10.0.0.5.")
    if not _HOST.match(host):
        raise TargetError(f"'{host[:60]}' is not a valid host name or address.")
    return host


def _check_user(user: str | None) -> str | None:
    if user is None:
        return None
    user = unquote(user)
    if not _USER.match(user):
        raise TargetError(f"'{user[:40]}' is not a valid user name.")
    return user


def _urlsplit(text: str) -> SplitResult:
    """urlsplit, with its ValueError (unbalanced IPv6 brackets) and silent '#fragment' made TargetErrors."""
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise TargetError(f"'{text[:60]}' has a malformed IPv6 address: {exc}.", "Write it as [2001:db8::1].") from exc
    if "#" in text:
        raise TargetError("A target may not contain '#'.", "MQTT wildcards and URL fragments are not device names.")
    return parts


def _split_netloc(netloc: str) -> tuple[str | None, str, str | None]:
    user: str | None = None
    if "@" in netloc:
        user, _, netloc = netloc.rpartition("@")
        if ":" in user:
            raise TargetError(
                "Passwords do not belong in a target URL.",
                "Remove the ':password' part; Siteline asks for it and keeps it in the vault.",
            )
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise TargetError(f"'{netloc}' has an unclosed IPv6 bracket.")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            raise TargetError(f"'{netloc}' is not a valid address.")
    else:
        host, _, port_text = netloc.partition(":")
        port = port_text if _ else None
    return user, host, port


def _parse_serial(text: str) -> Target:
    body = text[len("serial://") :]
    path, _, raw_query = body.partition("?")
    path = unquote(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise TargetError("The serial port path contains control characters.", "Retype the port name.")
    if not path:
        raise TargetError("The serial target names no port.", "Use serial:///dev/ttyUSB0 or serial://COM3.")
    win32 = _WIN32_DEVICE_COM.match(path)
    if win32:
        path = win32.group(1)
    if _WINDOWS_COM.match(path):
        path = path.upper()
    elif not path.startswith("/"):
        raise TargetError(
            f"'{path[:60]}' is not a serial port path.",
            "Use an absolute path such as serial:///dev/ttyUSB0 (three slashes), or COM3 on Windows.",
        )
    elif ".." in path.split("/"):
        raise TargetError("A serial port path may not contain '..'.")
    options = _query(raw_query, SERIAL_OPTIONS, "serial")
    if options.get("baud", "").lower() == "auto":
        options["baud"] = "auto"  # canonical spelling, so str(target) round-trips
    elif "baud" in options and (not options["baud"].isdigit() or not 50 <= int(options["baud"]) <= 4_000_000):
        raise TargetError(f"'{options['baud']}' is not a baud rate.", "Common rates: 9600, 57600, 115200, or auto.")
    return Target(scheme="serial", path=path, options=options)


def _parse_ssh(text: str) -> Target:
    parts = _urlsplit(text)
    if parts.path not in ("", "/"):
        raise TargetError("An ssh target has no path.", "Use ssh://user@host:port.")
    user, host, port_text = _split_netloc(parts.netloc)
    options = _query(parts.query, SSH_OPTIONS, "ssh")
    jumps: tuple[Jump, ...] = ()
    if "jump" in options:
        jumps = tuple(_parse_jump(j) for j in options.pop("jump").split(",") if j)
    return Target(
        scheme="ssh",
        host=_check_host(host),
        port=_port(port_text, "SSH"),
        user=_check_user(user),
        options=options,
        jumps=jumps,
    )


def _parse_jump(text: str) -> Jump:
    user, host, port_text = _split_netloc(text.strip())
    port = _port(port_text, "bastion")
    return Jump(host=_check_host(host), port=port or 22, user=_check_user(user))


def _parse_mqtt(text: str, scheme: Scheme) -> Target:
    parts = _urlsplit(text)
    user, host, port_text = _split_netloc(parts.netloc)
    topic = unquote(parts.path).strip("/")
    if not topic:
        raise TargetError(
            "An MQTT target needs the device's topic.", "Use mqtt://broker:1883/edge/<site>/<device>."
        )
    if not all(_TOPIC_LEVEL.match(level) for level in topic.split("/")):
        raise TargetError(f"'{topic[:60]}' is not a valid device topic.", "Topics may not contain '+', '#' or '//'.")
    return Target(
        scheme=scheme,
        host=_check_host(host),
        port=_port(port_text, "MQTT"),
        user=_check_user(user),
        path=topic,
        options=_query(parts.query, MQTT_OPTIONS, "MQTT"),
    )
