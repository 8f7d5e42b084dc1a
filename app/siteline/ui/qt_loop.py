"""The asyncio loop on Qt's event loop (qasync), with one difference that matters at the edges.

qasync runs the loop's callbacks (task steps) from a Qt timer, and Qt handles timers wherever events are
processed: after ``run_until_complete`` has stopped (qasync processes events once more there), in a
nested event loop, in pytest-qt between a test's phases. asyncio then no longer counts the loop as
running, and a task step that asks for it (``asyncio.wait_for``, ``get_running_loop``) fails halfway,
leaving a coroutine that is never awaited. Here every callback runs with the loop set as the running
one, and ``run_until_complete`` leaves pending work for the next run (or for ``close``) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import qasync
from PySide6.QtCore import QCoreApplication, QTimerEvent

T = TypeVar("T")


class _LoopTimer(qasync._SimpleTimer):  # type: ignore[misc]
    """qasync's timer, which runs the loop's callbacks (task steps), with the loop set as the running one
    for each: Qt may handle its timers outside the loop's runs (a nested event loop, a dialog's exec)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def timerEvent(self, event: QTimerEvent) -> None:
        if asyncio._get_running_loop() is not None:
            super().timerEvent(event)
            return
        asyncio._set_running_loop(self._loop)
        try:
            super().timerEvent(event)
        finally:
            asyncio._set_running_loop(None)


class SitelineLoop(qasync.QEventLoop):  # type: ignore[misc]
    def __init__(self, app: QCoreApplication | None = None) -> None:
        super().__init__(app)
        self._timer = _LoopTimer(self)

    def run_until_complete(self, future: Awaitable[T]) -> T:
        task = asyncio.ensure_future(future, loop=self)

        def stop(_task: asyncio.Future[T]) -> None:
            self.stop()

        task.add_done_callback(stop)
        try:
            self.run_forever()
        finally:
            task.remove_done_callback(stop)
        if not task.done():
            raise RuntimeError("The event loop stopped before the work finished.")
        return task.result()
