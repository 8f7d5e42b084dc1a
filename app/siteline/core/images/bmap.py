"""bmaptool block maps (.bmap): which blocks of a raw image hold data, with their checksums.

Parsed with the standard library's XML parser after refusing any DOCTYPE/ENTITY (the entity
expansion attacks need one), capped in size. ``RangeChecker`` hashes the mapped ranges while the
image streams past, so a bmap that does not match its image is caught without a second read.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from siteline.core.images.formats import ImageError

MAX_BMAP = 16 * 1024 * 1024
MAX_RANGES = 1_000_000
_CHECKSUM_TAGS = ("BmapFileChecksum", "BmapFileSHA1")


@dataclass(frozen=True)
class BmapRange:
    first: int  # first block, inclusive
    last: int  # last block, inclusive
    checksum: str


@dataclass(frozen=True)
class Bmap:
    version: str
    image_size: int
    block_size: int
    blocks_count: int
    mapped_blocks: int
    checksum_type: str
    ranges: tuple[BmapRange, ...]

    @property
    def mapped_bytes(self) -> int:
        return sum(min((r.last + 1) * self.block_size, self.image_size) - r.first * self.block_size
                   for r in self.ranges)


def _bad(path: Path, why: str) -> ImageError:
    return ImageError(f"The block map {path.name} is not valid: {why}.",
                      "Recreate it with 'bmaptool create', or write the image without the bmap.")


def _int(root: ET.Element, tag: str, path: Path) -> int:
    text = (root.findtext(tag) or "").strip()
    if not text.isdigit():
        raise _bad(path, f"<{tag}> is missing or not a number")
    return int(text)


def _file_checksum_ok(raw: bytes, root: ET.Element, kind: str) -> bool | None:
    """bmaptool hashes the file with its own checksum field zeroed; None when there is none."""
    for tag in _CHECKSUM_TAGS:
        value = (root.findtext(tag) or "").strip()
        if value:
            zeroed = raw.replace(value.encode(), b"0" * len(value), 1)
            algo = "sha1" if tag == "BmapFileSHA1" else kind
            try:
                return hashlib.new(algo, zeroed).hexdigest() == value.lower()
            except ValueError:
                return False
    return None


def parse_bmap(path: Path) -> Bmap:
    """Parse a .bmap; raises ImageError when it is malformed, unsafe or internally inconsistent."""
    try:
        if path.stat().st_size > MAX_BMAP:
            raise _bad(path, f"it is larger than {MAX_BMAP} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise _bad(path, f"cannot read it ({exc.strerror or exc})") from exc
    if re.search(rb"<!(DOCTYPE|ENTITY)", raw, re.IGNORECASE):
        raise _bad(path, "it declares a DOCTYPE or entities, which bmap files never do")
    try:
        root = ET.fromstring(raw)
    except (ET.ParseError, ValueError) as exc:
        raise _bad(path, f"XML error ({exc})") from exc
    if root.tag != "bmap":
        raise _bad(path, f"the root element is <{root.tag}>, not <bmap>")
    checksum_type = (root.findtext("ChecksumType") or "sha1").strip().lower()
    if checksum_type not in ("sha1", "sha256"):
        raise _bad(path, f"unknown ChecksumType {checksum_type!r}")
    bmap = Bmap(
        version=root.get("version", ""),
        image_size=_int(root, "ImageSize", path),
        block_size=_int(root, "BlockSize", path),
        blocks_count=_int(root, "BlocksCount", path),
        mapped_blocks=_int(root, "MappedBlocksCount", path),
        checksum_type=checksum_type,
        ranges=_ranges(root, path),
    )
    _consistent(bmap, path)
    if _file_checksum_ok(raw, root, checksum_type) is False:
        raise _bad(path, "its own checksum does not match (edited or damaged)")
    return bmap


def _ranges(root: ET.Element, path: Path) -> tuple[BmapRange, ...]:
    block_map = root.find("BlockMap")
    if block_map is None:
        raise _bad(path, "<BlockMap> is missing")
    out: list[BmapRange] = []
    for node in block_map.iter("Range"):
        if len(out) >= MAX_RANGES:
            raise _bad(path, f"more than {MAX_RANGES} ranges")
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", node.text or "")
        if m is None:
            raise _bad(path, f"range {node.text!r} is not 'first-last'")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        out.append(BmapRange(first, last, node.get("chksum", node.get("sha1", "")).strip().lower()))
    return tuple(out)


def _consistent(bmap: Bmap, path: Path) -> None:
    if bmap.block_size <= 0 or bmap.block_size % 512:
        raise _bad(path, f"BlockSize {bmap.block_size} is not a positive multiple of 512")
    if bmap.blocks_count != -(-bmap.image_size // bmap.block_size):
        raise _bad(path, f"BlocksCount {bmap.blocks_count} does not fit ImageSize {bmap.image_size}")
    previous = -1
    for r in bmap.ranges:
        if r.first > r.last or r.first <= previous or r.last >= bmap.blocks_count:
            raise _bad(path, f"range {r.first}-{r.last} is out of order or past the image's end")
        previous = r.last
    mapped = sum(r.last - r.first + 1 for r in bmap.ranges)
    if mapped != bmap.mapped_blocks:
        raise _bad(path, f"MappedBlocksCount is {bmap.mapped_blocks} but the ranges cover {mapped} blocks")


class RangeChecker:
    """Feed the image's bytes in order; ``mismatches`` lists the ranges whose checksum differs."""

    def __init__(self, bmap: Bmap) -> None:
        self.bmap = bmap
        self.index = 0
        self.offset = 0
        self.hasher = hashlib.new(bmap.checksum_type)
        self.mismatches: list[BmapRange] = []

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and self.index < len(self.bmap.ranges):
            r = self.bmap.ranges[self.index]
            start, end = r.first * self.bmap.block_size, (r.last + 1) * self.bmap.block_size
            if self.offset < start:  # skip the unmapped gap before this range
                step = min(len(view), start - self.offset)
            else:
                step = min(len(view), end - self.offset)
                self.hasher.update(view[:step])
            view = view[step:]
            self.offset += step
            if self.offset >= end:
                self._close_range(r)
        self.offset += len(view)

    def _close_range(self, r: BmapRange) -> None:
        if r.checksum and self.hasher.hexdigest() != r.checksum:
            self.mismatches.append(r)
        self.hasher = hashlib.new(self.bmap.checksum_type)
        self.index += 1

    def finish(self) -> None:
        """The last range may end inside the last, partial block: close it at the image's end."""
        if self.index < len(self.bmap.ranges):
            self._close_range(self.bmap.ranges[self.index])
