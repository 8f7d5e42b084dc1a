"""systemctl: is-active, is-enabled, status, start/stop/enable/disable, list-units, reboot (units in the state dir)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
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
    return {**DEFAULT_UNITS, **{k: v for k, v in stored.items() if isinstance(v, dict)}}


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
    if verb in ("is-active", "is-enabled", "status") and not names:
        return fail("Too few arguments.")
    if verb == "is-active":
        states = ["active" if units.get(n, {}).get("active") else "inactive" for n in names]
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
        dot = "●" if active else "○"
        out(f"{dot} {n} - {unit.get('description', n)}\n"
            f"     Loaded: loaded (/lib/systemd/system/{n}; {'enabled' if unit.get('enabled') else 'disabled'}; "
            f"vendor preset: enabled)\n"
            f"     Active: {'active (running)' if active else 'inactive (dead)'}\n")
        code = code or (0 if active else EXIT_INACTIVE)
    return code


def _change(state: DeviceState, verb: str, names: list[str], units: dict[str, dict[str, Any]]) -> int:
    missing = [n for n in names if n not in units]
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
        sub = "running" if u.get("active") else "dead"
        active = "active" if u.get("active") else "inactive"
        if wanted_state and wanted_state not in (active, sub):
            continue
        if not u.get("active") and "--all" not in flags and not wanted_state:
            continue
        rows.append(f"  {n:<40} loaded {active:<8} {sub:<7} {u.get('description', n)}")
    if legend:
        out(f"  {'UNIT':<40} LOAD   ACTIVE   SUB     DESCRIPTION\n")
    out("".join(r + "\n" for r in rows))
    if legend:
        out(f"\n{len(rows)} loaded units listed.\n")
    return 0
