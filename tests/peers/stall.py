"""Measure the worst event-loop stall during a block of test code.

    async with measure_stalls() as watch:
        ...  # the fault
    assert_no_stall(watch, "broker restart")

It uses the app's own :class:`siteline.core.loopwatch.LoopWatch`, sampling every 10 ms, so a test
sees what the GUI's watchdog would see.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from siteline.core.loopwatch import LoopWatch

# A sanity bound, not a speed target (the figures are printed and go in the notes): a loop blocked
# this long is a hang or a blocking call on the loop, never mere load on a busy 2-core CI box.
STALL_BOUND = 2.0


@contextlib.asynccontextmanager
async def measure_stalls(interval: float = 0.01) -> AsyncIterator[LoopWatch]:
    watch = LoopWatch(interval=interval, threshold=STALL_BOUND)
    watch.start()
    try:
        yield watch
    finally:
        await watch.stop()


def assert_no_stall(watch: LoopWatch, what: str, bound: float = STALL_BOUND) -> None:
    """Fail naming the fault when the loop was blocked for longer than ``bound`` seconds."""
    stats = watch.stats
    assert stats.samples > 0, f"{what}: the stall watch never ran"
    assert stats.worst < bound, f"{what}: {stats.describe()} (bound {bound * 1000:.0f} ms)"
    print(f"{what}: {stats.describe()}")
