"""Device families the simulator can be: the Yocto gateway (the default) and an OpenWrt cellular router.

The gateway is what the simulator always was; nothing here changes it. An OpenWrt router answers `ubus`,
`uqmi` and `uci` from the same modem and link state as the gateway's mmcli/nmcli (so its values move with the
dynamics and the scenarios), has BusyBox `logread`, and has no NetworkManager, ModemManager, RAUC, journald
or systemd: their shims are gone AND the host's own copies are off the device's PATH. For that, its shells get
``<state>/sysbin`` instead of the host's bin directories: links to the host's programs minus the hidden ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from siteline.core.atomic import write_atomic

GATEWAY = "gateway"
OPENWRT = "openwrt"
FAMILIES = (GATEWAY, OPENWRT)

OPENWRT_TOOLS = ("ubus", "uqmi", "uci")
# Tools an OpenWrt router does not have: neither their shims nor the host's programs of that name are reachable.
OPENWRT_ABSENT = frozenset({
    "mmcli", "nmcli", "rauc", "swupdate", "journalctl", "systemctl", "systemd-run", "hostnamectl", "timedatectl",
    "fw_printenv", "fw_setenv", "ModemManager", "NetworkManager", "busctl", "loginctl", "networkctl",
    "resolvectl", "qmicli", "mbimcli",
})
HOST_BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
SYSBIN = "sysbin"
QMI_NODE = "cdc-wdm0"

OPENWRT_VERSION = "23.05.3"
OPENWRT_REVISION = "r23809-234f1a2efa"
OPENWRT_TARGET = "mediatek/filogic"
OPENWRT_MODEL = "GL.iNet GL-X3000"
OPENWRT_BOARD = "glinet,gl-x3000"


def check(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown device family {family[:40]!r}: choose one of {', '.join(FAMILIES)}")
    return family


def shim_tools(family: str, gateway_tools: tuple[str, ...]) -> tuple[str, ...]:
    if family == OPENWRT:
        return tuple(t for t in gateway_tools if t not in OPENWRT_ABSENT) + OPENWRT_TOOLS
    return gateway_tools


def openwrt_os_release() -> str:
    """/etc/os-release as OpenWrt 23.05 writes it (base-files)."""
    return (
        'NAME="OpenWrt"\n'
        f'VERSION="{OPENWRT_VERSION}"\n'
        'ID="openwrt"\n'
        'ID_LIKE="lede openwrt"\n'
        f'PRETTY_NAME="OpenWrt {OPENWRT_VERSION}"\n'
        f'VERSION_ID="{OPENWRT_VERSION}"\n'
        'HOME_URL="https://openwrt.org/"\n'
        'BUG_URL="https://bugs.openwrt.org/"\n'
        'SUPPORT_URL="https://forum.openwrt.org/"\n'
        f'BUILD_ID="{OPENWRT_REVISION}"\n'
        f'OPENWRT_BOARD="{OPENWRT_TARGET}"\n'
        'OPENWRT_ARCH="aarch64_cortex-a53"\n'
        'OPENWRT_TAINTS=""\n'
        'OPENWRT_DEVICE_MANUFACTURER="OpenWrt"\n'
        f'OPENWRT_RELEASE="OpenWrt {OPENWRT_VERSION} {OPENWRT_REVISION}"\n'
    )


def shell_path(root: Path, family: str, default: str) -> str:
    """The device shell's PATH: the gateway's unchanged; an OpenWrt router's without the hidden host programs."""
    if family != OPENWRT:
        return default
    return os.pathsep.join([str(root / "bin"), str(root / SYSBIN)])


def apply(root: Path, family: str, files_root: Path) -> None:
    """Make an OpenWrt router's extra files (idempotent, cheap when done); nothing for the gateway."""
    if family != OPENWRT:
        return
    text = openwrt_os_release().encode()
    for rel in ("etc/os-release", "usr/lib/os-release"):
        path = files_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != text:
            write_atomic(path, text)
    release = (f"DISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE='{OPENWRT_VERSION}'\nDISTRIB_REVISION='{OPENWRT_REVISION}'\n"
               f"DISTRIB_TARGET='{OPENWRT_TARGET}'\nDISTRIB_DESCRIPTION='OpenWrt {OPENWRT_VERSION} "
               f"{OPENWRT_REVISION}'\n").encode()
    write_atomic(files_root / "etc/openwrt_release", release)
    node = files_root / "dev" / QMI_NODE  # the QMI control node; a plain file, only its presence counts
    if not node.exists() and not node.is_symlink():
        node.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(node, b"")
    _write_sysbin(root, set(shim_tools(OPENWRT, ())) | OPENWRT_ABSENT)


def _write_sysbin(root: Path, hidden: set[str]) -> None:
    """Links to the host's programs minus ``hidden``: remade only when the host's bin directories changed."""
    found: dict[str, str] = {}
    for directory in HOST_BIN_DIRS:
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                if entry.name not in found and entry.name not in hidden and os.access(entry.path, os.X_OK):
                    found[entry.name] = entry.path
    stamp = hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(found.items())).encode()).hexdigest()
    sysbin = root / SYSBIN
    stamp_file = root / (SYSBIN + ".stamp")
    if sysbin.is_dir() and stamp_file.exists() and stamp_file.read_text(encoding="utf-8") == stamp:
        return
    sysbin.mkdir(exist_ok=True)
    for old in os.scandir(sysbin):
        if old.name not in found:
            os.unlink(old.path)
    for name, target in found.items():
        link = sysbin / name
        if link.is_symlink() and os.readlink(link) == target:
            continue
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(target, link)
    write_atomic(stamp_file, stamp.encode())
