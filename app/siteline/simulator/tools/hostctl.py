"""hostnamectl, timedatectl and date: the device's name and clock (an offset kept in its state dir)."""

from __future__ import annotations

import os
import re
import subprocess
import time

from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools import system
from siteline.simulator.tools.common import fail, out

CLOCK_FILE = "clock.json"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    if tool in ("date", "timedatectl"):
        # A probe reads the clock first: a device made before the posture stand-ins gets their files now.
        from siteline.simulator.tools.storage import provision

        provision(state)
    return {"hostnamectl": hostnamectl, "timedatectl": timedatectl, "date": date}[tool](argv, state)


def _clock(state: DeviceState) -> dict[str, object]:
    return read_json(state.root / "admin" / CLOCK_FILE)


def device_now(state: DeviceState) -> float:
    offset = _clock(state).get("offset", 0.0)
    return time.time() + (float(offset) if isinstance(offset, int | float) else 0.0)


def _set_clock(state: DeviceState, **values: object) -> None:
    (state.root / "admin").mkdir(exist_ok=True)
    update_json(state.root, state.root / "admin" / CLOCK_FILE, lambda d: d.update(values))


def hostnamectl(argv: list[str], state: DeviceState) -> int:
    args = [a for a in argv if not a.startswith("-")]
    if args[:1] in ([], ["status"]):
        out(f"   Static hostname: {state.hostname()}\n         Icon name: computer\n"
            f"        Machine ID: {_read(state, '/etc/machine-id')}\n"
            f"           Boot ID: {state.device().get('boot_id')}\n"
            "  Operating System: Northwind Edge OS (kirkstone)\n            Kernel: Linux 5.15.71-nwedge\n"
            "      Architecture: arm64\n")
        return 0
    if args[0] == "hostname" and len(args) == 1:
        out(state.hostname() + "\n")
        return 0
    if args[0] in ("set-hostname", "hostname") and len(args) == 2:
        return system.hostname([args[1]], state)
    return fail(f"Unknown command verb {args[0]}." if args[0] not in ("set-hostname", "hostname")
                else "Too few arguments.")


def _read(state: DeviceState, path: str) -> str:
    mapped = system.device_path(state, path)
    try:
        return mapped.read_text(encoding="utf-8").strip() if mapped is not None else ""
    except OSError:
        return ""


def timedatectl(argv: list[str], state: DeviceState) -> int:
    args = [a for a in argv if not a.startswith("-")]
    clock = _clock(state)
    if args[:1] in ([], ["status"]):
        now = device_now(state)
        zone = str(clock.get("timezone", "UTC"))
        out(f"               Local time: {time.strftime('%a %Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}\n"
            f"           Universal time: {time.strftime('%a %Y-%m-%d %H:%M:%S UTC', time.gmtime(now))}\n"
            f"                Time zone: {zone}\n"
            f"System clock synchronized: {'yes' if clock.get('ntp', True) else 'no'}\n"
            f"              NTP service: {'active' if clock.get('ntp', True) else 'inactive'}\n"
            "          RTC in local TZ: no\n")
        return 0
    verb, rest = args[0], args[1:]
    if verb == "show":
        return _show(argv, state)
    if verb == "set-time" and len(rest) == 1:
        return _set_time(state, rest[0], "timedatectl")
    if verb == "set-timezone" and len(rest) == 1 and re.fullmatch(r"[A-Za-z0-9_+\-/]{1,64}", rest[0]):
        _set_clock(state, timezone=rest[0])
        return 0
    if verb == "set-ntp" and len(rest) == 1 and rest[0] in ("true", "false", "yes", "no", "1", "0"):
        _set_clock(state, ntp=rest[0] in ("true", "yes", "1"))
        return 0
    if verb == "list-timezones":
        out("Etc/UTC\nEurope/Berlin\nEurope/London\nUTC\n")
        return 0
    return fail(f"Unknown command verb {verb}." if verb not in ("set-time", "set-timezone", "set-ntp")
                else f"Failed to {verb.replace('-', ' ')}: invalid argument")


def _set_time(state: DeviceState, text: str, tool: str) -> int:
    """Parse ``text`` as date(1) does (the host's date, in UTC: a pure parse) and keep the offset."""
    real = system.real_tool("date", state)
    if real is None:
        return fail(f"{tool}: the host has no date on PATH to parse '{text}'")
    parsed = subprocess.run([real, "-u", "-d", text, "+%s.%N"], capture_output=True, text=True, check=False,
                            env={**os.environ, "TZ": "UTC"})
    if parsed.returncode != 0:
        return fail(f"{tool}: invalid date '{text}'")
    target = float(parsed.stdout.strip())
    _set_clock(state, offset=target - time.time())
    state.log(f"Time has been changed to {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(target))}", "systemd")
    if tool == "date":
        out(time.strftime("%a %b %e %H:%M:%S UTC %Y", time.gmtime(target)) + "\n")
    return 0


def date(argv: list[str], state: DeviceState) -> int:
    for i, arg in enumerate(argv):
        if arg in ("-s", "--set") and i + 1 < len(argv):
            return _set_time(state, argv[i + 1], "date")
        if arg.startswith("--set="):
            return _set_time(state, arg.split("=", 1)[1], "date")
        if arg.startswith("-s") and len(arg) > 2:
            return _set_time(state, arg[2:], "date")
    real = system.real_tool("date", state)
    if real is None:
        return fail("date: the host has no date on PATH")
    explicit = any(a in ("-d", "-r", "--reference", "--file", "-f") or a.startswith(("--date", "--reference", "-d"))
                   for a in argv)
    offset = device_now(state) - time.time()
    extra = [] if explicit or abs(offset) < 0.5 else ["-d", f"@{device_now(state):.0f}"]
    os.execv(real, [real, *extra, *argv])


def show_properties(state: DeviceState) -> dict[str, str]:
    """``timedatectl show``'s properties, in its order."""
    clock = _clock(state)
    now = device_now(state)
    ntp = "yes" if clock.get("ntp", True) else "no"
    return {
        "Timezone": str(clock.get("timezone", "UTC")), "LocalRTC": "no", "CanNTP": "yes", "NTP": ntp,
        "NTPSynchronized": ntp, "TimeUSec": time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
        "RTCTimeUSec": time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
    }


def _show(argv: list[str], state: DeviceState) -> int:
    """``timedatectl show [-p NAME]... [--value] [-a]``."""
    wanted: list[str] = []
    for i, arg in enumerate(argv):
        if arg in ("-p", "--property") and i + 1 < len(argv):
            wanted += argv[i + 1].split(",")
        elif arg.startswith("--property="):
            wanted += arg.split("=", 1)[1].split(",")
        elif arg.startswith("-p") and len(arg) > 2:
            wanted += arg[2:].split(",")
    props = show_properties(state)
    value_only = "--value" in argv
    for name, value in props.items():
        if not wanted or name in wanted:
            out(f"{value}\n" if value_only else f"{name}={value}\n")
    return 0
