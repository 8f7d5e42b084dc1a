"""The A/B root slots: what is installed in each, as RAUC records it (its slot status file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline.simulator.store import JsonDict, read_json, update_json, write_json

SLOTS_FILE = "slots.json"
COMPATIBLE = "nwedge-gw-imx8mm"
FIRST_VERSION = "2024.03.0"
BOOT_ATTEMPTS = 3


@dataclass(frozen=True)
class SlotInfo:
    rauc_name: str  # RAUC's name, as in system.conf: [slot.rootfs.0]
    bootname: str  # the name U-Boot's BOOT_ORDER uses
    device: str
    mountpoint: str


SLOT_TABLE = (
    SlotInfo("rootfs.0", "A", "/dev/mmcblk0p2", "/"),
    SlotInfo("rootfs.1", "B", "/dev/mmcblk0p3", ""),
)
BOOTNAMES = tuple(s.bootname for s in SLOT_TABLE)
# What each slot's "block device" is on the simulator: a sparse regular file of this size in the device's
# /dev (<state>/rootfs/dev), which the host guard mounts as the namespace's /dev. A raw write (dd, bmaptool)
# to the slot's device path lands there, never on a disk of the host.
SLOT_FILE_SIZE = 8 * 1024 * 1024


def by_bootname(bootname: str) -> SlotInfo | None:
    return next((s for s in SLOT_TABLE if s.bootname == bootname), None)


def by_rauc_name(name: str) -> SlotInfo | None:
    return next((s for s in SLOT_TABLE if s.rauc_name == name), None)


def slot_file(root: Path, slot: SlotInfo) -> Path:
    """The state-dir file behind ``slot.device`` (/dev/mmcblk0p3 -> <state>/rootfs/dev/mmcblk0p3)."""
    return root / "rootfs" / slot.device.lstrip("/")


def ensure_slot_files(root: Path) -> None:
    """Make each slot's file (sparse, ``SLOT_FILE_SIZE``) when missing; a written one is left as it is.

    Never through a symlink (O_NOFOLLOW, O_EXCL) and never outside the state directory: a link planted
    there must not make this open a host disk.
    """
    for slot in SLOT_TABLE:
        path = slot_file(root, slot)
        if path.is_symlink() or path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{path.parent} leaves the device's state directory {root}; not making slot files")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, SLOT_FILE_SIZE)
        finally:
            os.close(fd)


def new_slot_record(version: str, when: str, *, boots: bool = True, sha256: str = "", size: int = 0,
                    healthy: bool = True) -> JsonDict:
    return {
        "compatible": COMPATIBLE,
        "version": version,
        "description": "Northwind Edge OS root filesystem",
        "build": version.replace(".", "") + "1200",
        "boots": boots,  # False: the image panics at boot (a bundle marked [siteline-sim] boots=false)
        "healthy": healthy,  # False: boots, but edge-agent.service fails (a bundle marked healthy=false)
        "sha256": sha256 or ("0" * 64),
        "size": size or 268435456,
        "installed": {"timestamp": when, "count": 1},
        "activated": {"timestamp": when, "count": 1},
        "status": "ok",
    }


def initial(when: str) -> JsonDict:
    return {"A": new_slot_record(FIRST_VERSION, when), "B": new_slot_record(FIRST_VERSION, when)}


def load(root: Path) -> JsonDict:
    return read_json(root / SLOTS_FILE)


def save(root: Path, data: JsonDict) -> None:
    write_json(root / SLOTS_FILE, data)


def update(root: Path, change: Any) -> JsonDict:
    return update_json(root, root / SLOTS_FILE, change)


def booted_healthy(root: Path, booted: str) -> bool:
    """Whether the image in the booted slot runs its services (False for a healthy=false drill image)."""
    record = load(root).get(booted)
    return not isinstance(record, dict) or record.get("healthy", True) is not False
