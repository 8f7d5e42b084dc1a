"""nmcli (NetworkManager 1.42): device status / device show / connection show / general, terse or tabular."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.netmodel import NM_CONNECTIONS, nm_devices, view

DEVICE_FIELDS = ["DEVICE", "TYPE", "STATE", "CONNECTION", "IP-IFACE"]
DEVICE_DEFAULT = ["DEVICE", "TYPE", "STATE", "CONNECTION"]
CONN_FIELDS = ["NAME", "UUID", "TYPE", "DEVICE", "AUTOCONNECT", "AUTOCONNECT-PRIORITY"]
CONN_DEFAULT = ["NAME", "UUID", "TYPE", "DEVICE"]
EXIT_USAGE, EXIT_NOT_FOUND = 2, 10


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    terse, fields = False, ""
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-t", "--terse"):
            terse = True
        elif arg in ("-f", "--fields") and i + 1 < len(argv):
            fields, i = argv[i + 1], i + 1
        elif arg in ("-g", "--get-values") and i + 1 < len(argv):
            fields, terse, i = argv[i + 1], True, i + 1
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
        return _connection(rest[1:], fields, terse)
    if "general".startswith(obj) and obj:
        return _table([{"STATE": "connected", "CONNECTIVITY": "full"}], ["STATE", "CONNECTIVITY"], fields, terse)
    return fail(f"Error: argument '{obj}' not understood. Try passing --help instead.", EXIT_USAGE)


def _device(args: list[str], fields: str, terse: bool, state: DeviceState) -> int:
    devices = nm_devices(view(state))
    verb = args[0] if args else "status"
    if "status".startswith(verb):
        return _table(devices, DEVICE_DEFAULT, fields, terse, allowed=DEVICE_FIELDS)
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


def _connection(args: list[str], fields: str, terse: bool) -> int:
    verb = args[0] if args else "show"
    if "show".startswith(verb):
        return _table(NM_CONNECTIONS, CONN_DEFAULT, fields, terse, allowed=CONN_FIELDS)
    return fail(f"Error: argument '{verb}' not understood. Try passing --help instead.", EXIT_USAGE)


def _table(rows: Sequence[Mapping[str, object]], default: list[str], fields: str, terse: bool,
           allowed: list[str] | None = None) -> int:
    allowed = allowed or default
    names = allowed if fields == "all" else [f.strip() for f in fields.split(",")] if fields else default
    bad = [n for n in names if n not in allowed]
    if bad:
        return fail(f"Error: invalid field '{bad[0]}'; allowed fields: {','.join(allowed)}.", EXIT_USAGE)
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
