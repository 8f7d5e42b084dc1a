"""systemd-run: transient timers (``--on-active``), recorded in <state>/admin/timers.json.

The running device (device.py) fires a due timer by running its command as a device command, as systemd
would start the transient service. A transient unit does not survive a reboot: the device drops them at boot.
``systemctl stop|is-active|list-timers`` (tools/systemctl.py) see and cancel them through this module.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Any

from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools.common import err, fail

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|sec|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}
_VALUED = ("--on-active", "--unit", "-u", "--description", "--on-boot", "--on-unit-active", "--property", "-p",
           "--uid", "--gid", "--working-directory", "--setenv", "-E", "--timer-property")


def timers_path(root: Path) -> Path:
    (root / "admin").mkdir(exist_ok=True)
    return root / "admin" / "timers.json"


def timers(root: Path) -> dict[str, dict[str, Any]]:
    """Active transient timers: {"NAME.timer": {"due": epoch, "command": str, "service": "NAME.service"}}."""
    doc = read_json(timers_path(root))
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


def remove(root: Path, names: list[str]) -> list[str]:
    """Drop the named timers (a NAME.service also names its timer); returns the ones that existed."""
    gone: list[str] = []

    def change(doc: dict[str, Any]) -> None:
        for name in names:
            timer = name.removesuffix(".service").removesuffix(".timer") + ".timer"
            if doc.pop(timer, None) is not None:
                gone.append(name)

    update_json(root, timers_path(root), change)
    return gone


def take_due(root: Path, now: float) -> list[dict[str, Any]]:
    """Claim every timer whose time has come (removed, so each fires once); the caller runs them."""
    due: list[dict[str, Any]] = []

    def change(doc: dict[str, Any]) -> None:
        for name in [n for n, t in doc.items() if isinstance(t, dict) and float(t.get("due", 0)) <= now]:
            due.append({"unit": name, **doc.pop(name)})

    if any(float(t.get("due", 0)) <= now for t in timers(root).values()):  # read first: no lock, no write
        update_json(root, timers_path(root), change)
    return due


def clear(root: Path) -> None:
    """At boot: transient units are gone."""
    if timers_path(root).exists():
        update_json(root, timers_path(root), lambda doc: doc.clear())


def seconds(text: str) -> float | None:
    """A systemd time span ("60", "60s", "1min 30s", "500ms") in seconds; None when it is not one."""
    total, pos = 0.0, 0
    text = text.strip()
    for match in _SPAN.finditer(text):
        if text[pos:match.start()].strip():
            return None
        total += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    return total if text and not text[pos:].strip() else None


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]] | str:
    opts: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        arg = argv[i]
        key, _, value = arg.partition("=")
        if key in _VALUED and not value:
            if i + 1 >= len(argv):
                return f"option '{key}' requires an argument"
            value, i = argv[i + 1], i + 1
        opts[key] = value
        i += 1
    return opts, argv[i:]


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    parsed = _options(argv)
    if isinstance(parsed, str):
        return fail(f"systemd-run: {parsed}")
    opts, command = parsed
    if not command:
        return fail("Command line to execute required.")
    delay = seconds(opts.get("--on-active", "0"))
    if delay is None:
        return fail(f"Failed to parse timer value: {opts['--on-active']}")
    name = opts.get("--unit") or opts.get("-u") or f"run-u{int(time.time() * 1000) % 100000}"
    name = name.removesuffix(".service").removesuffix(".timer")
    timer = f"{name}.timer"
    result: list[str] = []

    def change(doc: dict[str, Any]) -> None:
        if timer in doc:
            result.append("exists")
            return
        doc[timer] = {"due": time.time() + delay, "command": shlex.join(command), "service": f"{name}.service",
                      "description": opts.get("--description", shlex.join(command))}

    update_json(state.root, timers_path(state.root), change)
    if result:
        return fail(f"Failed to start transient timer unit: Unit {timer} was already loaded or has a fragment file.")
    if "--quiet" not in opts and "-q" not in opts:
        err(f"Running timer as unit: {timer}\nWill run service as unit: {name}.service")
    state.log(f"Started {opts.get('--description', name)} timer.", "systemd")
    return 0
