"""rauc (1.8, U-Boot backend): status [--detailed] [--output-format=readable|json|json-pretty|shell],
status mark-good|mark-bad|mark-active [booted|other|<slot>], install BUNDLE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from siteline.simulator import boot, slots
from siteline.simulator.bundles import BundleError, read_manifest
from siteline.simulator.state import DeviceState, iso_time
from siteline.simulator.store import locked
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.system import device_path
from siteline.simulator.ubootenv import EnvError

FORMATS = ("readable", "shell", "json", "json-pretty")
RAUC_VERSION = "1.8"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    fmt, detailed, rest = "readable", False, []
    for arg in argv:
        if arg.startswith("--output-format="):
            fmt = arg.split("=", 1)[1]
        elif arg == "--detailed":
            detailed = True
        elif arg in ("-d", "--debug"):
            continue
        elif arg == "--version":  # what an update backend's detect asks first
            out(f"rauc {RAUC_VERSION}\n")
            return 0
        elif arg.startswith("-"):
            return fail(f"Unknown option {arg}\nTry 'rauc --help' for more information.")
        else:
            rest.append(arg)
    if not rest:
        return fail("No command given\nUsage:\n  rauc [OPTION?] <COMMAND>")
    if fmt not in FORMATS:
        return fail(f"Unknown output format: '{fmt}'")
    cmd = rest[0]
    if cmd == "status" and len(rest) == 1:
        out(_status(state, fmt, detailed))
        return 0
    if cmd == "status" and rest[1] in ("mark-good", "mark-bad", "mark-active"):
        return _mark(state, rest[1], rest[2] if len(rest) > 2 else "booted")
    if cmd == "install" and len(rest) == 2:
        # An absolute path names the device's file (an upload to /data lands in its rootfs).
        return _install(state, device_path(state, rest[1]) or Path(rest[1]), shown=rest[1])
    if cmd == "install":
        return fail("An absolute bundle filename or URL must be provided")
    return fail(f"Invalid command '{' '.join(rest)}' given")


def _model(state: DeviceState) -> dict[str, Any]:
    env = state.read_env_or_default()
    booted = state.booted_slot()
    return {"env": env, "booted": booted, "primary": boot.primary(env), "table": slots.load(state.root)}


def _slot_entries(m: dict[str, Any], detailed: bool) -> list[dict[str, Any]]:
    entries = []
    for info in slots.SLOT_TABLE:
        entry: dict[str, Any] = {
            "class": "rootfs", "device": info.device, "type": "ext4", "bootname": info.bootname,
            "state": "booted" if info.bootname == m["booted"] else "inactive", "parent": None,
            "mountpoint": None, "boot_status": "good" if boot.attempts_left(m["env"], info.bootname) > 0 else "bad",
        }
        rec = m["table"].get(info.bootname)
        if detailed and rec:
            entry["slot_status"] = {
                "bundle": {"compatible": rec.get("compatible"), "version": rec.get("version"),
                           "description": rec.get("description"), "build": rec.get("build")},
                "checksum": {"sha256": rec.get("sha256"), "size": rec.get("size")},
                "installed": rec.get("installed"), "activated": rec.get("activated"), "status": rec.get("status", "ok"),
            }
        entries.append({info.rauc_name: entry})
    return entries


def _status(state: DeviceState, fmt: str, detailed: bool) -> str:
    m = _model(state)
    primary = slots.by_bootname(m["primary"]) if m["primary"] else None
    entries = _slot_entries(m, detailed)
    if fmt in ("json", "json-pretty"):
        doc = {"compatible": slots.COMPATIBLE, "variant": None, "booted": m["booted"],
               "boot_primary": primary.rauc_name if primary else None, "slots": entries}
        return (json.dumps(doc, indent=2) if fmt == "json-pretty" else json.dumps(doc, separators=(",", ":"))) + "\n"
    if fmt == "shell":
        return _shell(m, entries, primary.rauc_name if primary else "")
    booted = slots.by_bootname(m["booted"])
    lines = ["=== System Info ===", f"Compatible:  {slots.COMPATIBLE}", "Variant:     ",
             f"Booted from: {booted.rauc_name if booted else None} ({m['booted']})", "",
             "=== Bootloader ===", f"Activated: {primary.rauc_name} ({primary.bootname})" if primary
             else "Activated: none", "", "=== Slot States ==="]
    for item in entries:
        (name, e), = item.items()
        mark = "x" if primary and name == primary.rauc_name else "o"
        lines.append(f"{mark} [{name}] ({e['device']}, {e['type']}, {e['state']})")
        lines.append(f"        bootname: {e['bootname']}")
        if e["state"] == "booted":
            lines.append("        mounted: /")
        lines.append(f"        boot status: {e['boot_status']}")
        lines += _detail_lines(e.get("slot_status"))
        lines.append("")
    return "\n".join(lines) + "\n"


def _detail_lines(st: dict[str, Any] | None) -> list[str]:
    if not st:
        return []
    b = st["bundle"]
    return ["    slot status:", "        bundle:", f"            compatible={b['compatible']}",
            f"            version={b['version']}", f"            description={b['description']}",
            f"            build={b['build']}", "        checksum:", f"            sha256={st['checksum']['sha256']}",
            f"            size={st['checksum']['size']}", "        installed:",
            f"            timestamp={st['installed']['timestamp']}", f"            count={st['installed']['count']}",
            "        activated:", f"            timestamp={st['activated']['timestamp']}",
            f"            count={st['activated']['count']}", f"        status={st['status']}"]


def _shell(m: dict[str, Any], entries: list[dict[str, Any]], primary: str) -> str:
    lines = [f"RAUC_SYSTEM_COMPATIBLE='{slots.COMPATIBLE}'", "RAUC_SYSTEM_VARIANT=''",
             f"RAUC_SYSTEM_BOOTED_BOOTNAME='{m['booted']}'", f"RAUC_BOOT_PRIMARY='{primary}'",
             "RAUC_SYSTEM_SLOTS='" + " ".join(next(iter(e)) for e in entries) + "'",
             "RAUC_SLOTS='" + " ".join(str(i) for i in range(1, len(entries) + 1)) + "'"]
    for n, item in enumerate(entries, 1):
        (_, e), = item.items()
        for key, field in (("STATE", "state"), ("CLASS", "class"), ("DEVICE", "device"), ("TYPE", "type"),
                           ("BOOTNAME", "bootname"), ("PARENT", "parent"), ("MOUNTPOINT", "mountpoint"),
                           ("BOOT_STATUS", "boot_status")):
            lines.append(f"RAUC_SLOT_{key}_{n}='{e[field] or ''}'")
    return "\n".join(lines) + "\n"


def _resolve(identifier: str, booted: str) -> slots.SlotInfo | str:
    """The slot `rauc status mark-*` means, or RAUC's error message (src/mark.c, get_slot_by_identifier)."""
    if identifier == "booted":
        return slots.by_bootname(booted) or "Did not find booted slot"
    if identifier == "other":
        return next((s for s in slots.SLOT_TABLE if s.bootname != booted),
                    None) or "No other bootable slot of the same class found"
    group = identifier.split(".")
    if len(group) != 2:
        return f"Invalid slot name format: '{identifier}'"
    return slots.by_rauc_name(identifier) or f"No slot with class {group[0]} and name {identifier} found"


def _mark(state: DeviceState, action: str, identifier: str) -> int:
    """As the service answers `rauc status mark-*` over D-Bus: "rauc status: ..." on success, else
    "rauc mark: ..." on stderr and exit 1. The U-Boot backend writes BOOT_<x>_LEFT (and BOOT_ORDER)."""
    with locked(state.root):
        target = _resolve(identifier, state.booted_slot())
        if isinstance(target, str):
            return fail(f"rauc mark: {target}")
        env = state.read_env_or_default()
        name = target.bootname
        if action == "mark-good":
            boot.mark_good(env, name)
            message = f"marked slot {target.rauc_name} as good"
        elif action == "mark-bad":
            env[f"BOOT_{name}_LEFT"] = "0"
            message = f"marked slot {target.rauc_name} as bad"
        else:
            boot.activate(env, name)
            message = f"activated slot {target.rauc_name}"
        try:
            state.write_env(env)
        except (OSError, EnvError):
            # RAUC runs fw_setenv, which failed: libubootenv exits 243 (-EACCES) when it cannot use the env.
            why = "Failed to run fw_setenv: Child process exited with code 243"
            if action == "mark-active":
                return fail(f"rauc mark: failed to activate slot {target.rauc_name}: {why}")
            return fail(f"rauc mark: Failed marking slot {target.rauc_name} as {action[5:]}: {why}")
        if action == "mark-active":
            _touch_activated(state, name)
    state.log(f"{message}", "rauc")
    out(f"rauc status: {message}\n")
    return 0


def _touch_activated(state: DeviceState, bootname: str) -> None:
    def change(table: dict[str, Any]) -> None:
        rec = table.setdefault(bootname, {})
        act = rec.get("activated") or {"count": 0}
        rec["activated"] = {"timestamp": iso_time(), "count": int(act.get("count", 0)) + 1}

    slots.update(state.root, change)


STEPS = ["  0% Installing", "  0% Determining slot states", " 20% Determining slot states done.",
         " 20% Checking bundle", " 40% Checking bundle done.", " 40% Checking manifest contents",
         " 60% Checking manifest contents done.", " 60% Determining target install group",
         " 80% Determining target install group done.", " 80% Updating slots"]


def _install(state: DeviceState, bundle: Path, shown: str) -> int:
    """Install ``bundle`` (the device file behind ``shown``, the path as the device names it in its words)."""
    out("installing\n")
    try:
        manifest = read_manifest(bundle)
    except BundleError as exc:
        out("".join(s + "\n" for s in STEPS[:4]) + "idle\n")
        return fail(f"Installing `{shown}` failed: {exc}")
    if manifest.compatible != slots.COMPATIBLE:
        out("".join(s + "\n" for s in STEPS[:6]) + "idle\n")
        return fail(f"Installing `{shown}` failed: Compatible mismatch: Expected '{slots.COMPATIBLE}' "
                    f"but bundle manifest has '{manifest.compatible}'")
    booted = state.booted_slot()
    target = next(s for s in slots.SLOT_TABLE if s.bootname != booted)
    with locked(state.root):
        _write_slot(state, target.bootname, manifest)
        env = state.read_env_or_default()
        boot.activate(env, target.bootname)
        state.write_env(env)
    out("".join(s + "\n" for s in STEPS))
    out(f" 80% Checking slot {target.rauc_name}\n 90% Checking slot {target.rauc_name} done.\n"
        f" 90% Copying image to {target.rauc_name}\n 99% Copying image to {target.rauc_name} done.\n"
        " 99% Updating slots done.\n100% Installing done.\nidle\n"
        f"Installing `{shown}` succeeded\n")
    state.log(f"Installing `{shown}` succeeded: {manifest.version} in {target.rauc_name}", "rauc")
    return 0


def _write_slot(state: DeviceState, bootname: str, manifest: Any) -> None:
    def change(table: dict[str, Any]) -> None:
        old = table.get(bootname, {})
        count = int((old.get("installed") or {}).get("count", 0)) + 1
        rec = slots.new_slot_record(manifest.version, iso_time(), boots=manifest.boots, sha256=manifest.sha256,
                                    size=manifest.size, healthy=manifest.healthy)
        rec.update({"compatible": manifest.compatible, "description": manifest.description or rec["description"],
                    "build": manifest.build or rec["build"]})
        rec["installed"]["count"] = count
        rec["activated"]["count"] = int((old.get("activated") or {}).get("count", 0)) + 1
        table[bootname] = rec

    slots.update(state.root, change)
