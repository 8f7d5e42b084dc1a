"""mount: lists the device's mounts; mounting or remounting records the change in the state dir."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.storage import proc_mounts, provision

# The mount points the image itself sets up: they cannot be unmounted while the device runs.
TYPES = {"/": "ext4", "/dev": "devtmpfs", "/run": "tmpfs", "/tmp": "tmpfs", "/boot": "vfat", "/data": "ext4",
         "/etc": "overlay", "/var/volatile": "tmpfs", "/proc": "proc", "/sys": "sysfs", "/dev/pts": "devpts"}


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    if tool == "umount":
        return umount(argv, state)
    if not argv or argv in (["-l"], ["-v"]):
        # util-linux prints /proc/self/mountinfo as "source on point type fstype (options)": the same mounts df sees.
        for line in proc_mounts(state).splitlines():
            fields = line.split()
            if len(fields) >= 4:
                out(f"{fields[0]} on {fields[1]} type {fields[2]} ({fields[3]})\n")
        return 0
    options, fstype, positional = "rw", "auto", []
    i = 0
    while i < len(argv):
        if argv[i] in ("-o", "-t") and i + 1 < len(argv):
            options, fstype = (argv[i + 1], fstype) if argv[i] == "-o" else (options, argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("-"):
            return fail(f"mount: invalid option -- '{argv[i].lstrip('-')[:1]}'", 1)
        positional.append(argv[i])
        i += 1
    if "remount" in options and len(positional) == 1:
        return _record(state, positional[0], {"source": positional[0], "options": options.replace("remount,", "")})
    if len(positional) != 2:
        return fail("mount: bad usage\nTry 'mount --help' for more information.", 1)
    return _record(state, positional[1], {"source": positional[0], "type": fstype, "options": options})


def _record(state: DeviceState, point: str, entry: dict[str, Any]) -> int:
    (state.root / "admin").mkdir(exist_ok=True)
    update_json(state.root, state.root / "admin" / "mounts.json", lambda d: d.__setitem__(point, entry))
    state.log(f"mounted {entry['source']} on {point} ({entry.get('options')})", "kernel")
    provision(state)  # the rootfs' /proc/mounts file (what grep and head read) follows at once
    return 0


def umount(argv: list[str], state: DeviceState) -> int:
    points = [a for a in argv if not a.startswith("-")]
    if not points:
        return fail("umount: bad usage\nTry 'umount --help' for more information.", 1)
    extra = read_json(state.root / "admin" / "mounts.json")
    for point in points:
        target = next((p for p, m in extra.items() if point in (p, m.get("source"))), None)
        if target is None:
            return fail(f"umount: {point}: {'target is busy.' if point in TYPES else 'not mounted.'}", 32)
        update_json(state.root, state.root / "admin" / "mounts.json", _dropper(target))
        state.log(f"unmounted {target}", "kernel")
    provision(state)
    return 0


def _dropper(point: str) -> Callable[[dict[str, Any]], None]:
    def drop(doc: dict[str, Any]) -> None:
        doc.pop(point, None)
    return drop
