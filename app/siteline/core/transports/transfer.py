"""SFTP put/get that survive a cellular link: pipelined blocks, resume from a checked prefix, SHA-256 at the end.

An upload goes to ``remote + ".part"`` and is renamed into place only after the far side's SHA-256
matches the local file, so a half-written file never carries the real name; the device is asked to
fsync it first (fsync@openssh.com), and a download is fsynced here, then its folder after the rename,
so a file reported done survives a power cut. A destination that is a folder (or ends in ``/``) gets
the source's file name inside it, as scp does. A resumed transfer does
not trust the bytes already there: the longest prefix whose hash matches the source is kept, the rest
is sent again (a torn or corrupted tail costs at most a few blocks, never a wrong file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from siteline.core.atomic import fsync_dir
from siteline.core.errors import TransportError
from siteline.core.transports.integrity import (
    BLOCK_SIZE,
    good_prefix,
    local_hash,
    matching_blocks,
    raw_bytes,
    remote_hash,
)

log = logging.getLogger(__name__)

PARALLEL = 16  # requests in flight, over all channels
CHANNELS = 2  # SFTP sessions: each is its own sftp-server process on the device, so writes overlap
SESSION_RETRY = (0.05, 0.2, 0.5)  # seconds between tries to open a refused SFTP session
PROGRESS_INTERVAL = 0.1  # at most 10 callbacks a second: a UI must not drown in them


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
    path: str = ""  # where the file landed: the remote path of a put, the local path of a get


def into_folder(remote: str, name: str) -> str | None:
    """``remote/name`` when ``remote`` says it is a folder (ends in ``/``, or is empty: the login's home)."""
    return posixpath.join(remote, name) if remote == "" or remote.endswith("/") else None


def local_destination(local: str | Path, remote: str) -> Path:
    """Where a download lands: ``local``, or ``local/<remote's name>`` when ``local`` is a folder or ends in a
    separator (as scp does). Raises TransportError when ``remote`` has no file name to take."""
    text = os.fspath(local)
    seps = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if text and not text.endswith(seps) and not Path(text).is_dir():
        return Path(text)
    name = posixpath.basename(remote.rstrip("/"))
    if name in ("", ".", ".."):
        raise TransportError(f"{remote} names no file to put in the folder {text or '.'}.",
                             "Give the local file's name as well: siteline get TARGET REMOTE LOCAL_FILE.")
    return Path(text or ".") / name


def check_local_destination(local: Path) -> None:
    """Refuse before connecting when a download could not land at ``local``."""
    if not local.parent.is_dir():
        raise TransportError(f"The local folder {local.parent} does not exist.", "Create it or pick another path.")
    if local.is_dir():
        raise TransportError(f"{local} is a folder; a download cannot replace it.",
                             "Give another local file name, or move that folder away.")


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


# -- several SFTP sessions on one connection --------------------------------------------------------


async def _extra_handles(
    stack: contextlib.AsyncExitStack, conn: asyncssh.SSHClientConnection, path: str, mode: str, block: int, count: int
) -> list[asyncssh.SFTPClientFile]:
    """Up to ``count`` more handles on ``path``, each over its own SFTP session; fewer if the device refuses.

    A device may cap sessions (sshd's MaxSessions, small embedded servers): one channel still works.
    """
    handles: list[asyncssh.SFTPClientFile] = []
    for _ in range(count):
        try:
            sftp = await stack.enter_async_context(conn.start_sftp_client())
            handles.append(await stack.enter_async_context(sftp.open(path, mode, encoding=None, block_size=block)))
        except (asyncssh.ChannelOpenError, asyncssh.SFTPError) as exc:
            log.debug("using %d SFTP session(s): another was refused (%s)", len(handles) + 1, exc)
            break
    return handles


@contextlib.asynccontextmanager
async def _sftp_session(conn: asyncssh.SSHClientConnection) -> AsyncIterator[asyncssh.SFTPClient]:
    """An SFTP session; a refused open is tried again shortly, as a device with a session limit
    (sshd's MaxSessions) frees the slot of a session that just ended a moment after it ended."""
    for delay in SESSION_RETRY:
        try:
            client = await conn.start_sftp_client()
            break
        except asyncssh.ChannelOpenError:
            await asyncio.sleep(delay)
    else:
        client = await conn.start_sftp_client()
    async with client:
        yield client


def _hash_alongside(local: Path) -> asyncio.Future[str]:
    """Start hashing ``local`` in a thread now, so it overlaps the transfer instead of following it."""
    return asyncio.ensure_future(asyncio.to_thread(local_hash, local))


async def _dropped(task: asyncio.Future[str]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


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
    began = time.monotonic()
    try:
        async with _sftp_session(conn) as sftp:
            try:
                remote = await _remote_destination(sftp, remote, local.name)
                part = remote + ".part"
                start, keep = await _resume_point_put(conn, sftp, local, part, size, block_size, parallel)
                kept = start + sum(min(block_size, size - offset) for offset in keep)
                tracker = _Tracker(size, kept, progress)
                if kept:
                    tracker.emit()  # the starting point first, so a caller can say where a resume begins
                hashing = _hash_alongside(local)
                try:
                    await _upload(conn, sftp, local, part, (start, keep), size, block_size, parallel, tracker)
                except BaseException:
                    await _dropped(hashing)
                    raise
                digest = await hashing
                if await remote_hash(conn, sftp, part) != digest:
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
    return TransferResult(size, size - kept, kept, digest, time.monotonic() - began, remote)


async def _remote_destination(sftp: asyncssh.SFTPClient, remote: str, name: str) -> str:
    """The path the file gets: ``remote``, or ``name`` inside it when it is a folder (as scp does)."""
    final = into_folder(remote, name)
    if final is None:
        if not await sftp.isdir(remote):  # one round trip for the common case: a file path
            return remote
        final = posixpath.join(remote, name)
    if await sftp.isdir(final):
        raise TransportError(f"Cannot upload {final}: it is a directory on the device.",
                             "Give a file name inside it, or remove that directory first.")
    return final


async def _resume_point_put(
    conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, local: Path, part: str,
    size: int, block: int, parallel: int,
) -> tuple[int, frozenset[int]]:
    """The checked prefix of a partial upload, and the blocks after it that are already right."""
    try:
        have = (await sftp.stat(part)).size or 0
    except asyncssh.SFTPNoSuchFile:
        return 0, frozenset()
    window = block * parallel
    start = await good_prefix(local, have, size, window, lambda n: remote_hash(conn, sftp, part, n))
    if 0 < start < have <= start + window:
        return start, await matching_blocks(sftp, part, local, start, min(have, size), size, block)
    return start, frozenset()


async def _upload(
    conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, local: Path, part: str,
    resume: tuple[int, frozenset[int]], size: int, block: int, parallel: int, tracker: _Tracker,
) -> None:
    start, keep = resume  # send from ``start``, except the blocks at offsets in ``keep`` (already there)
    # "r+b" keeps the checked prefix; a fresh upload truncates whatever was there (first handle only).
    mode = "r+b" if start > 0 else "wb"
    with local.open("rb") as src:
        fd = src.fileno()
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(sftp.open(part, mode, encoding=None, block_size=block))
            dst = [first, *await _extra_handles(stack, conn, part, "r+b", block, CHANNELS - 1)]

            async def one(offset: int, n: int) -> int:
                if offset in keep:
                    return 0  # counted in the tracker's start already
                data = os.pread(fd, n, offset)  # page-cache reads of 128 KiB: microseconds
                await dst[(offset // block) % len(dst)].write(data, offset)
                return len(data)

            await _pipeline(start, size, block, parallel, one, tracker)
            # On the device's flash before the name points at it; fsync is per file, not per handle, so one
            # covers the writes of every session. A server without fsync@openssh.com gets the rename alone.
            with contextlib.suppress(asyncssh.SFTPOpUnsupported):
                await first.fsync()


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
    """Download ``remote`` to ``local`` (or into it, when a folder) through ``.part``; resumes a partial download."""
    local = local_destination(local, remote)
    check_local_destination(local)
    part = local.with_name(local.name + ".part")
    began = time.monotonic()
    try:
        async with _sftp_session(conn) as sftp:
            try:
                size = (await sftp.stat(remote)).size or 0
                have = part.stat().st_size if part.exists() else 0
                start = await good_prefix(
                    part, have, size, block_size * parallel, lambda n: remote_hash(conn, sftp, remote, n)
                )
                tracker = _Tracker(size, start, progress)
                if start:
                    tracker.emit()  # the starting point first, so a caller can say where a resume begins
                await _download(conn, sftp, remote, part, start, size, block_size, parallel, tracker)
                digest = await asyncio.to_thread(local_hash, part)
                if await remote_hash(conn, sftp, remote) != digest:
                    part.unlink(missing_ok=True)
                    raise TransportError(
                        f"The downloaded {remote} does not match the device's file (SHA-256 differs).",
                        "Run the download again; the file may have changed on the device meanwhile.",
                    )
                os.replace(part, local)
                fsync_dir(local.parent)  # the rename itself, on disk
                tracker.emit()
            except (asyncssh.SFTPError, OSError) as exc:
                if isinstance(exc, asyncssh.SFTPConnectionLost | ConnectionError):
                    raise _link_error(exc, remote, "download") from exc
                if not isinstance(exc, asyncssh.SFTPError):
                    raise TransportError(f"Cannot write {local}: {exc}.", "Check the local disk and folder.") from exc
                raise await _sftp_error(exc, sftp, remote, "download") from exc
    except (asyncssh.Error, OSError) as exc:
        raise _link_error(exc, remote, "download") from exc
    return TransferResult(size, size - start, start, digest, time.monotonic() - began, str(local))


async def _download(
    conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, remote: str, part: Path, start: int,
    size: int, block: int, parallel: int, tracker: _Tracker,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (0 if start > 0 else os.O_TRUNC)
    fd = os.open(part, flags, 0o644)
    try:
        os.ftruncate(fd, start)  # drop an unchecked tail so the final size is exactly the source's
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(sftp.open(remote, "rb", encoding=None, block_size=block))
            src = [first, *await _extra_handles(stack, conn, remote, "rb", block, CHANNELS - 1)]

            async def one(offset: int, n: int) -> int:
                data = raw_bytes(await src[(offset // block) % len(src)].read(n, offset))
                if len(data) != n:
                    raise TransportError(f"{remote} changed size on the device during the download.", "Try again.")
                os.pwrite(fd, data, offset)
                return len(data)

            await _pipeline(start, size, block, parallel, one, tracker)
        os.fsync(fd)  # on disk before the rename gives it the real name
    finally:
        os.close(fd)
