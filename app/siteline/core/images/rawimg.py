"""Raw disk images, plain or compressed (gzip, xz, zstd), and the .bmap next to them.

The uncompressed size is found by decompressing in a stream, never to disk, with output bounded
per step; a decompression bomb stops at ``max_size`` or at a ratio over ``max_ratio`` once
``ratio_after`` bytes came out. A .bmap is checked against the image while it streams.
"""

from __future__ import annotations

import importlib.util
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from siteline.core.images.bmap import Bmap, RangeChecker, parse_bmap
from siteline.core.images.formats import CHUNK, ImageError, ImageInfo, ImageWrite

GiB = 1024**3
MAX_SIZE = 64 * GiB
MAX_RATIO = 1000
RATIO_AFTER = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_size: int = MAX_SIZE
    max_ratio: int = MAX_RATIO
    ratio_after: int = RATIO_AFTER


def compression_of(path: Path) -> str:
    """'gzip', 'xz', 'zstd' or 'none', from the magic bytes."""
    with path.open("rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\xfd7zXZ\x00":
        return "xz"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def _bomb(path: Path, why: str) -> ImageError:
    return ImageError(f"{path.name} looks like a decompression bomb: {why}.",
                      "Do not use this file; ask for the image again from its source.")


def _truncated(path: Path, kind: str) -> ImageError:
    return ImageError(f"{path.name} is a truncated or damaged {kind} stream.", "Copy the image again.")


def _zlib_chunks(f: BinaryIO, path: Path) -> Iterator[bytes]:
    # wbits 47 = auto-detect gzip/zlib header; members after the first are handled by the loop.
    d = zlib.decompressobj(47)
    while True:
        data = d.unconsumed_tail or f.read(CHUNK)
        if not data and not d.unused_data:
            if not d.eof:
                raise _truncated(path, "gzip")
            return
        if d.eof:
            data, d = d.unused_data + data, zlib.decompressobj(47)
        try:
            out = d.decompress(data, CHUNK)
        except zlib.error as exc:
            raise _truncated(path, "gzip") from exc
        yield out


def _lzma_chunks(f: BinaryIO, path: Path) -> Iterator[bytes]:
    # Concatenated .xz streams are valid (xz -d reads them all), so start over after each one.
    d = lzma.LZMADecompressor()
    pending = b""
    while True:
        if d.eof:
            pending = d.unused_data + f.read(CHUNK)
            if not pending.strip(b"\0"):  # end of file, or the stream padding xz allows
                return
            d = lzma.LZMADecompressor()
        data, pending = (pending or (f.read(CHUNK) if d.needs_input else b"")), b""
        if d.needs_input and not data:
            raise _truncated(path, "xz")
        try:
            yield d.decompress(data, CHUNK)
        except lzma.LZMAError as exc:
            raise _truncated(path, "xz") from exc


ZSTD_MAGIC = 0xFD2FB528
ZSTD_SKIPPABLE = 0x184D2A50  # ... 0x184D2A5F


def zstd_frames_complete(f: BinaryIO) -> bool:
    """Whether every zstd frame in ``f`` is whole (RFC 8878 frame and block headers; contents are seeked over).

    zstandard's stream reader ends quietly at a cut, so a truncated image would otherwise pass as a shorter one.
    """
    end = f.seek(0, 2)
    pos = f.seek(0)
    while pos < end:
        head = f.read(4)
        if len(head) < 4:
            return False
        magic = int.from_bytes(head, "little")
        if magic & 0xFFFFFFF0 == ZSTD_SKIPPABLE:
            skip = f.read(4)
            if len(skip) < 4:
                return False
            pos = f.seek(int.from_bytes(skip, "little"), 1)
            continue
        if magic != ZSTD_MAGIC:
            return False
        descriptor = f.read(1)
        if not descriptor:
            return False
        d = descriptor[0]
        fcs = (0, 2, 4, 8)[d >> 6]
        single = bool(d & 0x20)
        header = (0 if single else 1) + (0, 1, 2, 4)[d & 0x03] + (1 if single and fcs == 0 else fcs)
        f.seek(header, 1)
        last = False
        while not last:
            block = f.read(3)
            if len(block) < 3:
                return False
            value = int.from_bytes(block, "little")
            last, kind, size = bool(value & 1), (value >> 1) & 3, value >> 3
            if kind == 3:  # reserved: not a zstd stream
                return False
            f.seek(1 if kind == 1 else size, 1)  # RLE blocks store one byte
        pos = f.seek(4 if d & 0x04 else 0, 1)  # the content checksum
    return pos == end


def _zstd_chunks(f: BinaryIO, path: Path) -> Iterator[bytes]:
    import zstandard  # type: ignore[import-not-found, unused-ignore]

    complete = zstd_frames_complete(f)
    f.seek(0)
    if not complete:
        raise _truncated(path, "zstd")
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    while True:
        try:
            out: bytes = reader.read(CHUNK)
        except zstandard.ZstdError as exc:
            raise _truncated(path, "zstd") from exc
        if not out:
            return
        yield out


def _plain_chunks(f: BinaryIO, path: Path) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


READERS: dict[str, Callable[[BinaryIO, Path], Iterator[bytes]]] = {
    "gzip": _zlib_chunks, "xz": _lzma_chunks, "zstd": _zstd_chunks, "none": _plain_chunks}


def stream_image(path: Path, limits: Limits = Limits()) -> Iterator[bytes]:
    """The image's uncompressed bytes in chunks, bounded against decompression bombs."""
    kind = compression_of(path)
    if kind == "zstd" and importlib.util.find_spec("zstandard") is None:
        raise ImageError(f"{path.name} is zstd-compressed and the 'zstandard' module is not installed.",
                         "Install it (pip install zstandard) or decompress the image with 'zstd -d' first.")
    produced = 0
    with path.open("rb") as f:
        for chunk in READERS[kind](f, path):
            produced += len(chunk)
            if kind != "none":
                if produced > limits.max_size:
                    raise _bomb(path, f"it expands past {limits.max_size} bytes")
                consumed = max(f.tell(), 1)
                if produced > limits.ratio_after and produced / consumed > limits.max_ratio:
                    raise _bomb(path, f"it expands more than {limits.max_ratio} times")
            yield chunk


def find_bmap(path: Path) -> Path | None:
    """The .bmap next to an image: disk.img.xz -> disk.img.xz.bmap, disk.img.bmap or disk.bmap."""
    name = path.name
    stem = name
    for ext in (".gz", ".xz", ".zst"):
        stem = stem.removesuffix(ext)
    for candidate in (name + ".bmap", stem + ".bmap", stem.removesuffix(".img") + ".bmap"):
        p = path.with_name(candidate)
        if p.is_file():
            return p
    return None


def fill(info: ImageInfo, limits: Limits = Limits()) -> None:
    """Uncompressed size, compression and the .bmap check into ``info``."""
    path = info.path
    kind = compression_of(path)
    info.details["compression"] = kind
    bmap_path = find_bmap(path)
    bmap: Bmap | None = None
    if bmap_path is not None:
        info.details["bmap_path"] = str(bmap_path)
        try:
            bmap = parse_bmap(bmap_path)
        except ImageError as exc:
            info.problems.append(str(exc))
            info.details["bmap_ok"] = False
    if kind == "none" and bmap is None:  # nothing to learn from a second read of a plain image
        info.details["uncompressed_size"] = info.size
        info.writes.append(ImageWrite(name=path.name, kind="raw", size=info.size))
        return
    checker = RangeChecker(bmap) if bmap is not None else None
    size = 0
    for chunk in stream_image(path, limits):
        size += len(chunk)
        if checker is not None:
            checker.feed(chunk)
    info.details["uncompressed_size"] = size
    if bmap is not None and checker is not None:
        _check_bmap(info, bmap, checker, size)
    info.writes.append(ImageWrite(name=path.name, kind="raw", size=size))


def _check_bmap(info: ImageInfo, bmap: Bmap, checker: RangeChecker, size: int) -> None:
    checker.finish()
    problems: list[str] = []
    if bmap.image_size != size:
        problems.append(f"The block map says the image is {bmap.image_size} bytes; it is {size}.")
    elif checker.mismatches:
        first = checker.mismatches[0]
        problems.append(f"The block map does not match the image: {len(checker.mismatches)} range(s) differ "
                        f"(first: blocks {first.first}-{first.last}).")
    info.details["bmap_ok"] = not problems
    if problems:
        info.problems.extend(p + " A bmap write is blocked; recreate the .bmap with 'bmaptool create'."
                             for p in problems)
    else:
        info.details["bmap_mapped_bytes"] = bmap.mapped_bytes
