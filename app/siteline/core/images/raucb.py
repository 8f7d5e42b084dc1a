"""RAUC bundles (.raucb): a squashfs image with a CMS signature appended, read without mounting.

Layout (RAUC docs): squashfs, then the signature, then its length as a big-endian u64. The
squashfs superblock gives the filesystem's size, so a truncated bundle is found from the header
alone. The manifest comes from ``unsquashfs -cat`` (bounded output, timeout); when it cannot be
read the import goes on with less metadata and says so.
"""

from __future__ import annotations

import configparser
import json
import os
import selectors
import shutil
import struct
import subprocess
import time
from pathlib import Path

from siteline.core.images.formats import ImageError, ImageInfo, ImageWrite, is_bootloader_target

MAX_MANIFEST = 1024 * 1024
TIMEOUT = 20.0


def squashfs_size(path: Path) -> int:
    """bytes_used from the squashfs 4 superblock (offset 40, little-endian u64)."""
    with path.open("rb") as f:
        sb = f.read(96)
    if len(sb) < 96 or sb[:4] != b"hsqs":
        raise ImageError(f"{path.name} is truncated: its squashfs header is incomplete.", "Copy the bundle again.")
    major = struct.unpack_from("<H", sb, 28)[0]
    if major != 4:
        raise ImageError(f"{path.name} has squashfs version {major}; RAUC bundles use 4.", "Rebuild the bundle.")
    return int(struct.unpack_from("<Q", sb, 40)[0])


def check_layout(path: Path) -> int:
    """Raise on a truncated bundle; return the signature's size."""
    total = path.stat().st_size
    used = squashfs_size(path)
    if used > total:
        raise ImageError(f"The bundle {path.name} is truncated: its filesystem needs {used} bytes, the file has "
                         f"{total}.", "Copy the bundle again; the file is incomplete.")
    with path.open("rb") as f:
        f.seek(max(total - 8, 0))
        sig_size = int(struct.unpack(">Q", f.read(8).rjust(8, b"\0"))[0])
        sig_start = total - 8 - sig_size
        # The signature is DER CMS: it starts with a SEQUENCE tag (0x30). A cut file ends elsewhere.
        f.seek(max(sig_start, 0))
        der = f.read(1)
    if total < 8 or sig_size == 0 or sig_start < used or der != b"\x30":
        raise ImageError(f"The bundle {path.name} is truncated or unsigned: no complete signature after the "
                         "filesystem.", "Copy the bundle again, or rebuild it with 'rauc bundle --cert --key'.")
    return sig_size


def _bounded_output(cmd: list[str], limit: int, timeout: float) -> bytes | None:
    """stdout of ``cmd`` when it exits 0 within ``timeout`` and prints at most ``limit`` bytes, else None.

    A crafted squashfs can hold a huge or endless "manifest"; reading with a deadline and a cap keeps
    the import bounded in both time and memory.
    """
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    parts: list[bytes] = []
    received = 0
    with proc, selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and received <= limit:
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            parts.append(chunk)
            received += len(chunk)
        if received > limit or time.monotonic() >= deadline:
            proc.kill()
            proc.wait()
            return None
        try:
            rc = proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return b"".join(parts) if rc == 0 and parts else None


def read_manifest(path: Path) -> str | None:
    """manifest.raucm's text via unsquashfs, or None when it cannot be read here."""
    tool = shutil.which("unsquashfs") or next(
        (c for c in ("/usr/bin/unsquashfs", "/usr/sbin/unsquashfs") if os.access(c, os.X_OK)), None)
    if tool is None:
        return None
    data = _bounded_output([tool, "-cat", str(path), "manifest.raucm"], MAX_MANIFEST, TIMEOUT)
    return data.decode("utf-8", "replace") if data is not None else None


def read_info_json(path: Path) -> dict[str, object] | None:
    """``rauc info --no-verify`` as JSON: the fallback when unsquashfs is missing (no signature check)."""
    tool = shutil.which("rauc")
    if tool is None:
        return None
    data = _bounded_output([tool, "info", "--no-verify", "--output-format=json", str(path)], MAX_MANIFEST, TIMEOUT)
    try:
        parsed = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def parse_manifest(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ImageError(f"The bundle's manifest cannot be read: {exc}.", "Rebuild the bundle.") from exc
    return parser


def fill(info: ImageInfo) -> None:
    """Bundle layout check and manifest metadata into ``info``."""
    info.details["signature_size"] = check_layout(info.path)
    text = read_manifest(info.path)
    if text is not None:
        info.details["manifest"] = text
        _fill_from_manifest(info, parse_manifest(text))
    elif (js := read_info_json(info.path)) is not None:
        info.details["manifest"] = None
        _fill_from_json(info, js)
    else:
        info.problems.append("The bundle's manifest is not readable here (unsquashfs and rauc missing or failed); "
                             "version and compatible are unknown.")
        info.details["manifest"] = None
        return
    if not info.compatible:
        info.problems.append("The bundle's manifest has no compatible string.")


def _fill_from_manifest(info: ImageInfo, m: configparser.ConfigParser) -> None:
    info.compatible = m.get("update", "compatible", fallback="")
    info.version = m.get("update", "version", fallback="")
    info.description = m.get("update", "description", fallback="")
    info.build = m.get("update", "build", fallback="")
    info.details["bundle_format"] = m.get("bundle", "format", fallback="plain")
    for section in m.sections():
        if not section.startswith("image."):
            continue
        slot_class = section.split(".")[1]
        size_text = m.get(section, "size", fallback="")
        info.writes.append(ImageWrite(
            name=m.get(section, "filename", fallback=""), kind=slot_class,
            size=int(size_text) if size_text.isdigit() else None, sha256=m.get(section, "sha256", fallback=""),
            bootloader=is_bootloader_target(slot_class, "")))


def _fill_from_json(info: ImageInfo, js: dict[str, object]) -> None:
    info.compatible, info.version = str(js.get("compatible") or ""), str(js.get("version") or "")
    info.description, info.build = str(js.get("description") or ""), str(js.get("build") or "")
    images = js.get("images")
    for item in images if isinstance(images, list) else []:
        if not isinstance(item, dict):
            continue
        for slot_class, image in item.items():
            image = image if isinstance(image, dict) else {}
            size = image.get("size")
            info.writes.append(ImageWrite(
                name=str(image.get("filename") or ""), kind=str(slot_class),
                size=size if isinstance(size, int) else None, sha256=str(image.get("checksum") or ""),
                bootloader=is_bootloader_target(str(slot_class), "")))
