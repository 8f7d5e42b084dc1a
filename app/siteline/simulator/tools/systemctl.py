"""systemctl: is-active, is-enabled, status, start/stop/enable/disable, list-units, reboot (units in the state dir)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from siteline.simulator import slots
from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools import systemd_run
from siteline.simulator.tools.common import fail, out

DEFAULT_UNITS: dict[str, dict[str, Any]] = {
    "NetworkManager.service": {"description": "Network Manager", "active": True, "enabled": True},
    "ModemManager.service": {"description": "Modem Manager", "active": True, "enabled": True},
    "systemd-journald.service": {"description": "Journal Service", "active": True, "enabled": True},
    "sshd.service": {"description": "OpenSSH server daemon", "active": True, "enabled": True},
    "rauc.service": {"description": "Rauc Update Service", "active": True, "enabled": True},
    # Enabled as real RAUC images ship it: a healthy boot marks its slot good (disable it to drill rollbacks).
    "rauc-mark-good.service": {"description": "Rauc Good-marking Service", "active": True, "enabled": True},
    "chronyd.service": {"description": "NTP client/server", "active": True, "enabled": True},
    "mosquitto.service": {"description": "Mosquitto MQTT Broker", "active": False, "enabled": False},
    "edge-agent.service": {"description": "Northwind edge telemetry agent", "active": True, "enabled": True},
}
EXIT_INACTIVE, EXIT_NO_UNIT = 3, 4
MARK_GOOD_UNIT = "rauc-mark-good.service"
AGENT_UNIT = "edge-agent.service"
AGENT_PID = 412
# What edge-agent logs when it dies on an image built with [siteline-sim] healthy=false (health-check drills).
AGENT_FAILURE = ("FATAL: cannot load /etc/edge-agent/agent.toml: unsupported config schema 3 "
                 "(this build reads schema 2); exiting")


def unit_enabled(state: DeviceState, unit: str) -> bool:
    return bool(_units(state).get(_name(unit), {}).get("enabled"))


def set_enabled(state: DeviceState, unit: str, enabled: bool) -> int:
    """systemctl enable/disable UNIT (used by sim-scenario)."""
    return _change(state, "enable" if enabled else "disable", [_name(unit)], _units(state))


def _path(state: DeviceState) -> Path:
    (state.root / "admin").mkdir(exist_ok=True)
    return state.root / "admin" / "units.json"


def _units(state: DeviceState) -> dict[str, dict[str, Any]]:
    stored = read_json(_path(state))
    units = {**DEFAULT_UNITS, **{k: v for k, v in stored.items() if isinstance(v, dict)}}
    if not slots.booted_healthy(state.root, state.booted_slot()):
        # The booted image is a healthy=false drill image: its agent crashes at every start.
        units[AGENT_UNIT] = {**units[AGENT_UNIT], "active": False, "failed": True}
    return units


def _active_state(unit: dict[str, Any]) -> str:
    return "failed" if unit.get("failed") else "active" if unit.get("active") else "inactive"


def agent_failure_lines(state: DeviceState) -> list[tuple[str, str, int]]:
    """(message, unit, priority) journal lines of edge-agent failing at boot on a healthy=false image."""
    # A Type=notify service: it dies before READY=1, so its start job fails (and `systemctl start` says so).
    return [("Starting Northwind edge telemetry agent...", "systemd", 6), (AGENT_FAILURE, "edge-agent", 3),
            (f"{AGENT_UNIT}: Main process exited, code=exited, status=1/FAILURE", "systemd", 4),
            (f"{AGENT_UNIT}: Failed with result 'exit-code'.", "systemd", 4),
            ("Failed to start Northwind edge telemetry agent.", "systemd", 3)]


def log_boot_health(state: DeviceState) -> None:
    """At boot: journal what edge-agent did, so `journalctl -u edge-agent` explains a failed unit."""
    if slots.booted_healthy(state.root, state.booted_slot()):
        return
    for message, unit, priority in agent_failure_lines(state):
        state.log(message, unit, priority)


def _name(unit: str) -> str:
    return unit if "." in unit else f"{unit}.service"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    quiet = any(a in ("-q", "--quiet") for a in argv)
    args = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    if not args:
        return _list(state, flags)
    verb, names = args[0], [_name(a) for a in args[1:]]
    units = _units(state)
    if verb in ("reboot", "poweroff", "halt"):
        state.request_reboot("reboot" if verb == "reboot" else "poweroff")
        return 0
    if verb == "daemon-reload":
        return 0
    if verb == "list-units":
        return _list(state, flags)
    if verb == "list-timers":
        return _list_timers(state, "--no-legend" not in flags)
    if verb == "reset-failed":
        return 0
    transient = _transient(state, names)
    if verb == "stop" and transient:
        systemd_run.remove(state.root, transient)  # a transient timer stopped is gone, as in systemd
        names = [n for n in names if n not in transient]
        if not names:
            return 0
    if verb in ("is-active", "is-enabled", "status") and not names:
        return fail("Too few arguments.")
    if verb == "is-active":
        states = ["active" if n in transient else _active_state(units.get(n, {})) for n in names]
        if not quiet:
            out("".join(s + "\n" for s in states))
        return 0 if all(s == "active" for s in states) else EXIT_INACTIVE
    if verb == "is-enabled":
        return _is_enabled(units, names, quiet)
    if verb == "status":
        return _status(units, names, state)
    if verb in ("start", "stop", "restart", "enable", "disable", "try-restart", "reload"):
        return _change(state, verb, names, units)
    return fail(f"Unknown command verb {verb}.", 1)


def _transient(state: DeviceState, names: list[str]) -> list[str]:
    """The names that are transient timers (systemd-run --on-active), or the services they will start."""
    active = systemd_run.timers(state.root)
    return [n for n in names if n.endswith((".timer", ".service")) and n.rsplit(".", 1)[0] + ".timer" in active]


def _list_timers(state: DeviceState, legend: bool) -> int:
    now = time.time()
    rows = []
    for name, timer in sorted(systemd_run.timers(state.root).items()):
        due = float(timer.get("due", now))
        when = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(due))
        rows.append(f"{when:<28} {max(0.0, due - now):>6.0f}s left  {name:<40} {timer.get('service', '')}")
    if legend:
        out(f"{'NEXT':<28} {'LEFT':<12} {'UNIT':<40} ACTIVATES\n")
    out("".join(r + "\n" for r in rows))
    if legend:
        out(f"\n{len(rows)} timers listed.\n")
    return 0


def _is_enabled(units: dict[str, dict[str, Any]], names: list[str], quiet: bool) -> int:
    missing = [n for n in names if n not in units]
    if missing:
        return fail(f"Failed to get unit file state for {missing[0]}: No such file or directory", 1)
    states = ["enabled" if units[n].get("enabled") else "disabled" for n in names]
    if not quiet:
        out("".join(s + "\n" for s in states))
    return 0 if all(s == "enabled" for s in states) else 1


def _status(units: dict[str, dict[str, Any]], names: list[str], state: DeviceState) -> int:
    code = 0
    for n in names:
        unit = units.get(n)
        if unit is None:
            out(f"Unit {n} could not be found.\n")
            code = EXIT_NO_UNIT
            continue
        active = bool(unit.get("active"))
        dot = "●" if active else "×" if unit.get("failed") else "○"
        out(f"{dot} {n} - {unit.get('description', n)}\n"
            f"     Loaded: loaded (/lib/systemd/system/{n}; {'enabled' if unit.get('enabled') else 'disabled'}; "
            f"vendor preset: enabled)\n")
        out(_failed_status(state) if unit.get("failed") else
            f"     Active: {'active (running)' if active else 'inactive (dead)'}\n")
        code = code or (0 if active else EXIT_INACTIVE)
    return code


def _failed_status(state: DeviceState) -> str:
    """The rest of `systemctl status` for the crashed agent: its result, then its last journal lines."""
    booted_at = float(state.device().get("booted_at", time.time())) + 7.0
    since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(booted_at))
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(booted_at))
    host = state.hostname()
    journal = [f"{stamp} {host} {'systemd[1]' if unit == 'systemd' else f'edge-agent[{AGENT_PID}]'}: {m}"
               for m, unit, _ in agent_failure_lines(state)]
    return (f"     Active: failed (Result: exit-code) since {since}\n"
            f"    Process: {AGENT_PID} ExecStart=/usr/bin/edge-agent --config /etc/edge-agent/agent.toml "
            "(code=exited, status=1/FAILURE)\n"
            f"   Main PID: {AGENT_PID} (code=exited, status=1/FAILURE)\n        CPU: 182ms\n\n"
            + "".join(line + "\n" for line in journal))


def _change(state: DeviceState, verb: str, names: list[str], units: dict[str, dict[str, Any]]) -> int:
    missing = [n for n in names if n not in units]
    crashing = [n for n in names if units.get(n, {}).get("failed") and verb in ("start", "restart", "try-restart")]
    if crashing:
        for message, unit, priority in agent_failure_lines(state):
            state.log(message, unit, priority)
        return fail(f"Job for {crashing[0]} failed because the control process exited with error code.\n"
                    f'See "systemctl status {crashing[0]}" and "journalctl -xeu {crashing[0]}" for details.')
    if missing:
        action = {"enable": "enable", "disable": "disable"}.get(verb, verb)
        return fail(f"Failed to {action} unit: Unit file {missing[0]} does not exist." if verb in ("enable", "disable")
                    else f"Failed to {action} {missing[0]}: Unit {missing[0]} not found.", 5)

    def change(doc: dict[str, Any]) -> None:
        for n in names:
            unit = dict(units[n])
            if verb in ("start", "restart", "try-restart", "reload"):
                unit["active"] = True
            elif verb == "stop":
                unit["active"] = False
            else:
                unit["enabled"] = verb == "enable"
            doc[n] = unit

    update_json(state.root, _path(state), change)
    for n in names:
        desc = units[n].get("description", n)
        if verb in ("start", "restart"):
            state.log(f"Started {desc}.", "systemd")
        elif verb == "stop":
            state.log(f"Stopped {desc}.", "systemd")
    return 0


def _list(state: DeviceState, flags: list[str]) -> int:
    legend = "--no-legend" not in flags
    units = _units(state)
    wanted_state = next((f.split("=", 1)[1] for f in flags if f.startswith("--state=")), None)
    rows = []
    for n, u in sorted(units.items()):
        sub = "running" if u.get("active") else "failed" if u.get("failed") else "dead"
        active = _active_state(u)
        if wanted_state and wanted_state not in (active, sub):
            continue
        if active == "inactive" and "--all" not in flags and not wanted_state:
            continue
        rows.append(f"  {n:<40} loaded {active:<8} {sub:<7} {u.get('description', n)}")
    if legend:
        out(f"  {'UNIT':<40} LOAD   ACTIVE   SUB     DESCRIPTION\n")
    out("".join(r + "\n" for r in rows))
    if legend:
        out(f"\n{len(rows)} loaded units listed.\n")
    return 0
