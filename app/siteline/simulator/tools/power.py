"""reboot, poweroff, halt, shutdown, init/telinit: power requests for the DEVICE (never the host)."""

from __future__ import annotations

from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out

QUIET_FLAGS = ("-f", "--force", "-n", "--no-sync", "-w", "--wtmp-only", "--no-wall", "-p", "-i", "now")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    if tool in ("init", "telinit"):
        return _init(tool, argv, state)
    if tool == "shutdown":
        return _shutdown(argv, state)
    action = "reboot" if tool == "reboot" or "--reboot" in argv else "poweroff"
    unknown = [a for a in argv if a not in (*QUIET_FLAGS, "--reboot", "--halt", "-P", "--poweroff")]
    if unknown:
        return fail(f"{tool}: unrecognized option '{unknown[0]}'")
    # The device notices the request, drops every way in, and reboots (or stays off until started again).
    state.request_reboot(action)
    return 0


def _init(tool: str, argv: list[str], state: DeviceState) -> int:
    if len(argv) != 1:
        return fail(f"{tool}: too {'many' if argv else 'few'} arguments.\nUsage: {tool} RUNLEVEL")
    level = argv[0]
    if level == "0":
        state.request_reboot("poweroff")
    elif level == "6":
        state.request_reboot("reboot")
    elif level not in ("1", "2", "3", "4", "5", "s", "S", "q", "Q", "u", "U"):
        return fail(f"{tool}: Unknown runlevel '{level}'")
    return 0


def _shutdown(argv: list[str], state: DeviceState) -> int:
    action, when, warn_only = "poweroff", "+1", False
    for arg in argv:
        if arg in ("-r", "--reboot"):
            action = "reboot"
        elif arg in ("-h", "-P", "--poweroff", "-H", "--halt"):
            action = "poweroff"
        elif arg == "-c":
            out("")  # nothing is scheduled on the device: cancelling succeeds quietly, as systemd's does
            return 0
        elif arg in ("-k",):
            warn_only = True
        elif arg in ("--no-wall", "-f", "-F", "-n"):
            continue
        elif arg.startswith("-"):
            return fail(f"shutdown: unrecognized option '{arg}'")
        elif arg == "now" or arg.startswith("+") or ":" in arg:
            when = "+0" if arg == "now" else arg
        # anything else is the wall message
    if warn_only:
        return 0
    if when not in ("+0", "0"):
        # systemd would wait; the simulated device acts at once, and says when it was asked to.
        out(f"Shutdown scheduled for {when}, acting now on the simulated device.\n")
    state.request_reboot(action)
    return 0
