"""uname, hostname, uptime, df, free, k3s, and the path mapping: the device's identity and resources.

Scenario switches (tests, demos): :func:`set_disk_fill` fills /data to a percentage; :func:`set_k3s` makes the
device a k3s node (Ready or not) — without it `command -v k3s` finds nothing, as on most devices.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic
from siteline.simulator import dynamics, rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.storage import proc_mounts

# Paths under these belong to the device: never fall through to the host's files (/etc/shadow!).
DEVICE_TREES = ("/etc/", "/proc/", "/root/", "/data/", "/home/", "/var/log/", "/boot/", "/sys/")
MEM_TOTAL_KB = 2009876
DISK_FILE = "disk.json"  # in <state>/admin: {"data_used_percent": 95} fills /data for a demo (set_disk_fill)


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    handler = {"uname": uname, "hostname": hostname, "uptime": uptime, "df": df, "free": free, "k3s": k3s}[tool]
    return handler(argv, state)


# -- cat --------------------------------------------------------------------------------------------
def proc_files(state: DeviceState) -> dict[str, str]:
    now = time.time()
    up = state.uptime(now)
    load = dynamics.cpu_load(state.config.seed, now)
    used_kb, cache_kb, _ = _memory(state, now)
    free_kb = MEM_TOTAL_KB - used_kb - cache_kb
    return {
        "/proc/uptime": f"{up:.2f} {up * 3.6:.2f}\n",  # idle time summed over 4 cores, mostly idle
        "/proc/loadavg": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} 1/{112 + int(up) % 9} {4000 + int(up) % 900}\n",
        "/proc/version": f"Linux version {rootfs.KERNEL_RELEASE} (oe-user@oe-host) (aarch64-poky-linux-gcc (GCC) "
                         f"11.4.0, GNU ld (GNU Binutils) 2.38.20220708) {rootfs.KERNEL_VERSION}\n",
        "/proc/meminfo": (f"MemTotal:       {MEM_TOTAL_KB:8d} kB\nMemFree:        {free_kb:8d} kB\n"
                          f"MemAvailable:   {free_kb + cache_kb * 9 // 10:8d} kB\n"
                          f"Buffers:        {cache_kb // 12:8d} kB\n"
                          f"Cached:         {cache_kb - cache_kb // 12:8d} kB\nSwapCached:            0 kB\n"
                          "SwapTotal:             0 kB\nSwapFree:              0 kB\n"
                          f"Shmem:          {12288:8d} kB\n"),
        "/proc/cpuinfo": "".join(
            f"processor\t: {n}\nBogoMIPS\t: 16.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd03\nCPU revision\t: 4\n\n"
            for n in range(4)),
        "/proc/mounts": proc_mounts(state),
        # As U-Boot passes it: rauc.slot names the booted slot, which tells a device without RAUC which one it is.
        "/proc/cmdline": (f"console=ttymxc0,115200 root=/dev/mmcblk0p{2 if state.booted_slot() == 'A' else 3} "
                          f"rootfstype=ext4 rootwait ro rauc.slot={state.booted_slot()}\n"),
    }


def device_path(state: DeviceState, arg: str) -> Path | None:
    """The device's file for an absolute path: any file its rootfs has, and everything under DEVICE_TREES."""
    if not arg.startswith("/"):
        return None  # relative: the shell's cwd is already inside the device's rootfs (HOME)
    mapped = rootfs.rootfs(state.root) / os.path.normpath(arg).lstrip("/")
    if mapped.exists() or any((arg.rstrip("/") + "/").startswith(t) for t in DEVICE_TREES):
        return mapped
    return None


def real_tool(name: str, state: DeviceState) -> str | None:
    shim_dir = str(state.root / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != shim_dir)
    return shutil.which(name, path=path) or shutil.which(name, path="/usr/bin:/bin")


# -- uname ------------------------------------------------------------------------------------------
def uname(argv: list[str], state: DeviceState) -> int:
    fields = {"s": "Linux", "n": state.hostname(), "r": rootfs.KERNEL_RELEASE, "v": rootfs.KERNEL_VERSION,
              "m": rootfs.MACHINE, "p": "unknown", "i": "unknown", "o": "GNU/Linux"}
    long_names = {"--kernel-name": "s", "--nodename": "n", "--kernel-release": "r", "--kernel-version": "v",
                  "--machine": "m", "--processor": "p", "--hardware-platform": "i", "--operating-system": "o"}
    wanted: set[str] = set()
    for arg in argv:
        if arg in ("-a", "--all"):
            wanted |= {"s", "n", "r", "v", "m", "o"}  # -p/-i are left out by -a when unknown, as coreutils
        elif arg in long_names:
            wanted.add(long_names[arg])
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for ch in arg[1:]:
                if ch == "a":
                    wanted |= {"s", "n", "r", "v", "m", "o"}
                elif ch in fields:
                    wanted.add(ch)
                else:
                    return fail(f"uname: invalid option -- '{ch}'\nTry 'uname --help' for more information.")
        else:
            return fail(f"uname: extra operand '{arg}'\nTry 'uname --help' for more information.")
    out(" ".join(fields[k] for k in "snrvmpio" if k in (wanted or {"s"})) + "\n")
    return 0


# -- hostname ---------------------------------------------------------------------------------------
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def hostname(argv: list[str], state: DeviceState) -> int:
    name = state.hostname()
    if not argv or argv in (["-f"], ["--fqdn"], ["--long"]):
        out(name + "\n")
        return 0
    if argv in (["-s"], ["--short"]):
        out(name.split(".")[0] + "\n")
        return 0
    if argv in (["-i"], ["--ip-address"], ["-I"], ["--all-ip-addresses"]):
        out("192.168.10.23 \n" if "I" in argv[0] or "all" in argv[0] else "127.0.1.1\n")
        return 0
    if len(argv) == 1 and not argv[0].startswith("-"):
        new = argv[0]
        if len(new) > 253 or not all(_LABEL.match(label) for label in new.split(".")):
            return fail("hostname: the specified hostname is invalid")
        state.set_hostname(new)
        state.log(f"Hostname set to <{new}> (transient)", "systemd-hostnamed")
        return 0
    return fail("Usage: hostname [-b] {hostname|-F file}         set host name (from file)\n"
                "       hostname [-a|-A|-d|-f|-i|-I|-s|-y]       display formatted name")


# -- uptime -----------------------------------------------------------------------------------------
def _pretty_uptime(seconds: float) -> str:
    minutes_total = int(seconds // 60)
    weeks, rest = divmod(minutes_total, 7 * 24 * 60)
    days, rest = divmod(rest, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in
             ((weeks, "week"), (days, "day"), (hours, "hour"), (minutes, "minute")) if n]
    return "up " + (", ".join(parts) if parts else "0 minutes")


def uptime(argv: list[str], state: DeviceState) -> int:
    now = time.time()
    up = state.uptime(now)
    if argv in (["-p"], ["--pretty"]):
        out(_pretty_uptime(up) + "\n")
        return 0
    if argv in (["-s"], ["--since"]):
        out(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - up)) + "\n")
        return 0
    if argv:
        return fail(f"uptime: invalid option -- '{argv[0].lstrip('-')[:1]}'\n\nUsage:\n uptime [options]")
    days, rest = divmod(int(up), 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    text = time.strftime(" %H:%M:%S up ", time.localtime(now))
    if days:
        text += f"{days} day{'s' if days != 1 else ''}, "
    text += f"{hours:2d}:{minutes:02d}, " if hours else f"{minutes} min, "
    load = dynamics.cpu_load(state.config.seed, now)
    out(text + f" 1 user,  load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}\n")
    return 0


# -- df ---------------------------------------------------------------------------------------------
# df hides filesystems with no blocks (proc, sysfs, devpts...) unless -a, as GNU coreutils and BusyBox do.
_NO_BLOCKS = frozenset({"proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "mqueue"})
_TMPFS_KB = 1_004_936
_DATA_KB = 11_030_832  # the ext4 on /dev/mapper/data (lsblk: 11 506 270 208 bytes), less its metadata


@dataclass(frozen=True)
class DfRow:
    source: str
    fs_type: str
    size_kb: int
    used_kb: int
    avail_kb: int
    point: str


def _used_kb(state: DeviceState, point: str, fs_type: str, now: float) -> tuple[int, int]:
    """(size, used) in KiB for a mount: fixed for the images, slow waves for what the device writes."""
    seed = state.config.seed
    wave = 1 + math.sin(now / 900.0 + seed % 5)  # a quarter-hour swing: two reads a minute apart differ a little
    if point == "/":
        return 1_011_672, 612_884
    if point == "/boot":
        return 65_390, 24_176
    if point == "/data" or (point == "/etc" and fs_type == "overlay"):  # the overlay's upper layer is on /data
        journal_kb = sum(f.stat().st_size for f in (state.root / "journal").glob("*") if f.is_file()) // 1024
        fill = read_json(state.root / "admin" / DISK_FILE).get("data_used_percent")
        if isinstance(fill, int | float) and 0 <= fill <= 100:
            return _DATA_KB, int(_DATA_KB * 0.95 * fill / 100)
        return _DATA_KB, 182_344 + journal_kb + seed % 50_000 + int(6_000 * wave)
    if point == "/dev":
        return 867_196, 0
    if point == "/run":
        return _TMPFS_KB, 12_288 + int(256 * wave)
    if point == "/var/volatile":
        return _TMPFS_KB, 3_072 + int(1_024 * wave)  # logs kept in RAM
    if fs_type == "tmpfs":
        return _TMPFS_KB, 96
    return 3_903_488, 1_024  # something mounted by hand (a USB stick)


def df_rows(state: DeviceState, show_all: bool = False, now: float | None = None) -> list[DfRow]:
    """One row per line of the device's /proc/mounts (so df and /proc/mounts always agree), sizes in KiB."""
    when = time.time() if now is None else now
    rows = []
    for line in proc_mounts(state).splitlines():
        source, point, fs_type = [*line.split(), "", "", ""][:3]
        if not point.startswith("/") or (fs_type in _NO_BLOCKS and not show_all):
            continue
        size, used = (0, 0) if fs_type in _NO_BLOCKS else _used_kb(state, point, fs_type, when)
        reserved = size // 20 if fs_type in ("ext4", "overlay") else 0  # ext4 keeps 5 % for root (/etc's upper too)
        rows.append(DfRow(source, fs_type, size, used, max(0, size - reserved - used), point))
    return rows


def _df_options(argv: list[str]) -> tuple[dict[str, bool], int, list[str]] | str:
    flags = {"h": False, "T": False, "a": False}
    block, paths = 1024, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-B", "--block-size") and i + 1 < len(argv):
            arg, i = "-B" + argv[i + 1], i + 1
        if arg.startswith("-B"):
            value = arg[2:].upper().rstrip("B") or "1"
            units = {"K": 1024, "M": 1024**2, "G": 1024**3}
            block = units[value] if value in units else int(value) if value.isdigit() and int(value) > 0 else 0
            if not block:
                return f"df: invalid -B argument '{arg[2:]}'"
        elif arg.startswith("-") and len(arg) > 1 and set(arg[1:]) <= set("PhkTam"):
            flags.update({k: True for k in "hTa" if k in arg})
            block = 1024 * 1024 if "m" in arg else 1024 if "k" in arg else block
        elif not arg.startswith("-"):
            paths.append(arg)
        else:
            return f"df: invalid option -- '{arg.lstrip('-')[:1]}'\nTry 'df --help' for more information."
        i += 1
    return flags, block, paths


def _covering(rows: list[DfRow], path: str) -> DfRow | None:
    target = "/" + path.strip("/") if path.startswith("/") else "/"  # relative paths: the home on /
    found = [r for r in rows if target == r.point or target.startswith(r.point.rstrip("/") + "/")]
    return max(found, key=lambda r: len(r.point), default=None)


def df(argv: list[str], state: DeviceState) -> int:
    parsed = _df_options(argv)
    if isinstance(parsed, str):
        return fail(parsed)
    flags, block, paths = parsed
    rows = df_rows(state, flags["a"])
    if paths:
        picked = [_covering(rows, p) for p in paths]
        rows = [r for r in picked if r is not None]
    human = flags["h"]
    blocks = "Size" if human else f"{block}-blocks"
    avail = "Avail" if human else "Available"
    table: list[tuple[str, ...]] = [("Filesystem", "Type", blocks, "Used", avail, "Capacity", "Mounted on")]
    for r in rows:
        cap = f"{-(-r.used_kb * 100 // (r.used_kb + r.avail_kb))}%" if r.size_kb else "-"
        figures = [r.size_kb, r.used_kb, r.avail_kb]
        cols = [_human(v) if human else str(-(-v * 1024 // block)) for v in figures]
        table.append((r.source, r.fs_type, *cols, cap, r.point))
    widths = [max(len(t[i]) for t in table) for i in range(6)]
    for t in table:
        cells = [f"{t[0]:<{widths[0]}}"] + ([f"{t[1]:<{widths[1]}}"] if flags["T"] else [])
        cells += [f"{t[i]:>{max(widths[i], 9)}}" for i in (2, 3, 4)] + [f"{t[5]:>8}", t[6]]
        out(" ".join(cells) + "\n")
    return 0


def _human(kib: int) -> str:
    value = float(kib)
    for unit in ("K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.1f}{unit}" if value < 10 and unit != "K" else f"{value:.0f}{unit}"
        value /= 1024
    return f"{kib}K"


def set_disk_fill(state: DeviceState, percent: float | None) -> None:
    """Demo and test scenario: /data this full (of what a user may write), or None for the normal slow drift."""
    (state.root / "admin").mkdir(exist_ok=True)
    update_json(state.root, state.root / "admin" / DISK_FILE, lambda d: d.__setitem__("data_used_percent", percent))


# -- free -------------------------------------------------------------------------------------------
def _memory(state: DeviceState, now: float) -> tuple[int, int, int]:
    """(used, buff/cache, shared) in KiB: a slow wave so consecutive reads differ a little."""
    wave = int(20_000 * (1 + ((now / 60.0) % 10) / 10))
    return 402_112 + state.config.seed % 30_000 + wave, 388_640, 12_288


def free(argv: list[str], state: DeviceState) -> int:
    divisors = {"-b": 1 / 1024, "--bytes": 1 / 1024, "-k": 1, "--kibi": 1, "-m": 1024, "--mebi": 1024,
                "-g": 1024 * 1024, "--gibi": 1024 * 1024}
    div: float = 1
    human = False
    for arg in argv:
        if arg in divisors:
            div = divisors[arg]
        elif arg in ("-h", "--human"):
            human = True
        elif arg in ("-w", "--wide", "-t", "--total"):
            continue
        else:
            return fail(f"free: invalid option -- '{arg.lstrip('-')[:1]}'\n\nUsage:\n free [options]")
    used, cache, shared = _memory(state, time.time())
    free_kb = MEM_TOTAL_KB - used - cache
    avail = free_kb + cache * 9 // 10

    def fmt(kib: int) -> str:
        return _human(kib).replace("K", "Ki").replace("M", "Mi").replace("G", "Gi") if human else str(int(kib / div))

    out("               total        used        free      shared  buff/cache   available\n")
    out(f"Mem:    {fmt(MEM_TOTAL_KB):>12}{fmt(used):>12}{fmt(free_kb):>12}{fmt(shared):>12}{fmt(cache):>12}"
        f"{fmt(avail):>12}\n")
    out(f"Swap:   {fmt(0):>12}{fmt(0):>12}{fmt(0):>12}\n")
    return 0


# -- k3s (absent unless set_k3s made it appear) -----------------------------------------------------
K3S_FILE = "k3s.json"  # in <state>/admin: {"present": true, "ready": false}
K3S_VERSION = "v1.28.5+k3s1"


def set_k3s(state: DeviceState, present: bool, ready: bool = True) -> None:
    """Make the device a single-node k3s server (or take k3s away): writes or removes ``<state>/bin/k3s``.

    The device has no k3s by default, so `command -v k3s` must find nothing: the shim file exists only while
    k3s is present, and runs this module directly (it is not one of shim.TOOLS, which are always there).
    """
    (state.root / "admin").mkdir(exist_ok=True)
    update_json(state.root, state.root / "admin" / K3S_FILE, lambda d: d.update(present=present, ready=ready))
    target = state.root / "bin" / "k3s"
    if not present:
        target.unlink(missing_ok=True)
        return
    code = ("import os, sys; from pathlib import Path; from siteline.simulator.state import DeviceState; "
            "from siteline.simulator.tools.system import k3s; "
            "sys.exit(k3s(sys.argv[1:], DeviceState.attach(Path(os.environ['SITELINE_SIM_STATE']))))")
    text = (
        "#!/bin/sh\n# Siteline simulator: k3s, present because set_k3s() said so.\n"
        f': "${{SITELINE_SIM_STATE:={shlex.quote(str(state.root.resolve()))}}}"\nexport SITELINE_SIM_STATE\n'
        f"PYTHONPATH={shlex.quote(str(rootfs.app_dir()))}${{PYTHONPATH:+:$PYTHONPATH}}\nexport PYTHONPATH\n"
        f'exec {shlex.quote(sys.executable)} -P -c {shlex.quote(code)} "$@"\n'
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text.encode(), mode=0o755)


def _k3s_node(state: DeviceState, ready: bool) -> dict[str, Any]:
    name = state.hostname()
    condition = ({"type": "Ready", "status": "True", "reason": "KubeletReady",
                  "message": "kubelet is posting ready status"} if ready else
                 {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                  "message": "Kubelet stopped posting node status."})
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "node-role.kubernetes.io/control-plane": "true"}},
            "spec": {"podCIDR": "10.42.0.0/24", "providerID": f"k3s://{name}"},
            "status": {"conditions": [condition],
                       "nodeInfo": {"architecture": "arm64", "kubeletVersion": K3S_VERSION,
                                    "kernelVersion": rootfs.KERNEL_RELEASE, "operatingSystem": "linux",
                                    "containerRuntimeVersion": "containerd://1.7.11-k3s2"}}}


def k3s(argv: list[str], state: DeviceState) -> int:
    doc = read_json(state.root / "admin" / K3S_FILE)
    if not doc.get("present"):
        return fail("sh: k3s: not found", 127)
    if argv[:1] == ["--version"] or argv[:1] == ["-v"]:
        out(f"k3s version {K3S_VERSION} (5b2d1271)\ngo version go1.20.12\n")
        return 0
    words = [a for a in argv if not a.startswith("--request-timeout")]
    if words[:3] not in (["kubectl", "get", "nodes"], ["kubectl", "get", "node"], ["kubectl", "get", "no"]):
        return fail(f"k3s: the simulator answers only `k3s kubectl get nodes [-o json]`, not {' '.join(argv)!r}")
    ready = bool(doc.get("ready", True))
    if words[3:] == ["-o", "json"]:
        out(json.dumps({"apiVersion": "v1", "kind": "List", "items": [_k3s_node(state, ready)],
                        "metadata": {"resourceVersion": ""}}, indent=4) + "\n")
        return 0
    name = state.hostname()
    out(f"{'NAME':<{len(name) + 3}}STATUS     ROLES                  AGE   VERSION\n"
        f"{name:<{len(name) + 3}}{'Ready' if ready else 'NotReady':<11}control-plane,master   12d   {K3S_VERSION}\n")
    return 0
