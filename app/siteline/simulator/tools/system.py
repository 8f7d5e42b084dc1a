"""uname, hostname, uptime, df, free, and the path mapping: the device's identity and resources."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from siteline.simulator import dynamics, rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.storage import proc_mounts

# Paths under these belong to the device: never fall through to the host's files (/etc/shadow!).
DEVICE_TREES = ("/etc/", "/proc/", "/root/", "/data/", "/home/", "/var/log/", "/boot/", "/sys/")
MEM_TOTAL_KB = 2009876


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    handler = {"uname": uname, "hostname": hostname, "uptime": uptime, "df": df, "free": free}[tool]
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
def _mounts(state: DeviceState) -> list[tuple[str, int, int, str]]:
    """(filesystem, size KiB, used KiB, mount point) of the device's mounts."""
    root_dev = "/dev/mmcblk0p2" if state.booted_slot() == "A" else "/dev/mmcblk0p3"
    journal_kb = sum(f.stat().st_size for f in (state.root / "journal").glob("*") if f.is_file()) // 1024
    data_used = 182_344 + journal_kb + state.config.seed % 50_000
    return [
        ("/dev/root" if root_dev else root_dev, 1_011_672, 612_884, "/"),
        ("devtmpfs", 867_196, 0, "/dev"),
        ("tmpfs", 1_004_936, 12_288, "/run"),
        ("tmpfs", 1_004_936, 96, "/tmp"),
        ("/dev/mmcblk0p1", 65_390, 24_176, "/boot"),
        ("/dev/mmcblk0p4", 11_252_980, data_used, "/data"),
    ]


def df(argv: list[str], state: DeviceState) -> int:
    human = False
    for arg in argv:
        if arg.startswith("-") and set(arg[1:]) <= set("PhkT"):
            human = human or "h" in arg
        elif not arg.startswith("-"):
            continue  # a path: the device shows every mount, as busybox df does with unknown paths
        else:
            return fail(f"df: invalid option -- '{arg.lstrip('-')[:1]}'\nTry 'df --help' for more information.")
    rows = [("Filesystem", "Size" if human else "1024-blocks", "Used", "Available" if not human else "Avail",
             "Capacity", "Mounted on")]
    for fs, size, used, mount in _mounts(state):
        avail = max(0, int(size * 0.95) - used) if mount in ("/", "/data", "/boot") else size - used
        cap = f"{-(-used * 100 // max(1, used + avail))}%"
        cols = (_human(size), _human(used), _human(avail)) if human else (str(size), str(used), str(avail))
        rows.append((fs, *cols, cap, mount))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        out(f"{r[0]:<{width}} {r[1]:>11} {r[2]:>8} {r[3]:>9} {r[4]:>8} {r[5]}\n")
    return 0


def _human(kib: int) -> str:
    value = float(kib)
    for unit in ("K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.1f}{unit}" if value < 10 and unit != "K" else f"{value:.0f}{unit}"
        value /= 1024
    return f"{kib}K"


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
