"""Files over any command channel (a serial console, MQTT, any ``run``): base64 chunks, each checked, resumable.

For small files and recovery when SSH is not there. An upload appends one decoded chunk per command
to ``REMOTE.part``; the same command prints the SHA-256 of the bytes it appended and the new size, so
a chunk the line garbled is seen at once, cut away and sent again. A download prints one chunk as base64 and
its SHA-256 per command. Both keep, on a second run, the longest run of whole chunks whose hashes
match (found by bisection: a few commands, not one per chunk), check the whole file's SHA-256 at the
end and only then give the file its real name (the device syncs before and after the rename; a download
is fsynced here, then its folder). A destination that is a folder, or ends in ``/``, gets the source's
name inside it, as scp does.

Every typed line, the console's framing included, stays within ``cmds.MAX_TYPED_LINE`` (BusyBox ash
cuts a line at 1023 characters), so an upload chunk carries about 610 bytes to a short path such as
/data/update.bin: 1.65 typed bytes per payload byte (base64 alone is 1.33; the rest is the command and
its framing), 1.84 with the 62-character folders of the tests (measured by
``test_bash_every_typed_line_fits_busybox_ash``), plus the echo and a ~90-byte reply per chunk. A
download's command is short; its reply is the base64 and a hash: 1.39 bytes per payload byte.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from siteline.core.atomic import fsync_dir
from siteline.core.errors import TransportError
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import Result
from siteline.core.transports.integrity import local_hash, local_prefix_hashes
from siteline.core.transports.transfer import (
    Progress,
    ProgressCallback,
    TransferResult,
    _Tracker,
    check_local_destination,
    into_folder,
    local_destination,
)

__all__ = [
    "CHUNK_SIZE", "MAX_SIZE", "Progress", "ProgressCallback", "RunCommand", "TransferResult",
    "get_over_console", "put_over_console",
]

RunCommand = Callable[[str, float], Awaitable[Result]]
# What an upload asks for; each run cuts it down to what fits a typed line (see _fit_chunk): about
# 600 bytes on a serial console, 2304 (3072 base64 characters) on a channel with LONG_LINE.
CHUNK_SIZE = 2304
MIN_CHUNK = 240
MAX_READ_CHUNK = 48 * 1024  # a download's output per command (MQTT replies carry up to 256 KiB)
MAX_SIZE = 16 << 20
RETRIES = 3
STEP_TIMEOUT = 30.0
FREE_MARGIN = 64 * 1024  # leave the device a little room beyond the file itself


class _Channel:
    """``run`` with the transfer's context: a broken link becomes "stopped at X of Y: run it again to resume"."""

    def __init__(self, run: RunCommand, remote: str, verb: str, timeout: float, max_line: int) -> None:
        self._run, self.remote, self.verb, self.timeout = run, remote, verb, timeout
        self.max_line = max_line
        self.done, self.total = 0, 0

    async def __call__(self, command: str) -> Result:
        if cmds.typed_length(command) > self.max_line:  # a cut line would run half a command
            raise TransportError(
                f"The path {self.remote} is too long to type over a console line "
                f"(a line holds {self.max_line} characters with the commands around the path).",
                "Use a shorter path (for example in /tmp) and move the file afterwards.")
        try:
            return await self._run(command, self.timeout)
        except TransportError as exc:
            where = f" after {_size(self.done)} of {_size(self.total)}" if self.total else ""
            raise TransportError(
                f"The {self.verb} of {self.remote} stopped{where}: {exc.message}",
                f"Run it again to resume when the link is back; it continues where it stopped. {exc.hint}".strip(),
            ) from exc

    async def checked(self, command: str, what: str) -> Result:
        result = await self(command)
        if not result.ok:
            raise TransportError(
                f"The device could not {what} for {self.remote} (exit {result.exit_code}): "
                f"{_said(result)}", "Check the path and the device's storage, then run it again; it resumes.")
        return result

    async def far_hash(self, command: str) -> str | None:
        return cmds.parse_hash((await self(command)).stdout)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _said(result: Result) -> str:
    text = " ".join((result.stdout + " " + result.stderr).split())
    return text[:200] or "(no output)"


def _check_size(size: int, max_size: int, line_bps: int | None, what: str) -> None:
    if size <= max_size:
        return
    # 4/3 for base64, 10 bits a byte on an 8N1 line; commands and echo overlap on a full-duplex line.
    minutes = size * 4 / 3 * 10 / line_bps / 60 if line_bps else 0.0
    estimate = f" At {line_bps} bit/s it would take about {minutes:.{1 if minutes < 10 else 0}f} minutes." \
        if line_bps else ""
    raise TransportError(
        f"{what} is {_size(size)}; a console transfer is meant for files up to {_size(max_size)}.{estimate}",
        "Copy it over SSH (ssh://) or removable media, or raise the limit if you accept the wait.",
    )


def _fit_chunk(requested: int, remote: str, codec: str, max_line: int) -> int:
    """The largest chunk (up to ``requested``) whose typed append line stays within ``max_line``."""
    room = max_line - cmds.append_overhead(remote, codec)
    fits = room // 4 * 3
    size = min(requested, fits)
    if size < MIN_CHUNK:
        raise TransportError(f"The path {remote} is too long to type chunks over a console line.",
                             "Use a shorter path (for example in /tmp) and move the file afterwards.")
    return size


async def _kept_chunks(have: int, size: int, cs: int, mine: Callable[[int], Awaitable[str]],
                       far: Callable[[int], Awaitable[str | None]]) -> int:
    """How many whole chunks of a partial file match the source: all of them, else bisect to the last good one."""
    n = min(have, size) // cs
    if n == 0 or await far(n) == await mine(n):
        return n
    lo, hi = 0, n - 1  # lo chunks are known good; a prefix match implies every shorter one matches
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if await far(mid) == await mine(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _local_prefix(path: Path, cs: int) -> Callable[[int], Awaitable[str]]:
    async def mine(chunks: int) -> str:
        cut = chunks * cs
        return (await asyncio.to_thread(local_prefix_hashes, path, [cut])).get(cut, "")

    return mine


# -- upload ---------------------------------------------------------------------------------------


async def put_over_console(
    run: RunCommand, local: Path, remote: str, progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE, *, max_size: int = MAX_SIZE, line_bps: int | None = None,
    timeout: float = STEP_TIMEOUT, max_line: int = cmds.MAX_TYPED_LINE,
) -> TransferResult:
    """Upload ``local`` to ``remote`` (or into it, when a directory) through ``.part``; a second call resumes.

    ``max_line``: the longest line the channel takes, framing included (``cmds.LONG_LINE`` for MQTT).
    """
    local = Path(local)
    if not local.is_file():
        raise TransportError(f"The local file {local} does not exist.", "Check the path.")
    size = local.stat().st_size
    _check_size(size, max_size, line_bps, str(local))
    began = time.monotonic()
    remote, place, codec = await _probe_place(_Channel(run, remote, "upload", timeout, max_line), remote, local.name,
                                              size)
    chan = _Channel(run, remote, "upload", timeout, max_line)
    cs = _fit_chunk(chunk_size, remote, codec, max_line)
    part = cmds.part_path(remote)
    kept = 0
    if place.part_size:
        kept = await _kept_chunks(place.part_size, size, cs, _local_prefix(local, cs),
                                  lambda n: chan.far_hash(cmds.prefix_hash(part, n, cs)))
    await chan.checked(cmds.truncate(part, kept, cs), f"create {part}")
    start = kept * cs
    chan.done, chan.total = start, size
    tracker = _Tracker(size, start, progress)
    tracker.emit()  # the starting point first, so a caller can say where a resume begins
    fd = os.open(local, os.O_RDONLY)
    try:
        for index in range(kept, -(-size // cs)):
            data = os.pread(fd, cs, index * cs)  # a page-cache read of a few KiB: microseconds
            await _send_chunk(chan, codec, index, cs, data)
            chan.done += len(data)
            tracker.add(len(data))
    finally:
        os.close(fd)
    digest = await asyncio.to_thread(local_hash, local)
    if await chan.far_hash(cmds.whole_hash(part)) != digest:
        await chan(cmds.remove(part))
        raise TransportError(f"The uploaded {remote} does not match the local file (SHA-256 differs); it was removed.",
                             "Run the upload again; if it fails again the device's storage may be failing.")
    await chan.checked(cmds.finish_upload(remote), f"rename {part} into place")
    tracker.emit()
    return TransferResult(size, size - start, start, digest, time.monotonic() - began, remote)


async def _probe_place(chan: _Channel, remote: str, name: str, size: int) -> tuple[str, cmds.UploadPlace, str]:
    """The final remote path (``name`` inside ``remote`` when that is a directory), its place and the codec."""
    final = into_folder(remote, name)
    answer = (await chan(cmds.upload_probe(final) if final else cmds.upload_probe(remote, name))).stdout
    place = cmds.parse_upload_place(answer)
    if final is None:
        final = cmds.into(remote, name) if place is not None and place.into_dir else remote
    return final, *_check_place(place, final, size)


def _check_place(place: cmds.UploadPlace | None, remote: str, size: int) -> tuple[cmds.UploadPlace, str]:
    """The place and the codec to use, or a refusal that says what to do."""
    directory = cmds.remote_dir(remote)
    if place is None:
        raise TransportError(f"The device's answer about {directory} could not be understood.",
                             "Check that the console is at a shell prompt and try again.")
    if place.is_dir:
        raise TransportError(f"Cannot upload {remote}: it is a directory on the device.",
                             "Give a file name inside it, or remove that directory first.")
    if not place.dir_exists:
        raise TransportError(f"Cannot upload {remote}: {directory} does not exist on the device.",
                             "Check the path (create the directory first).")
    if not place.writable:
        raise TransportError(f"Cannot upload {remote}: {directory} is not writable on the device.",
                             "Use a path the login user may write (e.g. /tmp), or log in as a user who may.")
    codec = _require_tools(place.codec, place.has_sha256)
    need = size - min(place.part_size or 0, size) + FREE_MARGIN
    if place.free_bytes is not None and place.free_bytes < need:
        raise TransportError(
            f"Cannot upload {remote}: the device has {_size(place.free_bytes)} free at {directory}, "
            f"the file needs {_size(size)}.",
            "Free space on the device (old logs, old bundles) or pick another directory, then run it again.")
    return place, codec


async def _send_chunk(chan: _Channel, codec: str, index: int, cs: int, data: bytes) -> None:
    """Append one chunk and prove it landed; a wrong one is cut away and sent again (bounded)."""
    b64 = base64.b64encode(data).decode()
    want = cmds.ChunkReply(index * cs + len(data), hashlib.sha256(data).hexdigest())
    part = cmds.part_path(chan.remote)
    said = ""
    for _ in range(RETRIES):
        result = await chan(cmds.append_chunk(chan.remote, codec, b64))
        if result.ok and cmds.parse_chunk_reply(result.stdout) == want:
            return
        said = _said(result)
        await chan.checked(cmds.truncate(part, index, cs), f"cut back {part}")
    raise TransportError(
        f"Chunk {index + 1} of the upload of {chan.remote} did not arrive intact after {RETRIES} tries "
        f"(the device said: {said}).",
        "Check the device's free space and the line (noise, wrong baud rate); run it again to resume.")


# -- download -------------------------------------------------------------------------------------


async def get_over_console(
    run: RunCommand, remote: str, local: Path, progress: ProgressCallback | None = None,
    chunk_size: int = CHUNK_SIZE, *, max_size: int = MAX_SIZE, line_bps: int | None = None,
    timeout: float = STEP_TIMEOUT, max_line: int = cmds.MAX_TYPED_LINE,
) -> TransferResult:
    """Download ``remote`` to ``local`` (or into it, when a folder) through ``.part``; a second call resumes."""
    local = local_destination(local, remote)
    check_local_destination(local)
    part = local.with_name(local.name + ".part")
    began = time.monotonic()
    chan = _Channel(run, remote, "download", timeout, max_line)
    source = cmds.parse_download_source((await chan(cmds.download_probe(remote))).stdout)
    size, codec = _check_source(source, remote)
    _check_size(size, max_size, line_bps, remote)
    cs = max(MIN_CHUNK, min(chunk_size, MAX_READ_CHUNK))
    have = part.stat().st_size if part.exists() else 0
    kept = 0
    if have:
        kept = await _kept_chunks(have, size, cs, _local_prefix(part, cs),
                                  lambda n: chan.far_hash(cmds.prefix_hash(remote, n, cs)))
    start = kept * cs
    chan.done, chan.total = start, size
    tracker = _Tracker(size, start, progress)
    tracker.emit()  # the starting point first, so a caller can say where a resume begins
    fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, start)  # drop an unchecked tail so the final size is exactly the source's
        for index in range(kept, -(-size // cs)):
            data = await _fetch_chunk(chan, codec, index, cs, min(cs, size - index * cs))
            os.pwrite(fd, data, index * cs)
            chan.done += len(data)
            tracker.add(len(data))
        os.fsync(fd)
    finally:
        os.close(fd)
    digest = await asyncio.to_thread(local_hash, part)
    if await chan.far_hash(cmds.whole_hash(remote)) != digest:
        part.unlink(missing_ok=True)
        raise TransportError(f"The downloaded {remote} does not match the device's file (SHA-256 differs).",
                             "Run the download again; the file may have changed on the device meanwhile.")
    os.replace(part, local)
    fsync_dir(local.parent)  # the rename itself, on disk: a file reported done survives a power cut
    tracker.emit()
    return TransferResult(size, size - start, start, digest, time.monotonic() - began, str(local))


def _check_source(source: cmds.DownloadSource | None, remote: str) -> tuple[int, str]:
    if source is None:
        raise TransportError(f"The device's answer about {remote} could not be understood.",
                             "Check that the console is at a shell prompt and try again.")
    if not source.exists:
        raise TransportError(f"Cannot download {remote}: it does not exist on the device (or is not a file).",
                             "Check the path.")
    if not source.readable or source.size is None:
        raise TransportError(f"Cannot download {remote}: permission denied on the device.",
                             "Log in as a user who may read it.")
    return source.size, _require_tools(source.codec, source.has_sha256)


def _require_tools(codec: str | None, has_sha256: bool) -> str:
    """The device's base64 decoder, or a refusal naming the tool it lacks."""
    if codec is None or not has_sha256:
        missing = "base64 (or openssl)" if codec is None else "sha256sum"
        raise TransportError(f"The device has no {missing}, which a console transfer needs.",
                             "Use SSH, or a device image with BusyBox's base64 and sha256sum applets.")
    return codec


async def _fetch_chunk(chan: _Channel, codec: str, index: int, cs: int, length: int) -> bytes:
    said = ""
    for _ in range(RETRIES):
        result = await chan(cmds.read_chunk(chan.remote, codec, index, cs))
        reply = cmds.parse_read_reply(result.stdout) if result.ok else None
        if reply is not None:
            try:
                data = base64.b64decode(reply.b64, validate=True)
            except (binascii.Error, ValueError):
                data = b""
            if len(data) == length and hashlib.sha256(data).hexdigest() == reply.sha256:
                return data
        said = _said(result)
    raise TransportError(
        f"Chunk {index + 1} of {chan.remote} did not arrive intact after {RETRIES} tries (the device said: {said}).",
        "Check the line (noise, wrong baud rate) and that the file is not changing; run it again to resume.")
