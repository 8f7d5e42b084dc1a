"""nmcli (NetworkManager 1.42): device status / device show / connection show / general, terse or tabular."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.netmodel import nm_connections, nm_devices, view

# The fields nmcli 1.42 accepts (metagen_device_status, metagen_con_show), in its order. IP-IFACE is
# not one of them: it exists only in `device show` (GENERAL.IP-IFACE).
DEVICE_FIELDS = ["DEVICE", "TYPE", "STATE", "IP4-CONNECTIVITY", "IP6-CONNECTIVITY", "DBUS-PATH", "CONNECTION",
                 "CON-UUID", "CON-PATH"]
DEVICE_DEFAULT = ["DEVICE", "TYPE", "STATE", "CONNECTION"]
CONN_FIELDS = ["NAME", "UUID", "TYPE", "TIMESTAMP", "TIMESTAMP-REAL", "AUTOCONNECT", "AUTOCONNECT-PRIORITY",
               "READONLY", "DBUS-PATH", "ACTIVE", "DEVICE", "STATE", "ACTIVE-PATH", "SLAVE", "FILENAME"]
CONN_DEFAULT = ["NAME", "UUID", "TYPE", "DEVICE"]
EXIT_USAGE, EXIT_NOT_FOUND = 2, 10


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    terse, fields, values_only = False, "", False
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-t", "--terse"):
            terse = True
        elif arg in ("-f", "--fields") and i + 1 < len(argv):
            fields, i = argv[i + 1], i + 1
        elif arg in ("-g", "--get-values") and i + 1 < len(argv):
            fields, terse, values_only, i = argv[i + 1], True, True, i + 1
        elif arg.startswith("-") and not rest:
            if arg not in ("-p", "--pretty", "-c", "--colors", "-e", "--escape"):
                return fail(f"Error: Option '{arg}' is unknown, try 'nmcli -help'.", EXIT_USAGE)
        else:
            rest.append(arg)
        i += 1
    obj = rest[0] if rest else "general"
    if "device".startswith(obj) and obj:
        return _device(rest[1:], fields, terse, state)
    if "connection".startswith(obj) and obj:
        return _connection(rest[1:], fields, terse, state, values_only)
    if "general".startswith(obj) and obj:
        return _table([{"STATE": "connected", "CONNECTIVITY": "full"}], ["STATE", "CONNECTIVITY"], fields, terse)
    return fail(f"Error: argument '{obj}' not understood. Try passing --help instead.", EXIT_USAGE)


def _device(args: list[str], fields: str, terse: bool, state: DeviceState) -> int:
    devices = nm_devices(view(state))
    verb = args[0] if args else "status"
    if "status".startswith(verb):
        return _table(devices, DEVICE_DEFAULT, fields, terse, allowed=DEVICE_FIELDS, what="device status")
    if "show".startswith(verb):
        chosen = [d for d in devices if len(args) < 2 or d["DEVICE"] == args[1]]
        if not chosen:
            return fail(f"Error: Device '{args[1]}' not found.", EXIT_NOT_FOUND)
        return _show(chosen, fields, terse)
    return fail(f"Error: argument '{verb}' not understood. Try passing --help instead.", EXIT_USAGE)


def _show(devices: list[dict[str, object]], fields: str, terse: bool) -> int:
    blocks = []
    for d in devices:
        state_text = f"{d['STATE_CODE']} ({str(d['STATE']).split(' ')[0]})"
        props = {"GENERAL.DEVICE": d["DEVICE"], "GENERAL.TYPE": d["TYPE"], "GENERAL.STATE": state_text,
                 "GENERAL.CONNECTION": d["CONNECTION"] or "--", "GENERAL.IP-IFACE": d["IP-IFACE"],
                 "IP4.ADDRESS[1]": d["ADDRESS"], "IP4.GATEWAY": d["GATEWAY"] or "--"}
        wanted = [f.strip() for f in fields.split(",")] if fields else None
        lines = []
        for key, value in props.items():
            group = key.split(".")[0]
            if wanted and key not in wanted and group not in wanted and key.split("[")[0] not in wanted:
                continue
            if key.startswith("IP4.ADDRESS") and not value:
                continue
            text = str(value) if value != "" else ("" if terse else "--")
            lines.append(f"{key}:{text}" if terse else f"{key + ':':<40}{text}")
        blocks.append("\n".join(lines))
    out("\n\n".join(blocks) + "\n")
    return 0


def _connection(args: list[str], fields: str, terse: bool, state: DeviceState, values_only: bool = False) -> int:
    verb = args[0] if args else "show"
    if "show".startswith(verb):
        rows = nm_connections(view(state), time.time(), float(state.device().get("booted_at", 0.0)))
        names = [a for a in args[1:] if not a.startswith("-") and a not in ("id", "uuid")]
        if names:
            return _profile(rows, names[0], fields, terse, values_only)
        if "--active" in args[1:] or "-a" in args[1:]:
            rows = [r for r in rows if r["ACTIVE"] == "yes"]
        return _table(rows, CONN_DEFAULT, fields, terse, allowed=CONN_FIELDS, what="connection show")
    return fail(f"Error: argument '{verb}' not understood. Try passing --help instead.", EXIT_USAGE)


def _profile(rows: list[dict[str, Any]], name: str, fields: str, terse: bool, values_only: bool) -> int:
    """`nmcli [-t|-g] [-f PROPS] connection show NAME`: a few connection.* settings, one per line (multiline mode)."""
    row = next((r for r in rows if name in (r["NAME"], r["UUID"])), None)
    if row is None:
        return fail(f"Error: {name} - no such connection profile.", EXIT_NOT_FOUND)
    props = {"connection.id": row["NAME"], "connection.uuid": row["UUID"], "connection.type": row["TYPE"],
             "connection.interface-name": row["DEVICE"] or "", "connection.autoconnect": row["AUTOCONNECT"],
             "connection.autoconnect-priority": row["AUTOCONNECT-PRIORITY"], "connection.timestamp": row["TIMESTAMP"]}
    wanted = [f.strip() for f in fields.split(",")] if fields and fields not in ("all", "common") else list(props)
    if any(w not in props and w != "connection" for w in wanted):
        bad = next(w for w in wanted if w not in props)
        return fail(f"Error: invalid field '{bad}'; allowed fields: {','.join(props)}", EXIT_USAGE)
    keys = [k for k in props if k in wanted or "connection" in wanted]
    for key in keys:
        value = str(props[key])
        if values_only:
            out(value + "\n")
        else:
            out(f"{key}:{value}\n" if terse else f"{key + ':':<40}{value or '--'}\n")
    return 0


def _table(rows: Sequence[Mapping[str, object]], default: list[str], fields: str, terse: bool,
           allowed: list[str] | None = None, what: str = "general") -> int:
    allowed = allowed or default
    names = allowed if fields == "all" else default if fields in ("", "common") else [
        f.strip() for f in fields.split(",")]
    bad = [n for n in names if n not in allowed]
    if bad:  # nmcli's wording (nm_meta_selection_create_parse_list), exit 2 (NMC_RESULT_ERROR_USER_INPUT)
        return fail(f"Error: '{what}': invalid field '{bad[0]}'; allowed fields: {','.join(allowed)}", EXIT_USAGE)
    if terse:
        for row in rows:
            out(":".join(str(row.get(n, "")).replace("\\", "\\\\").replace(":", "\\:") for n in names) + "\n")
        return 0
    cells = [[str(row.get(n, "")) or "--" for n in names] for row in rows]
    widths = [max(len(n), *(len(c[i]) for c in cells)) for i, n in enumerate(names)]
    out("  ".join(f"{n:<{w}}" for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    for c in cells:
        out("  ".join(f"{v:<{w}}" for v, w in zip(c, widths, strict=True)).rstrip() + "\n")
    return 0
