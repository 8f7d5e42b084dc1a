"""cat, head, tail, grep, sed, ls, stat, test: the host's real tools, reading the DEVICE's files.

One mapping serves them all: an absolute path the device has (a file in its rootfs, or anything
under the trees it owns such as /etc and /proc) is replaced by its rootfs copy before the real
tool runs, and the rootfs prefix is taken out of what the tool prints, so the device's view is
seen and the host's files (/etc/shadow) never are. Calls without such a path run the real tool
directly. The shell's own ``test``/``[`` builtins cannot be shimmed; ``/usr/bin/test``, ``env test``
and ``find -exec test`` come here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import IO

from siteline.core.atomic import write_atomic
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail
from siteline.simulator.tools.system import device_path, proc_files, real_tool

# Options that take a value (the next argument is not a path), per tool.
VALUE_OPTIONS = {
    "head": {"-n", "-c", "--lines", "--bytes"},
    "tail": {"-n", "-c", "--lines", "--bytes", "-s", "--sleep-interval", "--pid", "--max-unchanged-stats"},
    "grep": {"-e", "-f", "-m", "-A", "-B", "-C", "--regexp", "--file", "--max-count", "--label", "--color"},
    "sed": {"-e", "-f", "-l", "--expression", "--file", "--line-length"},
    "ls": {"-I", "-w", "-T", "--ignore", "--width", "--tabsize", "--format", "--sort", "--time"},
    "stat": {"-c", "--format", "--printf"},
}
FILE_VALUE = {"-f", "--file"}  # grep -f FILE, sed -f FILE: a path after all
SCRIPT_GIVEN = ("-e", "-f", "--regexp", "--file", "--expression")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    if tool == "cat" and any(a.startswith("/proc/") for a in argv):
        _refresh_proc(state, argv)
    mapped, changed = map_args(tool, argv, state)
    real = real_tool(tool, state)
    if real is None:
        return fail(f"{tool}: the host has no {tool} on PATH")
    if not changed:
        os.execv(real, [tool, *argv])  # nothing of the device's: the real tool, with no overhead
    return run_mapped(real, tool, mapped, state)


def map_args(tool: str, argv: list[str], state: DeviceState) -> tuple[list[str], bool]:
    """``argv`` with each absolute device path replaced by its rootfs file; and whether any was."""
    values = VALUE_OPTIONS.get(tool, set())
    pattern_first = tool in ("grep", "sed") and not any(a in SCRIPT_GIVEN or a.startswith(
        tuple(f"{o}=" for o in SCRIPT_GIVEN if o.startswith("--"))) for a in argv)
    mapped: list[str] = []
    changed, options_done, i = False, tool == "test", 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not options_done and arg == "--":
            options_done = True
        elif not options_done and arg.startswith("-") and arg != "-":
            if arg in values and i < len(argv):
                mapped.append(arg)
                arg = argv[i]
                i += 1
                if mapped[-1] not in FILE_VALUE:
                    mapped.append(arg)
                    continue
            else:
                mapped.append(arg)
                continue
        elif pattern_first:
            pattern_first = False
            mapped.append(arg)
            continue
        path = device_path(state, arg)
        changed = changed or path is not None
        mapped.append(str(path) if path is not None else arg)
    return mapped, changed


def run_mapped(real: str, tool: str, mapped: list[str], state: DeviceState) -> int:
    """Run the real tool on the mapped paths; its output shows device paths, not rootfs ones."""
    prefix = str(rootfs.rootfs(state.root)).encode()
    rewrite_out = tool != "cat"  # cat prints file contents only: pass them through untouched
    proc = subprocess.Popen([real, *mapped], stdout=subprocess.PIPE if rewrite_out else None,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors = threading.Thread(target=_copy, args=(proc.stderr, sys.stderr.buffer, prefix, real), daemon=True)
    errors.start()
    if proc.stdout is not None:
        _copy(proc.stdout, sys.stdout.buffer, prefix, real)
    code = proc.wait()
    errors.join()
    return code


def _copy(source: IO[bytes], sink: IO[bytes], prefix: bytes, real: str) -> None:
    name = os.path.basename(real).encode()
    for line in iter(source.readline, b""):
        sink.write(line.replace(prefix, b"").replace(real.encode() + b":", name + b":"))
        sink.flush()  # line by line: tail -f and grep --line-buffered stay live


def _refresh_proc(state: DeviceState, argv: list[str]) -> None:
    """The device's /proc files are generated when read (uptime, load and memory move)."""
    for arg, text in proc_files(state).items():
        if arg in argv:
            path = rootfs.rootfs(state.root) / arg.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text.encode())
