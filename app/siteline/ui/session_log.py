"""'Log this session to a file': the console's output as plain text, written as it arrives. No Qt.

Every chunk is decoded, stripped of terminal sequences and flushed at once, so a crash of the app
loses nothing already shown; the file is synced to the disk at most once a second, so a dead
battery loses at most the last second. A write that fails (disk full, the USB stick pulled, no
permission) stops the log and says why; the terminal itself never notices.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import time
from pathlib import Path
from typing import TextIO

from siteline.core.transports.console import AnsiStripper
from siteline.paths import state_dir

_UNSAFE = re.compile(r"[^\w.-]+")


def default_log_path(device: str, now: dt.datetime | None = None) -> Path:
    """``<state dir>/logs/<device>-<YYYYmmdd-HHMMSS>.log`` (the device name made safe for a file name)."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    name = _UNSAFE.sub("_", device).strip("._") or "device"
    return state_dir() / "logs" / f"{name}-{stamp}.log"


SYNC_EVERY = 1.0  # seconds between fsyncs of the log


class SessionLogError(Exception):
    """The log could not be opened or written; ``str()`` says what happened and what to do."""


class SessionLog:
    """An open session log. ``write(chunk)`` takes the raw bytes the terminal got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bytes_written = 0
        self._synced_at = time.monotonic()
        self._stripper = AnsiStripper()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # newline="" keeps the device's own line ends; \r alone is dropped below (progress bars).
            self._file: TextIO | None = path.open("a", encoding="utf-8", newline="", buffering=1)
        except OSError as exc:
            raise SessionLogError(_explain(exc, path, "open")) from exc

    @property
    def active(self) -> bool:
        return self._file is not None

    def write(self, chunk: bytes) -> None:
        """Append the text of ``chunk``; raises SessionLogError once (and closes) when the write fails."""
        if self._file is None:
            return
        text = self._stripper.feed_bytes(chunk).replace("\r\n", "\n").replace("\r", "")
        if not text:
            return
        try:
            self._file.write(text)
            self._file.flush()  # per chunk: what the person saw is on disk even if the app dies next
            now = time.monotonic()
            if now - self._synced_at >= SYNC_EVERY:  # bounded: one fsync a second, not one per chunk
                os.fsync(self._file.fileno())
                self._synced_at = now
        except OSError as exc:
            self._abandon()
            raise SessionLogError(_explain(exc, self.path, "write")) from exc
        self.bytes_written += len(text.encode("utf-8"))

    def close(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):  # the last flush failed: the file keeps what was written before
                file.close()


def _explain(exc: OSError, path: Path, action: str) -> str:
    if exc.errno == errno.ENOSPC:
        why = "the disk is full"
        what = "free some space or choose a file on another disk, then start logging again"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied"
        what = "choose a folder you can write to"
    else:
        why = exc.strerror or str(exc)
        what = "choose another file and start logging again"
    return f"Cannot {action} the session log {path}: {why}. Logging stopped; the console keeps running — {what}."
