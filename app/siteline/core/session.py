"""One device's live session: keeps the link up, retries with backoff, runs probes.

The UI watches :attr:`DeviceSession.state` through listeners; nothing here knows about Qt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from siteline.core.backoff import Backoff
from siteline.core.errors import AuthError, HostKeyError, SitelineError, TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.plugin_api import DeviceContext, make_context
from siteline.core.plugins import PluginHost
from siteline.core.targets import Target, parse_target
from siteline.core.tasks import cancel_and_wait
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Result, StateHolder, Transport

log = logging.getLogger(__name__)

TransportFactory = Callable[[Target, Credentials], Transport]
SnapshotListener = Callable[[str, Any], None]  # (probe kind, snapshot)

# A probe that takes longer is abandoned so a hung command cannot hide a dead link.
PROBE_TIMEOUT = 90.0

# Errors a retry cannot fix: the person must act (type the password, accept the new host key).
NEEDS_PERSON = (AuthError, HostKeyError)


class DeviceSession:
    def __init__(
        self,
        entry: DeviceEntry,
        factory: TransportFactory,
        credentials: Credentials,
        plugins: PluginHost,
        backoff: Backoff | None = None,
    ) -> None:
        self.entry = entry
        self.target = parse_target(entry.target)
        self._factory = factory
        self.credentials = credentials
        self._plugins = plugins
        self._backoff = backoff or Backoff()
        self._state = StateHolder()
        self._transport: Transport | None = None
        self._task: asyncio.Task[None] | None = None
        # Every start/reconnect/stop makes a new generation; a keep-up loop of an older one exits (and
        # closes what it opened), so a loop that survived its cancel can never fight the current one.
        self._generation = 0
        # Ending the previous loops runs as its own task, chained: cancelling a _restart (a second
        # reconnect) cannot stop the cancelling of the loop before it.
        self._ending: asyncio.Task[None] | None = None
        self._link_lost = asyncio.Event()
        self._snapshot_listeners: list[SnapshotListener] = []
        self.snapshots: dict[str, Any] = {}
        self.log = logging.LoggerAdapter(log, {"device": entry.name})

    # -- observing ---------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state.state

    def add_state_listener(self, listener: Callable[[ConnectionState], None]) -> Callable[[], None]:
        return self._state.add_state_listener(listener)

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        self._snapshot_listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._generation += 1
            ending = self._ending
            coro = self._keep_up(self._generation) if ending is None else self._restart(ending, self._generation)
            self._task = asyncio.get_running_loop().create_task(coro, name=f"session {self.entry.name}")

    async def stop(self) -> None:
        self._generation += 1
        ending = self._end_previous()
        # Shielded: if this stop is itself cancelled, the old loop is still cancelled to the end.
        await asyncio.shield(ending)
        await self._drop_transport()
        self._state.set(ConnState.DOWN, "disconnected")

    def reconnect(self, credentials: Credentials | None = None) -> None:
        """Start over now (e.g. after the person typed a password), skipping any backoff wait."""
        if credentials is not None:
            self.credentials = credentials
        self._backoff.reset()
        self._generation += 1
        ending = self._end_previous()
        self._task = asyncio.get_running_loop().create_task(
            self._restart(ending, self._generation), name=f"session {self.entry.name}"
        )

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

    async def _keep_up(self, generation: int) -> None:
        while not self._stale(generation):
            self._state.set(ConnState.CONNECTING)
            try:
                await self._connect_once(generation)
            except NEEDS_PERSON as exc:
                self.log.warning("connection refused for a reason a retry cannot fix: %s", exc)
                self._state.set(ConnState.DOWN, str(exc))
                return
            except _SupersededError:
                return
            except (TransportError, OSError) as exc:
                await self._wait_retry(_short(exc), exc, generation)
                continue
            except Exception as exc:  # a bug, not the network: say so, keep trying, never hang on "connecting"
                self.log.error("unexpected error while connecting", exc_info=exc)
                await self._wait_retry(f"internal error: {_short(exc)}", exc, generation)
                continue
            self._backoff.reset()
            self._state.set(ConnState.UP)
            await self.refresh()
            await self._link_lost.wait()
            if self._stale(generation):
                return  # the link is the newer loop's now: leave it alone
            reason = self._transport.state.reason if self._transport else ""
            await self._drop_transport()
            await self._wait_retry(reason or "link lost", None, generation)

    async def _wait_retry(self, reason: str, exc: BaseException | None, generation: int) -> None:
        if self._stale(generation):
            return  # the state is the newer loop's to tell
        delay = self._backoff.next_delay()
        self.log.info("%s; retrying in %.1f s", reason if exc is None else f"connect failed ({exc})", delay)
        self._state.set(ConnState.RETRYING, reason, retry_at=time.monotonic() + delay)
        await asyncio.sleep(delay)

    async def _connect_once(self, generation: int) -> None:
        await self._drop_transport()
        transport = self._factory(self.target, self.credentials)
        self._link_lost.clear()

        def on_transport_state(state: ConnectionState) -> None:
            if state.state is ConnState.DOWN and self._transport is transport:
                self._link_lost.set()

        try:
            await transport.connect()
            if self._stale(generation):
                raise _SupersededError()
        except BaseException:
            with contextlib.suppress(Exception):
                await transport.close()
            raise
        self._transport = transport
        transport.add_state_listener(on_transport_state)
        on_transport_state(transport.state)  # it may have dropped between connect() and now

    async def _drop_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    # -- using -------------------------------------------------------------------------------

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        if self._transport is None or self.state.state is not ConnState.UP:
            raise TransportError(f"{self.entry.name} is not connected ({self.state.describe()}).")
        return await self._transport.run(command, timeout)

    async def open_shell(self, cols: int, rows: int) -> Any:
        """An interactive shell on the device (a ShellChannel), over the link in use now."""
        if self._transport is None or self.state.state is not ConnState.UP:
            raise TransportError(f"{self.entry.name} is not connected ({self.state.describe()}).")
        opener = getattr(self._transport, "open_shell", None)
        if opener is None:
            raise TransportError(
                f"An interactive console over {self.target.scheme} is not available yet.",
                "Reach the device over SSH for a console.",
            )
        return await opener(cols, rows)

    def context(self) -> DeviceContext:
        return make_context(self.entry.name, self.entry.target, self.run, log)

    async def refresh(self, kind: str | None = None) -> None:
        """Run every probe (or those of one kind) and tell listeners; a failing probe is reported, not fatal."""
        ctx = self.context()
        for entry in self._plugins.probes(kind):
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    snapshot = await self._plugins.run_probe(entry, ctx)
            except (SitelineError, OSError, TimeoutError) as exc:
                # The link is the likely culprit: the transport reports DOWN and _keep_up reconnects.
                self.log.info("probe %s stopped: %s", entry.item.name, _short(exc))
                return
            if snapshot is None:
                continue
            self.snapshots[entry.item.kind] = snapshot
            for listener in list(self._snapshot_listeners):
                listener(entry.item.kind, snapshot)


class _SupersededError(Exception):
    """A newer start/reconnect/stop took over while this loop was connecting."""


async def _end_loop(old: asyncio.Task[None] | None, previous: asyncio.Task[None] | None) -> None:
    """End ``old`` fully, and wait for the ending of the loops before it (their transports close there)."""
    if old is not None:
        await cancel_and_wait(old)
    if previous is not None:
        await asyncio.wait({previous})


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
