"""What an update image is and what it would write, read without mounting or extracting it.

``describe(path)`` recognises a RAUC bundle, a SWUpdate archive or a raw (optionally compressed)
disk image by its first bytes, streams the file once for its SHA-256 and hands the format-specific
reading to ``raucb``, ``swu`` or ``rawimg``. Anything malformed ends in ``ImageError`` (the file
cannot be used at all) or in ``ImageInfo.problems`` (usable, but a refusal check must look).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from siteline.core.errors import SitelineError

ImageFormat = Literal["raucb", "swu", "raw"]
Progress = Callable[[int, int], None]
CHUNK = 1024 * 1024

# Slot classes / sw-description types that mean "this image rewrites the bootloader".
BOOTLOADER_CLASSES = frozenset({"bootloader", "boot", "uboot", "u-boot", "spl"})
BOOTLOADER_TYPES = frozenset({"bootloader", "ubootenv", "uboot", "u-boot"})
# eMMC hardware boot partitions (/dev/mmcblk0boot0) hold the bootloader on most boards.
_BOOT_DEVICE = re.compile(r"mmcblk\d+boot\d+")


class ImageError(SitelineError):
    """The file is not an image Siteline can use (unknown, truncated, malicious)."""


@dataclass(frozen=True)
class ImageWrite:
    """One thing the image writes on the device.

    ``name``: the file inside the image (``rootfs.ext4``) or the slot class for RAUC.
    ``kind``: the RAUC slot class or the sw-description ``type`` (``raw``, ``ubivol``, ``bootloader``).
    ``target``: the device/volume/path it goes to when the image says so, else "".
    """

    name: str
    kind: str
    target: str = ""
    size: int | None = None
    sha256: str = ""
    bootloader: bool = False


@dataclass
class ImageInfo:
    """Metadata of one image file; ``problems`` are plain sentences, empty when all is well."""

    path: Path
    format: ImageFormat
    size: int
    sha256: str
    version: str = ""
    compatible: str = ""
    # Every compatible value the image accepts: RAUC's one string, or sw-description's hardware list.
    compatibles: list[str] = field(default_factory=list)
    description: str = ""
    build: str = ""
    writes: list[ImageWrite] = field(default_factory=list)
    writes_bootloader: bool = False
    problems: list[str] = field(default_factory=list)
    # Format-specific details: "manifest" (RAUC INI text), "sw_description" (text),
    # "compression", "uncompressed_size", "bmap_path", "bmap_ok", "signed" ...
    details: dict[str, object] = field(default_factory=dict)


def is_bootloader_target(kind: str, target: str) -> bool:
    """True when a slot class / type or a device path means the bootloader is rewritten."""
    k = kind.strip().lower()
    if k in BOOTLOADER_CLASSES or k in BOOTLOADER_TYPES:
        return True
    return bool(_BOOT_DEVICE.search(target))


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """SHA-256 of a file in 1 MiB reads (constant memory whatever the size); progress(done, total)."""
    digest = hashlib.sha256()
    try:
        total, done = path.stat().st_size, 0
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except OSError as exc:
        raise ImageError(f"Cannot read {path}: {exc.strerror or exc}.", "Check the path and permissions.") from exc
    return digest.hexdigest()


def detect_format(path: Path) -> ImageFormat:
    """Tell the format from the first bytes; the file name only breaks ties for raw images."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ImageError(f"Cannot read {path}: {exc.strerror or exc}.", "Check the path and permissions.") from exc
    if not head:
        raise ImageError(f"{path.name} is empty.", "Copy the image again; the file has no content.")
    if head[:4] == b"hsqs":
        return "raucb"
    if head[:6] in (b"070701", b"070702"):
        return "swu"
    if path.suffix == ".swu":
        raise ImageError(f"{path.name} is not a SWUpdate archive (no newc/crc cpio header).",
                         "Rebuild it with 'cpio -o -H crc'.")
    if path.suffix == ".raucb":
        raise ImageError(f"{path.name} is not a RAUC bundle (no squashfs header).", "Rebuild it with 'rauc bundle'.")
    return "raw"


def describe(path: str | os.PathLike[str], progress: Progress | None = None) -> ImageInfo:
    """Read an image's metadata; raises ImageError when the file cannot be used at all.

    ``progress(done, total)`` follows the hashing pass (the long part for a multi-GB image).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p} is not a file.", "Give the path of an image file (.raucb, .swu, .img[.gz|.xz|.zst]).")
    fmt = detect_format(p)
    info = ImageInfo(path=p, format=fmt, size=p.stat().st_size, sha256=sha256_file(p, progress))
    try:
        _fill(info)
    except OSError as exc:  # the file vanished or the USB stick was pulled mid-read
        raise ImageError(f"Reading {p.name} failed: {exc.strerror or exc}.", "Check the medium and try again.") \
            from exc
    info.writes_bootloader = any(w.bootloader for w in info.writes)
    if info.compatible and not info.compatibles:
        info.compatibles = [info.compatible]
    return info


def _fill(info: ImageInfo) -> None:
    # Imported here, not at the top: the readers import ImageInfo from this module.
    if info.format == "raucb":
        from siteline.core.images.raucb import fill as fill_raucb

        fill_raucb(info)
    elif info.format == "swu":
        from siteline.core.images.swu import fill as fill_swu

        fill_swu(info)
    else:
        from siteline.core.images.rawimg import fill as fill_rawimg

        fill_rawimg(info)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 comparing two image versions part by part (numbers as numbers: 1.10 > 1.9).

    A missing part counts as 0 (3 == 3.0.0) and a letter part sorts before it, so a pre-release
    sorts before its release (2.0-rc1 < 2.0), as RAUC/SWUpdate users expect.
    """
    missing = (1, 0, "")  # the same as an explicit 0
    for x, y in itertools.zip_longest(_version_parts(a), _version_parts(b), fillvalue=missing):
        if x != y:
            return 1 if x > y else -1
    return 0


def _version_parts(v: str) -> list[tuple[int, int, str]]:
    # Numbers rank (1, n); letters (0, 0, word), below any number including a missing one.
    return [(1, int(t), "") if t.isdigit() else (0, 0, t.lower()) for t in re.findall(r"\d+|[A-Za-z]+", v)]


def compatible_problem(info: ImageInfo, device_compatible: str) -> str | None:
    """Why the image does not fit a device with this compatible string, or None when it does."""
    if not info.compatibles:
        return f"{info.path.name} declares no compatible string; it cannot be matched to '{device_compatible}'."
    if device_compatible.strip() in (c.strip() for c in info.compatibles):
        return None
    return (f"{info.path.name} is for '{', '.join(info.compatibles)}', the device is '{device_compatible}'. "
            "Use the image built for this device.")


def downgrade_problem(info: ImageInfo, installed_version: str) -> str | None:
    """Why installing would be a downgrade, or None when the image is the same version or newer."""
    if not info.version or not installed_version:
        return None
    if compare_versions(info.version, installed_version) < 0:
        return (f"{info.path.name} is version {info.version}, older than the installed {installed_version}: "
                "a downgrade needs an explicit override.")
    return None
