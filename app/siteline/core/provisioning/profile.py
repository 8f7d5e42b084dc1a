"""A provisioning profile: what a device of one family needs at install time (TOML, one file per family).

The dataclasses below are the contract the steps code against. ``load_profile`` (this module) reads and
checks a TOML file: every error names the key and says what is expected; nothing half-read is returned.
Firewall allow-list entries are addresses or networks, never host names: an install is often offline, and
a name cannot be resolved into a rule without DNS.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args, get_origin, get_type_hints

from siteline import paths
from siteline.core.device.posture import CheckKey
from siteline.core.errors import SitelineError
from siteline.resources import ResourceError, resource_root


class ProfileError(SitelineError):
    """A profile that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class FactoryLogin:
    user: str
    password: str  # the manual's public default ("root"/"root"), never a device's own secret


@dataclass(frozen=True)
class IdentityPolicy:
    name_template: str = "{serial}"  # the device's name: {serial} {serial_tail} {mac} {imei} {family}
    hostname_template: str = "{device}"  # {device} {site} {serial} {serial_tail} {mac}
    marker: str = "/etc/siteline/provisioned.json"  # on the device: written last; present = provisioned


@dataclass(frozen=True)
class CredentialPolicy:
    users: tuple[str, ...] = ("root",)  # accounts whose factory password is replaced
    factory: tuple[FactoryLogin, ...] = ()  # the family's published defaults, tried and proven refused after
    length: int = 24  # generated password length (letters and digits, no look-alikes)


@dataclass(frozen=True)
class CertificatePolicy:
    subject: str = "/CN={device}/OU={site}"  # openssl -subj form; {device} {site} {serial}
    key_type: str = "ec-p256"  # ec-p256 | ec-p384 | rsa-3072 | ed25519
    key_path: str = "/etc/siteline/device.key"
    csr_path: str = "/etc/siteline/device.csr"
    cert_path: str = "/etc/siteline/device.crt"
    chain_path: str = "/etc/siteline/ca-chain.pem"
    renew_days: float = 7.0  # a certificate closer than this to its end is reported for renewal
    # sha256 fingerprint of the CA certificate the device must trust (openssl x509 -noout -fingerprint -sha256);
    # set: a returned certificate not issued under that CA (found in its chain) is refused. '': not pinned.
    ca_sha256: str = ""


@dataclass(frozen=True)
class MqttClientSettings:
    broker: str = ""  # host name or address the device's agent connects to
    broker_ip: str = ""  # its address, for the firewall allow-list (empty: the broker field is an address)
    port: int = 8883
    client_id: str = "{site}-{device}"
    topics: dict[str, str] = field(default_factory=lambda: {
        "telemetry": "devices/{site}/{device}/telemetry",
        "commands": "devices/{site}/{device}/commands",
        "status": "devices/{site}/{device}/status"})
    config_path: str = "/etc/siteline/mqtt.json"


@dataclass(frozen=True)
class TelemetryPlan:
    data_plan_mib: float = 0.0  # the SIM's monthly plan; 0 = unmetered (use max(min_interval, default))
    share: float = 0.25  # of the plan that telemetry may use
    message_bytes: int = 600  # one telemetry message on the wire (payload + MQTT + TLS overhead)
    min_interval: int = 10  # seconds
    max_interval: int = 3600
    default_interval: int = 60  # unmetered


@dataclass(frozen=True)
class FirewallAllow:
    name: str  # "historian", "vendor VPN"
    address: str  # an IPv4/IPv6 address or network (CIDR)
    port: int
    proto: str = "tcp"  # tcp | udp


@dataclass(frozen=True)
class FirewallPolicy:
    control_plane: tuple[str, ...] = ()  # addresses/networks of the control plane: allowed on 443
    dns: bool = True  # udp+tcp 53
    ntp: bool = True  # udp 123
    dhcp: bool = True  # udp 67-68
    extra: tuple[FirewallAllow, ...] = ()
    deadman_seconds: float = 60.0  # the device reverts by itself unless Siteline confirms within this


@dataclass(frozen=True)
class PosturePolicy:
    required: tuple[CheckKey, ...] = ("firewall_output",)


@dataclass(frozen=True)
class Profile:
    name: str
    family: tuple[str, ...]  # RAUC compatible (or os-release ID) patterns this profile is for (fnmatch)
    description: str = ""
    identity: IdentityPolicy = field(default_factory=IdentityPolicy)
    credentials: CredentialPolicy = field(default_factory=CredentialPolicy)
    certificate: CertificatePolicy = field(default_factory=CertificatePolicy)
    mqtt: MqttClientSettings = field(default_factory=MqttClientSettings)
    telemetry: TelemetryPlan = field(default_factory=TelemetryPlan)
    firewall: FirewallPolicy = field(default_factory=FirewallPolicy)
    posture: PosturePolicy = field(default_factory=PosturePolicy)
    path: str = ""  # where it was read from
    sha256: str = ""  # of the file's bytes


# -- reading a profile ----------------------------------------------------------------------------------------
MAX_PROFILE_BYTES = 64 * 1024  # a profile is a page of settings; anything bigger is not one
KEY_TYPES = ("ec-p256", "ec-p384", "rsa-3072", "ed25519")
# The placeholders each template may use (values the steps know by then).
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "identity.name_template": frozenset({"serial", "serial_tail", "mac", "imei", "family"}),
    "identity.hostname_template": frozenset({"device", "site", "serial", "serial_tail", "mac"}),
    "certificate.subject": frozenset({"device", "site", "serial"}),
    "mqtt.client_id": frozenset({"device", "site", "serial", "serial_tail"}),
    "mqtt.topics": frozenset({"device", "site", "serial", "serial_tail"}),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*\.?")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SECTIONS: dict[str, type[Any]] = {
    "identity": IdentityPolicy, "credentials": CredentialPolicy, "certificate": CertificatePolicy,
    "mqtt": MqttClientSettings, "telemetry": TelemetryPlan, "firewall": FirewallPolicy, "posture": PosturePolicy}


class _BadError(Exception):
    """One key's problem: (key, what is wrong); load_profile turns it into a ProfileError naming the file."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


def load_profile(path: Path) -> Profile:
    """Read and check the TOML profile at ``path``; any problem is a ProfileError naming the key."""
    where = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"Cannot read the profile {where}: {exc.strerror or exc}.",
                           "Check the path (Siteline looks in its config folder's profiles/, then the examples)."
                           ) from exc
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{where} is larger than {MAX_PROFILE_BYTES // 1024} KiB: that is not a profile.",
                           "Give the path of a profile TOML file (see resources/profiles for examples).")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{where} is not UTF-8 text (byte {exc.start}).", "Save the profile as UTF-8 TOML.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where} is not valid TOML: {exc}.", "Fix the line it names; compare with the examples "
                           "in resources/profiles.") from exc
    try:
        profile = _profile(doc)
    except _BadError as bad:
        raise ProfileError(f"{where}: {bad}.", "Fix that key; every key is described in the example profiles "
                           "(resources/profiles).") from None
    return replace(profile, path=where, sha256=hashlib.sha256(raw).hexdigest())


def _profile(doc: dict[str, Any]) -> Profile:
    _known(doc, {"name", "family", "description", *_SECTIONS}, "")
    for key in ("name", "family"):
        if key not in doc:
            raise _BadError(key, "is missing: every profile names itself and the device family it is for")
    name = _want(doc.get("name"), str, "name")
    if not _NAME.fullmatch(name):
        raise _BadError("name", f"{name[:80]!r} is not a profile name (letters, digits, '.', '_' or '-', at most 64)")
    family = _want(doc.get("family"), tuple[str, ...], "family")
    if not family or any(not f.strip() for f in family):
        raise _BadError("family", "give at least one RAUC compatible or os-release ID pattern, such as 'nwedge-gw-*'")
    description = doc.get("description", "")
    parts = {section: _section(doc.get(section, {}), cls, section) for section, cls in _SECTIONS.items()}
    profile = Profile(name=name, family=family, description=_want(description, str, "description"), **parts)
    _check(profile)
    return profile


def _known(table: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise _BadError(full, f"unknown key (known here: {', '.join(sorted(allowed))})")


def _section(value: object, cls: type[Any], where: str) -> Any:
    """A dataclass from a TOML table: unknown keys refused, every value type-checked, defaults kept."""
    if not isinstance(value, dict):
        raise _BadError(where, f"must be a table ([{where}]), not {_kind(value)}")
    hints = get_type_hints(cls)
    _known(value, {f.name for f in fields(cls)}, where)
    for f in fields(cls):
        if f.name not in value and f.default is MISSING and f.default_factory is MISSING:
            raise _BadError(f"{where}.{f.name}", "is missing (every entry here needs it)")
    return cls(**{key: _want(item, hints[key], f"{where}.{key}") for key, item in value.items()})


def _want(value: object, kind: Any, key: str) -> Any:
    """``value`` checked against the type ``kind`` (str, int, float, bool, Literal, tuple[...], dict, dataclass)."""
    origin = get_origin(kind)
    if origin is tuple:
        if not isinstance(value, list):
            raise _BadError(key, f"must be a list, not {_kind(value)}")
        return tuple(_want(item, get_args(kind)[0], f"{key}[{n}]") for n, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _BadError(key, f"must be a table, not {_kind(value)}")
        return {k: _want(v, get_args(kind)[1], f"{key}.{k}") for k, v in value.items()}
    if origin is Literal:
        if value not in get_args(kind):
            raise _BadError(key, f"{str(value)[:40]!r} is not one of {', '.join(map(str, get_args(kind)))}")
        return value
    if is_dataclass(kind):
        return _section(value, cast(type[Any], kind), key)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _BadError(key, "must be a finite number")
        return float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise _BadError(key, f"must be {_kind_name(kind)}, not {_kind(value)}")
    if kind is str and _CONTROL.search(value) and not key.endswith("description"):
        raise _BadError(key, "contains a control character (a newline or tab): use plain text")
    return value


def _kind(value: object) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _kind_name(kind: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text (in quotes)"}
    return names.get(kind, str(kind))


def _check(p: Profile) -> None:
    """The checks beyond types: ranges, paths, templates, addresses."""
    _template(p.identity.name_template, "identity.name_template")
    _template(p.identity.hostname_template, "identity.hostname_template")
    _path(p.identity.marker, "identity.marker")
    _check_credentials(p.credentials)
    c = p.certificate
    _template(c.subject, "certificate.subject")
    if not c.subject.startswith("/") or "=" not in c.subject:
        raise _BadError("certificate.subject", "must be in openssl -subj form, such as '/CN={device}/OU={site}'")
    if c.key_type not in KEY_TYPES:
        raise _BadError("certificate.key_type", f"{c.key_type[:40]!r} is not one of {', '.join(KEY_TYPES)}")
    for key in ("key_path", "csr_path", "cert_path", "chain_path"):
        _path(getattr(c, key), f"certificate.{key}")
    _range(c.renew_days, 0.0, 365.0, "certificate.renew_days", low_open=True)
    if c.ca_sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", c.ca_sha256.replace(":", "")):
        raise _BadError("certificate.ca_sha256", "must be the CA certificate's SHA-256 fingerprint: 64 hex digits, "
                        "colons allowed (openssl x509 -in ca.pem -noout -fingerprint -sha256)")
    _check_mqtt(p.mqtt)
    _check_telemetry(p.telemetry)
    _check_firewall(p.firewall)


def _check_credentials(c: CredentialPolicy) -> None:
    if not c.users:
        raise _BadError("credentials.users", "name at least one account whose factory password is replaced")
    for n, user in enumerate(c.users):
        if not _USER.fullmatch(user):
            raise _BadError(f"credentials.users[{n}]", f"{user[:40]!r} is not a login name (a-z, 0-9, '_', '-')")
    for n, login in enumerate(c.factory):
        if not _USER.fullmatch(login.user):
            raise _BadError(f"credentials.factory[{n}].user", f"{login.user[:40]!r} is not a login name")
    _range(c.length, 16, 128, "credentials.length")


def _check_mqtt(m: MqttClientSettings) -> None:
    if not m.broker:
        raise _BadError("mqtt.broker", "is missing: give the host name or address the device's agent connects to")
    if _address(m.broker) is None and not _HOSTNAME.fullmatch(m.broker):
        raise _BadError("mqtt.broker", f"{m.broker[:80]!r} is neither a host name nor an IP address")
    if m.broker_ip and _address(m.broker_ip) is None:
        raise _BadError("mqtt.broker_ip", f"{m.broker_ip[:80]!r} is not an IP address (the firewall allows an address)")
    if not m.broker_ip and _address(m.broker) is None:
        raise _BadError("mqtt.broker_ip", f"is needed: the broker {m.broker!r} is a name, and the firewall "
                        "allow-list takes addresses (an install is often offline, without DNS)")
    _range(m.port, 1, 65535, "mqtt.port")
    _template(m.client_id, "mqtt.client_id", PLACEHOLDERS["mqtt.client_id"])
    if not m.topics:
        raise _BadError("mqtt.topics", "give at least the telemetry topic")
    for name, topic in m.topics.items():
        if not _NAME.fullmatch(name):
            raise _BadError(f"mqtt.topics.{name[:40]}", "a topic's key is a short name such as 'telemetry'")
        if not topic or "+" in topic or "#" in topic:
            raise _BadError(f"mqtt.topics.{name}",
                            f"{topic[:80]!r} must be a topic to publish on (no + or # wildcards)")
        _template(topic, f"mqtt.topics.{name}", PLACEHOLDERS["mqtt.topics"])
    _path(m.config_path, "mqtt.config_path")


def _check_telemetry(t: TelemetryPlan) -> None:
    _range(t.data_plan_mib, 0.0, 1e7, "telemetry.data_plan_mib")
    _range(t.share, 0.0, 1.0, "telemetry.share", low_open=True)
    _range(t.message_bytes, 16, 1_000_000, "telemetry.message_bytes")
    _range(t.min_interval, 1, 86_400, "telemetry.min_interval")
    _range(t.max_interval, t.min_interval, 30 * 86_400, "telemetry.max_interval")
    _range(t.default_interval, t.min_interval, t.max_interval, "telemetry.default_interval")


def _check_firewall(f: FirewallPolicy) -> None:
    for n, entry in enumerate(f.control_plane):
        _network(entry, f"firewall.control_plane[{n}]")
    for n, allow in enumerate(f.extra):
        key = f"firewall.extra[{n}]"
        if not allow.name.strip():
            raise _BadError(f"{key}.name", "give the rule a name a person recognises, such as 'historian'")
        _network(allow.address, f"{key}.address")
        _range(allow.port, 1, 65535, f"{key}.port")
        if allow.proto not in ("tcp", "udp"):
            raise _BadError(f"{key}.proto", f"{allow.proto[:20]!r} is not tcp or udp")
    _range(f.deadman_seconds, 5.0, 600.0, "firewall.deadman_seconds")


def _range(value: float, low: float, high: float, key: str, *, low_open: bool = False) -> None:
    if value < low or value > high or (low_open and value == low):
        shown = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise _BadError(key, f"{value:g} is out of range ({shown} and at most {high:g})")


def _path(value: str, key: str) -> None:
    if not value.startswith("/") or "/../" in f"{value}/" or value.endswith("/") or any(c in value for c in "'\"`$\\"):
        raise _BadError(key, f"{value[:80]!r} must be an absolute file path on the device, without '..' or quotes")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _network(text: str, key: str) -> None:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(text, strict=False)
            raise _BadError(key, f"{text!r} has host bits set: write {fixed} (the network) or "
                       f"{text.split('/')[0]}/{fixed.max_prefixlen} (that one address)") from None
        if _HOSTNAME.fullmatch(text) and not text.replace(".", "").isdigit():
            raise _BadError(key, f"{text[:80]!r} is a host name; the allow-list takes addresses or networks (CIDR) "
                       "because an install is often offline and a name cannot become a rule without DNS") from None
        raise _BadError(key, f"{text[:80]!r} is not an IP address or network (such as 203.0.113.10 or "
                   "198.51.100.0/24)") from None


def placeholders(template: str) -> set[str]:
    """The {names} in ``template``; ValueError for anything but plain names (no format specs, no attributes)."""
    names: set[str] = set()
    for _text, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}} "
                             "is not a plain {name} placeholder")
        names.add(name)
    return names


def _template(template: str, key: str, known: frozenset[str] | None = None) -> None:
    allowed = known if known is not None else PLACEHOLDERS[key]
    try:
        used = placeholders(template)
    except ValueError as exc:
        raise _BadError(key, f"{template[:80]!r}: {exc}") from None
    unknown = used - allowed
    if unknown:
        raise _BadError(key, f"unknown placeholder {{{sorted(unknown)[0]}}} (known here: "
                   f"{', '.join('{' + n + '}' for n in sorted(allowed))})")


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with its {placeholders} filled in; ProfileError for one ``values`` lacks."""
    try:
        used = placeholders(template)
    except ValueError as exc:
        raise ProfileError(f"The template {template[:80]!r} is unusable: {exc}.", "Fix it in the profile.") from None
    missing = sorted(used - set(values))
    if missing:
        raise ProfileError(f"The template {template[:80]!r} uses {{{missing[0]}}}, which is not known here.",
                           f"Use only {', '.join('{' + n + '}' for n in sorted(values))}.")
    return template.format_map({name: values[name] for name in used})


SECONDS_PER_MONTH = 30 * 86_400


def telemetry_interval(plan: TelemetryPlan) -> int:
    """Seconds between telemetry messages so they use ``share`` of the monthly data plan, clamped to the range.

    messages a month = plan bytes * share / message bytes; interval = 30 days / messages. An unmetered plan
    (0) gets the default interval."""
    if plan.data_plan_mib <= 0:
        return max(plan.min_interval, min(plan.max_interval, plan.default_interval))
    messages = plan.data_plan_mib * 1024 * 1024 * plan.share / plan.message_bytes
    interval = math.ceil(SECONDS_PER_MONTH / messages) if messages > 0 else plan.max_interval
    return max(plan.min_interval, min(plan.max_interval, interval))


def profile_folders(config: Path | None = None) -> list[Path]:
    """Where profiles are looked up by name: the technician's (<config>/profiles), then the examples."""
    folders = [(config if config is not None else paths.config_dir()) / "profiles"]
    with contextlib.suppress(ResourceError):
        folders.append(resource_root() / "profiles")
    return folders


def find_profile(name: str, config: Path | None = None) -> Path:
    """The profile file for ``name`` (a path, or a name looked up in <config>/profiles then the examples)."""
    given = Path(name)
    if given.suffix == ".toml" and (given.is_absolute() or len(given.parts) > 1 or given.is_file()):
        return given
    if not _NAME.fullmatch(given.stem):
        raise ProfileError(f"{name[:80]!r} is not a profile name or a .toml path.", "Give a name such as "
                           "nwedge-gw-imx8mm or a path to a profile file.")
    file = f"{given.stem}.toml"
    folders = profile_folders(config)
    for folder in folders:
        if (folder / file).is_file():
            return folder / file
    raise ProfileError(f"No profile named {given.stem!r} (looked in {', '.join(str(f) for f in folders)}).",
                       "Put your profile in the first folder, or give its path.")
