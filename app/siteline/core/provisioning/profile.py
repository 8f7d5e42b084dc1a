"""A provisioning profile: what a device of one family needs at install time (TOML, one file per family).

The dataclasses below are the contract the steps code against. ``load_profile`` (this module) reads and
checks a TOML file: every error names the key and says what is expected; nothing half-read is returned.
Firewall allow-list entries are addresses or networks, never host names: an install is often offline, and
a name cannot be resolved into a rule without DNS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from siteline.core.device.posture import CheckKey
from siteline.core.errors import SitelineError


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
