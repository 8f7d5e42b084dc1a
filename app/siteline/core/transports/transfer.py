"""SFTP put/get that survive a cellular link: pipelined blocks, resume from a checked prefix, SHA-256 at the end.

An upload goes to ``remote + ".part"`` and is renamed into place only after the far side's SHA-256
matches the local file, so a half-written file never carries the real name. A resumed transfer does
not trust the bytes already there: the longest prefix whose hash matches the source is kept, the rest
is sent again (a torn or corrupted tail costs at most a few blocks, never a wrong file).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from siteline.core.errors import TransportError

BLOCK_SIZE = 131072  # OpenSSH's sftp-server drops the connection for 256 KiB requests
PARALLEL = 16
PROGRESS_INTERVAL = 0.1  # at most 10 callbacks a second: a UI must not drown in them
HASH_PIECE = 1 << 20
_HEX64 = re.compile(r"^([0-9a-f]{64})\b")


@dataclass(frozen=True)
class Progress:
    """Where a transfer is: bytes done of total, bytes/s over the last seconds, seconds left (None: unknown)."""

    done: int
    total: int
    rate: float
    eta: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class TransferResult:
    size: int
    transferred: int  # bytes moved in this run (excludes what a resume kept)
    resumed_from: int
    sha256: str
    seconds: float


ProgressCallback = Callable[[Progress], None]


class _Tracker:
    """Counts bytes and calls the progress callback, throttled, with a rate over a short window."""

    def __init__(self, total: int, done: int, callback: ProgressCallback | None) -> None:
        self.total, self.done, self.callback = total, done, callback
        self.samples: list[tuple[float, int]] = [(time.monotonic(), done)]
        self.last_call = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last_call >= PROGRESS_INTERVAL:
            self.emit(now)

    def emit(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.samples.append((now, self.done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.pop(0)
        (t0, d0) = self.samples[0]
        rate = (self.done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        self.last_call = now
        if self.callback is not None:
            self.callback(Progress(self.done, self.total, rate, eta))


# -- hashing -------------------------------------------------------------------------------------


def _local_prefix_hashes(path: Path, cuts: list[int]) -> dict[int, str]:
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


def _local_hash(path: Path) -> str:
    size = path.stat().st_size
    return _local_prefix_hashes(path, [size])[size]


async def _remote_hash(
    conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, path: str, length: int | None = None
) -> str:
    """SHA-256 of ``path`` (or its first ``length`` bytes) on the device: ``sha256sum`` there, else read back."""
    q = shlex.quote(path)
    cmd = f"sha256sum < {q}" if length is None else f"head -c {length} < {q} | sha256sum"
    with contextlib.suppress(asyncssh.ChannelOpenError, asyncssh.ProcessError, TimeoutError):
        done = await conn.run(cmd, check=False, timeout=120)
        text = done.stdout if isinstance(done.stdout, str) else ""
        if done.exit_status == 0 and (m := _HEX64.match(text.strip())):
            return m.group(1)
    h = hashlib.sha256()
    async with sftp.open(path, "rb", encoding=None, block_size=BLOCK_SIZE) as fh:
        left = length
        while left is None or left > 0:
            piece = _raw(await fh.read(HASH_PIECE if left is None else min(HASH_PIECE, left)))
            if not piece:
                break
            h.update(piece)
            left = None if left is None else left - len(piece)
    return h.hexdigest()


def _raw(data: bytes | str) -> bytes:
    # Files are opened with encoding=None, so asyncssh hands back bytes; the type says AnyStr.
    return data if isinstance(data, bytes) else data.encode()


def _candidates(have: int, size: int, window: int) -> list[int]:
    """Prefix lengths worth checking, longest first: all of it, minus the in-flight window, then halves."""
    if have <= 0 or have > size:
        return []
    out = [have, have - window]
    n = have // 2
    while n >= window:
        out.append(n)
        n //= 2
    return [c for c in dict.fromkeys(out) if c > 0]


async def _good_prefix(
    local: Path, have: int, size: int, window: int, remote_hash: Callable[[int], Awaitable[str]]
) -> int:
    """How many bytes of the destination's partial file match the source (0: start over)."""
    cuts = _candidates(have, size, window)
    if not cuts:
        return 0
    mine = await asyncio.to_thread(_local_prefix_hashes, local, cuts)
    for cut in cuts:
        if cut in mine and await remote_hash(cut) == mine[cut]:
            return cut
    return 0


# -- the pipeline --------------------------------------------------------------------------------


async def _pipeline(
    start: int, size: int, block: int, parallel: int, op: Callable[[int, int], Awaitable[int]], tracker: _Tracker
) -> None:
    """Run ``op(offset, length)`` for every block from ``start``, ``parallel`` at a time (constant memory)."""
    pending: set[asyncio.Task[int]] = set()
    offset = start
    try:
        while offset < size or pending:
            while offset < size and len(pending) < parallel:
                n = min(block, size - offset)
                pending.add(asyncio.ensure_future(op(offset, n)))
                offset += n
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failures = [exc for task in done if (exc := task.exception()) is not None]  # retrieve every one
            if failures:
                raise failures[0]
            for task in done:
                tracker.add(task.result())
    except Exception:
        # Let in-flight requests fail on their own (fast on a dead link): cancelling them orphans
        # asyncssh's inner tasks, whose errors then go unretrieved.
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        raise
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


# -- errors --------------------------------------------------------------------------------------


async def _free_bytes(sftp: asyncssh.SFTPClient, directory: str) -> int | None:
    try:
        vfs = await sftp.statvfs(directory)
    except (asyncssh.Error, OSError):
        return None
    return int(vfs.bavail * vfs.frsize)


async def _sftp_error(exc: BaseException, sftp: asyncssh.SFTPClient, remote: str, verb: str) -> TransportError:
    """What went wrong on the device's side, in words a technician can act on."""
    directory = posixpath.dirname(remote) or "."
    if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
        what = f"{directory} does not exist on the device" if verb == "upload" else f"{remote} does not exist"
        return TransportError(f"Cannot {verb} {remote}: {what}.", "Check the path (create the directory first).")
    if isinstance(exc, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
        return TransportError(
            f"Cannot {verb} {remote}: permission denied on the device.",
            "Use a path the login user may write, or log in as a user who may.",
        )
    if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded | asyncssh.SFTPFailure):
        free = await _free_bytes(sftp, directory)
        if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem) or (free is not None and free < 1 << 20):
            return TransportError(
                f"Cannot {verb} {remote}: the device's disk is full: {free if free is not None else 'unknown'} "
                f"bytes free at {directory}.",
                "Free space on the device (old logs, old bundles) and run the upload again; it resumes.",
            )
    return _link_error(exc, remote, verb)


def _link_error(exc: BaseException, remote: str, verb: str) -> TransportError:
    if isinstance(exc, TransportError):
        return exc
    return TransportError(
        f"The {verb} of {remote} stopped: {getattr(exc, 'reason', None) or exc or type(exc).__name__}.",
        f"Run the {verb} again when the link is back; it resumes where it stopped.",
    )


def _local_missing(local: Path) -> TransportError:
    return TransportError(f"The local file {local} does not exist.", "Check the path.")


# -- put / get -----------------------------------------------------------------------------------


async def sftp_put(
    conn: asyncssh.SSHClientConnection,
    local: Path,
    remote: str,
    *,
    progress: ProgressCallback | None = None,
    block_size: int = BLOCK_SIZE,
    parallel: int = PARALLEL,
) -> TransferResult:
    """Upload ``local`` to ``remote`` through ``remote.part``; resumes a previous partial upload."""
    local = Path(local)
    if not local.is_file():
        raise _local_missing(local)
    size = local.stat().st_size
    part = remote + ".part"
    began = time.monotonic()
    try:
        async with conn.start_sftp_client() as sftp:
            try:
                start = await _resume_point_put(conn, sftp, local, part, size, block_size * parallel)
                tracker = _Tracker(size, start, progress)
                await _upload(sftp, local, part, start, size, block_size, parallel, tracker)
                digest = await asyncio.to_thread(_local_hash, local)
                if await _remote_hash(conn, sftp, part) != digest:
                    with contextlib.suppress(asyncssh.Error):
                        await sftp.remove(part)
                    raise TransportError(
                        f"The uploaded {remote} does not match the local file (SHA-256 differs); it was removed.",
                        "Run the upload again; if it fails again the device's storage may be failing.",
                    )
                await _rename(sftp, part, remote)
                tracker.emit()
            except (asyncssh.SFTPError, OSError) as exc:
                if isinstance(exc, asyncssh.SFTPConnectionLost | ConnectionError):
                    raise _link_error(exc, remote, "upload") from exc
                raise await _sftp_error(exc, sftp, remote, "upload") from exc
    except (asyncssh.Error, OSError) as exc:
        raise _link_error(exc, remote, "upload") from exc
    return TransferResult(size, size - start, start, digest, time.monotonic() - began)


async def _resume_point_put(
    conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, local: Path, part: str, size: int, window: int
) -> int:
    try:
        have = (await sftp.stat(part)).size or 0
    except asyncssh.SFTPNoSuchFile:
        return 0
    return await _good_prefix(local, have, size, window, lambda n: _remote_hash(conn, sftp, part, n))


async def _upload(
    sftp: asyncssh.SFTPClient, local: Path, part: str, start: int,
    size: int, block: int, parallel: int, tracker: _Tracker,
) -> None:
    # "r+b" keeps the checked prefix; a fresh upload truncates whatever was there.
    mode = "r+b" if start > 0 else "wb"
    with local.open("rb") as src:
        fd = src.fileno()
        async with sftp.open(part, mode, encoding=None, block_size=block) as dst:

            async def one(offset: int, n: int) -> int:
                data = os.pread(fd, n, offset)  # page-cache reads of 128 KiB: microseconds
                await dst.write(data, offset)
                return len(data)

            await _pipeline(start, size, block, parallel, one, tracker)


async def _rename(sftp: asyncssh.SFTPClient, part: str, remote: str) -> None:
    """Atomic replace where the server offers posix-rename (OpenSSH does), else remove then rename."""
    try:
        await sftp.posix_rename(part, remote)
    except asyncssh.SFTPOpUnsupported:
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await sftp.remove(remote)
        await sftp.rename(part, remote)


async def sftp_get(
    conn: asyncssh.SSHClientConnection,
    remote: str,
    local: Path,
    *,
    progress: ProgressCallback | None = None,
    block_size: int = BLOCK_SIZE,
    parallel: int = PARALLEL,
) -> TransferResult:
    """Download ``remote`` to ``local`` through ``local.part``; resumes a previous partial download."""
    local = Path(local)
    part = local.with_name(local.name + ".part")
    if not local.parent.is_dir():
        raise TransportError(f"The local folder {local.parent} does not exist.", "Create it or pick another path.")
    began = time.monotonic()
    try:
        async with conn.start_sftp_client() as sftp:
            try:
                size = (await sftp.stat(remote)).size or 0
                have = part.stat().st_size if part.exists() else 0
                start = await _good_prefix(
                    part, have, size, block_size * parallel, lambda n: _remote_hash(conn, sftp, remote, n)
                )
                tracker = _Tracker(size, start, progress)
                await _download(sftp, remote, part, start, size, block_size, parallel, tracker)
                digest = await asyncio.to_thread(_local_hash, part)
                if await _remote_hash(conn, sftp, remote) != digest:
                    part.unlink(missing_ok=True)
                    raise TransportError(
                        f"The downloaded {remote} does not match the device's file (SHA-256 differs).",
                        "Run the download again; the file may have changed on the device meanwhile.",
                    )
                os.replace(part, local)
                tracker.emit()
            except (asyncssh.SFTPError, OSError) as exc:
                if isinstance(exc, asyncssh.SFTPConnectionLost | ConnectionError):
                    raise _link_error(exc, remote, "download") from exc
                if not isinstance(exc, asyncssh.SFTPError):
                    raise TransportError(f"Cannot write {local}: {exc}.", "Check the local disk and folder.") from exc
                raise await _sftp_error(exc, sftp, remote, "download") from exc
    except (asyncssh.Error, OSError) as exc:
        raise _link_error(exc, remote, "download") from exc
    return TransferResult(size, size - start, start, digest, time.monotonic() - began)


async def _download(
    sftp: asyncssh.SFTPClient, remote: str, part: Path, start: int,
    size: int, block: int, parallel: int, tracker: _Tracker,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (0 if start > 0 else os.O_TRUNC)
    fd = os.open(part, flags, 0o644)
    try:
        os.ftruncate(fd, start)  # drop an unchecked tail so the final size is exactly the source's
        async with sftp.open(remote, "rb", encoding=None, block_size=block) as src:

            async def one(offset: int, n: int) -> int:
                data = _raw(await src.read(n, offset))
                if len(data) != n:
                    raise TransportError(f"{remote} changed size on the device during the download.", "Try again.")
                os.pwrite(fd, data, offset)
                return len(data)

            await _pipeline(start, size, block, parallel, one, tracker)
    finally:
        os.close(fd)
