"""What the flash job reads from the device: its slots, its network path, free space, which boot it is in, health.

The slots and network pictures come from the installed plugins' probes (the same ones the device page uses),
found through the plugin host, so the job reads the device exactly as the Slots and Network tabs do.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from functools import lru_cache

from siteline.core.device.network import Network
from siteline.core.device.slots import Slot, Slots
from siteline.core.errors import SitelineError
from siteline.core.flash.job import HealthCheck
from siteline.core.plugin_api import DeviceContext, HealthSpec, Probe
from siteline.core.plugins import PluginHost, load_plugins
from siteline.core.transports.base import Result

log = logging.getLogger(__name__)

READ_TIMEOUT = 30.0
BOOT_TOLERANCE = 1.0  # seconds: two readings of the same boot's start from uptime differ by the link's delay


class DeviceReadError(SitelineError):
    """The device could not be read (the message says what it printed or why)."""


@lru_cache(maxsize=1)
def _host() -> PluginHost:
    return load_plugins()


def health_specs() -> list[HealthSpec]:
    """The device-family health checks the installed plugins offer."""
    return [c.item for c in _host().health_checks()]


def probe_for(kind: str) -> Probe | None:
    """The first installed probe of ``kind`` ("slots", "network")."""
    found = _host().probes(kind)
    return found[0].item if found else None


@dataclass
class Reader:
    ctx: DeviceContext
    slots_probe: Probe | None = None
    network_probe: Probe | None = None
    last_slots: Slots | None = None  # the latest reading: what a recovery hint can name when the device is gone

    async def run(self, command: str, timeout: float = READ_TIMEOUT) -> Result:
        return await self.ctx.run(command, timeout)

    async def slots(self) -> Slots:
        probe = self.slots_probe or probe_for("slots")
        if probe is None:
            raise DeviceReadError("no slots probe is installed (the siteline_slots plugin is missing or disabled)",
                                "Enable the slots plugin (Settings > Plugins) and try again.")
        found = await probe.collect(self.ctx)
        if not isinstance(found, Slots):
            reason = getattr(found, "reason", None) or "the device printed nothing Siteline could read"
            raise DeviceReadError(f"the device's A/B slots cannot be read: {reason}",
                                "Check that RAUC or the U-Boot tools (fw_printenv) are installed on the device.")
        self.last_slots = found
        return found

    async def network(self) -> Network | None:
        probe = self.network_probe or probe_for("network")
        if probe is None:
            return None
        found = await probe.collect(self.ctx)
        return found if isinstance(found, Network) else None

    async def free_kib(self, path: str) -> int | None:
        """Available KiB on the filesystem holding ``path`` (``df -P -k``), None when it cannot be told."""
        result = await self.run(f"df -P -k {shlex.quote(path)}")
        lines = [ln.split() for ln in result.stdout.splitlines() if ln.strip()]
        if result.exit_code != 0 or len(lines) < 2:
            return None
        fields = lines[-1]
        # POSIX output: Filesystem 1024-blocks Used Available Capacity Mounted-on (a long name may wrap).
        numbers = [f for f in fields if f.isdigit()]
        return int(numbers[2]) if len(numbers) >= 3 else None

    async def boot_mark(self) -> str | None:
        """Which boot this is: the kernel's boot id, else the boot's start time from /proc/uptime."""
        result = await self.run("cat /proc/sys/kernel/random/boot_id 2>/dev/null; cat /proc/uptime")
        lines = [ln.strip() for ln in result.stdout.splitlines() if ln.strip()]
        for line in lines:
            if len(line) == 36 and line.count("-") == 4:
                return f"id:{line}"
        for line in lines:
            try:
                return f"start:{time.time() - float(line.split()[0]):.1f}"
            except (ValueError, IndexError):
                continue
        return None

    async def health(self, check: HealthCheck) -> tuple[bool, str]:
        """(healthy, what failed or "healthy: ..." in words); every part of the check is run."""
        failed: list[str] = []
        passed: list[str] = []
        for unit in check.units:
            result = await self.run(f"systemctl is-active {shlex.quote(unit)}")
            state = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"exit {result.exit_code}"
            (passed if result.exit_code == 0 else failed).append(f"{unit} {state}")
        if check.control_plane:
            if not check.control_plane_command:
                failed.append("control plane: no command to check it is set for this device family")
            else:
                result = await self.run(check.control_plane_command)
                (passed if result.ok else failed).append(f"control plane {'reached' if result.ok else 'not reached'}"
                                                         f"{'' if result.ok else _said(result)}")
        if check.command:
            result = await self.run(check.command)
            (passed if result.ok else failed).append(f"`{check.command}` exited {result.exit_code}"
                                                     f"{'' if result.ok else _said(result)}")
        if failed:
            return False, "unhealthy: " + "; ".join(failed)
        return True, "healthy" + (": " + "; ".join(passed) if passed else " (it came back and answers)")


def _said(result: Result) -> str:
    text = " ".join(f"{result.stdout} {result.stderr}".split())
    return f" ({text[:160]})" if text else ""


def rebooted_since(before: str | None, now: str | None) -> bool | None:
    """Whether the device booted between two ``boot_mark`` readings; None when it cannot be told."""
    if not before or not now or before.split(":")[0] != now.split(":")[0]:
        return None
    if before.startswith("id:"):
        return before != now
    try:
        return float(now[6:]) > float(before[6:]) + BOOT_TOLERANCE
    except ValueError:
        return None


def other_slot(slots: Slots, booted: Slot) -> Slot | None:
    """The A/B partner of the booted slot (same class, a bootname, not booted)."""
    return next((s for s in slots.slots if s.bootname and not s.booted and s.slot_class == booted.slot_class), None)


def label(slot: Slot | None) -> str:
    return (slot.bootname or slot.name) if slot is not None else "?"


def attempts_words(slot: Slot | None) -> str:
    if slot is None or slot.attempts_left is None:
        return "attempts left unknown"
    n = slot.attempts_left
    return f"{n} attempt{'' if n == 1 else 's'} left"


def is_primary(slots: Slots, slot: Slot) -> bool:
    return slot.primary or slots.primary in (slot.name, slot.bootname)
