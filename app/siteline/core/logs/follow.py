"""Live logs from a device: ``async for event in follow(transport): ...`` gives batches of lines and statuses.

The source is picked in one round trip (sources.py): journald, else BusyBox logread, else dmesg, or a file.
Over SSH the follower streams (``journalctl -o json -f``, ``logread -f``, ``dmesg -W``, ``tail -F``) and
hands on what arrived within ``window`` seconds as one :class:`LogBatch`, so a flood is a few calls with
thousands of lines each, not one call per line. Over a link without streams (a serial console, the MQTT
agent) it polls every ``poll_interval`` seconds and asks only for what is new (journald's cursor, or the
lines after the last one seen), which is what a metered link can afford.

A dropped link is resumed: journald from its cursor (nothing lost, nothing twice); the other sources from
the last line seen, saying when that line has left the device's buffer (there may be a gap). Leaving the
loop (``aclose``, cancelling the task) stops the remote command. Iterate inside ``contextlib.aclosing``
so breaking out stops it at once rather than when the generator is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from siteline.core.backoff import Backoff
from siteline.core.errors import SitelineError, TransportError
from siteline.core.logs.record import Source
from siteline.core.logs.sources import (
    GAP_MARK,
    SOURCE_OF,
    TOOL_OF,
    DeviceLogs,
    Kind,
    LogQuery,
    choose,
    detect_command,
    last_cursor,
    parse_detect,
    read_command,
    stream_command,
)
from siteline.core.transports.base import Result

log = logging.getLogger(__name__)

WINDOW = 0.05  # seconds of lines gathered into one batch
YIELD_AFTER = 0.01  # seconds the reader may hold the event loop before letting others run
MAX_BATCH = 50_000  # a batch this big is handed on at once; reading pauses until it is taken
DETECT_TIMEOUT = 20.0


class Mode(enum.StrEnum):
    STREAM = "stream"
    POLL = "poll"


@dataclass(frozen=True)
class LogBatch:
    """Raw lines in ``source``'s format (parse them with parsers.columns_chunk / parse_chunk)."""

    lines: list[str]
    source: Source
    boot_time: float | None = None  # the device's boot, by its clock: dmesg's seconds since boot become times


@dataclass(frozen=True)
class FollowStatus:
    """Something to show beside the log: 'following journalctl', 'the link dropped; resuming ...'.

    ``event``: following | polling | link-lost | resumed | gap | ended."""

    event: str
    text: str
    mode: Mode | None = None
    kind: Kind | None = None


FollowEvent = LogBatch | FollowStatus


class NoLogToolError(SitelineError):
    """The device has none of the log tools (or the file asked for cannot be read)."""


class LogReadError(SitelineError):
    """The log command itself failed (a bad --unit or --since, a file that vanished)."""


class Runs(Protocol):
    """A transport, or a plugin DeviceContext: anything with ``run(command, timeout)``."""

    @property
    def run(self) -> Callable[[str, float], Awaitable[Result]]: ...


@dataclass
class Resume:
    """Where to pick up after a drop or at the next poll: journald's cursor, or the last line seen."""

    cursor: str | None = None
    last_line: str | None = None

    def take(self, lines: list[str], kind: Kind) -> tuple[list[str], bool]:
        """The lines without the gap mark, and whether it was there; remembers the resume point."""
        gap = False
        if GAP_MARK in lines:
            gap = True
            lines = [line for line in lines if line != GAP_MARK]
        if not lines:
            return lines, gap
        if kind is Kind.JOURNAL:
            self.cursor = last_cursor(lines) or self.cursor
        else:
            self.last_line = lines[-1]
        return lines, gap

    @property
    def started(self) -> bool:
        return self.cursor is not None or self.last_line is not None


async def detect(target: Runs, query: LogQuery, timeout: float = DETECT_TIMEOUT) -> tuple[Kind, DeviceLogs]:
    """Which source to read; raises :class:`NoLogToolError` with what to do when there is none."""
    result = await target.run(detect_command(query), timeout)
    found = parse_detect(result.stdout, query)
    kind = choose(found, query)
    if query.file and found.file_readable is False:
        raise NoLogToolError(f"Cannot read {query.file} on the device (missing, or not readable for this login).",
                          "Check the path, e.g. with `siteline run TARGET -- ls -l FILE`.")
    if kind is None:
        wanted = TOOL_OF[query.kind] if query.kind else "journalctl, logread or dmesg"
        raise NoLogToolError(f"The device has no log tool: {wanted} not found (tried `command -v`).",
                          "Read a log file instead with --file PATH, or install the tool on the device.")
    return kind, found


async def read_recent(target: Runs, query: LogQuery, timeout: float = 60.0) -> tuple[Kind, LogBatch]:
    """The newest ``query.lines`` lines, once (no following)."""
    kind, found = await detect(target, query)
    result = await target.run(read_command(kind, query), timeout)
    lines = [line for line in result.stdout.splitlines() if line != GAP_MARK]
    if result.exit_code != 0 and not lines:
        raise LogReadError(_failed(TOOL_OF[kind], result.exit_code, result.stderr),
                           "Check the options (unit, priority, since) and try again.")
    return kind, LogBatch(lines, SOURCE_OF[kind], found.boot_time)


def _failed(tool: str, code: int | None, stderr: str) -> str:
    said = " ".join(stderr.strip().splitlines()[-3:])[:300]
    return f"{tool} on the device failed (exit {code}){': ' + said if said else ''}."


async def follow(target: Runs, *, unit: str | None = None, priority: str | None = None, since: str | None = None,
                 lines: int = 100, file: str | None = None, kind: Kind | None = None,
                 poll_interval: float = 5.0, prefer_poll: bool = False, window: float = WINDOW,
                 reconnect: Callable[[], Awaitable[None]] | None = None, retries: int | None = None,
                 timeout: float = 60.0) -> AsyncGenerator[FollowEvent, None]:
    """Batches of new log lines and status events until the caller stops iterating.

    ``reconnect`` is awaited after a dropped link (e.g. ``transport.connect``); without it the follower
    just tries again (a session may reconnect on its own). ``retries``: attempts after a drop before the
    :class:`TransportError` is raised (None: forever, with backoff up to a minute)."""
    query = LogQuery(unit, priority, since, lines, file, kind)
    chosen, found = await detect(target, query)
    streams = callable(getattr(target, "stream", None)) and not prefer_poll
    mode = Mode.STREAM if streams else Mode.POLL
    resume = Resume()
    backoff = Backoff(initial=min(1.0, poll_interval), maximum=60.0)
    failures = 0
    while True:
        try:
            if mode is Mode.STREAM:
                async with contextlib.aclosing(_stream(target, chosen, query, resume, found, window)) as events:
                    async for event in events:
                        failures = 0
                        backoff.reset()
                        yield event
                mode = Mode.POLL  # the follower ended by itself: this device's tool cannot follow
                yield FollowStatus("polling", f"{TOOL_OF[chosen]} on the device cannot follow; polling every "
                                   f"{poll_interval:g} s instead", mode, chosen)
            else:
                polled = _poll(target, chosen, query, resume, found, poll_interval, timeout)
                async with contextlib.aclosing(polled) as events:
                    async for event in events:
                        failures = 0
                        backoff.reset()
                        yield event
        except TransportError as exc:
            failures += 1
            if retries is not None and failures > retries:
                raise
            delay = backoff.next_delay()
            how = "from the last record" if chosen is Kind.JOURNAL else "from the last line seen"
            yield FollowStatus("link-lost", f"the link dropped ({exc}); resuming {how} in {delay:.1f} s", mode, chosen)
            await asyncio.sleep(delay)
            if reconnect is not None:
                with contextlib.suppress(TransportError, OSError, TimeoutError):
                    await reconnect()


async def _stream(target: Any, kind: Kind, query: LogQuery, resume: Resume, found: DeviceLogs,
                  window: float) -> AsyncGenerator[FollowEvent, None]:
    command = stream_command(kind, query, cursor=resume.cursor, last_line=resume.last_line)
    again = resume.started
    got = False
    async with target.stream(command) as lines, contextlib.aclosing(batched(lines, window)) as batches:
        yield FollowStatus("resumed" if again else "following",
                           f"{'resumed' if again else 'following'} {TOOL_OF[kind]} (live)", Mode.STREAM, kind)
        async for batch in batches:
            batch, gap = resume.take(batch, kind)
            if gap:
                yield _gap(kind)
            if batch:
                got = True
                yield LogBatch(batch, SOURCE_OF[kind], found.boot_time)
    code = getattr(lines, "exit_code", None)
    if code and not got:
        raise LogReadError(_failed(TOOL_OF[kind], code, getattr(lines, "stderr_tail", "")),
                           "Check the options (unit, priority, since) and try again.")


async def _poll(target: Runs, kind: Kind, query: LogQuery, resume: Resume, found: DeviceLogs, interval: float,
                timeout: float) -> AsyncGenerator[FollowEvent, None]:
    yield FollowStatus("polling", f"polling {TOOL_OF[kind]} every {interval:g} s (this link cannot stream)",
                       Mode.POLL, kind)
    while True:
        result = await target.run(read_command(kind, query, cursor=resume.cursor, last_line=resume.last_line),
                                  timeout)
        if result.exit_code != 0 and not result.stdout:
            raise LogReadError(_failed(TOOL_OF[kind], result.exit_code, result.stderr),
                               "Check the options (unit, priority, since) and try again.")
        batch, gap = resume.take(result.stdout.splitlines(), kind)
        if gap:
            yield _gap(kind)
        if batch:
            yield LogBatch(batch, SOURCE_OF[kind], found.boot_time)
        await asyncio.sleep(interval)


def _gap(kind: Kind) -> FollowStatus:
    return FollowStatus("gap", f"the last line seen has left the device's {TOOL_OF[kind]} buffer: "
                        "there may be a gap before what follows", None, kind)


async def batched(lines: AsyncIterator[str], window: float = WINDOW, max_lines: int = MAX_BATCH
                  ) -> AsyncGenerator[list[str], None]:
    """Lines gathered into lists: what arrived within ``window`` seconds of the first, or ``max_lines``.

    A reader task drains the source while the consumer works, so the remote side never waits on us for
    less than a full batch. Errors of the source are raised here, after the lines read before them."""
    buf: list[str] = []
    ready, room, full = asyncio.Event(), asyncio.Event(), asyncio.Event()
    room.set()
    ended: list[BaseException | None] = []

    async def pump() -> None:
        loop = asyncio.get_running_loop()
        try:
            turn = loop.time()
            async for line in lines:
                buf.append(line)
                ready.set()
                if len(buf) & 255 == 0 and loop.time() - turn > YIELD_AFTER:
                    # Buffered lines come without a pause: let the loop (the UI) run between bursts.
                    await asyncio.sleep(0)
                    turn = loop.time()
                if len(buf) >= max_lines:
                    full.set()
                    room.clear()
                    await room.wait()
            ended.append(None)
        except Exception as exc:  # handed to the consumer below, after the lines read before it
            ended.append(exc)

    reader = asyncio.create_task(pump())
    try:
        while True:
            if not buf and not reader.done():
                await _either(reader, ready, None)
            if not reader.done() and len(buf) < max_lines:
                await _either(reader, full, window)  # the window: more lines may come, unless the batch fills
            taken = buf.copy()
            buf.clear()
            ready.clear()
            full.clear()
            room.set()
            if taken:
                yield taken
            if reader.done() and not buf:
                if ended and ended[0] is not None:
                    raise ended[0]
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def _either(reader: asyncio.Task[None], event: asyncio.Event, timeout: float | None) -> None:
    """Wait until the reader ends, ``event`` is set or ``timeout`` passes."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({reader, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
