"""Stopping background tasks so that they are really stopped."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; its result or error is dropped.

    On Python 3.11 asyncio.wait_for (inside asyncssh's connect, for one) can swallow a cancel that
    lands as the awaited call ends, leaving the task running: keep cancelling until it is done.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.25)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
