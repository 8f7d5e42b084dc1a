"""The Posture probe: one round trip reads the security measures and the device's clock.

The commands run as marker-separated sections (``siteline.api.run_sections``), each with its exit
status, so a tool the device lacks (status 127) makes its check "unknown" instead of failing the probe.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping

from siteline.api import (
    MAX_ROUND_TRIP,
    Clock,
    DeviceContext,
    ParseError,
    Posture,
    ProbeKind,
    Result,
    Unavailable,
    run_sections,
    split_sections,
)
from siteline.api import Section as RawSection
from siteline_posture.checks import (
    NO_FILE,
    Section,
    check_certificate,
    check_clock_sync,
    check_firewall,
    check_luks,
    check_root_readonly,
    check_ssh,
)
from siteline_posture.parsers import parse_epoch

TIMEOUT = 30.0
DEFAULT_CERTIFICATE = "/etc/ssl/device.crt"
_SSHD_KEYS = "passwordauthentication|kbdinteractiveauthentication|challengeresponseauthentication|usepam|" \
             "authenticationmethods"


def commands(certificate_path: str | None) -> list[tuple[str, str]]:
    """(section, POSIX sh command) pairs; busybox ash runs them too."""
    parts = [
        # The clock first: it is then read as close as possible to the start of the round trip.
        ("clock", "date -u +%s.%N 2>/dev/null || date -u +%s"),
        ("mounts", "cat /proc/mounts 2>/dev/null || mount 2>/dev/null"),
        ("lsblk", "lsblk -J -o NAME,TYPE,FSTYPE,MOUNTPOINT 2>/dev/null"),
        ("cryptsetup", "if command -v cryptsetup >/dev/null 2>&1; then for _sl_n in $(ls /dev/mapper 2>/dev/null); "
                       "do [ \"$_sl_n\" = control ] || cryptsetup status \"$_sl_n\" 2>/dev/null; done; true; "
                       "else (exit 127); fi"),
        ("iptables", "iptables -S OUTPUT 2>/dev/null"),
        ("nft", "nft -j list ruleset 2>/dev/null || nft list ruleset 2>/dev/null"),
        # Only the settings the check reads: `sshd -T` prints a hundred lines, and cellular data is metered.
        ("sshd", "_sl_o=$($(command -v sshd || echo /usr/sbin/sshd) -T 2>/dev/null); _sl_r=$?; "
                 f"printf '%s\\n' \"$_sl_o\" | grep -iE '^({_SSHD_KEYS}) '; (exit $_sl_r)"),
        ("sshd_config", "[ \"$_sl_r\" = 0 ] || cat /etc/ssh/sshd_config.d/*.conf /etc/ssh/sshd_config 2>/dev/null "
                        "| grep -vE '^[[:space:]]*(#|$)'"),
        ("dropbear", "for _sl_p in $(pidof dropbear 2>/dev/null); do "
                     "echo \"cmdline: $(tr '\\0' ' ' < /proc/$_sl_p/cmdline)\"; done; "
                     "cat /etc/default/dropbear /etc/config/dropbear 2>/dev/null"),
        ("ntp", "timedatectl show -p NTPSynchronized 2>/dev/null || timedatectl status 2>/dev/null "
                "|| chronyc tracking 2>/dev/null"),
    ]
    if certificate_path is not None:
        path = shlex.quote(certificate_path)
        # `ls -d`, not the shell's `[ -e ]`: a tool, so a device that maps its files (the simulator) answers too.
        parts.append(("certificate", f"if ls -d {path} >/dev/null 2>&1; then openssl x509 -enddate -noout -in {path} "
                                     f"2>/dev/null; else echo '{NO_FILE}'; fi"))
    return parts


def clock_from(section: Section, before: float, after: float) -> Clock:
    """The device's time against the midpoint of the laptop's before and after the round trip."""
    if after < before:
        before, after = after, before  # the laptop's clock stepped back: keep the span positive
    midpoint, half = (before + after) / 2.0, (after - before) / 2.0
    try:
        device_time: float | None = parse_epoch(section.text)
        problems: tuple[str, ...] = ()
    except ParseError as exc:
        device_time, problems = None, (f"could not read the device's clock: {exc.message}",)
    return Clock(laptop_time=midpoint, uncertainty_seconds=half, device_time=device_time, raw=section.text,
                 problems=problems)


def posture_from_sections(raw: Mapping[str, RawSection], before: float, after: float, *,
                          certificate_path: str | None = DEFAULT_CERTIFICATE, warn_days: float = 30.0,
                          text: str = "") -> Posture | Unavailable:
    if not any(s.exit_code is not None or s.stdout for s in raw.values()):
        return Unavailable("posture", "the device printed none of the posture sections (is its shell POSIX sh?)",
                           text)
    sections = {name: Section(s.stdout, 127 if s.missing else s.exit_code) for name, s in raw.items()}

    def get(name: str) -> Section:
        return sections.get(name, Section())  # a section not asked for reads as empty, with no status

    clock = clock_from(get("clock"), before, after)
    checks = (
        check_luks(get("mounts"), get("lsblk"), get("cryptsetup")),
        check_root_readonly(get("mounts")),
        check_firewall(get("iptables"), get("nft")),
        check_ssh(get("sshd"), get("sshd_config"), get("dropbear")),
        check_certificate(get("certificate"), certificate_path, clock, warn_days),
        check_clock_sync(get("ntp"), clock),
    )
    return Posture(checks=checks, clock=clock, problems=clock.problems, raw=text)


def posture_from_output(stdout: str, before: float, after: float, *, certificate_path: str | None = DEFAULT_CERTIFICATE,
                        warn_days: float = 30.0, stderr: str = "") -> Posture | Unavailable:
    """The snapshot from the round trip's output (what ``collect`` does after the command ran)."""
    raw = split_sections(commands(certificate_path), Result(0, stdout, stderr))
    return posture_from_sections(raw, before, after, certificate_path=certificate_path, warn_days=warn_days,
                                 text=stdout)


class PostureProbe:
    """Settings: ``certificate_path`` (None: skip that check with a reason) and ``warn_days`` before expiry."""

    name = "posture"
    kind: ProbeKind = "posture"

    def __init__(self, certificate_path: str | None = DEFAULT_CERTIFICATE, warn_days: float = 30.0) -> None:
        self.certificate_path = certificate_path
        self.warn_days = warn_days

    async def collect(self, ctx: DeviceContext) -> Posture | Unavailable:
        before = time.time()  # wall clock on purpose: it is compared with the device's wall clock
        # Some 2,700 characters of script: in several round trips, so a serial console can type each line.
        raw = await run_sections(ctx, commands(self.certificate_path), TIMEOUT, max_chars=MAX_ROUND_TRIP)
        after = time.time()
        text = "\n".join(f"$ {s.command}\n{s.stdout}" for s in raw.values())
        return posture_from_sections(raw, before, after, certificate_path=self.certificate_path,
                                     warn_days=self.warn_days, text=text)
