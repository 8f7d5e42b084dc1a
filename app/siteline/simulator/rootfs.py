"""The device's files: its rootfs directory (what `cat` shows) and the shim directory on PATH."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from siteline.core.atomic import write_atomic
from siteline.simulator import slots

# Every tool the device answers itself; each becomes <state>/bin/<tool>.
SHIM_TOOLS = (
    "cat", "uname", "hostname", "uptime", "df", "free", "mmcli", "nmcli", "rauc", "fw_printenv", "fw_setenv",
    "journalctl", "reboot", "poweroff", "passwd", "chpasswd", "iptables", "iptables-save", "iptables-restore",
    "nft", "systemctl", "mount", "ip", "sim-scenario",
    "lsblk", "cryptsetup", "sshd", "openssl", "logread", "dmesg", "swupdate",
    # Host-changing commands a shell may run: each acts on the device (its state dir) instead.
    "shutdown", "halt", "init", "telinit", "hostnamectl", "ip6tables", "ip6tables-save", "ip6tables-restore",
    "umount", "useradd", "usermod", "userdel", "groupadd", "sysctl", "date", "timedatectl", "modprobe", "rmmod",
    "lsmod", "ifconfig", "route", "systemd-run",
    # Readers of files: an absolute path the device has is read from its rootfs (see tools/files.py).
    "head", "tail", "grep", "sed", "ls", "stat", "test",
)
KERNEL_RELEASE = "5.15.71-nwedge"
KERNEL_VERSION = "#1 SMP PREEMPT Tue Mar 5 10:12:01 UTC 2024"
MACHINE = "aarch64"
DISTRO_ID = "nwedge"


def os_release(version: str) -> str:
    """A Yocto (Poky kirkstone based) vendor distro's /etc/os-release for image ``version``."""
    return (
        f"ID={DISTRO_ID}\n"
        "ID_LIKE=poky\n"
        'NAME="Northwind Edge OS"\n'
        f'VERSION="{version} (kirkstone)"\n'
        f"VERSION_ID={version}\n"
        'VERSION_CODENAME="kirkstone"\n'
        f'PRETTY_NAME="Northwind Edge OS {version} (kirkstone)"\n'
        f'CPE_NAME="cpe:/o:northwind:{DISTRO_ID}:{version}"\n'
        f"BUILD_ID=\"{version.replace('.', '')}1200\"\n"
        'HOME_URL="https://edge.northwind.example/"\n'
    )


def write_os_release(root: Path, version: str) -> None:
    """/etc/os-release and its /usr/lib twin (what scripts fall back to) for the booted image's version."""
    text = os_release(version).encode()
    write_atomic(rootfs(root) / "etc/os-release", text)
    (rootfs(root) / "usr/lib").mkdir(parents=True, exist_ok=True)
    write_atomic(rootfs(root) / "usr/lib/os-release", text)


def rootfs(root: Path) -> Path:
    return root / "rootfs"


def device_file(root: Path, path: str) -> Path:
    """The host-side file behind the device's absolute ``path`` (what tests read a device's writes back from)."""
    rel = os.path.normpath("/" + path).lstrip("/")
    return rootfs(root) / rel


# A POSIX-portable login name (what useradd accepts by default): no "/", no "..", nothing to escape with.
USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def valid_username(name: str) -> bool:
    return USERNAME.fullmatch(name) is not None


def home_of(root: Path, user: str) -> Path:
    if not valid_username(user):
        raise ValueError(f"{user[:64]!r} is not a valid user name (letters a-z, digits, '_' and '-', at most 32)")
    return rootfs(root) / ("root" if user == "root" else f"home/{user}")


def inside(root: Path, path: Path) -> bool:
    """True when ``path`` (symlinks followed) stays inside the device's rootfs."""
    return path.resolve().is_relative_to(rootfs(root).resolve())


def populate(root: Path, hostname: str, version: str, user: str) -> None:
    """Write a new device's files (idempotent per file)."""
    fs = rootfs(root)
    for sub in ("etc", "proc", "root", "data", "var/log", "var/tmp", "tmp"):
        (fs / sub).mkdir(parents=True, exist_ok=True)
    home = home_of(root, user)
    (home / ".ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(fs / "etc/hostname", f"{hostname}\n".encode())
    hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost\n"
    write_atomic(fs / "etc/hosts", hosts.encode())
    write_accounts(root, [user])
    write_os_release(root, version)
    machine_id = os.urandom(16).hex()
    write_atomic(fs / "etc/machine-id", (machine_id + "\n").encode())
    write_serial_number(root, serial_number(hostname, machine_id))
    (fs / "etc/rauc").mkdir(exist_ok=True)
    write_atomic(fs / "etc/rauc/system.conf", _system_conf())
    ensure_dev(root)
    keys = home / ".ssh/authorized_keys"
    if not keys.exists():
        write_atomic(keys, b"", mode=0o600)


# Where a device tree board keeps its serial number (NUL-terminated, as the kernel shows it).
SERIAL_FILES = ("proc/device-tree/serial-number", "sys/firmware/devicetree/base/serial-number")


def serial_number(name: str, machine_id: str) -> str:
    """The board's serial number: stable for the device (from its name and machine id), unique between devices."""
    return "NWG" + hashlib.sha256(f"{name}:{machine_id}".encode()).hexdigest()[:9].upper()


def write_serial_number(root: Path, serial: str) -> None:
    """The serial number where identify (and a real i.MX board) has it; kept once written (it is burnt in)."""
    for rel in SERIAL_FILES:
        path = rootfs(root) / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, serial.encode() + b"\0")


SYSTEM_ACCOUNTS = (("root", 0, "/root", "/bin/sh"), ("daemon", 1, "/usr/sbin", "/usr/sbin/nologin"),
                   ("messagebus", 997, "/nonexistent", "/usr/sbin/nologin"), ("nobody", 65534, "/nonexistent",
                                                                                  "/usr/sbin/nologin"))


def write_accounts(root: Path, users: list[str]) -> None:
    """/etc/passwd, /etc/group and /etc/shadow as a Yocto image has them, plus the device's login users.

    The password hashes stay in shadow.json (scrypt); /etc/shadow only shows which accounts exist,
    so tools that look users up (id, whoami, ls -l) keep working inside the device's namespace.
    """
    fs = rootfs(root)
    (fs / "etc").mkdir(parents=True, exist_ok=True)
    rows = list(SYSTEM_ACCOUNTS)
    known = {r[0] for r in rows}
    rows += [(u, 1000 + n, f"/home/{u}", "/bin/sh") for n, u in enumerate(sorted(set(users) - known))
             if valid_username(u)]
    passwd = "".join(f"{u}:x:{uid}:{uid}:{u}:{home}:{shell}\n" for u, uid, home, shell in rows)
    group = "".join(f"{u}:x:{uid}:\n" for u, uid, _h, _s in rows)
    shadow = "".join(f"{u}:{'*' if shell.endswith('nologin') else '!'}:19787:0:99999:7:::\n"
                     for u, _uid, _h, shell in rows)
    write_atomic(fs / "etc/passwd", passwd.encode())
    write_atomic(fs / "etc/group", group.encode())
    write_atomic(fs / "etc/shadow", shadow.encode(), mode=0o640)


def _system_conf() -> bytes:
    return (
        b"[system]\ncompatible=nwedge-gw-imx8mm\nbootloader=uboot\nstatusfile=/data/rauc.status\n\n"
        b"[keyring]\npath=/etc/rauc/ca.cert.pem\n\n"
        b"[slot.rootfs.0]\ndevice=/dev/mmcblk0p2\ntype=ext4\nbootname=A\n\n"
        b"[slot.rootfs.1]\ndevice=/dev/mmcblk0p3\ntype=ext4\nbootname=B\n"
    )


def app_dir() -> Path:
    """The directory holding the `siteline` package, so shims find it without an install."""
    return Path(__file__).resolve().parent.parent.parent


# The device's /dev (<state>/rootfs/dev), which the host guard mounts over /dev in the device's namespace:
# the character devices a shell needs are links into .nodes, where each command's namespace puts copies of
# the host's nodes (a tmpfs: the state directory may sit on a nodev file system); pts is the host's devpts
# (the simulator's consoles, SSH shells and modem port are ptys made there); the slots' block devices are
# regular files (slots.slot_file); mapper/ is what storage.provision writes. Nothing else of the host.
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
NODES_DIR = ".nodes"
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", **{n: f"{NODES_DIR}/{n}" for n in DEV_NODES}}


def dev_dir(root: Path) -> Path:
    return rootfs(root) / "dev"


def ensure_dev(root: Path) -> Path:
    """Make the device's /dev (see DEV_LINKS) when anything is missing; cheap when it is complete."""
    dev = dev_dir(root)
    if (dev / NODES_DIR).is_dir() and (dev / "pts").is_dir() and all(
            slots.slot_file(root, s).exists() for s in slots.SLOT_TABLE):
        return dev
    for sub in (NODES_DIR, "pts", "shm"):
        (dev / sub).mkdir(parents=True, exist_ok=True)
    for name, target in DEV_LINKS.items():
        if not (dev / name).is_symlink() and not (dev / name).exists():
            os.symlink(target, dev / name)
    slots.ensure_slot_files(root)
    return dev


# Writers of block devices: their /dev arguments become the device's own files (a slot's /dev/mmcblk0p3 is
# <state>/rootfs/dev/mmcblk0p3) and any other /dev path but the harmless ones is refused. Inside the host
# guard's namespace /dev is the device's anyway; without it (not root) this is what keeps a raw write off
# a disk of the host. Plain sh, so a flash pays no interpreter start.
DEV_WRITERS = ("dd", "bmaptool")
_DEV_WRITER = """#!/bin/sh
# Siteline simulator shim: {tool} whose /dev paths are the device's (its state dir), never the host's.
dev={dev}
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case $a in
    *=/dev/*) k=${{a%%=/dev/*}}=; p=/dev/${{a#*=/dev/}} ;;
    /dev/*) k=; p=$a ;;
    *) set -- "$@" "$a"; continue ;;
  esac
  case $p in
    */..|*/../*) echo "{tool}: $p: give the device path itself, without .." >&2; exit 1 ;;
    /dev/null|/dev/zero|/dev/full|/dev/random|/dev/urandom|/dev/tty|/dev/std*|/dev/fd/*) ;;
    *) if [ -f "$dev/${{p#/dev/}}" ] && [ ! -L "$dev/${{p#/dev/}}" ]; then p=$dev/${{p#/dev/}}
       else echo "{tool}: $p: no such device on the simulated device (refusing to touch the host's)" >&2
       exit 1; fi ;;
  esac
  set -- "$@" "$k$p"
done
exec {real} "$@"
"""


def _write_dev_writers(root: Path, bin_dir: Path) -> None:
    for tool in DEV_WRITERS:
        real = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        target = bin_dir / tool
        if real is None:  # the host has none: neither has the device (`command -v` must say so)
            target.unlink(missing_ok=True)
            continue
        dev = shlex.quote(str(dev_dir(root.resolve())))
        text = _DEV_WRITER.format(tool=tool, dev=dev, real=shlex.quote(real)).encode()
        if not target.exists() or target.read_bytes() != text:
            write_atomic(target, text, mode=0o755)


def write_shims(root: Path, family: str = "gateway") -> Path:
    """(Re)write <state>/bin: one tiny sh script per tool, each running this interpreter's shim module.

    Rewritten on every open so a state directory made by another interpreter or checkout works.
    ``-P`` keeps the current directory off sys.path (a device shell may sit anywhere). The tools are the
    device family's (simulator/family.py); another family's left in the directory are removed.
    """
    from siteline.simulator import family as families

    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    py = shlex.quote(sys.executable)
    path = shlex.quote(str(app_dir()))
    state = shlex.quote(str(root.resolve()))
    tools = families.shim_tools(family, SHIM_TOOLS)
    for gone in (set(SHIM_TOOLS) | set(families.OPENWRT_TOOLS)) - set(tools):
        (bin_dir / gone).unlink(missing_ok=True)
    for tool in tools:
        text = (
            "#!/bin/sh\n"
            f"# Siteline simulator shim: answers `{tool}` from the device state, never from the host.\n"
            f': "${{SITELINE_SIM_STATE:={state}}}"\n'
            "export SITELINE_SIM_STATE\n"
            f"PYTHONPATH={path}${{PYTHONPATH:+:$PYTHONPATH}}\n"
            "export PYTHONPATH\n"
            f'exec {py} -P -m siteline.simulator.shim {tool} "$@"\n'
        ).encode()
        target = bin_dir / tool
        if not target.exists() or target.read_bytes() != text:
            write_atomic(target, text, mode=0o755)
    _write_dev_writers(root, bin_dir)
    return bin_dir
