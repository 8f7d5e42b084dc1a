"""The shell lines a console transfer types, and the parsers for what the device answers (pure, no I/O).

Every line uses only tools a BusyBox box has (printf, base64 or openssl, sha256sum, dd, wc, df, mv,
rm), quotes every path with :func:`shlex.quote`, and stays short enough for a tty's canonical-mode
line (4095 bytes). The parsers take whatever came back (truncated, garbage, another tool's format)
and return a typed value or ``None``; they never raise.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

MAX_COMMAND = 3400  # under serial.MAX_LINE (3500), which leaves room for the command framing
_HEX64 = re.compile(r"^([0-9a-f]{64})(?:\s|$)")
_INT = re.compile(r"^\s*(\d{1,19})\s*$")
# Filesystem, 1024-blocks, used, available, capacity, mount point (which may hold spaces)
_DF_ROW = re.compile(r"^\S+\s+\d{1,19}\s+\d{1,19}\s+(\d{1,19})\s+\d{1,3}%\s+(/.*)$")
_B64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")

# How the device decodes/encodes base64: BusyBox and coreutils have base64; openssl is the fallback.
DECODERS = {"base64": "base64 -d", "openssl": "openssl base64 -d -A"}
ENCODERS = {"base64": "base64", "openssl": "openssl base64"}


@dataclass(frozen=True)
class UploadPlace:
    """What the device said about an upload's destination before the first byte."""

    dir_exists: bool
    writable: bool
    codec: str | None  # a key of DECODERS, None: the device has neither tool
    has_sha256: bool
    part_size: int | None  # size of REMOTE.part when one exists
    free_bytes: int | None  # available at the directory, None when df said nothing usable


@dataclass(frozen=True)
class DownloadSource:
    exists: bool
    readable: bool
    size: int | None
    codec: str | None
    has_sha256: bool


def q(path: str) -> str:
    return shlex.quote(path)


def part_path(remote: str) -> str:
    return remote + ".part"


def remote_dir(remote: str) -> str:
    return posixpath.dirname(remote) or "."


_TOOLS = (
    "if command -v base64 >/dev/null 2>&1; then echo codec=base64; "
    "elif command -v openssl >/dev/null 2>&1; then echo codec=openssl; fi; "
    "command -v sha256sum >/dev/null 2>&1 && echo sha=1; "
)


def upload_probe(remote: str) -> str:
    """One line that reports the directory, the tools, a partial upload and the free space (key=value, then df)."""
    d, p = q(remote_dir(remote)), q(part_path(remote))
    return (
        f"if [ -d {d} ]; then echo dir=1; else echo dir=0; exit 0; fi; "
        f"[ -w {d} ] && echo writable=1; {_TOOLS}"
        f"[ -f {p} ] && echo part=$(wc -c < {p}); "
        f"cd {d} && echo pwd=$(pwd) && echo df: && df -Pk ."
    )


def download_probe(remote: str) -> str:
    r = q(remote)
    return (
        f"if [ -f {r} ]; then echo exists=1; else echo exists=0; exit 0; fi; "
        f"[ -r {r} ] && echo readable=1 && echo size=$(wc -c < {r}); {_TOOLS}"
    )


def _keys(text: str) -> tuple[dict[str, str], list[str]]:
    """``key=value`` lines before a ``df:`` line, and the lines after it."""
    keys: dict[str, str] = {}
    lines = text.replace("\r", "").split("\n")
    for i, line in enumerate(lines):
        if line.strip() == "df:":
            return keys, lines[i + 1 :]
        key, sep, value = line.strip().partition("=")
        if sep and key.isidentifier():
            keys.setdefault(key, value.strip())
    return keys, []


def _int(value: str | None) -> int | None:
    m = _INT.match(value or "")
    return int(m.group(1)) if m else None


def parse_upload_place(text: str) -> UploadPlace | None:
    """The probe's answer; ``None`` when it is not one (garbage, a truncated reply)."""
    keys, df_lines = _keys(text)
    if keys.get("dir") not in ("0", "1"):
        return None
    codec = keys.get("codec")
    return UploadPlace(
        dir_exists=keys["dir"] == "1",
        writable=keys.get("writable") == "1",
        codec=codec if codec in DECODERS else None,
        has_sha256=keys.get("sha") == "1",
        part_size=_int(keys.get("part")),
        free_bytes=free_bytes(df_lines, keys.get("pwd", "")),
    )


def parse_download_source(text: str) -> DownloadSource | None:
    keys, _ = _keys(text)
    if keys.get("exists") not in ("0", "1"):
        return None
    codec = keys.get("codec")
    return DownloadSource(
        exists=keys["exists"] == "1",
        readable=keys.get("readable") == "1",
        size=_int(keys.get("size")),
        codec=codec if codec in ENCODERS else None,
        has_sha256=keys.get("sha") == "1",
    )


def free_bytes(df_lines: list[str], directory: str) -> int | None:
    """Bytes available at ``directory`` from ``df -Pk`` output (1024-byte blocks).

    A real df prints one row for the path; some (BusyBox with an unknown path, simulators) print
    every mount: the row whose mount point is the longest prefix of ``directory`` wins, else the last.
    """
    rows: list[tuple[str, int]] = []
    for line in df_lines:
        m = _DF_ROW.match(line.strip())
        if m:
            rows.append((m.group(2), int(m.group(1)) * 1024))
    if not rows:
        return None
    directory = directory.rstrip("/") + "/"
    best: tuple[int, int] | None = None  # (mount length, bytes)
    for mount, avail in rows:
        prefix = mount.rstrip("/") + "/"
        if directory.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), avail)
    return best[1] if best is not None else rows[-1][1]


# -- chunks ---------------------------------------------------------------------------------------


def append_chunk(remote: str, codec: str, b64: str, index: int, chunk_size: int) -> str:
    """Append one decoded chunk to REMOTE.part, then print the new size and the chunk's SHA-256 read back."""
    p = q(part_path(remote))
    return (
        f"printf %s {b64} | {DECODERS[codec]} >> {p} && wc -c < {p} && "
        f"dd if={p} bs={chunk_size} skip={index} count=1 2>/dev/null | sha256sum"
    )


def append_overhead(remote: str, codec: str, chunk_size: int) -> int:
    """Characters of an append line besides the base64 text (index digits counted generously)."""
    return len(append_chunk(remote, codec, "", 10**9, chunk_size))


def read_chunk(remote: str, codec: str, index: int, chunk_size: int) -> str:
    """Print one chunk of REMOTE as base64, then that chunk's SHA-256 on a line of its own."""
    dd = f"dd if={q(remote)} bs={chunk_size} skip={index} count=1 2>/dev/null"
    return f"{dd} | {ENCODERS[codec]} && {dd} | sha256sum"


def truncate(path: str, chunks: int, chunk_size: int) -> str:
    """Cut ``path`` to ``chunks`` whole chunks (dd truncates its output at the seek point)."""
    if chunks == 0:
        return f": > {q(path)}"
    return f"dd if=/dev/null of={q(path)} bs={chunk_size} seek={chunks} 2>/dev/null"


def prefix_hash(path: str, chunks: int, chunk_size: int) -> str:
    return f"dd if={q(path)} bs={chunk_size} count={chunks} 2>/dev/null | sha256sum"


def whole_hash(path: str) -> str:
    return f"sha256sum < {q(path)}"


def finish_upload(remote: str) -> str:
    return f"mv -f {q(part_path(remote))} {q(remote)}"


def remove(path: str) -> str:
    return f"rm -f {q(path)}"


@dataclass(frozen=True)
class ChunkReply:
    size: int
    sha256: str


def parse_hash(text: str) -> str | None:
    """The hex digest from ``sha256sum`` output (``<hex>  -``); the last line that is one."""
    for line in reversed(text.replace("\r", "").split("\n")):
        m = _HEX64.match(line.strip())
        if m:
            return m.group(1)
    return None


def parse_chunk_reply(text: str) -> ChunkReply | None:
    """``<size>\\n<hex>  -\\n`` from an append line."""
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    if len(lines) != 2:
        return None
    size, digest = _int(lines[0]), _HEX64.match(lines[1])
    if size is None or digest is None:
        return None
    return ChunkReply(size, digest.group(1))


@dataclass(frozen=True)
class ReadReply:
    b64: str
    sha256: str


def parse_read_reply(text: str) -> ReadReply | None:
    """Base64 lines (any wrapping) then a ``sha256sum`` line, from a read line."""
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    if not lines:
        return None
    digest = _HEX64.match(lines[-1])
    body = "".join(lines[:-1])
    if digest is None or not _B64.match(body):
        return None
    return ReadReply(body, digest.group(1))


def parse_size(text: str) -> int | None:
    lines = [line for line in text.replace("\r", "").split("\n") if line.strip()]
    return _int(lines[-1]) if lines else None
