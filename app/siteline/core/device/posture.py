"""The Posture snapshot: the measures a remote device must have, each pass / fail / unknown with the reason.

A check that could not be made is "unknown", and unknown never counts as a pass: a technician must see
that a measure was not verified, not a green tick. The device's clock is read in the same round trip,
because devices without a real-time clock boot in 1970 and every time they print is then wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Literal

CheckStatus = Literal["pass", "fail", "unknown"]
CheckKey = Literal["luks", "root_readonly", "firewall_output", "ssh_passwords", "certificate", "clock_sync",
                   "factory_credentials"]

# One line per check, shown beside it: why a technician should care.
WHY: dict[CheckKey, str] = {
    "luks": "A stolen or returned device must not give away its data and keys to whoever reads the flash.",
    "root_readonly": "A read-only root cannot be changed by an attacker or a crash; an update replaces it whole.",
    "firewall_output": "Dropping outgoing traffic except to known hosts stops a compromised device calling home.",
    "ssh_passwords": "Password logins can be guessed from the internet; keys cannot.",
    "certificate": "When the device certificate expires the device can no longer reach its control plane.",
    "clock_sync": "Certificates, logs and the timeline all need the right time; a wrong clock breaks TLS.",
    "factory_credentials": "Factory passwords are printed in manuals: anyone who reaches the device can log in.",
}

TITLES: dict[CheckKey, str] = {
    "luks": "Data partition encrypted (LUKS)",
    "root_readonly": "Root filesystem read-only",
    "firewall_output": "Outgoing traffic limited (OUTPUT policy DROP)",
    "ssh_passwords": "SSH password login disabled",
    "certificate": "Device certificate not near expiry",
    "clock_sync": "Clock synchronised",
    "factory_credentials": "Factory passwords refused",
}

# Before this the device's clock cannot be right: it has no real-time clock (or lost it) and has not
# synchronised since boot. 2000-01-01T00:00:00Z.
CLOCK_FLOOR = 946_684_800.0


@dataclass(frozen=True)
class PostureCheck:
    key: CheckKey
    status: CheckStatus
    reason: str  # in words: what was seen ("OUTPUT policy ACCEPT: any program may send anywhere")
    raw: str = ""  # what the device printed for this check, one click away

    @property
    def title(self) -> str:
        return TITLES[self.key]

    @property
    def why(self) -> str:
        return WHY[self.key]


@dataclass(frozen=True)
class Clock:
    """The device's clock against the laptop's, read at probe time.

    ``laptop_time`` is the midpoint of the laptop's clock before and after the command, so
    ``offset_seconds`` is known to within ``uncertainty_seconds`` (half the round trip).
    """

    laptop_time: float
    uncertainty_seconds: float
    device_time: float | None  # seconds since the epoch as the device printed it; None when unreadable
    raw: str = ""
    problems: tuple[str, ...] = ()

    @property
    def offset_seconds(self) -> float | None:
        """Device minus laptop: positive when the device is ahead."""
        return None if self.device_time is None else self.device_time - self.laptop_time

    @property
    def unset(self) -> bool:
        """True when the device's clock is before 2000 (typically 1970: no RTC and no time sync yet)."""
        return self.device_time is not None and self.device_time < CLOCK_FLOOR

    def describe(self) -> str:
        offset = self.offset_seconds
        if offset is None or self.device_time is None:
            return "device time unknown"
        if self.unset:
            return f"device clock says {_utc(self.device_time)}"
        return f"device clock {_words(offset)} (± {self.uncertainty_seconds:.2f} s)"


def _utc(seconds: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
    except (OverflowError, ValueError, OSError):  # a date the platform's C library cannot show
        return f"{seconds:.0f} s since 1970"


def _words(offset: float) -> str:
    size = abs(offset)
    if size < 1.0:
        return "within a second of this laptop's"
    unit = next((u for limit, u in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")) if size >= limit), "s")
    scale = {"d": 86400.0, "h": 3600.0, "min": 60.0, "s": 1.0}[unit]
    return f"{size / scale:.1f} {unit} {'ahead of' if offset > 0 else 'behind'} this laptop's"


@dataclass(frozen=True)
class Posture:
    checks: tuple[PostureCheck, ...]
    clock: Clock | None
    problems: tuple[str, ...] = ()  # what could not be read, in words
    raw: str = ""

    def check(self, key: CheckKey) -> PostureCheck | None:
        return next((c for c in self.checks if c.key == key), None)

    @property
    def passed(self) -> bool:
        """Every check passed; an unknown check is not a pass."""
        return bool(self.checks) and all(c.status == "pass" for c in self.checks)

    def with_check(self, check: PostureCheck) -> Posture:
        """This snapshot with ``check`` in place of the one with its key, or added at the end.

        The factory-password check runs only when asked, so it joins the probe's snapshot afterwards.
        """
        if self.check(check.key) is None:
            return replace(self, checks=(*self.checks, check))
        return replace(self, checks=tuple(check if c.key == check.key else c for c in self.checks))

    def counts(self) -> dict[CheckStatus, int]:
        result: dict[CheckStatus, int] = {"pass": 0, "fail": 0, "unknown": 0}
        for c in self.checks:
            result[c.status] += 1
        return result
