"""Audit records written in order on a thread of their own.

A record is a transaction with an fsync, and another Siteline process (the CLI's `note`, an import) may
hold the outbox's write lock for seconds: the window's event loop — a technician typing in the console —
must never wait on either. Records keep the order they were given in; a record that cannot be written is
reported through ``on_error`` on the event loop, and the action it describes goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from siteline.core.audit import AuditTrail
from siteline.core.errors import SitelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    action: str
    device: str
    site: str
    detail: Mapping[str, Any] | None
    result: str


class AuditWriter:
    def __init__(self, trail: AuditTrail, on_error: Callable[[SitelineError], None],
                 on_written: Callable[[], None] | None = None) -> None:
        self.trail = trail
        self._on_error = on_error
        self._on_written = on_written
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._idle = threading.Event()  # set while nothing is queued or being written
        self._idle.set()
        self._count_lock = threading.Lock()
        self._unwritten = 0
        self._thread = threading.Thread(target=self._run, name="audit writer", daemon=True)
        self._thread.start()

    def record(self, action: str, *, device: str, site: str, detail: Mapping[str, Any] | None = None,
               result: str = "ok") -> None:
        """Queue one record; returns at once."""
        with self._count_lock:
            self._unwritten += 1
            self._idle.clear()
        self._queue.put(_Pending(action, device, site, dict(detail) if detail is not None else None, result))

    def flush(self, timeout: float = 15.0) -> bool:
        """Wait until every queued record is written (or failed); False when ``timeout`` passed first."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 15.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the audit writer did not finish within %.0f s; %d records not written", timeout,
                      self._queue.qsize())

    def _run(self) -> None:
        while True:
            pending = self._queue.get()
            if pending is None:
                return
            try:
                self.trail.record(pending.action, device=pending.device, site=pending.site, detail=pending.detail,
                                  result=pending.result)
            except SitelineError as exc:
                log.error("could not record %s on %s in the audit trail: %s", pending.action, pending.device, exc)
                self._tell(self._on_error, exc)
            except Exception:  # a bug must not end the thread: later records still get their chance
                log.exception("recording %s on %s failed", pending.action, pending.device)
            else:
                if self._on_written is not None:
                    self._tell(self._on_written)
            with self._count_lock:
                self._unwritten -= 1
                if self._unwritten == 0:
                    self._idle.set()

    def _tell(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            fn(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is listening any more
            loop.call_soon_threadsafe(fn, *args)
