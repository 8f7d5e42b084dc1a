"""A log file from disk behind the Logs panel, worked through in idle moments so the window never waits.

1. index: `LogFile.index_more` a few MB at a time; the view browses the file through the index at once;
2. load (files up to LOAD_LIMIT): parse every line into a `LogStore`, a slice at a time, so that
   filters work; then the view moves onto that store (`sig_loaded`);
3. follow: once a second look for lines written since, as `tail -F` does.
A file bigger than LOAD_LIMIT stays browse-only (find and go-to-time still work): parsing a
multi-GB file into memory would cost more memory than a field laptop may have.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from siteline.core.logs import LogFile, LogStore
from siteline.ui.logs.words import storable

INDEX_STEP = 8 << 20  # bytes indexed per idle moment (a few ms)
LOAD_STEP = 4_000  # lines parsed per idle moment (~15-20 ms)
LOAD_LIMIT = 256 << 20  # bytes: bigger files are browsed from disk, not read into memory
FOLLOW_MS = 1000


class FileFeed(QObject):
    """Drives one `LogFile` through index, load and follow; owns (and closes) it."""

    sig_grew = Signal()
    """More lines are indexed or loaded: the model has rows to show."""
    sig_loaded = Signal(object)
    """Every line is in this `LogStore` now: the view can filter it."""

    def __init__(self, log: LogFile, parent: QObject | None = None, load_limit: int = LOAD_LIMIT) -> None:
        super().__init__(parent)
        self.log = log
        self.store: LogStore | None = None
        self.loaded = False
        self.size = log.path.stat().st_size
        self.too_big = self.size > load_limit
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)

    def start(self) -> None:
        self._timer.start(0)

    def stop(self) -> None:
        self._timer.stop()
        self.log.close()

    def progress(self) -> float:
        """How much of the work before filters are possible is done, 0..1."""
        if self.loaded:
            return 1.0
        indexed = 0.5 * (1.0 if self.log.complete else min(self.log._indexed / max(self.size, 1), 1.0))
        loaded = 0.5 * (len(self.store) / max(len(self.log), 1) if self.store is not None else 0.0)
        return indexed + loaded

    def _on_timer_timeout(self) -> None:
        if not self.log.complete or self.too_big:
            complete = self.log.index_more(max_bytes=INDEX_STEP)
            self.sig_grew.emit()
            if not complete or self.too_big:
                self._timer.start(0 if not complete else FOLLOW_MS)
                return
        if self.store is None:
            self.store = LogStore()
        if not self.loaded:
            self._load_some()
            return
        self.log.index_more(max_bytes=INDEX_STEP)  # follow: lines written since
        if len(self.log) > len(self.store):
            self._load_some()
            return
        self._timer.start(FOLLOW_MS)

    def _load_some(self) -> None:
        assert self.store is not None
        lines = self.log.raw_lines(len(self.store), LOAD_STEP)
        if lines:
            self.store.ingest(storable(lines, self.log.source), self.log.source)
        behind = len(self.store) < len(self.log) and bool(lines)
        if not self.loaded and not behind:
            self.loaded = True
            self.sig_loaded.emit(self.store)
        elif self.loaded:
            self.sig_grew.emit()
        self._timer.start(0 if behind else FOLLOW_MS)
