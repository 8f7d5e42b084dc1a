"""The U-Boot environment as U-Boot and libubootenv store it: a real binary file.

Layout (non-redundant env): 4-byte little-endian CRC32 of the data area, then ``name=value``
entries each ended by NUL, the list ended by an extra NUL, the rest padded with 0x00 up to the
env size. libubootenv (Debian's fw_printenv/fw_setenv) writes the entries sorted by name and
pads with 0x00, so this module does the same and the files are byte-for-byte comparable.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from siteline.core.atomic import write_atomic

ENV_SIZE = 0x4000
CONFIG_NAME = "fw_env.config"
ENV_NAME = "uboot.env"


class EnvError(Exception):
    """The env file is missing, truncated or fails its CRC (U-Boot would fall back to defaults)."""


@dataclass(frozen=True)
class EnvLocation:
    path: Path
    offset: int = 0
    size: int = ENV_SIZE


def encode(env: dict[str, str], size: int = ENV_SIZE) -> bytes:
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(env.items())) + b"\0"
    if len(data) > size - 4:
        raise EnvError(f"environment too large: {len(data)} bytes do not fit in {size - 4}")
    data = data.ljust(size - 4, b"\0")
    return struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF) + data


def decode(blob: bytes, size: int = ENV_SIZE) -> dict[str, str]:
    if len(blob) < size:
        raise EnvError(f"environment truncated: {len(blob)} of {size} bytes")
    (crc,) = struct.unpack("<I", blob[:4])
    data = blob[4:size]
    if zlib.crc32(data) & 0xFFFFFFFF != crc:
        raise EnvError("bad CRC")
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        if not entry:
            break  # the double NUL ends the list
        name, sep, value = entry.decode("utf-8", "replace").partition("=")
        if sep:
            env[name] = value
    return env


def read_config(config: Path) -> EnvLocation:
    """Parse a fw_env.config (first non-comment line: ``device offset size``)."""
    for raw in config.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            offset = int(fields[1], 0) if len(fields) > 1 else 0
            size = int(fields[2], 0) if len(fields) > 2 else ENV_SIZE
        except ValueError as exc:
            raise EnvError(f"{config}: bad line {raw!r}") from exc
        return EnvLocation(Path(fields[0]), offset, size)
    raise EnvError(f"{config}: no environment device configured")


def load(loc: EnvLocation) -> dict[str, str]:
    try:
        with loc.path.open("rb") as fh:
            fh.seek(loc.offset)
            blob = fh.read(loc.size)
    except OSError as exc:
        raise EnvError(f"cannot read {loc.path}: {exc.strerror}") from exc
    return decode(blob, loc.size)


def store(loc: EnvLocation, env: dict[str, str]) -> None:
    blob = encode(env, loc.size)
    if loc.offset:
        # The env shares its file with other data (as on a raw flash partition): keep the rest.
        whole = bytearray(loc.path.read_bytes()) if loc.path.exists() else bytearray()
        whole[loc.offset : loc.offset + loc.size] = blob.ljust(loc.size, b"\0")
        blob = bytes(whole)
    write_atomic(loc.path, blob, mode=0o600)


def create(root: Path, env: dict[str, str]) -> EnvLocation:
    """Write a fresh env and its fw_env.config (usable by Debian's ``fw_printenv -c``) into ``root``."""
    loc = EnvLocation(root / ENV_NAME)
    store(loc, env)
    write_atomic(root / CONFIG_NAME, f"# device offset size\n{loc.path} 0x0000 0x{ENV_SIZE:04x}\n".encode())
    return loc
