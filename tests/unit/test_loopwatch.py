"""The event-loop stall detector measures real blocking and stays quiet on a healthy loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from siteline.core.loopwatch import BUCKETS, LoopWatch, StallStats


def test_quiet_loop_has_no_stalls() -> None:
    async def main() -> LoopWatch:
        watch = LoopWatch(interval=0.01, threshold=0.5)
        watch.start()
        await asyncio.sleep(0.1)
        await watch.stop()
        return watch

    watch = asyncio.run(main())
    assert watch.stats.samples >= 3
    assert watch.stats.stalls_over_threshold == 0
    assert watch.worst_stall < 0.5
    assert not watch.running


def test_blocking_call_is_measured_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[float] = []

    async def main() -> LoopWatch:
        watch = LoopWatch(interval=0.01, threshold=0.1, on_stall=seen.append)
        watch.start()
        await asyncio.sleep(0.03)
        time.sleep(0.25)  # noqa: ASYNC251 - the bug a UI must never have: blocking the loop
        await asyncio.sleep(0.03)
        await watch.stop()
        return watch

    with caplog.at_level(logging.WARNING, logger="siteline.core.loopwatch"):
        watch = asyncio.run(main())
    assert watch.worst_stall >= 0.2
    assert watch.stats.stalls_over_threshold == 1
    assert len(seen) == 1
    assert seen[0] >= 0.2
    assert "blocked for" in caplog.text


def test_broken_callback_does_not_stop_watching(caplog: pytest.LogCaptureFixture) -> None:
    def explode(_: float) -> None:
        raise RuntimeError("observer bug")

    async def main() -> LoopWatch:
        watch = LoopWatch(interval=0.01, threshold=0.02, on_stall=explode)
        watch.start()
        await asyncio.sleep(0.02)
        time.sleep(0.08)  # noqa: ASYNC251 - a deliberate stall
        await asyncio.sleep(0.05)
        assert watch.running
        await watch.stop()
        return watch

    with caplog.at_level(logging.ERROR):
        watch = asyncio.run(main())
    assert watch.stats.stalls_over_threshold >= 1
    assert "stall callback failed" in caplog.text


def test_histogram_buckets() -> None:
    stats = StallStats()
    for lateness in (0.0, 0.01, 0.02, 0.3, 10.0):
        stats.record(lateness)
    assert stats.samples == 5
    assert stats.worst == 10.0
    assert sum(stats.histogram) == 5
    assert stats.histogram[0] == 2  # 0.0 and exactly 0.01 (upper bound inclusive)
    assert stats.histogram[len(BUCKETS)] == 1  # 10 s is above every bucket
    assert "10000 ms" in stats.describe()


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopWatch(interval=0)
