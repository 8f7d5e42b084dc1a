"""journalctl: -o json|json-pretty|short|short-iso|cat, -n N, -f, -u UNIT, -p PRIO, -k, -b, --no-pager,
-S/--since, -U/--until, --after-cursor, --cursor, --show-cursor (as systemd's journalctl reads them)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from siteline.core.logs.since import parse_since
from siteline.simulator import journal
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out, take_value

OUTPUTS = ("short", "short-iso", "short-precise", "json", "json-pretty", "cat", "verbose")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    opts = _parse(argv)
    if isinstance(opts, str):
        return fail(f"journalctl: {opts}")
    # Remember where this read ended so -f continues from there: nothing logged in between is lost.
    found, offset = journal.read_from(journal.path_of(state.root))
    entries = [e for e in found if _matches(e, opts, state)]
    if opts.get("n") is not None:
        entries = entries[-int(opts["n"]):] if int(opts["n"]) else []
    elif opts.get("follow") and not any(k in opts for k in ("since", "after", "cursor")):
        entries = entries[-10:]  # -f alone shows the last 10, as journalctl does
    if opts.get("reverse"):
        entries.reverse()
    fmt = str(opts.get("o", "short"))
    previous_boot = None
    for entry in entries:
        previous_boot = _emit(entry, fmt, previous_boot)
    if opts.get("show_cursor") and entries and not fmt.startswith("json"):
        out(f"-- cursor: {entries[-1].get('__CURSOR', '')}\n")
    sys.stdout.flush()
    if opts.get("follow"):
        return _follow(state, opts, fmt, previous_boot, offset, _seq(found[-1]) if found else 0)
    if not entries and fmt.startswith("short"):
        out("-- No entries --\n")
    return 0


def _parse(argv: list[str]) -> dict[str, Any] | str:
    opts: dict[str, Any] = {"n": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        for short, long, key in (("-o", "--output", "o"), ("-n", "--lines", "n"), ("-u", "--unit", "u"),
                                 ("-p", "--priority", "p"), ("-t", "--identifier", "t"),
                                 ("-S", "--since", "since"), ("-U", "--until", "until"),
                                 ("--after-cursor", "--after-cursor", "after"), ("-c", "--cursor", "cursor")):
            if arg in (short, long) or arg.startswith(long + "=") or (arg.startswith(short) and len(arg) > 2):
                if key == "n" and arg in ("-n", "--lines") and (i + 1 >= len(argv) or not argv[i + 1].isdigit()):
                    opts["n"], i = "10", i + 1  # bare -n means 10
                    break
                value, i = take_value(argv, i, long if arg.startswith("--") else short)
                if value is None:
                    return f"option '{arg}' requires an argument"
                opts[key] = value
                break
        else:
            flag = {"-f": "follow", "--follow": "follow", "-k": "kernel", "--dmesg": "kernel", "-b": "boot",
                    "--boot": "boot", "-r": "reverse", "--reverse": "reverse", "--no-pager": "", "-q": "",
                    "--quiet": "", "-a": "", "--all": "", "--no-hostname": "nohost", "-e": "", "--pager-end": "",
                    "--show-cursor": "show_cursor"}
            if arg not in flag:
                return f"unrecognized option '{arg}'"
            if flag[arg]:
                opts[flag[arg]] = True
            i += 1
    return _check(opts)


def _check(opts: dict[str, Any]) -> dict[str, Any] | str:
    if opts.get("o", "short") not in OUTPUTS:
        return f"Unknown output format '{opts['o']}'."
    if opts["n"] is not None and not str(opts["n"]).isdigit():
        return f"Failed to parse lines '{opts['n']}'."
    if "p" in opts:
        rng = journal.parse_priority(str(opts["p"]))
        if rng is None:
            return f"Unknown log level {opts['p']}"
        opts["prange"] = rng
    for key in ("since", "until"):
        if key in opts:
            when = parse_since(str(opts[key]))
            if when is None:
                return f"Failed to parse timestamp: {opts[key]}"
            opts[key + "_ts"] = when
    for key in ("after", "cursor"):
        if key in opts:
            seq = cursor_seq(str(opts[key]))
            if seq is None:
                return "Failed to seek to cursor: Invalid argument"
            opts[key + "_seq"] = seq
    return opts


def cursor_seq(cursor: str) -> int | None:
    """The sequence number inside a cursor this journal wrote ("s=...;i=1a2;..."), else None."""
    fields = dict(part.partition("=")[::2] for part in cursor.strip().split(";"))
    if fields.get("s") != journal.SEQNUM_ID:
        return None
    try:
        return int(fields.get("i", ""), 16)
    except ValueError:
        return None


def _matches(entry: dict[str, Any], opts: dict[str, Any], state: DeviceState) -> bool:
    if "u" in opts:
        unit = str(opts["u"])
        unit = unit if "." in unit else unit + ".service"
        if entry.get("_SYSTEMD_UNIT") != unit:
            return False
    if "t" in opts and entry.get("SYSLOG_IDENTIFIER") != opts["t"]:
        return False
    if opts.get("kernel") and entry.get("_TRANSPORT") != "kernel":
        return False
    if (opts.get("boot") or opts.get("kernel")) and entry.get("_BOOT_ID") != state.device().get("boot_id"):
        return False
    if not _in_window(entry, opts):
        return False
    if "prange" in opts:
        low, high = opts["prange"]
        if not low <= int(entry.get("PRIORITY", 6)) <= high:
            return False
    return True


def _in_window(entry: dict[str, Any], opts: dict[str, Any]) -> bool:
    """--since/--until by the entry's time; --after-cursor/--cursor by its sequence number."""
    if "after_seq" in opts and _seq(entry) <= opts["after_seq"]:
        return False
    if "cursor_seq" in opts and _seq(entry) < opts["cursor_seq"]:
        return False
    if "since_ts" in opts or "until_ts" in opts:
        try:
            when = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1_000_000
        except (TypeError, ValueError):
            return False
        if when < opts.get("since_ts", when) or when > opts.get("until_ts", when):
            return False
    return True


def _emit(entry: dict[str, Any], fmt: str, previous_boot: str | None) -> str | None:
    if fmt == "json":
        out(json.dumps(entry, separators=(",", ":")) + "\n")
    elif fmt in ("json-pretty", "verbose"):
        out(json.dumps(entry, indent="\t") + "\n")
    elif fmt == "cat":
        out(str(entry.get("MESSAGE", "")) + "\n")
    else:
        boot = str(entry.get("_BOOT_ID", ""))
        if previous_boot is not None and boot != previous_boot:
            out(f"-- Boot {boot} --\n")
        out(_short(entry, fmt) + "\n")
        return boot
    return previous_boot


def _short(entry: dict[str, Any], fmt: str) -> str:
    ts = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1_000_000
    if fmt == "short-iso":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))
    elif fmt == "short-precise":
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(ts)) + f".{int(ts * 1e6) % 1_000_000:06d}"
    else:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(ts))
    ident = entry.get("SYSLOG_IDENTIFIER", "unknown")
    pid = f"[{entry['_PID']}]" if entry.get("_PID") else ""
    return f"{stamp} {entry.get('_HOSTNAME', 'localhost')} {ident}{pid}: {entry.get('MESSAGE', '')}"


def _follow(state: DeviceState, opts: dict[str, Any], fmt: str, previous_boot: str | None, offset: int,
            last_seq: int) -> int:
    """Print entries as the device logs them, until killed (as journalctl -f); see journal.follow."""
    for new in journal.follow(state.root, offset, last_seq):
        shown = False
        for entry in new:
            if _matches(entry, opts, state):
                previous_boot = _emit(entry, fmt, previous_boot)
                shown = True
        if shown:
            sys.stdout.flush()
    return 0


def _seq(entry: dict[str, Any]) -> int:
    try:
        return int(entry.get("__SEQNUM", "0"))
    except (TypeError, ValueError):
        return 0
