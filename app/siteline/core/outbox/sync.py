"""The sync loop: drains the outbox to the control plane's broker, in priority then time order.

An item is marked sent only after the broker acknowledged the message carrying it (PUBACK); until
then it stays pending in the outbox, so a crash, a cut or a refused publish loses nothing (a resend
after a crash makes a duplicate, which consumers drop by the item's id). Acks are written in groups,
not one transaction each: a crash between an ack and its write only means that item is sent again.

The syncer adds nothing to the outbox: its own events go to the log and to :class:`SyncStatus`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from siteline.core.backoff import Backoff
from siteline.core.errors import AuthError, SitelineError, TransportError
from siteline.core.mqtt_client import MqttSettingsError
from siteline.core.outbox import budget
from siteline.core.outbox.envelope import plan_messages
from siteline.core.outbox.inbound import InboundCache, inbound_topics
from siteline.core.outbox.link import ControlLink, LinkDropped, PublishOutcome, SyncConfigError
from siteline.core.outbox.model import Item
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.store import Outbox, OutboxError

log = logging.getLogger(__name__)

PAGE = 500  # items read from the outbox at a time
FLUSH_IDS, FLUSH_AGE = 500, 0.05  # acks are written when this many wait, or the oldest is this old
PROBE, PROBE_METERED = 1.0, 30.0  # seconds between reachability probes while items wait
IDLE_POLL = 5.0  # connected and idle: look for items other processes wrote (the CLI's `note`)
SUSPECT_DROPS = 3  # in flight at this many drops in a row: the item backs off so the others go


class SyncState(StrEnum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    SYNCING = "syncing"
    IDLE = "idle"
    HELD = "held"
    NOT_CONFIGURED = "not-configured"
    ERROR = "error"


@dataclass(frozen=True)
class SyncStatus:
    state: SyncState
    waiting: int
    bytes_this_month: int
    budget: int | None
    message: str
    last_ack: float | None


@dataclass(frozen=True)
class DrainResult:
    sent: int
    bytes: int
    seconds: float
    held: int


class SyncError(SitelineError):
    """A sync could not finish; ``kind`` is unreachable, auth, config, outbox or timeout (the CLI's exit code)."""

    def __init__(self, message: str, hint: str = "", kind: str = "unreachable") -> None:
        super().__init__(message, hint)
        self.kind = kind


NOT_CONFIGURED = SyncStatus(SyncState.NOT_CONFIGURED, 0, 0, None, "The control plane is not set up.", None)


@dataclass
class _Tally:
    """Acks and failures waiting to be written to the outbox, and what this syncer sent so far."""

    acked: list[str] = field(default_factory=list)
    acked_bytes: int = 0
    since: float = 0.0
    failures: dict[tuple[str, bool], list[str]] = field(default_factory=dict)
    refused_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0


class Syncer:
    def __init__(self, outbox: Outbox, settings: ControlPlaneSettings, *, password: str | None = None,
                 key_passphrase: str | None = None, inbound: InboundCache | None = None, window: int = 32,
                 connect_timeout: float = 10.0, client_id: str | None = None) -> None:
        """``client_id``: None is the installation's id (``link.installation_client_id``), whose session the broker
        keeps; a second syncer running at the same time (the CLI next to the GUI) needs another, or the broker
        drops one whenever the other connects."""
        self.outbox, self.settings, self.inbound = outbox, settings, inbound
        self.client_id = client_id
        self.window, self.connect_timeout = window, connect_timeout
        self._password, self._key_passphrase = password, key_passphrase
        self._listeners: list[Callable[[SyncStatus], None]] = []
        self.status = SyncStatus(SyncState.OFFLINE, 0, 0, settings.monthly_budget_bytes, "", None)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._inflight: dict[int, tuple[str, ...]] = {}
        self._tally = _Tally()
        self._retry_at: dict[str, float] = {}  # item id -> monotonic time before which it is not resent
        self._publish_backoff = Backoff(initial=0.5, maximum=60.0)
        self._probe = PROBE_METERED if settings.metered else PROBE
        self._link: ControlLink | None = None
        self._closed = False
        self._flushing: set[str] = set()
        self._drops: dict[str, int] = {}  # item id -> drops of the link while it was in flight (and never acked)
        self._set(SyncState.OFFLINE)  # with the outbox's counts: the status bar shows what waits from the start

    # -- status ------------------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[SyncStatus], None]) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _set(self, state: SyncState, message: str = "") -> None:
        try:
            st = self.outbox.status()
            waiting, used = st.pending, st.bytes_this_month
        except OutboxError as exc:
            waiting, used, message = self.status.waiting, self.status.bytes_this_month, message or exc.message
        new = SyncStatus(state, waiting, used, self.settings.monthly_budget_bytes, message, self.status.last_ack)
        if new != self.status:
            self.status = new
            for fn in list(self._listeners):
                try:
                    fn(new)
                except Exception:  # a broken listener must not stop the sync
                    log.exception("a sync status listener failed")

    def wake(self, retry: bool = False) -> None:
        """A new item was put; with ``retry`` the user asked to retry now: items backing off go at once too.
        Call it on the event loop's thread."""
        if retry:
            self._retry_at.clear()
            self._drops.clear()
            self._publish_backoff.reset()
        self._wake.set()

    def _decision(self) -> budget.BudgetDecision:
        s = self.settings
        return budget.decide(self.outbox.usage(), s.monthly_budget_bytes, s.hold_low_priority_at, time.time())

    # -- acks and failures ----------------------------------------------------------------------------

    def _track(self, ids: tuple[str, ...], fut: asyncio.Future[PublishOutcome]) -> None:
        key = id(fut)
        self._inflight[key] = ids
        fut.add_done_callback(lambda f: self._outcome(key, f))

    def _outcome(self, key: int, fut: asyncio.Future[PublishOutcome]) -> None:
        ids = self._inflight.pop(key, ())
        self._progress.set()
        t = self._tally
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None and (out := fut.result()).ok:
            if not t.acked:
                t.since = time.monotonic()
            t.acked.extend(ids)
            t.acked_bytes += out.nbytes
            for item_id in ids:
                self._drops.pop(item_id, None)
            self.status = replace(self.status, last_ack=time.time())
            self._publish_backoff.reset()
            return
        if exc is not None:
            t.failures.setdefault((str(exc), False), []).extend(ids)
            return
        out = fut.result()
        t.failures.setdefault((out.reason, out.permanent), []).extend(ids)
        t.refused_bytes += out.nbytes  # refused, but it crossed the wire
        if not out.permanent:
            retry = time.monotonic() + self._publish_backoff.next_delay()
            self._retry_at.update(dict.fromkeys(ids, retry))

    def _count_drop(self) -> None:
        """The oldest message in flight when the link drops is the one the broker was reading. Oldest at several
        drops in a row, it may be what makes the broker hang up (too big for a 3.1.1 broker's limit, say): it
        waits, with a growing back-off, so that the items behind it still go."""
        if not self._inflight:
            return
        for item_id in next(iter(self._inflight.values())):
            n = self._drops[item_id] = self._drops.get(item_id, 0) + 1
            if n >= SUSPECT_DROPS:
                self._retry_at[item_id] = time.monotonic() + min(300.0, 2.0 ** (n - SUSPECT_DROPS + 1))
        if len(self._drops) > 100_000:  # a bound on memory for a link that drops forever
            self._drops.clear()

    async def _flush(self, force: bool = False) -> None:
        """Write waiting acks (mark_sent) and failures (record_failure), each group in one transaction.

        In a worker thread (the outbox is thread-safe): an fsync must not stall the GUI's event loop."""
        t = self._tally
        if t.acked and (force or len(t.acked) >= FLUSH_IDS or time.monotonic() - t.since >= FLUSH_AGE):
            ids, nbytes = t.acked, t.acked_bytes
            t.acked, t.acked_bytes = [], 0
            self._flushing = set(ids)  # neither in the list above nor marked sent yet: not to be read as pending
            try:
                await asyncio.to_thread(self.outbox.mark_sent, ids, nbytes)
            finally:
                self._flushing = set()
            t.sent += len(ids)
            t.sent_bytes += nbytes
        if t.refused_bytes:
            nbytes, t.refused_bytes = t.refused_bytes, 0
            await asyncio.to_thread(self.outbox.add_usage, nbytes)
        for (reason, permanent), ids in list(t.failures.items()):
            del t.failures[(reason, permanent)]
            log.warning("%d outbox item(s) not delivered%s: %s", len(ids), " for good" if permanent else "", reason)
            await asyncio.to_thread(self.outbox.record_failure, ids, reason, permanent)

    # -- sending ----------------------------------------------------------------------------------

    def _next_page(self, decision: budget.BudgetDecision) -> list[Item]:
        now = time.monotonic()
        self._retry_at = {k: v for k, v in self._retry_at.items() if v > now}
        skip = {i for ids in self._inflight.values() for i in ids} | set(self._retry_at) | self._flushing
        skip.update(self._tally.acked)  # acked, not yet written: still 'pending' in the file
        items = self.outbox.pending(limit=len(skip) + PAGE, max_priority=decision.max_priority)
        return [i for i in items if i.id not in skip]

    async def _wait(self, event: asyncio.Event, timeout: float | None) -> None:
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def _pump(self, link: ControlLink) -> None:
        """Send until nothing that may go is pending and every message is acknowledged; LinkDropped on a drop."""
        batching = self.settings.metered
        while True:
            await self._flush(force=not self._inflight)
            if not link.alive:
                raise LinkDropped(link.drop_reason or "The link dropped.", "Reconnecting.")
            decision = self._decision()
            page = self._next_page(decision)
            if not page:
                if self._inflight:
                    await self._wait(self._progress, FLUSH_AGE)
                    continue
                return
            self._set(SyncState.SYNCING)
            self._wake.clear()
            for msg in plan_messages(page, self.settings.technician, batching=batching):
                while len(self._inflight) >= link.window and link.alive:
                    await self._wait(self._progress, FLUSH_AGE)
                    await self._flush()
                if not link.alive or self._wake.is_set():
                    break  # dropped, or new items: read again so a HIGH item goes before the LOW ones left
                self._track(msg.item_ids, link.publish(msg))

    def _settle(self) -> None:
        """After the pump: IDLE, or HELD with the budget's words; and what waits for a retry, if anything."""
        decision = self._decision()
        later = f"{len(self._retry_at)} item(s) will be tried again shortly." if self._retry_at else ""
        message = " ".join(m for m in (decision.message, later) if m)
        if decision.holds and budget.held_count(self.outbox.status().pending_by_priority, decision):
            self._set(SyncState.HELD, message)
        else:
            self._set(SyncState.IDLE, message)

    def _retry_delay(self) -> float | None:
        if not self._retry_at:
            return None
        return max(0.0, min(self._retry_at.values()) - time.monotonic())

    # -- connecting -------------------------------------------------------------------------------

    async def _connect(self) -> ControlLink:
        self._set(SyncState.CONNECTING)

        def dropped(_reason: str) -> None:
            self._count_drop()  # before the failed publishes' callbacks empty the in-flight table
            self._progress.set()
            self._wake.set()

        link = ControlLink(self.settings, password=self._password, key_passphrase=self._key_passphrase,
                           window=self.window, connect_timeout=self.connect_timeout,
                           on_message=self._inbound if self.inbound is not None else None, on_drop=dropped,
                           client_id=self.client_id)
        await link.connect()
        topics: list[str] = []
        if self.inbound is not None:
            topics = inbound_topics(self.settings.technician)
        try:
            await link.subscribe(topics)
        except BaseException:
            await link.close()
            raise
        if self.settings.metered:
            self.outbox.add_usage(link.session_bytes(topics))
        self._link = link
        return link

    def _inbound(self, topic: str, payload: bytes) -> None:
        if self.inbound is None:
            return
        try:
            self.inbound.accept(topic, payload)
        except Exception:  # bad inbound data is the cache's to judge; a bug there must not stop the sync
            log.exception("the inbound cache failed on a message on %s", topic)

    async def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        await asyncio.sleep(0)  # let the futures' done-callbacks run
        await self._flush(force=True)

    # -- the two ways to run --------------------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> DrainResult:
        """Connect, send everything pending that the budget lets go, return once the broker acknowledged it.

        The first connect must succeed (else SyncError: unreachable or auth); a drop later is retried until
        ``timeout``."""
        start, before = time.monotonic(), (self._tally.sent, self._tally.sent_bytes)
        try:
            async with asyncio.timeout(timeout):
                await self._drain_loop()
        except OutboxError as exc:
            raise SyncError(exc.message, exc.hint, "outbox") from exc
        except TimeoutError as exc:
            waiting = self.outbox.status().pending
            raise SyncError(f"The sync did not finish within {timeout:g} s: {waiting} item(s) still wait.",
                            "Try again on a better link, or with a longer --timeout.", "timeout") from exc
        finally:
            await self._drop_link()
        decision = self._decision()
        held = budget.held_count(self.outbox.status().pending_by_priority, decision)
        self._set(SyncState.HELD if held else SyncState.IDLE, decision.message)
        t = self._tally
        return DrainResult(t.sent - before[0], t.sent_bytes - before[1], time.monotonic() - start, held)

    async def _drain_loop(self) -> None:
        link = await self._connect_or_raise()
        reconnect = Backoff(initial=0.1, maximum=self._probe)
        while True:
            acks = self.status.last_ack
            try:
                await self._pump(link)
                if (delay := self._retry_delay()) is None:
                    return
                await self._wait(self._wake, delay)
                continue
            except LinkDropped as exc:
                self._set(SyncState.OFFLINE, exc.message)
                await self._drop_link()
            if self.status.last_ack != acks:
                reconnect.reset()  # the link carried items: back at once; one that drops at every connect waits longer
            while True:
                await asyncio.sleep(reconnect.next_delay())
                try:
                    link = await self._connect()
                    break
                except AuthError as exc:
                    raise _sync_error(exc) from exc
                except TransportError as exc:
                    self._set(SyncState.OFFLINE, exc.message)

    async def _connect_or_raise(self) -> ControlLink:
        try:
            return await self._connect()
        except (SyncConfigError, MqttSettingsError, TransportError) as exc:
            self._set(SyncState.ERROR if isinstance(exc, AuthError) else SyncState.OFFLINE, exc.message)
            raise _sync_error(exc) from exc

    async def run(self) -> None:
        """Forever (the GUI): connect, drain, wait for wake() or new items; probe while the broker is away."""
        reconnect = Backoff(initial=0.1, maximum=self._probe)
        while not self._closed:
            try:
                link = await self._connect()
            except (SyncConfigError, MqttSettingsError, AuthError) as exc:
                self._set(SyncState.ERROR, str(exc))  # needs a person: retried slowly, or at once on wake()
                await self._wait(self._wake, 60.0)
                continue
            except TransportError as exc:
                self._set(SyncState.OFFLINE, exc.message)
                waits = self.status.waiting > 0
                await self._wait(self._wake, min(reconnect.next_delay(), self._probe) if waits else 60.0)
                continue
            acks = self.status.last_ack
            await self._serve(link)
            if self.status.last_ack != acks or not self.status.waiting:
                reconnect.reset()  # the link worked: back at once; one that drops at every connect waits longer
            if not self._closed:
                await self._wait(self._wake, reconnect.next_delay())

    async def _serve(self, link: ControlLink) -> None:
        try:
            while link.alive and not self._closed:
                await self._pump(link)
                self._settle()
                delay = self._retry_delay()
                await self._wait(self._wake, IDLE_POLL if delay is None else min(delay, IDLE_POLL))
            if not link.alive:
                self._set(SyncState.OFFLINE, link.drop_reason)
        except LinkDropped as exc:
            self._set(SyncState.OFFLINE, exc.message)
        except OutboxError as exc:
            self._set(SyncState.ERROR, str(exc))
            await self._wait(self._wake, 30.0)
        finally:
            await self._drop_link()

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        await self._drop_link()


def _sync_error(exc: SitelineError) -> SyncError:
    if isinstance(exc, AuthError):
        return SyncError(exc.message, exc.hint, "auth")
    if isinstance(exc, SyncConfigError | MqttSettingsError):
        return SyncError(exc.message, exc.hint, "config")
    return SyncError(exc.message, exc.hint, "unreachable")
