"""One device's live session: keeps a link up over the best path that answers, retries, runs probes.

The UI watches :attr:`DeviceSession.state`, :attr:`DeviceSession.paths` and path events through
listeners; nothing here knows about Qt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from siteline.core.backoff import Backoff
from siteline.core.device.unavailable import Unavailable
from siteline.core.errors import SitelineError, TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.paths import (
    NEEDS_PERSON,
    PathBook,
    PathLinks,
    PathListener,
    PathStatus,
    SupersededError,
    TransportFactory,
    retry_order,
    short,
)
from siteline.core.plugin_api import DeviceContext, make_context
from siteline.core.plugins import PluginHost
from siteline.core.targets import Target, parse_target
from siteline.core.tasks import cancel_and_wait
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Result, StateHolder, Transport

log = logging.getLogger(__name__)

__all__ = ["NEEDS_PERSON", "DeviceSession", "PathStatus", "SnapshotListener", "TransportFactory"]

SnapshotListener = Callable[[str, Any], None]  # (probe kind, snapshot)

# A probe that takes longer is abandoned so a hung command cannot hide a dead link.
PROBE_TIMEOUT = 90.0


class DeviceSession:
    """Keeps one device reachable over the first of its paths that answers, and moves between them.

    Paths are ``entry.targets`` in order of preference. When the path in use drops, the others are
    tried at once; when none answers, all of them again after a backoff wait. While on a fallback the
    more preferred paths are tried in the background every ``preferred_retry`` seconds, and the link
    moves back (the old one closed only once the new one is up and its running commands are done); not
    while a console is open on the fallback. Reopening the same path (Reconnect) closes the old link first.
    """

    def __init__(
        self,
        entry: DeviceEntry,
        factory: TransportFactory,
        credentials: Credentials,
        plugins: PluginHost,
        backoff: Backoff | None = None,
        preferred_retry: float = 60.0,
    ) -> None:
        self.entry = entry
        self.targets = tuple(parse_target(t) for t in entry.targets)
        self.target = self.targets[0]  # the preferred one
        self._plugins = plugins
        self._backoff = backoff or Backoff()
        self._preferred_retry = preferred_retry
        self._state = StateHolder()
        self.log = logging.LoggerAdapter(log, {"device": entry.name})
        self._book = PathBook(self.targets)
        self._links = PathLinks(self._book, factory, credentials, self.log)
        self._last_drop: tuple[int, str] | None = None  # (path, why) until the next path is up
        self._task: asyncio.Task[None] | None = None
        # Every start/reconnect/stop makes a new generation; a keep-up loop of an older one exits (and
        # closes what it opened), so a loop that survived its cancel can never fight the current one.
        self._generation = 0
        # Ending the previous loops runs as its own task, chained: cancelling a _restart (a second
        # reconnect) cannot stop the cancelling of the loop before it.
        self._ending: asyncio.Task[None] | None = None
        self._snapshot_listeners: list[SnapshotListener] = []
        self.snapshots: dict[str, Any] = {}
        # Probe rounds asked for from outside the keep-up loop (F5, the CLI): stop() ends them too, so
        # no command of a closed session is still running when the window (and its loop) goes away.
        self._probing: set[asyncio.Task[None]] = set()
        # retry_now() ends a backoff wait early; try_preferred_now() the preferred-path watcher's pause.
        self._retry_soon = asyncio.Event()
        self._prefer_soon = asyncio.Event()

    # -- observing ---------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state.state

    @property
    def credentials(self) -> Credentials:
        return self._links.credentials

    @credentials.setter
    def credentials(self, value: Credentials) -> None:
        self._links.credentials = value

    @property
    def active_target(self) -> Target | None:
        """The path in use now, or None while no path is up."""
        active = self._links.active
        return None if active is None or self._links.transport is None else self.targets[active]

    @property
    def transport(self) -> Transport | None:
        """The link in use now, for what only some links can do (stream a log, copy a file); None while down."""
        return self._links.transport if self.state.state is ConnState.UP else None

    @property
    def paths(self) -> list[PathStatus]:
        """Every path in order of preference, with its state and why."""
        return self._book.paths

    def add_state_listener(self, listener: Callable[[ConnectionState], None]) -> Callable[[], None]:
        return self._state.add_state_listener(listener)

    def add_path_listener(self, listener: PathListener) -> Callable[[], None]:
        """Call ``listener`` with a :class:`PathEvent` whenever a path changes; returns a remover."""
        return self._book.add_listener(listener)

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        self._snapshot_listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._links.needs_person.clear()
            self._last_drop = None
            self._generation += 1
            ending = self._ending
            coro = self._keep_up(self._generation) if ending is None else self._restart(ending, self._generation)
            self._task = asyncio.get_running_loop().create_task(coro, name=f"session {self.entry.name}")

    async def stop(self) -> None:
        self._generation += 1
        ending = self._end_previous()
        # Shielded: if this stop is itself cancelled, the old loop is still cancelled to the end.
        await asyncio.shield(ending)
        for task in list(self._probing):
            await cancel_and_wait(task)
        await self._links.close_all()
        changed = [self._book.set(i, ConnState.DOWN, "disconnected") for i in range(len(self._book))]
        if any(changed):
            self._book.tell("dropped", 0, f"{self.entry.name} disconnected", None)
        self._state.set(ConnState.DOWN, "disconnected")

    def reconnect(self, credentials: Credentials | None = None) -> None:
        """Start over now (e.g. after the person typed a password), skipping any backoff wait."""
        if credentials is not None:
            self.credentials = credentials
        self._links.needs_person.clear()
        self._last_drop = None
        self._backoff.reset()
        self._generation += 1
        ending = self._end_previous()
        self._task = asyncio.get_running_loop().create_task(
            self._restart(ending, self._generation), name=f"session {self.entry.name}"
        )

    def retry_now(self) -> None:
        """End a backoff wait now (a device may be back). Unlike :meth:`reconnect`, a path that needs a person
        (refused login, changed host key) stays untried, and nothing open (a console) is closed."""
        self._retry_soon.set()

    def try_preferred_now(self) -> None:
        """On a fallback: try the more preferred paths now instead of after ``preferred_retry``; the link in
        use is kept (a console open on it holds the move back, as always)."""
        self._prefer_soon.set()

    def _end_previous(self) -> asyncio.Task[None]:
        old, self._task = self._task, None
        self._ending = asyncio.get_running_loop().create_task(
            _end_loop(old, self._ending), name=f"end session {self.entry.name}"
        )
        return self._ending

    async def _restart(self, ending: asyncio.Task[None], generation: int) -> None:
        # Shielded: a second reconnect() cancelling us must not cancel the ending of the old loop.
        await asyncio.shield(ending)
        await self._keep_up(generation)

    def _stale(self, generation: int) -> bool:
        return generation != self._generation

    # -- keeping a path up ---------------------------------------------------------------------

    async def _keep_up(self, generation: int) -> None:
        count, needs_person = len(self.targets), self._links.needs_person
        order = retry_order(count, None, set())
        while not self._stale(generation):
            try:
                index = await self._connect_first(order, generation) if order else None
            except SupersededError:
                return
            if index is None:
                if len(needs_person) == count:
                    first = needs_person[min(needs_person)]
                    self.log.warning("every path needs a person: %s", first)
                    self._state.set(ConnState.DOWN, first)
                    return
                await self._wait_retry(generation)
                order = retry_order(count, None, set(needs_person))
                continue
            self._backoff.reset()
            self._announce_up(index)
            dropped = await self._stay_up(generation)
            if dropped is None:
                return  # the link is the newer loop's now: leave it alone
            order = retry_order(count, dropped, set(needs_person))

    async def _connect_first(self, order: list[int], generation: int) -> int | None:
        """Try the paths in ``order``; the index of the first that answers (now in use), else None."""
        several = len(self.targets) > 1
        for position, index in enumerate(order):
            url = self._book.url(index)
            if several:
                self._state.set(ConnState.CONNECTING, f"trying {url}")
            elif position == 0:
                self._state.set(ConnState.CONNECTING)
            self._links.mark(index, ConnState.CONNECTING, "connecting", "trying", f"trying {url}")
            transport = await self._links.try_path(index, lambda: self._stale(generation))
            if transport is not None:
                self._links.install(index, transport)
                return index
        return None

    def _announce_up(self, index: int) -> None:
        book, url = self._book, self._book.url(index)
        if len(book) > 1 and self._last_drop is not None and self._last_drop[0] != index:
            lost, why = self._last_drop
            book.tell("switched", index, f"{book.name(lost)} dropped ({why}); continuing on {url}", index)
        elif index == 0:
            book.tell("connected", index, f"connected on the preferred path {url}", index)
        else:
            words = f"connected on fallback {url}; preferred {book.url(0)} down: {book[0].reason}"
            book.tell("connected", index, words, index)
        self._last_drop = None
        self._state.set(ConnState.UP, self._up_reason())

    def _up_reason(self) -> str:
        active = self._links.active
        return self._book.fallback_reason(active) if active else ""

    async def _stay_up(self, generation: int) -> int | None:
        """Wait until the path in use drops; its index (after closing it), or None when superseded."""
        watcher = None
        if self._links.active and self._preferred_retry > 0:
            watcher = asyncio.get_running_loop().create_task(
                self._watch_preferred(generation), name=f"preferred path {self.entry.name}"
            )
        try:
            await self.refresh()
            while True:
                await self._links.lost.wait()
                if self._stale(generation):
                    return None
                transport = self._links.transport
                if transport is None or transport.state.state is ConnState.DOWN:
                    break
                self._links.lost.clear()  # the old link dropped as the background moved to a better one
        finally:
            if watcher is not None:
                await cancel_and_wait(watcher)
        self._last_drop = await self._links.drop()
        return self._last_drop[0]

    async def _watch_preferred(self, generation: int) -> None:
        """While on a fallback, try the more preferred paths now and then, without touching the link in use.

        While a console is open on the fallback the link stays (moving would close it under the person);
        the path says so, and the move back is tried as soon as the console closes.
        """
        self._links.console_closed.clear()
        while not self._stale(generation):
            await self._pause(self._preferred_retry)
            active = self._links.active
            if not active:
                return
            for index in range(active):
                if index in self._links.needs_person:
                    continue
                transport = await self._links.try_path(index, lambda: self._stale(generation))
                if transport is None:
                    continue
                if self._links.holds_console():
                    await self._links.hold_back(index, transport)
                else:
                    self._move_back(index, transport)
                break
            if self.state.state is ConnState.UP and self.state.reason != self._up_reason():
                self._state.set(ConnState.UP, self._up_reason())  # why the preferred path is down changed

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when the last console on the link in use closes."""
        closed, soon = self._links.console_closed, self._prefer_soon
        await _first_of((closed, soon), seconds)
        closed.clear()
        soon.clear()

    def _move_back(self, index: int, transport: Transport) -> None:
        self._links.install(index, transport)
        url = self._book.url(index)
        words = f"back on the preferred path {url}" if index == 0 else f"back on {url}, a more preferred path"
        self.log.info("%s", words)
        self._book.tell("back", index, words, index)
        self._state.set(ConnState.UP, self._up_reason())

    async def _wait_retry(self, generation: int) -> None:
        if self._stale(generation):
            return  # the state is the newer loop's to tell
        delay = self._backoff.next_delay()
        reason = self._book.summary(range(len(self._book))) or "no answer"
        self.log.info("%s; retrying in %.1f s", reason, delay)
        self._state.set(ConnState.RETRYING, reason, retry_at=time.monotonic() + delay)
        self._retry_soon.clear()
        await _first_of((self._retry_soon,), delay)
        self._retry_soon.clear()

    # -- using -------------------------------------------------------------------------------

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        if self._links.transport is None or self.state.state is not ConnState.UP:
            raise TransportError(f"{self.entry.name} is not connected ({self.state.describe()}).")
        return await self._links.run(command, timeout)

    @contextlib.contextmanager
    def using(self) -> Iterator[Transport]:
        """The link in use now, held open for the block (a transfer): a move to another path closes it after."""
        transport = self._links.transport
        if transport is None or self.state.state is not ConnState.UP:
            raise TransportError(f"{self.entry.name} is not connected ({self.state.describe()}).",
                                 "Wait until it is connected again.")
        with self._links.in_use(transport):
            yield transport

    async def open_shell(self, cols: int, rows: int) -> Any:
        """An interactive shell on the device (a ShellChannel), over the link in use now."""
        transport = self._links.transport
        if transport is None or self.state.state is not ConnState.UP:
            raise TransportError(f"{self.entry.name} is not connected ({self.state.describe()}).")
        opener = getattr(transport, "open_shell", None)
        if opener is None:
            scheme = (self.active_target or self.target).scheme
            raise TransportError(
                f"An interactive console over {scheme} is not available yet.",
                "Reach the device over SSH for a console.",
            )
        channel = await opener(cols, rows)
        # The console holds this link: the session does not move away under it (see _watch_preferred).
        self._links.track_shell(transport, channel)
        return channel

    def context(self) -> DeviceContext:
        return make_context(self.entry.name, str(self.active_target or self.target), self.run, log)

    async def refresh(self, kind: str | None = None) -> None:
        """Run every probe (or those of one kind) and tell listeners; a failing probe is reported, not fatal.

        Returns early, without an error, when the session is stopped meanwhile.
        """
        work = asyncio.get_running_loop().create_task(self._probe_round(kind), name=f"probe {self.entry.name}")
        self._probing.add(work)
        work.add_done_callback(self._probing.discard)
        try:
            await work  # cancelling the caller cancels the round as well
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # else stop() ended the round: nothing to report

    async def _probe_round(self, kind: str | None) -> None:
        """Every probe in turn; a fallback probe (the AT port after ModemManager) only for an area not read
        yet this round, and an area none could read says why (the first why), once, after all were asked."""
        ctx = self.context()
        read: set[str] = set()
        unread: dict[str, Unavailable] = {}
        for entry in self._plugins.probes(kind):
            area = entry.item.kind
            if area in read and getattr(entry.item, "fallback", False):
                continue
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    snapshot = await self._plugins.run_probe(entry, ctx)
            except (SitelineError, OSError, TimeoutError) as exc:
                # The link is the likely culprit: the transport reports DOWN and _keep_up reconnects.
                self.log.info("probe %s stopped: %s", entry.item.name, short(exc))
                return
            if isinstance(snapshot, Unavailable):
                if area not in read:  # what another probe read this round stays
                    unread.setdefault(area, snapshot)
            elif snapshot is not None:
                read.add(area)
                unread.pop(area, None)
                self._tell(area, snapshot)
        for unread_area, why in unread.items():
            self._tell(unread_area, why)

    def _tell(self, area: str, snapshot: Any) -> None:
        self.snapshots[area] = snapshot
        for listener in list(self._snapshot_listeners):
            listener(area, snapshot)


async def _first_of(events: tuple[asyncio.Event, ...], seconds: float) -> None:
    """Wait until one of ``events`` is set, at most ``seconds``."""
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            await cancel_and_wait(wait)


async def _end_loop(old: asyncio.Task[None] | None, previous: asyncio.Task[None] | None) -> None:
    """End ``old`` fully, and wait for the ending of the loops before it (their transports close there)."""
    if old is not None:
        await cancel_and_wait(old)
    if previous is not None:
        await asyncio.wait({previous})
