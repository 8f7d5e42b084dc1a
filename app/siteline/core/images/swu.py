"""SWUpdate archives (.swu): a newc/crc cpio stream read header by header, never extracted.

The first entry must be ``sw-description`` (libconfig, or the JSON form), usually followed by
``sw-description.sig``. Entry names with a slash, ``..``, an absolute path or a NUL are refused
(SWUpdate itself only ever names flat files), as are entries running past the end of the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from siteline.core.images import libconfig
from siteline.core.images.formats import CHUNK, ImageError, ImageInfo, ImageWrite, is_bootloader_target

HEADER_LEN = 110
MAGICS = (b"070701", b"070702")
TRAILER = "TRAILER!!!"
MAX_ENTRIES = 4096
_HEX = re.compile(rb"[0-9a-fA-F]{104}")
MAX_NAME = 1024
MAX_DESCRIPTION = 1024 * 1024
# sw-description sections that write something, and the type SWUpdate assumes when none is given.
# "bootenv" (and its old name "uboot") only set variables, as every A/B update does to switch slots:
# reported, not counted as rewriting the bootloader; an image of type "ubootenv" replacing the whole
# environment is.
SECTIONS = {"images": "raw", "files": "rawfile", "scripts": "lua", "partitions": "diskpart", "bootenv": "bootenv",
            "uboot": "bootenv"}


@dataclass(frozen=True)
class CpioEntry:
    name: str
    size: int
    offset: int  # where the entry's data starts in the archive
    sha256: str


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def _check_name(name: str, index: int) -> None:
    if "\0" in name or "/" in name or name in ("", ".", "..") or name.startswith(".."):
        raise ImageError(f"The .swu entry {index} has an unsafe name {name!r} (path separator, '..' or NUL).",
                         "Do not use this archive: SWUpdate archives only hold flat file names.")


def _header(f: BinaryIO, pos: int) -> tuple[int, int, int]:
    """Read one header at ``pos``; return (file size, name size, mode)."""
    raw = f.read(HEADER_LEN)
    if len(raw) < HEADER_LEN:
        raise ImageError(f"The .swu archive is truncated at byte {pos} (a cpio header is cut).",
                         "Copy the image again; the file is incomplete.")
    if raw[:6] not in MAGICS:
        raise ImageError(f"The .swu archive has no cpio header at byte {pos} (found {raw[:6]!r}).",
                         "The archive is corrupt or not a newc/crc cpio; rebuild it with 'cpio -o -H crc'.")
    # int() would accept signs, spaces and underscores: insist on exactly 104 hex digits.
    if _HEX.fullmatch(raw[6:]) is None:
        raise ImageError(f"The .swu archive has a malformed cpio header at byte {pos}.",
                         "The archive is corrupt; rebuild it.")
    fields = [int(raw[6 + 8 * i: 14 + 8 * i], 16) for i in range(13)]
    return fields[6], fields[11], fields[1]


def entries(path: Path) -> Iterator[tuple[CpioEntry, bytes | None]]:
    """Yield each entry with its data when it is sw-description (bounded), else None; hash all data."""
    total = path.stat().st_size
    with path.open("rb") as f:
        pos = 0
        for index in range(MAX_ENTRIES + 1):
            size, namesize, _mode = _header(f, pos)
            if namesize == 0 or namesize > MAX_NAME:
                raise ImageError(f"The .swu entry {index} has a name of {namesize} bytes.", "The archive is corrupt.")
            name_end = pos + HEADER_LEN + namesize
            data_at = name_end + _pad4(HEADER_LEN + namesize)
            if data_at + size > total:
                raise ImageError(f"The .swu archive is truncated: entry {index} needs {data_at + size} bytes, "
                                 f"the file has {total}.", "Copy the image again; the file is incomplete.")
            raw_name = f.read(namesize)
            if not raw_name.endswith(b"\0"):
                raise ImageError(f"The .swu entry {index} name is not terminated.", "The archive is corrupt.")
            name = raw_name[:-1].decode("utf-8", "replace")
            if name == TRAILER:
                return
            if index == MAX_ENTRIES:
                raise ImageError(f"The .swu archive has more than {MAX_ENTRIES} entries.", "Do not use this archive.")
            _check_name(name, index)
            f.seek(data_at)
            keep = name == "sw-description"
            if keep and size > MAX_DESCRIPTION:
                raise ImageError(f"sw-description is {size} bytes (limit {MAX_DESCRIPTION}).",
                                 "Do not use this archive.")
            digest, kept = _stream(f, size, keep)
            yield CpioEntry(name, size, data_at, digest), kept
            pos = data_at + size + _pad4(size)
            f.seek(pos)
    raise ImageError("The .swu archive has no cpio trailer.", "The archive is corrupt.")


def _stream(f: BinaryIO, size: int, keep: bool) -> tuple[str, bytes | None]:
    digest = hashlib.sha256()
    parts: list[bytes] = []
    left = size
    while left:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            raise ImageError("The .swu archive ended inside an entry.", "Copy the image again; the file is incomplete.")
        digest.update(chunk)
        if keep:
            parts.append(chunk)
        left -= len(chunk)
    return digest.hexdigest(), b"".join(parts) if keep else None


def parse_description(text: str) -> dict[str, object]:
    """sw-description as nested dicts (libconfig, or JSON when it starts with '{')."""
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            return data
        return dict(libconfig.loads(text))
    except (ValueError, RecursionError) as exc:
        raise ImageError(f"sw-description cannot be read: {exc}.", "Fix the sw-description and rebuild the .swu.") \
            from exc


def _walk(node: object, depth: int = 0) -> Iterator[tuple[str, object]]:
    """Every (key, value) under a node, breadth first (board/selection groups nest the sections)."""
    queue: list[tuple[object, int]] = [(node, depth)]
    while queue:
        current, d = queue.pop(0)
        if isinstance(current, dict) and d < 16:
            for key, value in current.items():
                yield str(key), value
                queue.append((value, d + 1))


def _first(software: object, key: str) -> object:
    return next((v for k, v in _walk(software) if k == key), None)


def _writes(software: object) -> list[ImageWrite]:
    out: list[ImageWrite] = []
    for key, value in _walk(software):
        if key not in SECTIONS or not isinstance(value, list):
            continue
        for item in value:
            if not isinstance(item, dict):
                continue
            name = str(item.get("filename", "") or item.get("name", ""))
            kind = str(item.get("type", SECTIONS[key]))
            target = str(item.get("device", "") or item.get("volume", "") or item.get("path", ""))
            boot = is_bootloader_target(kind, target)
            out.append(ImageWrite(name=name, kind=kind, target=target, sha256=str(item.get("sha256", "")),
                                  bootloader=boot))
    return out


def fill(info: ImageInfo) -> None:
    """Read the archive's entries and sw-description into ``info``."""
    names: dict[str, CpioEntry] = {}
    description: bytes | None = None
    for i, (entry, data) in enumerate(entries(info.path)):
        if i == 0 and entry.name != "sw-description":
            raise ImageError(f"The first .swu entry is {entry.name!r}, not sw-description.",
                             "Rebuild the archive with sw-description first, as SWUpdate requires.")
        if entry.name in names:
            info.problems.append(f"The entry {entry.name!r} appears twice in the archive.")
        names[entry.name] = entry
        if data is not None:
            description = data
    if description is None:
        raise ImageError("The .swu archive has no sw-description.", "Rebuild it with sw-description first.")
    text = description.decode("utf-8", "replace")
    info.details["sw_description"] = text
    info.details["entries"] = [(e.name, e.size) for e in names.values()]
    info.details["signed"] = "sw-description.sig" in names
    if "sw-description.sig" not in names:
        info.problems.append("The archive has no sw-description.sig (unsigned sw-description).")
    _fill_from_description(info, parse_description(text), names)


def _fill_from_description(info: ImageInfo, desc: dict[str, object], names: dict[str, CpioEntry]) -> None:
    software = desc.get("software")
    if not isinstance(software, dict):
        info.problems.append("sw-description has no 'software' group.")
        return
    info.version = str(_first(software, "version") or "")
    info.description = str(_first(software, "description") or "")
    compat = _first(software, "hardware-compatibility")
    if isinstance(compat, list):
        info.compatibles = [str(c) for c in compat]
        info.compatible = ", ".join(info.compatibles)
    elif compat is not None:
        info.compatible = str(compat)
    for write in _writes(software):
        entry = names.get(write.name)
        if write.name and entry is None and write.kind not in ("bootenv", "diskpart"):
            info.problems.append(f"sw-description names {write.name!r}, which is not in the archive.")
        if entry is not None and write.sha256 and write.sha256.lower() != entry.sha256:
            info.problems.append(f"{write.name!r}: its sha256 does not match sw-description.")
        size = entry.size if entry is not None else None
        info.writes.append(ImageWrite(write.name, write.kind, write.target, size, write.sha256, write.bootloader))
