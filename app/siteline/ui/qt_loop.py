"""The asyncio loop on Qt's event loop (qasync), with one difference that matters at the edges.

qasync's ``run_until_complete`` processes Qt's pending events once more after the loop has stopped,
while asyncio no longer counts it as running: a task step that runs there and asks for the running
loop (``asyncio.wait_for``, ``get_running_loop``) fails with "no running event loop" halfway through,
leaving a coroutine that is never awaited. Here the work left pending simply waits for the next run
(or for ``close``, which cancels it), and every Qt event is handled while the loop counts as running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import qasync

T = TypeVar("T")


class SitelineLoop(qasync.QEventLoop):  # type: ignore[misc]
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
