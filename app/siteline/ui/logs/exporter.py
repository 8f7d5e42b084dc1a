"""Export of the shown log lines to a text file, a slice per idle moment: millions of lines never freeze the window.

The file is written through `siteline.core.atomic.atomic_file`: until the last line is written it
is a temp file beside the target; a failure or a cancel removes it, so the target is whole or untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from PySide6.QtCore import QObject, QTimer, Signal

from siteline.core.atomic import atomic_file
from siteline.core.logs import LogRecord
from siteline.ui.logs.words import record_text

STEP = 5_000  # lines formatted and written per idle moment (~10-20 ms)
SYNC_LIMIT = 50_000  # fewer lines than this are written at once (well under half a second)


def write_lines(fh: BinaryIO, records: list[LogRecord]) -> None:
    if records:
        fh.write(("\n".join(map(record_text, records)) + "\n").encode("utf-8", "surrogateescape"))


def export_now(path: Path, total: int, read: Callable[[int, int], list[LogRecord]]) -> int:
    """Write the rows at once (few of them); raises OSError. Returns how many lines were written."""
    written = 0
    with atomic_file(path) as fh:
        for start in range(0, total, STEP):
            records = read(start, min(STEP, total - start))
            write_lines(fh, records)
            written += len(records)
    return written


class Exporter(QObject):
    """Writes `total` rows read by `read(start, count)` to `path`; reports progress and the end."""

    sig_progress = Signal(int, int)
    """Lines written so far, out of how many."""
    sig_finished = Signal(int, str)
    """Lines written and '' when the file is complete; 0 and the reason in words when it is not."""

    def __init__(self, path: Path, total: int, read: Callable[[int, int], list[LogRecord]],
                 parent: QObject | None = None, step: int = STEP) -> None:
        super().__init__(parent)
        self.path = path
        self.total = total
        self._read = read
        self._step = step
        self._done = 0
        self._written = 0
        self._context: AbstractContextManager[BinaryIO] | None = None
        self._fh: BinaryIO | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)

    def start(self) -> None:
        """Open the temp file now (so a folder that cannot be written fails at once) and write in idle moments."""
        self._context = atomic_file(self.path)
        self._fh = self._context.__enter__()  # held open across loop turns: a `with` block cannot span them
        self._timer.start(0)

    def cancel(self, why: str = "export cancelled") -> None:
        self._fail(RuntimeError(why))

    def _on_timer_timeout(self) -> None:
        assert self._fh is not None
        try:
            records = self._read(self._done, min(self._step, self.total - self._done))
            write_lines(self._fh, records)
            self._written += len(records)
            self._done = min(self._done + self._step, self.total) if records else self.total  # a file shrank: end
            if self._done < self.total:
                self.sig_progress.emit(self._done, self.total)
                self._timer.start(0)
                return
            self._finish()
        except (OSError, ValueError) as exc:  # disk full, file closed under us
            self._fail(exc)

    def _finish(self) -> None:
        context, self._context, self._fh = self._context, None, None
        try:
            if context is not None:
                context.__exit__(None, None, None)  # fsync, rename over the target, fsync the folder
        except OSError as exc:
            self.sig_finished.emit(0, exc.strerror or str(exc))
            return
        self.sig_finished.emit(self._written, "")

    def _fail(self, exc: BaseException) -> None:
        self._timer.stop()
        context, self._context, self._fh = self._context, None, None
        if context is not None:
            context.__exit__(type(exc), exc, exc.__traceback__)  # removes the temp file; the target is untouched
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.sig_finished.emit(0, reason)
