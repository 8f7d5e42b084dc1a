"""Update backends: how an uploaded image is installed into the inactive slot on the device.

Every path reaches the device's shell only through ``shlex.quote`` (or as a positional argument of a
quoted ``sh -c`` script), so a file name with spaces, quotes or ``$(...)`` stays one literal word.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from siteline.api import DeviceContext

DETECT_TIMEOUT = 10.0
BOOT_ATTEMPTS = 3  # what RAUC's U-Boot integration (and core/device/slot_actions.py) gives a newly active slot


class RaucBackend:
    """``rauc install``: RAUC picks the inactive slot, writes it and marks it primary itself."""

    name = "rauc"
    formats: tuple[str, ...] = ("raucb",)

    async def detect(self, ctx: DeviceContext) -> bool:
        result = await ctx.run("command -v rauc >/dev/null 2>&1 && rauc --version", DETECT_TIMEOUT)
        return result.exit_code == 0

    def install_command(self, remote_path: str, target_slot: str | None) -> str:
        return f"rauc install {shlex.quote(remote_path)}"


# SWUpdate's A/B convention (meta-swupdate and SWUpdate's own examples): sw-description holds one software
# set ("stable") with one mode per rootfs copy, "copy1" for the first rootfs partition and "copy2" for the
# second, and the running system calls `swupdate -e stable,copyN` for the copy it is NOT running from.
# A device path only tells which copy it is when the layout is the usual one (boot partition 1, rootfs
# copies on partitions 2 and 3); for anything else the family's table (``modes``) must say it, and without
# one no -e is passed, so the selection configured on the device itself (SWUPDATE_ARGS) applies. A wrong
# guess could write the running rootfs, so there is no guessing beyond that.
DEFAULT_SET = "stable"
_USUAL_COPIES = {"2": "copy1", "3": "copy2"}
_PARTITION = re.compile(r"^/dev/(?:mmcblk\d+p|nvme\d+n\d+p|[sv]d[a-z]|hd[a-z])(\d+)$")


class SwupdateBackend:
    """``swupdate -v -i FILE [-e SET,MODE]``: SWUpdate writes the copy the selection names and (through
    the bootenv section of sw-description) makes it the next one booted."""

    name = "swupdate"
    formats: tuple[str, ...] = ("swu",)

    def __init__(self, modes: Mapping[str, str] | None = None, software_set: str = DEFAULT_SET) -> None:
        self.modes = dict(modes or {})  # device path -> mode of the family's sw-description
        self.software_set = software_set

    async def detect(self, ctx: DeviceContext) -> bool:
        result = await ctx.run("command -v swupdate >/dev/null 2>&1 || swupdate -h >/dev/null 2>&1", DETECT_TIMEOUT)
        return result.exit_code == 0

    def selection(self, target_slot: str | None) -> str | None:
        """The ``-e`` argument for ``target_slot``, or None to leave the choice to the device's own config."""
        if not target_slot:
            return None
        mode = self.modes.get(target_slot)
        if mode is None:
            match = _PARTITION.match(target_slot)
            mode = _USUAL_COPIES.get(match.group(1)) if match else None
        return f"{self.software_set},{mode}" if mode else None

    def install_command(self, remote_path: str, target_slot: str | None) -> str:
        command = f"swupdate -v -i {shlex.quote(remote_path)}"
        selection = self.selection(target_slot)
        return f"{command} -e {shlex.quote(selection)}" if selection else command


# Making the written slot primary, in this order:
# 1. the path spells the bootname out (a partition label such as /dev/disk/by-partlabel/rootfs_b or rootfsB
#    names slot "B"): U-Boot's BOOT_<x>_LEFT / BOOT_ORDER are set with fw_setenv, as slot_actions does;
# 2. else, on a device with RAUC, RAUC's own slot table (`rauc status --output-format=shell`, meant to be
#    eval'ed) says which slot has that device, and `rauc status mark-active SLOT` switches with whatever
#    bootloader RAUC drives;
# 3. else (/dev/mmcblk0p3 on a bare U-Boot device says nothing about its bootname) the command only writes
#    and says so; ``switches_slot`` is False for such a path, and the flash machine makes the slot primary
#    itself (slot_actions mark-active, which knows the bootname from the Slots snapshot).
_LABELLED = re.compile(r"(?:rootfs|root|system|slot)[-_.]?([ab])$", re.IGNORECASE)
_DECOMPRESS = {".gz": "gzip", ".xz": "xz", ".zst": "zstd"}

# Runs as `sh -c SCRIPT siteline-raw IMAGE DEVICE BMAP DECOMPRESSOR BOOTNAME`, so the paths never meet the
# parser. One line (statements joined by "; "), so that a serial console's shell takes it as one command.
# Every refusal says what is wrong on stderr and exits 2 before a byte is written; a failed write or
# switch exits 1. Without pipefail (dash) a decompressor failure would hide behind dd's success, so the
# archive is tested first there; with it (bash, busybox ash) the pipe's status says it, in one pass.
_RAW_STEPS = (
    "img=$1 dev=$2 bmap=$3 dec=$4 boot=$5",
    'say() { echo "siteline-raw: $*" >&2; }',
    '[ -f "$img" ] || { say "image $img not found on the device: upload it first"; exit 2; }',
    '[ -e "$dev" ] || { say "target slot $dev does not exist on the device: check the slot table"; exit 2; }',
    'while read -r src _rest; do if [ "$src" = "$dev" ]; then say "refusing: $dev is mounted '
    '(the running system?)"; exit 2; fi; done < /proc/mounts',
    'if [ -n "$dec" ] && ! command -v "$dec" >/dev/null 2>&1; then say "$dec is not installed on the device: '
    'upload an uncompressed image"; exit 2; fi',
    "if (set -o pipefail) 2>/dev/null; then set -o pipefail; elif [ -n \"$dec\" ]; then "
    '"$dec" -t "$img" || { say "$img is not a valid $dec archive (truncated upload?): nothing written"; exit 2; }; fi',
    'if [ -f "$bmap" ] && command -v bmaptool >/dev/null 2>&1; then '
    'bmaptool copy --bmap "$bmap" "$img" "$dev" || { say "bmaptool copy to $dev failed"; exit 1; }; '
    'elif [ -n "$dec" ]; then "$dec" -dc "$img" | dd of="$dev" bs=4M conv=fsync '
    '|| { say "writing $dev failed (image or archive damaged?)"; exit 1; }; '
    'else dd if="$img" of="$dev" bs=4M conv=fsync || { say "writing $dev failed"; exit 1; }; fi',
    "sync",
    'if [ -z "$boot" ] && command -v rauc >/dev/null 2>&1 && st=$(rauc status --output-format=shell 2>/dev/null); '
    'then eval "$st"; i=0; for slot in ${RAUC_SYSTEM_SLOTS:-}; do i=$((i + 1)); eval "d=\\${RAUC_SLOT_DEVICE_$i:-}"; '
    'if [ "$d" = "$dev" ]; then rauc status mark-active "$slot" || { say "image written to $dev, but '
    'rauc status mark-active $slot failed"; exit 1; }; echo "siteline-raw: $dev written; RAUC slot $slot boots '
    'next"; exit 0; fi; done; fi',
    'if [ -z "$boot" ]; then echo "siteline-raw: $dev written; which bootname it has is not known here: the slot '
    'switch is left to Siteline"; exit 0; fi',
    'command -v fw_setenv >/dev/null 2>&1 || { say "image written to $dev, but fw_setenv is missing: '
    'cannot switch"; exit 1; }',
    "order=$boot",
    'for name in $(fw_printenv -n BOOT_ORDER 2>/dev/null); do [ "$name" = "$boot" ] || order="$order $name"; done',
    # Attempts first, then the order: a power cut between the two leaves the old slot primary.
    f'fw_setenv "BOOT_${{boot}}_LEFT" {BOOT_ATTEMPTS} && fw_setenv BOOT_ORDER "$order" '
    '|| { say "image written to $dev, but switching U-Boot to slot $boot failed"; exit 1; }',
    'echo "siteline-raw: $dev written; slot $boot boots next (BOOT_ORDER=$order)"',
)
_RAW_SCRIPT = "; ".join(_RAW_STEPS)


class RawBackend:
    """A raw (optionally .gz/.xz/.zst) image written straight to the inactive slot's device: bmaptool when
    the device has it and PATH.bmap was uploaded, else dd with conv=fsync; then that slot made primary."""

    name = "raw"
    formats: tuple[str, ...] = ("raw",)

    async def detect(self, ctx: DeviceContext) -> bool:
        result = await ctx.run("command -v dd >/dev/null 2>&1", DETECT_TIMEOUT)
        return result.exit_code == 0

    @staticmethod
    def bootname(target_slot: str | None) -> str | None:
        """The U-Boot bootname the path spells out (``.../rootfs_b`` -> "B"), else None."""
        match = _LABELLED.search(target_slot.rstrip("/")) if target_slot else None
        return match.group(1).upper() if match else None

    def switches_slot(self, target_slot: str | None) -> bool:
        """True when the install command surely makes ``target_slot`` primary too. False: it does only on a
        device with RAUC; when the slot is not primary after it, the caller switches (slot_actions mark-active
        on the slot whose device is ``target_slot``)."""
        return self.bootname(target_slot) is not None

    def install_command(self, remote_path: str, target_slot: str | None) -> str:
        if not target_slot:
            return ("echo 'siteline-raw: refusing to write a raw image: the inactive slot is not known "
                    "(no slot table on the device); probe the slots first' >&2; false")
        suffix = next((s for s in _DECOMPRESS if remote_path.lower().endswith(s)), "")
        args = [remote_path, target_slot, f"{remote_path}.bmap", _DECOMPRESS.get(suffix, ""),
                self.bootname(target_slot) or ""]
        return "sh -c " + shlex.join([_RAW_SCRIPT, "siteline-raw", *args])
