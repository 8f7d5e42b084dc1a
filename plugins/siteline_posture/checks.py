"""The posture verdicts: what the parsed output means, as pass / fail / unknown with the reason in words.

Each function takes what one or more commands printed (a :class:`Section`) and never raises: output it
cannot read makes the check "unknown" with the parser's reason, and unknown is never counted as a pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from siteline.api import CheckKey, CheckStatus, Clock, ParseError, PostureCheck
from siteline_posture.parsers import (
    BlockDev,
    Mount,
    OutputChain,
    parse_cryptsetup_status,
    parse_dropbear,
    parse_iptables_s,
    parse_lsblk_json,
    parse_mounts,
    parse_nft_json,
    parse_nft_text,
    parse_ntp_sync,
    parse_openssl_enddate,
    parse_sshd_config,
    parse_sshd_t,
)

MISSING = 127  # the shell's "command not found"
# Where edge images keep their persistent data, most specific first.
DATA_POINTS = ("/data", "/persist", "/mnt/data", "/var/lib", "/srv", "/home")


@dataclass(frozen=True)
class Section:
    """What one command printed on stdout, and its exit status (None when the output was cut short)."""

    text: str = ""
    status: int | None = None

    @property
    def missing(self) -> bool:
        return self.status == MISSING

    @property
    def empty(self) -> bool:
        return not self.text.strip()


def _check(key: CheckKey, status: CheckStatus, reason: str, *sections: Section) -> PostureCheck:
    return PostureCheck(key, status, reason, "\n".join(s.text for s in sections if s.text).strip())


def mount_for(path: str, mounts: tuple[Mount, ...]) -> Mount | None:
    """The mount a path lives on: the longest mount point that contains it (the last one when stacked)."""
    best: Mount | None = None
    for m in mounts:
        inside = path == m.point or path.startswith(m.point.rstrip("/") + "/")
        if inside and (best is None or len(m.point) >= len(best.point)):
            best = m
    return best


def check_root_readonly(mounts_section: Section) -> PostureCheck:
    try:
        mounts = parse_mounts(mounts_section.text)
    except ParseError as exc:
        return _check("root_readonly", "unknown", f"could not read the mounts: {exc.message}", mounts_section)
    root = mount_for("/", mounts)
    overlays = sorted(m.point for m in mounts if m.fstype == "overlay" and m.point != "/")
    writable = f"; writable parts through overlayfs: {', '.join(overlays)}" if overlays else ""
    if root is None:
        return _check("root_readonly", "unknown", "no mount for / in the mount table", mounts_section)
    if root.fstype in ("squashfs", "erofs", "cramfs") or root.read_only:
        return _check("root_readonly", "pass", f"/ is {root.fstype}, read-only{writable}", mounts_section)
    if root.fstype == "overlay":
        return _overlay_root(root, mounts, writable, mounts_section)
    return _check("root_readonly", "fail", f"/ is mounted read-write ({root.source}, {root.fstype}){writable}",
                  mounts_section)


def _overlay_root(root: Mount, mounts: tuple[Mount, ...], writable: str, section: Section) -> PostureCheck:
    # What matters is whether a write to / survives a reboot: it does when the upper layer is on a disk.
    options = dict(o.split("=", 1) for o in root.options if "=" in o)
    upper = mount_for(options.get("upperdir", ""), tuple(m for m in mounts if m.point != "/"))
    if upper is not None and upper.fstype in ("tmpfs", "ramfs"):
        return _check("root_readonly", "pass", f"/ is an overlay whose writes stay in RAM ({upper.point}, "
                      f"{upper.fstype}) and vanish at reboot{writable}", section)
    if upper is not None:
        return _check("root_readonly", "fail", f"/ is an overlay whose writes persist on {upper.point} "
                      f"({upper.fstype}){writable}", section)
    return _check("root_readonly", "unknown", "/ is an overlay and where its writes go could not be told", section)


def check_luks(mounts_section: Section, lsblk: Section, crypt: Section) -> PostureCheck:
    try:
        mounts = parse_mounts(mounts_section.text)
    except ParseError as exc:
        return _check("luks", "unknown", f"could not read the mounts: {exc.message}", mounts_section, lsblk, crypt)
    data = next((m for p in DATA_POINTS for m in mounts if m.point == p), None)
    if data is None:
        return _check("luks", "unknown", f"no data partition mounted at any of {', '.join(DATA_POINTS)}",
                      mounts_section, lsblk)
    sections = (mounts_section, lsblk, crypt)
    verdict = _luks_from_lsblk(data, lsblk) or _luks_from_cryptsetup(data, crypt)
    if verdict is not None:
        return _check("luks", verdict[0], verdict[1], *sections)
    if data.source.startswith("/dev/") and not data.source.startswith(("/dev/mapper/", "/dev/dm-")):
        # A dm-crypt volume is always mounted through device-mapper; a bare partition is not encrypted.
        return _check("luks", "fail", f"{data.point} is mounted straight from {data.source}, not through dm-crypt",
                      *sections)
    tools = "lsblk and cryptsetup are not installed" if lsblk.missing and crypt.missing else \
        "neither lsblk nor cryptsetup said what it is"
    return _check("luks", "unknown", f"{data.point} is on {data.source}; {tools}", *sections)


def _luks_from_lsblk(data: Mount, lsblk: Section) -> tuple[CheckStatus, str] | None:
    try:
        devices = parse_lsblk_json(lsblk.text)
    except ParseError:
        return None
    dev: BlockDev | None = next((d for d in devices if data.point in d.mountpoints), None)
    if dev is None:
        return None
    chain = (dev, *dev.ancestors)
    crypt = next((d for d in chain if d.type == "crypt"), None)
    if crypt is not None:
        luks = any(d.fstype == "crypto_LUKS" for d in chain)
        kind = "LUKS" if luks else "dm-crypt (not LUKS)"
        return ("pass" if luks else "fail", f"{data.point} is on {kind} volume {crypt.name}")
    return "fail", f"{data.point} is on {dev.name} ({dev.type or 'unknown type'}) with no encryption layer"


def _luks_from_cryptsetup(data: Mount, crypt: Section) -> tuple[CheckStatus, str] | None:
    name = data.source.removeprefix("/dev/mapper/")
    kind = parse_cryptsetup_status(crypt.text).get(name)
    if kind is None or name == data.source:
        return None
    if kind.upper().startswith("LUKS"):
        return "pass", f"{data.point} is on {kind} volume {name}"
    return "fail", f"{data.point} is on dm-crypt volume {name} of type {kind or 'unknown'}, not LUKS"


def output_chains(iptables: Section, nft: Section) -> tuple[list[OutputChain], list[str]]:
    chains: list[OutputChain] = []
    notes: list[str] = []
    for name, section in (("iptables", iptables), ("nft", nft)):
        if name == "nft" and section.empty and section.status == 0:
            chains.append(OutputChain("nft", "(empty ruleset)", "ACCEPT", 0, False))  # nothing filters at all
            continue
        if section.missing or section.empty:
            notes.append(f"{name} is not installed" if section.missing else f"{name} printed nothing"
                         + (f" (exit status {section.status}; listing rules needs root)" if section.status else ""))
            continue
        try:
            if name == "iptables":
                chains.append(parse_iptables_s(section.text))
            elif section.text.lstrip().startswith("{"):
                chains += parse_nft_json(section.text) or [OutputChain("nft", "(none)", "ACCEPT", 0, False)]
            else:
                chains += parse_nft_text(section.text) or [OutputChain("nft", "(none)", "ACCEPT", 0, False)]
        except ParseError as exc:
            notes.append(exc.message)
    return chains, notes


def check_firewall(iptables: Section, nft: Section) -> PostureCheck:
    chains, notes = output_chains(iptables, nft)
    # Every base chain on the output hook must accept a packet for it to leave: one that drops by default wins.
    dropping = [c for c in chains if c.drops_by_default]
    if dropping:
        c = dropping[0]
        allow = f"{c.accepts} allow rule{'s' if c.accepts != 1 else ''}" if c.accepts else "no allow rules"
        return _check("firewall_output", "pass", f"{c.source} {c.name}: policy DROP with {allow}", iptables, nft)
    if chains:
        names = ", ".join(f"{c.source} {c.name}" for c in chains)
        return _check("firewall_output", "fail", f"outgoing traffic is accepted by default ({names})", iptables, nft)
    return _check("firewall_output", "unknown", "; ".join(notes) or "no firewall output", iptables, nft)


def check_ssh(sshd_t: Section, config: Section, dropbear: Section | None = None) -> PostureCheck:
    dropbear = dropbear or Section()
    try:
        settings, origin = parse_sshd_t(sshd_t.text), "sshd -T"
    except ParseError:
        settings, origin = parse_sshd_config(config.text), "sshd_config"
        if not settings:
            return _check_dropbear(sshd_t, config, dropbear)
    methods = settings.get("authenticationmethods", "any")
    if methods != "any" and all("password" not in m and "keyboard" not in m for m in methods.split()):
        return _check("ssh_passwords", "pass", f"AuthenticationMethods {methods} ({origin})", sshd_t, config)
    # OpenSSH's defaults when a setting is absent: PasswordAuthentication yes, UsePAM no.
    password = settings.get("passwordauthentication", "yes")
    kbd = settings.get("kbdinteractiveauthentication", settings.get("challengeresponseauthentication", "yes"))
    pam = settings.get("usepam", "no")
    if password == "yes":
        given = "" if "passwordauthentication" in settings else " (not set: OpenSSH's default)"
        return _check("ssh_passwords", "fail", f"PasswordAuthentication yes{given} ({origin})", sshd_t, config)
    if kbd == "yes" and pam == "yes":
        return _check("ssh_passwords", "fail", f"PasswordAuthentication no, but keyboard-interactive through PAM "
                      f"can still ask for a password ({origin})", sshd_t, config)
    return _check("ssh_passwords", "pass", f"PasswordAuthentication no ({origin})", sshd_t, config)


def _check_dropbear(sshd_t: Section, config: Section, dropbear: Section) -> PostureCheck:
    try:
        off, origin = parse_dropbear(dropbear.text)
    except ParseError:
        why = "no OpenSSH sshd or dropbear found" if sshd_t.missing else \
            "neither `sshd -T`, sshd_config nor dropbear's settings could be read"
        return _check("ssh_passwords", "unknown", why, sshd_t, config, dropbear)
    if off:
        return _check("ssh_passwords", "pass", f"dropbear runs with -s: passwords refused ({origin})", dropbear)
    return _check("ssh_passwords", "fail", f"dropbear accepts passwords (no -s, {origin})", dropbear)


def check_certificate(cert: Section, path: str | None, clock: Clock | None, warn_days: float) -> PostureCheck:
    if path is None:
        return _check("certificate", "unknown", "no device certificate path is configured for this device")
    if cert.text.strip() == NO_FILE:
        return _check("certificate", "unknown", f"no certificate at {path} (set the path in the posture settings)",
                      cert)
    if cert.missing:
        return _check("certificate", "unknown", "openssl is not installed on the device", cert)
    try:
        not_after = parse_openssl_enddate(cert.text)
    except ParseError as exc:
        return _check("certificate", "unknown", f"{path}: {exc.message}", cert)
    # Judged by the laptop's clock: the device's own may be in 1970.
    now = clock.laptop_time if clock is not None else time.time()
    days = (not_after - now) / 86400.0
    until = time.strftime("%Y-%m-%d", time.gmtime(not_after))
    if days < 0:
        return _check("certificate", "fail", f"{path} expired on {until}", cert)
    if days < warn_days:
        return _check("certificate", "fail", f"{path} expires on {until}, in {days:.0f} days", cert)
    device_view = ""
    if clock is not None and clock.device_time is not None and clock.device_time > not_after:
        device_view = f"; but the device's own clock ({clock.describe()}) already sees it expired"
    return _check("certificate", "pass", f"{path} valid until {until} ({days:.0f} days){device_view}", cert)


NO_FILE = "siteline: no such file"


def check_clock_sync(ntp: Section, clock: Clock | None) -> PostureCheck:
    if clock is not None and clock.unset:
        return _check("clock_sync", "fail", f"{clock.describe()}: it has never been set since boot", ntp)
    detail = f"; {clock.describe()}" if clock is not None and clock.device_time is not None else ""
    try:
        synced, tool = parse_ntp_sync(ntp.text)
    except ParseError:
        why = "no timedatectl or chronyc (busybox ntpd does not report its state)" if ntp.missing or ntp.empty \
            else "timedatectl and chronyc printed no synchronisation state"
        return _check("clock_sync", "unknown", why + detail, ntp)
    if synced:
        return _check("clock_sync", "pass", f"synchronised ({tool}){detail}", ntp)
    return _check("clock_sync", "fail", f"not synchronised ({tool}){detail}", ntp)
