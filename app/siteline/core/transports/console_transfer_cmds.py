"""The shell lines a console transfer types, and the parsers for what the device answers (pure, no I/O).

Every line uses only tools a BusyBox box has (printf, base64 or openssl, sha256sum, dd, wc, df, mv,
rm, sync) and quotes every path with :func:`shlex.quote`. A path is named once per line, in a shell
variable, because BusyBox ash cuts a typed line at 1023 characters: :func:`typed_length` measures a
line as the console types it (the command framing included), and the transfer keeps each one within
:data:`MAX_TYPED_LINE`. The parsers take whatever came back (truncated, garbage, another tool's format)
and return a typed value or ``None``; they never raise.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass

from siteline.core.transports import console
from siteline.core.transports.console import CommandFrame

MAX_TYPED_LINE = console.MAX_TYPED_LINE  # what a serial console types at most per line, framing included
LONG_LINE = 3400  # a channel with no line editor in the way (MQTT's command topic): bigger chunks
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

    into_dir: bool  # the remote path named an existing directory: the file goes inside it
    is_dir: bool  # the final path is itself a directory: nothing can replace it
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


def typed_length(command: str) -> int:
    """Bytes the serial console types for ``command``: the framing around it and the Enter included, as
    SerialTransport.run counts them (the nonce is always 12 hex digits)."""
    return len(CommandFrame(command, "0" * 12).line().encode("utf-8", "surrogateescape")) + 1


def into(directory: str, name: str) -> str:
    """``name`` inside ``directory`` as scp places it (``dest/`` + ``f.bin`` -> ``dest/f.bin``)."""
    return posixpath.join(directory, name)


def part_path(remote: str) -> str:
    return remote + ".part"


def remote_dir(remote: str) -> str:
    return posixpath.dirname(remote) or "."


_TOOLS = (
    "if command -v base64 >/dev/null 2>&1; then echo codec=base64; "
    "elif command -v openssl >/dev/null 2>&1; then echo codec=openssl; fi; "
    "command -v sha256sum >/dev/null 2>&1 && echo sha=1; "
)


def upload_probe(remote: str, name: str | None = None) -> str:
    """One line that reports the destination, the tools, a partial upload and the free space (key=value, then df).

    With ``name``, a ``remote`` that is an existing directory means ``remote/name`` (``into=1``), as scp does.
    """
    pick = f'd={q(remote_dir(remote))}; f="$r"; '
    if name is not None:
        pick = f'if [ -d "$r" ]; then echo into=1; d="$r"; f="$r"/{q(name)}; else {pick}fi; '
    return (
        f"r={q(remote)}; {pick}p=\"$f\".part; "
        'if [ -d "$d" ]; then echo dir=1; else echo dir=0; exit 0; fi; [ -d "$f" ] && echo isdir=1; '
        f'[ -w "$d" ] && echo writable=1; {_TOOLS}'
        '[ -f "$p" ] && echo part=$(wc -c < "$p"); '
        'cd "$d" && echo pwd=$(pwd) && echo df: && df -Pk .'
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
        into_dir=keys.get("into") == "1",
        is_dir=keys.get("isdir") == "1",
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


def append_chunk(remote: str, codec: str, b64: str) -> str:
    """Append one decoded chunk to REMOTE.part; print the SHA-256 of what was decoded, then the new size.

    tee hashes exactly the bytes that went into the file, so a chunk the line garbled shows at once;
    what the storage kept is checked by the whole file's hash before the rename.
    """
    # No spaces a shell does not need and the path once: every character here is one fewer for the data.
    return f'p={q(part_path(remote))};printf %s {b64}|{DECODERS[codec]}|tee -a "$p"|sha256sum&&wc -c<"$p"'


def append_overhead(remote: str, codec: str) -> int:
    """Typed bytes of an append line besides the base64 text."""
    return typed_length(append_chunk(remote, codec, ""))


def read_chunk(remote: str, codec: str, index: int, chunk_size: int) -> str:
    """Print one chunk of REMOTE as base64, then that chunk's SHA-256 on a line of its own."""
    dd = f'dd if="$r" bs={chunk_size} skip={index} count=1 2>/dev/null'
    return f"r={q(remote)}; {dd} | {ENCODERS[codec]} && {dd} | sha256sum"


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
    """Rename REMOTE.part into place, never into a directory that took the name meanwhile.

    ``sync`` before the rename puts the data on flash before the name points at it, and after it
    the rename itself: a power cut then leaves the old file or the whole new one (BusyBox's sync
    takes no file argument, so it is the plain one).
    """
    return (
        f'r={q(remote)}; if [ -d "$r" ]; then echo "$r is a directory" >&2; exit 21; fi; '
        f'sync && mv -f {q(part_path(remote))} "$r" && sync'
    )


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
    """``<hex>  -\\n<size>\\n`` from an append line."""
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    if len(lines) != 2:
        return None
    size, digest = _int(lines[1]), _HEX64.match(lines[0])
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
