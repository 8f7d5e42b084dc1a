"""util-linux dmesg: the kernel's messages since this boot, from the device's journal.

"[    1.234567] message" (seconds since boot); ``-T`` "[Thu Nov 27 11:25:11 2026] message";
``-x`` "kern  :info  : [...] message"; ``-r`` "<6>[...] message"; ``-w`` prints the buffer and
waits for new messages, ``-W`` only waits for new ones (as util-linux 2.38).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from siteline.simulator import journal
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out

LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
FLAGS = {"-w": "w", "--follow": "w", "-W": "W", "--follow-new": "W", "-T": "T", "--ctime": "T", "-x": "x",
         "--decode": "x", "-r": "r", "--raw": "r", "-k": "", "--kernel": "", "-P": "", "--nopager": ""}


def _parse(argv: list[str]) -> set[str] | str:
    flags: set[str] = set()
    for arg in argv:
        if arg in FLAGS:
            flags.add(FLAGS[arg])
        elif arg.startswith("-") and not arg.startswith("--") and all(f"-{c}" in FLAGS for c in arg[1:]):
            flags.update(FLAGS[f"-{c}"] for c in arg[1:])  # -wT
        else:
            return f"dmesg: unrecognized option '{arg}'\nTry 'dmesg --help' for more information."
    flags.discard("")
    return flags


def line_of(entry: dict[str, Any], flags: set[str]) -> str:
    try:
        since = int(entry.get("__MONOTONIC_TIMESTAMP", "0")) / 1_000_000
        when = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1_000_000
        prio = min(7, max(0, int(entry.get("PRIORITY", "6"))))
    except (TypeError, ValueError):
        since, when, prio = 0.0, 0.0, 6
    message = str(entry.get("MESSAGE", ""))
    stamp = time.strftime("[%a %b %e %H:%M:%S %Y]", time.localtime(when)) if "T" in flags else f"[{since:12.6f}]"
    if "r" in flags:
        return f"<{prio}>{stamp} {message}"
    if "x" in flags:
        return f"{'kern':<6}:{LEVELS[prio]:<6}: {stamp} {message}"
    return f"{stamp} {message}"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    flags = _parse(argv)
    if isinstance(flags, str):
        return fail(flags, 1)
    boot = state.device().get("boot_id")

    def kernel(entries: list[dict[str, Any]]) -> str:
        return "".join(line_of(e, flags) + "\n" for e in entries
                       if e.get("_TRANSPORT") == "kernel" and e.get("_BOOT_ID") == boot)

    found, offset, last = journal.snapshot(state.root)
    if "W" not in flags:
        out(kernel(found))
    sys.stdout.flush()
    if not flags & {"w", "W"}:
        return 0
    for new in journal.follow(state.root, offset, last):
        text = kernel(new)
        if text:
            out(text)
            sys.stdout.flush()
    return 0
