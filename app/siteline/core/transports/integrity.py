"""Is the far side's file the one we meant? SHA-256 of whole files and of prefixes, here and on the device.

A resumed transfer keeps only the longest prefix whose hash matches the source; a finished one is
accepted only when the device's hash of what it stored equals ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

BLOCK_SIZE = 131072  # OpenSSH's sftp-server drops the connection for 256 KiB requests
HASH_PIECE = 1 << 20
_HEX64 = re.compile(r"^([0-9a-f]{64})\b")


def local_prefix_hashes(path: Path, cuts: list[int]) -> dict[int, str]:
    """SHA-256 of the first ``n`` bytes of ``path`` for every ``n`` in ``cuts``, in one pass."""
    h = hashlib.sha256()
    out: dict[int, str] = {}
    pos = 0
    with path.open("rb") as fh:
        for cut in sorted(set(cuts)):
            while pos < cut:
                piece = fh.read(min(HASH_PIECE, cut - pos))
                if not piece:
                    return out
                h.update(piece)
                pos += len(piece)
            out[cut] = h.copy().hexdigest()
    return out


def local_hash(path: Path) -> str:
    size = path.stat().st_size
    return local_prefix_hashes(path, [size])[size]


async def remote_hash(
    conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, path: str, length: int | None = None
) -> str:
    """SHA-256 of ``path`` (or its first ``length`` bytes) on the device: hashed there, else read back here."""
    q = shlex.quote(path)
    source = f"< {q}" if length is None else f"< {q} head -c {length} |"
    # openssl hashes about five times faster than coreutils' sha256sum; busybox boxes may have only the latter.
    cmd = (
        "if command -v openssl >/dev/null 2>&1; then h='openssl dgst -sha256 -r'; else h=sha256sum; fi; "
        f"{source} $h"
    )
    with contextlib.suppress(asyncssh.ChannelOpenError, asyncssh.ProcessError, TimeoutError):
        done = await conn.run(cmd, check=False, timeout=120)
        text = done.stdout if isinstance(done.stdout, str) else ""
        if done.exit_status == 0 and (m := _HEX64.match(text.strip())):
            return m.group(1)
    h = hashlib.sha256()
    async with sftp.open(path, "rb", encoding=None, block_size=BLOCK_SIZE) as fh:
        left = length
        while left is None or left > 0:
            piece = raw_bytes(await fh.read(HASH_PIECE if left is None else min(HASH_PIECE, left)))
            if not piece:
                break
            h.update(piece)
            left = None if left is None else left - len(piece)
    return h.hexdigest()


def raw_bytes(data: bytes | str) -> bytes:
    # Files are opened with encoding=None, so asyncssh hands back bytes; the type says AnyStr.
    return data if isinstance(data, bytes) else data.encode()


def resume_candidates(have: int, size: int, window: int) -> list[int]:
    """Prefix lengths worth checking, longest first: all of it, minus the in-flight window, then halves."""
    if have <= 0 or have > size:
        return []
    out = [have, have - window]
    n = have // 2
    while n >= window:
        out.append(n)
        n //= 2
    return [c for c in dict.fromkeys(out) if c > 0]


async def good_prefix(
    local: Path, have: int, size: int, window: int, far_hash: Callable[[int], Awaitable[str]]
) -> int:
    """How many bytes of the destination's partial file match the source (0: start over)."""
    cuts = resume_candidates(have, size, window)
    if not cuts:
        return 0
    mine = await asyncio.to_thread(local_prefix_hashes, local, cuts)
    for cut in cuts:
        if cut in mine and await far_hash(cut) == mine[cut]:
            return cut
    return 0


async def matching_blocks(
    sftp: asyncssh.SFTPClient, part: str, local: Path, start: int, end: int, size: int, block: int
) -> frozenset[int]:
    """Offsets ``start + k * block`` below ``end`` whose whole block in the device's ``part`` equals ``local``'s.

    Requests in flight when a link drops land out of order (over two SFTP sessions, in two orders),
    so the last window of a partial upload has holes between good blocks. Reading that window back
    (at most PARALLEL blocks) and comparing costs less than sending it all again on an uplink.
    """
    async with sftp.open(part, "rb", encoding=None, block_size=BLOCK_SIZE) as fh:
        theirs = raw_bytes(await fh.read(end - start, start))
    mine = await asyncio.to_thread(_read_range, local, start, end - start)
    good: set[int] = set()
    for lo in range(0, len(mine), block):
        n = min(block, size - start - lo)  # exactly what the upload would send at this offset
        if lo + n <= min(len(mine), len(theirs)) and mine[lo : lo + n] == theirs[lo : lo + n]:
            good.add(start + lo)
    return frozenset(good)


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(length)
