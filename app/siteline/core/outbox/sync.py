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
from dataclasses import replace

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
from siteline.core.outbox.sync_steps import (
    NOT_CONFIGURED,
    DrainResult,
    SyncError,
    SyncState,
    SyncStatus,
    Tally,
    count_drop,
    sync_error,
)

__all__ = ["NOT_CONFIGURED", "DrainResult", "SyncError", "SyncState", "SyncStatus", "Syncer"]

log = logging.getLogger(__name__)

PAGE = 500  # items read from the outbox at a time
FLUSH_IDS, FLUSH_AGE = 500, 0.05  # acks are written when this many wait, or the oldest is this old
PROBE, PROBE_METERED = 1.0, 30.0  # seconds between reachability probes while items wait
IDLE_POLL = 5.0  # connected and idle: look for items other processes wrote (the CLI's `note`)
OFFLINE_LOOK = 1.0  # offline with nothing waiting: look at the outbox this often for items other processes wrote
OFFLINE_IDLE = 60.0  # offline with nothing waiting: probe the broker this often all the same
ERROR_WAIT = 30.0  # after an error that needs a person (a full disk, say): try again this often, or on wake()


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
        self._tally = Tally()
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
            t.fail(ids, str(exc), False)
            return
        out = fut.result()
        t.fail(ids, out.reason, out.permanent)
        t.refused_bytes += out.nbytes  # refused, but it crossed the wire
        if not out.permanent:
            retry = time.monotonic() + self._publish_backoff.next_delay()
            self._retry_at.update(dict.fromkeys(ids, retry))

    def _count_drop(self) -> None:
        if self._inflight:  # the oldest message in flight is the one the broker was reading
            count_drop(next(iter(self._inflight.values())), self._drops, self._retry_at)

    async def _flush(self, force: bool = False) -> None:
        """Write waiting acks (mark_sent) and failures (record_failure), each group in one transaction.

        In a worker thread (the outbox is thread-safe): an fsync must not stall the GUI's event loop."""
        t = self._tally
        if t.acked and (force or len(t.acked) >= FLUSH_IDS or time.monotonic() - t.since >= FLUSH_AGE):
            ids, nbytes = t.acked, t.acked_bytes
            t.acked, t.acked_bytes = [], 0
            self._flushing.update(ids)  # neither in the list above nor marked sent yet: not to be read as pending
            try:
                await asyncio.to_thread(self.outbox.mark_sent, ids, nbytes)
            finally:
                self._flushing.difference_update(ids)
            t.sent += len(ids)
            t.sent_bytes += nbytes
        if t.refused_bytes:
            nbytes, t.refused_bytes = t.refused_bytes, 0
            await asyncio.to_thread(self.outbox.add_usage, nbytes)
        for reason, permanent in list(t.failures):
            ids = t.failures.pop((reason, permanent))
            log.warning("%d outbox item(s) not delivered%s: %s", len(ids), " for good" if permanent else "", reason)
            self._flushing.update(ids)
            try:
                await asyncio.to_thread(self.outbox.record_failure, ids, reason, permanent)
            except OutboxError:
                t.fail(ids, reason, permanent)  # written next time; meanwhile not sent again
                raise
            finally:
                self._flushing.difference_update(ids)
            if permanent:
                t.written_failed(ids, reason)

    # -- sending ----------------------------------------------------------------------------------

    def _next_page(self, decision: budget.BudgetDecision) -> list[Item]:
        now = time.monotonic()
        self._retry_at = {k: v for k, v in self._retry_at.items() if v > now}
        skip = {i for ids in self._inflight.values() for i in ids} | set(self._retry_at) | self._flushing
        skip.update(self._tally.acked)  # acked, not yet written: still 'pending' in the file
        skip.update(self._tally.failing())  # failed, not yet written: the same
        items = self.outbox.pending(limit=len(skip) + PAGE, max_priority=decision.max_priority)
        return [i for i in items if i.id not in skip]

    async def _wait(self, event: asyncio.Event, timeout: float | None, clear: bool = True) -> None:
        """``clear=False`` right after reading the outbox (which cleared ``_wake`` just before): a wake() since
        then is news, and clearing here would lose it (a new item would wait a whole IDLE_POLL)."""
        if clear:
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
            self._wake.clear()  # just before reading: a wake() from here on is for items this read may miss
            decision = self._decision()
            page = self._next_page(decision)
            if not page:
                if self._inflight:
                    await self._wait(self._progress, FLUSH_AGE)
                    continue
                if self._tally.acked or self._tally.failures:
                    continue  # they came in while the flush above was writing: written (forced) next round
                return
            self._set(SyncState.SYNCING)
            for msg in plan_messages(page, self.settings.technician, batching=batching, on_invalid=self._tally.invalid):
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
        held = decision.holds and budget.held_count(self.outbox.status().pending_by_priority, decision)
        self._set(SyncState.HELD if held else SyncState.IDLE, message)

    def _retry_delay(self) -> float | None:
        return max(0.0, min(self._retry_at.values()) - time.monotonic()) if self._retry_at else None

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
        try:  # from here the link is open: whatever fails (a full disk counting the bytes) closes it
            await link.subscribe(topics)
            if self.settings.metered:
                await asyncio.to_thread(self.outbox.add_usage, link.session_bytes(topics))
        except BaseException:
            await link.close()
            raise
        self._link = link
        return link

    def _inbound(self, topic: str, payload: bytes) -> None:
        if self.inbound is None:
            return
        try:
            self.inbound.accept(topic, payload)
        except Exception:  # bad inbound data is the cache's to judge; a bug there must not stop the sync
            log.exception("the inbound cache failed on a message on %s", topic)

    async def _drop_link(self) -> OutboxError | None:
        """Close the link and write what the tally holds. An outbox that cannot be written (a full disk) is
        returned, not raised: the acked items stay pending and go again (consumers drop the duplicates)."""
        link, self._link = self._link, None
        if link is not None:
            await link.close()
        await asyncio.sleep(0)  # let the futures' done-callbacks run
        try:
            await self._flush(force=True)
        except OutboxError as exc:
            log.warning("could not record the broker's acks in the outbox; those items stay pending: %s", exc)
            self._set(SyncState.ERROR, exc.message)
            return exc
        return None

    def _has_pending(self) -> bool:
        """Whether anything waits, read from the outbox now: another process (the CLI's `note`) may have written
        items without a wake(). One indexed row: cheap enough to ask every second."""
        self._wake.clear()  # just before reading, as in _pump
        try:
            return bool(self.outbox.pending(limit=1))
        except OutboxError:
            return self.status.waiting > 0

    # -- the two ways to run --------------------------------------------------------------------------

    async def drain(self, timeout: float | None = None) -> DrainResult:
        """Connect, send everything pending that the budget lets go, return once the broker acknowledged it.

        The first connect must succeed (else SyncError: unreachable or auth); a drop later is retried until
        ``timeout``. Items failed for good on the way (refused by the broker, damaged rows) are counted in
        the result's ``failed``."""
        t = self._tally
        start, before = time.monotonic(), (t.sent, t.sent_bytes, t.failed, dict(t.failed_reasons))
        try:
            async with asyncio.timeout(timeout):
                await self._drain_loop()
        except TimeoutError as exc:
            self._set(self.status.state)  # the outbox's count now (kept as it was if the outbox cannot be read)
            raise SyncError(f"The sync did not finish within {timeout:g} s: {self.status.waiting} item(s) still "
                            "wait.", "Try again on a better link, or with a longer --timeout.", "timeout") from exc
        except SitelineError as exc:
            raise sync_error(exc) from exc
        finally:
            dropped = await self._drop_link()
        if dropped is not None:
            raise sync_error(dropped) from dropped
        decision = self._decision()
        held = budget.held_count(self.outbox.status().pending_by_priority, decision)
        self._set(SyncState.HELD if held else SyncState.IDLE, decision.message)
        return DrainResult(t.sent - before[0], t.sent_bytes - before[1], time.monotonic() - start, held,
                           t.failed - before[2], t.failures_since(before[3]))
    async def _drain_loop(self) -> None:
        link = await self._connect_or_raise()
        reconnect = Backoff(initial=0.1, maximum=self._probe)
        while True:
            acks = self.status.last_ack
            try:
                await self._pump(link)
                if (delay := self._retry_delay()) is None:
                    return
                await self._wait(self._wake, delay, clear=False)
                continue
            except LinkDropped as exc:
                self._set(SyncState.OFFLINE, exc.message)
                if (error := await self._drop_link()) is not None:
                    raise error from exc
            if self.status.last_ack != acks:
                reconnect.reset()  # the link carried items: back at once; one that drops at every connect waits longer
            while True:
                await asyncio.sleep(reconnect.next_delay())
                try:
                    link = await self._connect()
                    break
                except AuthError as exc:
                    raise sync_error(exc) from exc
                except TransportError as exc:
                    self._set(SyncState.OFFLINE, exc.message)

    async def _connect_or_raise(self) -> ControlLink:
        try:
            return await self._connect()
        except (SyncConfigError, MqttSettingsError, TransportError) as exc:
            self._set(SyncState.ERROR if isinstance(exc, AuthError) else SyncState.OFFLINE, exc.message)
            raise sync_error(exc) from exc

    async def run(self) -> None:
        """Forever (the GUI): connect, drain, wait for wake() or new items; probe while the broker is away.

        No error of Siteline's ends it: each is shown (state ERROR with its message) and tried again after
        ERROR_WAIT or on wake(); a full disk, say, leaves the items pending until there is room."""
        reconnect = Backoff(initial=0.1, maximum=self._probe)
        while not self._closed:
            try:
                await self._run_once(reconnect)
            except SitelineError as exc:
                log.warning("the outbox sync stopped on an error and will try again: %s", exc)
                self._set(SyncState.ERROR, str(exc))
                await self._wait(self._wake, ERROR_WAIT)

    async def _run_once(self, reconnect: Backoff) -> None:
        try:
            link = await self._connect()
        except (SyncConfigError, MqttSettingsError, AuthError) as exc:
            self._set(SyncState.ERROR, str(exc))  # needs a person: retried slowly, or at once on wake()
            await self._wait(self._wake, 60.0)
            return
        except TransportError as exc:
            self._set(SyncState.OFFLINE, exc.message)
            await self._wait_offline(min(reconnect.next_delay(), self._probe))
            return
        acks = self.status.last_ack
        await self._serve(link)
        if self.status.last_ack != acks or not self._has_pending():
            reconnect.reset()  # the link worked: back at once; one that drops at every connect waits longer
        if not self._closed:
            await self._wait(self._wake, reconnect.next_delay())

    async def _wait_offline(self, probe: float) -> None:
        """Until the next probe: ``probe`` seconds while items wait; else up to OFFLINE_IDLE, looking at the outbox
        every second, so items another process writes meanwhile start the quick probe too."""
        deadline = time.monotonic() + OFFLINE_IDLE
        while not self._closed:
            if self._has_pending():
                await self._wait(self._wake, probe, clear=False)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await self._wait(self._wake, min(OFFLINE_LOOK, left), clear=False)
            if self._wake.is_set():
                return

    async def _serve(self, link: ControlLink) -> None:
        """Keep the outbox drained over ``link`` until it drops; an error (OutboxError, ...) closes the link
        first, then goes up to run(), which shows it."""
        try:
            while link.alive and not self._closed:
                await self._pump(link)
                self._settle()
                delay = self._retry_delay()
                await self._wait(self._wake, IDLE_POLL if delay is None else min(delay, IDLE_POLL), clear=False)
            if not link.alive:
                self._set(SyncState.OFFLINE, link.drop_reason)
        except LinkDropped as exc:
            self._set(SyncState.OFFLINE, exc.message)
        finally:
            error = await self._drop_link()
        if error is not None:
            raise error

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        await self._drop_link()  # an outbox that cannot be written is logged there; the items stay pending
