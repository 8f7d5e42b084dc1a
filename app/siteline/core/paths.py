"""The paths to one device (SSH through the bastion, the serial cable, MQTT) and what happens on them.

:class:`PathBook` keeps one :class:`PathStatus` per target, in order of preference, and tells path
listeners in words a technician reads (:class:`PathEvent`). :class:`PathLinks` holds the transports
behind the paths: the one in use, trying the others, moving between them. The session decides when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from siteline.core.errors import AuthError, HostKeyError, TransportError
from siteline.core.targets import Target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Result, Transport

log = logging.getLogger(__name__)

Role = Literal["preferred", "fallback"]
# trying: a path is being connected; connected: a path came up with no path up before; switched: the link
# moved to another path after a drop; back: a more preferred path answered again and took over; dropped: the
# path in use went away; failed: a path could not be reached (or needs a person: wrong password, host key);
# held: a more preferred path answers again but the link stays where it is while a console is open on it.
EventKind = Literal["trying", "connected", "switched", "back", "dropped", "failed", "held"]

STANDBY = "standby: not in use"
TransportFactory = Callable[[Target, Credentials], Transport]
# Errors a retry cannot fix: the person must act (type the password, accept the new host key).
NEEDS_PERSON = (AuthError, HostKeyError)
# How long an old link is kept after a move for the commands still running on it: a command's own
# timeout normally ends it first; this only bounds a transport that ignores its timeout.
OLD_LINK_GRACE = 120.0
# The reason a more preferred path shows while an open console keeps the session where it is.
HELD = "answers again; "


@dataclass(frozen=True)
class PathStatus:
    """One path as the UI shows it. ``target`` is the display form (targets never carry a password)."""

    target: str
    role: Role
    state: ConnState = ConnState.DOWN
    reason: str = STANDBY
    last_change: float = field(default_factory=time.time)  # wall clock of the last state change


@dataclass(frozen=True)
class PathEvent:
    """Something happened on a path: ``message`` is the sentence to show, ``active`` the path in use after it."""

    kind: EventKind
    target: str
    message: str
    active: str | None
    when: float = field(default_factory=time.time)


PathListener = Callable[[PathEvent], None]


def path_name(target: Target) -> str:
    """A path as a technician says it: "SSH via bastion.example", "SSH to 10.0.0.5", "serial /dev/ttyUSB0"."""
    if target.is_serial:
        return f"serial {target.device}"
    if target.is_mqtt:
        return f"MQTT {target.topic} at {target.host}"
    if target.jumps:
        return f"SSH via {target.jumps[-1].host}"
    port = "" if target.effective_port == 22 else f":{target.effective_port}"
    return f"SSH to {target.host}{port}"


def retry_order(count: int, dropped: int | None, skip: set[int]) -> list[int]:
    """Which paths to try, in order: all of them by preference, or after a drop the ones after it, then before it.

    The dropped path itself is left for the next round (after a backoff wait): it just failed.
    """
    if dropped is None:
        return [i for i in range(count) if i not in skip]
    wrapped = [*range(dropped + 1, count), *range(dropped)]
    return [i for i in wrapped if i not in skip]


class PathBook:
    """The status of every path and the listeners that hear about them."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.targets = tuple(targets)
        self._paths = [
            PathStatus(str(t), "preferred" if i == 0 else "fallback") for i, t in enumerate(self.targets)
        ]
        self._listeners: list[PathListener] = []

    @property
    def paths(self) -> list[PathStatus]:
        return list(self._paths)

    def __getitem__(self, index: int) -> PathStatus:
        return self._paths[index]

    def __len__(self) -> int:
        return len(self._paths)

    def name(self, index: int) -> str:
        return path_name(self.targets[index])

    def url(self, index: int) -> str:
        return self._paths[index].target

    def add_listener(self, listener: PathListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def set(self, index: int, state: ConnState, reason: str = "") -> bool:
        """Record a path's state; True when it changed. ``last_change`` moves only when the state does."""
        old = self._paths[index]
        if old.state is state and old.reason == reason:
            return False
        when = time.time() if old.state is not state else old.last_change
        self._paths[index] = replace(old, state=state, reason=reason, last_change=when)
        return True

    def tell(self, kind: EventKind, index: int, message: str, active: int | None) -> None:
        event = PathEvent(kind, self.url(index), message, None if active is None else self.url(active))
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener (a UI bug) must not stop the session keeping the link
                log.exception("a path listener failed on %s", event.message)

    def fallback_reason(self, active: int) -> str:
        """The session's reason while up on a fallback: which path is in use and why not the preferred one."""
        preferred = self._paths[0]
        why = preferred.reason if preferred.state is not ConnState.UP else "not in use"
        if why.startswith(HELD):
            return f"on fallback {self.url(active)} (preferred {preferred.target} {why})"
        return f"on fallback {self.url(active)} (preferred {preferred.target} down: {why or 'no answer'})"

    def summary(self, tried: Sequence[int]) -> str:
        """Why no path is up: one path's reason alone, or each path with its reason."""
        if len(self._paths) == 1:
            return self._paths[0].reason
        parts = [f"{self.name(i)}: {self._paths[i].reason or 'no answer'}" for i in tried]
        return "no path answers (" + "; ".join(parts) + ")" if parts else "no path answers"


class SupersededError(Exception):
    """A newer start/reconnect/stop took over while this loop was connecting."""


class PathLinks:
    """The transports behind the paths: which one is in use, opening the others, moving between them."""

    def __init__(self, book: PathBook, factory: TransportFactory, credentials: Credentials, logger: Any) -> None:
        self.book = book
        self.credentials = credentials
        self.transport: Transport | None = None
        self.active: int | None = None
        # Paths refused for a reason only a person can fix (password, host key): not tried again until
        # the session starts over, so a wrong password is not hammered into a lockout.
        self.needs_person: dict[int, str] = {}
        self.lost = asyncio.Event()  # the transport in use went DOWN
        self._factory = factory
        self._log = logger
        self._busy: Counter[int] = Counter()  # commands running, per transport (by id)
        self._shells: Counter[int] = Counter()  # interactive shells (consoles) open, per transport (by id)
        # Transfers (an SFTP upload) using a transport directly, per transport (by id): a move keeps the old
        # link open until they end (no grace deadline: a large image takes minutes), unlike a console it
        # does not stop the move itself.
        self._transfers: Counter[int] = Counter()
        self.console_closed = asyncio.Event()  # the last console on the link in use closed: time to move back
        # Links let go after a move, until closed: close task -> (path index, transport id).
        self._closing: dict[asyncio.Task[None], tuple[int, int]] = {}
        self._evict: set[int] = set()  # transport ids to close now, console or not (their path is reopened)
        self._hurry = False
        self._busy_changed = asyncio.Event()  # a command ended, or close_all wants everything closed now

    async def try_path(self, index: int, stale: Callable[[], bool]) -> Transport | None:
        """Connect one path; a failure is noted on the path (and told), never raised, except a takeover."""
        url, name = self.book.url(index), self.book.name(index)
        try:
            return await self._open(index, stale)
        except SupersededError:
            raise
        except NEEDS_PERSON as exc:
            self._log.warning("%s refused for a reason a retry cannot fix: %s", url, exc)
            self.needs_person[index] = str(exc)
            state, reason = ConnState.DOWN, str(exc)
            words = f"{name} needs you: {reason}"
        except (TransportError, OSError) as exc:
            state, reason = ConnState.RETRYING, short(exc)
            words = f"{name} does not answer: {reason}"
        except Exception as exc:  # a bug, not the network: say so, keep trying, never hang on "connecting"
            self._log.error("unexpected error while connecting %s", url, exc_info=exc)
            state, reason = ConnState.RETRYING, f"internal error: {short(exc)}"
            words = f"{name} failed: {reason}"
        self.mark(index, state, reason, "failed", words)
        return None

    async def _open(self, index: int, stale: Callable[[], bool]) -> Transport:
        await self._free(index)
        transport = self._factory(self.book.targets[index], self.credentials)
        try:
            await transport.connect()
            if stale():
                raise SupersededError()
        except BaseException:
            with contextlib.suppress(Exception):
                await transport.close()
            raise
        return transport

    async def _free(self, index: int) -> None:
        """Close whatever still holds this path before opening it again (break before make).

        A serial port is exclusive: a user's Reconnect opening the port while the old link holds it gets
        "port busy". Make-before-break stays for moving between different paths (see :meth:`install`).
        """
        if self.active == index and self.transport is not None:
            await self.close_current()
        same = [(task, key) for task, (path, key) in self._closing.items() if path == index]
        if same:
            self._evict.update(key for _task, key in same)
            self._busy_changed.set()
            await asyncio.wait({task for task, _key in same})

    def install(self, index: int, transport: Transport) -> None:
        """Make ``transport`` the link in use; the one it replaces is closed once its commands are done."""
        old, self.transport = self.transport, transport
        old_index, self.active = self.active, index
        self.lost.clear()

        def on_transport_state(state: ConnectionState) -> None:
            if state.state is ConnState.DOWN and self.transport is transport:
                self.lost.set()

        transport.add_state_listener(on_transport_state)
        on_transport_state(transport.state)  # it may have dropped between connect() and now
        self.book.set(index, ConnState.UP, "in use")
        if old_index is not None and old_index != index:
            self.book.set(old_index, ConnState.DOWN, STANDBY)
        if old is not None:
            self._close_later(old, index if old_index is None else old_index)

    async def drop(self) -> tuple[int, str]:
        """The link in use went away: close it, note why on its path; returns (path, reason)."""
        transport, index = self.transport, self.active if self.active is not None else 0
        reason = (transport.state.reason if transport else "") or "link lost"
        if getattr(transport, "left_busy", False):
            # A console left inside a program: a retry's wake-up Enter would go into it. The person acts.
            self.needs_person[index] = reason
        await self.close_current()
        then = "trying the other paths" if len(self.book) > 1 else "retrying"
        self.mark(index, ConnState.RETRYING, reason, "dropped", f"{self.book.name(index)} dropped ({reason}); {then}")
        return index, reason

    async def close_current(self) -> None:
        transport, self.transport, self.active = self.transport, None, None
        if transport is not None:
            await _close_quietly(transport)

    async def close_all(self) -> None:
        """Close the link in use and, without waiting for their commands, the ones being let go."""
        self._hurry = True
        self._busy_changed.set()
        try:
            await self.close_current()
            if self._closing:
                await asyncio.wait(set(self._closing))
            self._shells.clear()
        finally:
            self._hurry = False

    def mark(self, index: int, state: ConnState, reason: str, kind: EventKind, words: str) -> None:
        if self.book.set(index, state, reason):
            self.book.tell(kind, index, words, self.active)

    async def run(self, command: str, timeout: float) -> Result:
        transport = self.transport
        if transport is None:
            raise TransportError("No path to the device is up.", "Wait for the connection, or check the cables.")
        self._busy[id(transport)] += 1
        try:
            return await transport.run(command, timeout)
        finally:
            self._busy[id(transport)] -= 1
            if not self._busy[id(transport)]:
                del self._busy[id(transport)]
            self._busy_changed.set()

    @contextlib.contextmanager
    def in_use(self, transport: Transport) -> Iterator[Transport]:
        """Hold ``transport`` open while the block uses it directly (a transfer): a move closes it only after."""
        key = id(transport)
        self._transfers[key] += 1
        try:
            yield transport
        finally:
            self._transfers[key] -= 1
            if self._transfers[key] <= 0:
                del self._transfers[key]
            self._busy_changed.set()

    # -- consoles ------------------------------------------------------------------------------

    def track_shell(self, transport: Transport, channel: Any) -> None:
        """Count ``channel`` (an interactive shell) as holding ``transport`` until it closes or the link dies.

        A technician in vi on the serial console must not have the link closed under them by a move.
        A channel without a closed listener holds the link until the link itself goes down.
        """
        if getattr(channel, "closed", False):
            return
        key = id(transport)
        self._shells[key] += 1
        ended = False

        def on_closed(_reason: str = "") -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            remove()
            self._shells[key] -= 1
            if self._shells[key] <= 0:
                del self._shells[key]
                if self.transport is transport:
                    self.console_closed.set()
            self._busy_changed.set()

        def on_state(state: ConnectionState) -> None:
            if state.state is ConnState.DOWN:
                on_closed()

        remove = transport.add_state_listener(on_state)
        adder = getattr(channel, "add_closed_listener", None)
        if callable(adder):
            adder(on_closed)

    def holds_console(self) -> bool:
        """True while a console is open on the link in use."""
        return self.transport is not None and self._shells[id(self.transport)] > 0

    async def hold_back(self, index: int, transport: Transport) -> None:
        """``index`` answers again, but a console is open on the link in use: stay, and say so."""
        await _close_quietly(transport)
        active = self.book.targets[self.active] if self.active is not None else None
        word = "serial" if active is None or active.is_serial else "MQTT" if active.is_mqtt else "SSH"
        staying = f"staying on {word} while the console is open"
        self.mark(index, ConnState.RETRYING, HELD + staying, "held", f"{self.book.name(index)} {HELD}{staying}")

    # -- letting old links go -------------------------------------------------------------------

    def _close_later(self, transport: Transport, index: int) -> None:
        task = asyncio.get_running_loop().create_task(self._close_when_idle(transport), name="close old path")
        self._closing[task] = (index, id(transport))
        task.add_done_callback(self._closed_later)

    def _closed_later(self, task: asyncio.Task[None]) -> None:
        _index, key = self._closing.pop(task, (0, 0))
        self._evict.discard(key)
        self._shells.pop(key, None)

    async def _close_when_idle(self, transport: Transport) -> None:
        # A command already running on the old link (a long copy over serial) finishes there, within a
        # grace time; a transfer using it keeps it until the transfer ends, an open console until the person
        # closes it (or the path reopens).
        key, loop = id(transport), asyncio.get_running_loop()
        deadline = loop.time() + OLD_LINK_GRACE
        while not self._hurry and key not in self._evict:
            commands = bool(self._busy[key]) and loop.time() < deadline
            held = bool(self._shells[key] or self._transfers[key])
            if not commands and not held:
                break
            self._busy_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(None if held else deadline):
                    await self._busy_changed.wait()
        await _close_quietly(transport)


async def _close_quietly(transport: Transport) -> None:
    with contextlib.suppress(Exception):
        await transport.close()


def short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
