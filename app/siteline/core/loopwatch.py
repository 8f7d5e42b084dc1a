"""An asyncio event-loop stall detector: a hang detector, not a profiler.

A coroutine sleeps a short interval and measures how late it woke up. Lateness is time the loop
spent running something else without yielding: a blocked UI in the GUI, a frozen CLI elsewhere.
The worst stall and a coarse histogram are kept; a callback fires when a stall passes a threshold.
Pure asyncio, so the GUI, the CLI and the bench all use the same measurement.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from siteline.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the histogram buckets; the last bucket holds everything above.
BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)

StallCallback = Callable[[float], None]


@dataclass
class StallStats:
    """What the watcher has seen so far. ``histogram[i]`` counts lateness <= ``BUCKETS[i]``."""

    samples: int = 0
    worst: float = 0.0
    stalls_over_threshold: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))

    def record(self, lateness: float) -> None:
        self.samples += 1
        self.worst = max(self.worst, lateness)
        self.histogram[bisect.bisect_left(BUCKETS, lateness)] += 1

    def describe(self) -> str:
        return f"worst event-loop stall {self.worst * 1000:.0f} ms over {self.samples} samples"


class LoopWatch:
    """Measure loop lateness every ``interval`` seconds while :meth:`start`-ed.

    ``on_stall(lateness)`` is called (and a warning logged) for each stall longer than ``threshold``.
    """

    def __init__(
        self,
        interval: float = 0.05,
        threshold: float = 2.0,
        on_stall: StallCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.threshold = threshold
        self.stats = StallStats()
        self._on_stall = on_stall
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._sleeping_since: float | None = None  # when the sample in progress began

    @property
    def worst_stall(self) -> float:
        return self.stats.worst

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self.watch(), name="loopwatch")

    async def stop(self) -> None:
        """Stop watching. A stall still going on (the loop blocked right before this call) is counted too:
        the cancel would otherwise reach the watcher before it wakes up and sees how late it is."""
        task, self._task = self._task, None
        if task is None:
            return
        since = self._sleeping_since
        await cancel_and_wait(task)
        if since is not None:
            self._record(max(0.0, self._clock() - since - self.interval))
        self._sleeping_since = None

    async def watch(self) -> None:
        """Run until cancelled; usable directly as a task body."""
        while True:
            self._sleeping_since = before = self._clock()
            await asyncio.sleep(self.interval)
            self._sleeping_since = None
            lateness = max(0.0, self._clock() - before - self.interval)
            self._record(lateness)

    def _record(self, lateness: float) -> None:
        self.stats.record(lateness)
        if lateness <= self.threshold:
            return
        self.stats.stalls_over_threshold += 1
        log.warning("the event loop was blocked for %.2f s (threshold %.2f s)", lateness, self.threshold)
        if self._on_stall is not None:
            try:
                self._on_stall(lateness)
            except Exception:  # a broken observer must not stop the watching
                log.exception("stall callback failed")
