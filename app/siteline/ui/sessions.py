"""The Qt side of device sessions: one core DeviceSession per device, adapted to signals.

Core sessions call plain listeners from the asyncio loop, which qasync runs in Qt's main
thread, so the listeners may emit signals directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from siteline.core.backoff import Backoff
from siteline.core.errors import AuthError, TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession, TransportFactory
from siteline.core.targets import Target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Result, StateListener, Transport
from siteline.core.transports.factory import open_transport

log = logging.getLogger(__name__)


def default_factory(known_hosts: Path) -> TransportFactory:
    """The real transports; a transport module that cannot be imported becomes a retryable error."""

    def make(target: Target, credentials: Credentials) -> Transport:
        try:
            return open_transport(target, credentials, known_hosts)
        except ImportError as exc:
            raise TransportError(
                f"The {target.scheme} transport is not available in this Siteline ({exc}).",
                "Update or reinstall Siteline.",
            ) from exc

    return make


class _WatchedTransport:
    """Delegates to a transport and reports a refused login, so the UI can ask for a password."""

    def __init__(self, inner: Transport, on_auth_error: Callable[[AuthError], None]) -> None:
        self._inner = inner
        self._on_auth_error = on_auth_error

    @property
    def state(self) -> ConnectionState:
        return self._inner.state

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        return self._inner.add_state_listener(listener)

    async def connect(self) -> None:
        try:
            await self._inner.connect()
        except AuthError as exc:
            self._on_auth_error(exc)
            raise

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        return await self._inner.run(command, timeout)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:  # stream/put/get/shell arrive with later transports
        return getattr(self._inner, name)


class SessionManager(QObject):
    """Owns every device's session; the window and the tree model listen to its signals."""

    sig_state_changed = Signal(str)  # device name; read the state with state(name)
    sig_snapshot_received = Signal(str, str)  # device name, probe kind
    sig_password_needed = Signal(str, str)  # device name, what the device said

    def __init__(
        self,
        plugins: PluginHost,
        factory: TransportFactory,
        backoff: Callable[[], Backoff] = Backoff,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._plugins = plugins
        self._factory = factory
        self._backoff = backoff
        self._sessions: dict[str, DeviceSession] = {}
        self._unlisten: dict[str, Callable[[], None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        # The stop still running per device name: a new session for that name starts only after it,
        # because the old one may still hold the serial port's lock (a false "port busy").
        self._stop_by_name: dict[str, asyncio.Task[None]] = {}
        # Retry countdowns ("retrying in 4 s") must move even when nothing else happens.
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._on_ticker_timeout)
        self._ticker.start()

    # -- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._sessions)

    def get(self, name: str) -> DeviceSession | None:
        return self._sessions.get(name)

    def state(self, name: str) -> ConnectionState:
        session = self._sessions.get(name)
        return session.state if session else ConnectionState(ConnState.DOWN, "no session")

    def all_up(self) -> bool:
        return bool(self._sessions) and all(s.state.state is ConnState.UP for s in self._sessions.values())

    # -- changing ----------------------------------------------------------------------------

    def add(
        self,
        entry: DeviceEntry,
        credentials: Credentials | None = None,
        start: bool = True,
        after: asyncio.Task[None] | None = None,
    ) -> DeviceSession:
        """A session for ``entry``; it starts once ``after`` (and any stop of the same name) has finished."""
        if entry.name in self._sessions:
            self.remove(entry.name)
        creds = credentials or Credentials(username=entry.username)
        name = entry.name

        def factory(target: Target, creds: Credentials) -> Transport:
            return _WatchedTransport(self._factory(target, creds), lambda exc: self._on_auth_error(name, exc))

        session = DeviceSession(entry, factory, creds, self._plugins, backoff=self._backoff())
        self._unlisten[name] = session.add_state_listener(lambda _s: self.sig_state_changed.emit(name))
        session.add_snapshot_listener(lambda kind, _snap: self._on_snapshot(name, kind))
        self._sessions[name] = session
        if start:
            waits = {t for t in (after, self._stop_by_name.get(name)) if t is not None and not t.done()}
            if waits:
                self._track(asyncio.get_running_loop().create_task(self._start_after(waits, session)))
            else:
                session.start()
        return session

    async def _start_after(self, waits: set[asyncio.Task[None]], session: DeviceSession) -> None:
        await asyncio.wait(waits)
        if self._sessions.get(session.entry.name) is session:  # not removed or replaced meanwhile
            session.start()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def remove(self, name: str) -> asyncio.Task[None] | None:
        """Forget a device now and stop its session in the background (close_all waits for it)."""
        session = self._sessions.pop(name, None)
        unlisten = self._unlisten.pop(name, None)
        if session is None:
            return None
        if unlisten:
            unlisten()
        task = asyncio.get_running_loop().create_task(session.stop(), name=f"stop {name}")
        self._track(task)
        self._stop_by_name[name] = task
        task.add_done_callback(lambda t: self._forget_stop(name, t))
        return task

    def _forget_stop(self, name: str, task: asyncio.Task[None]) -> None:
        if self._stop_by_name.get(name) is task:
            del self._stop_by_name[name]

    def replace(self, old_name: str, entry: DeviceEntry) -> DeviceSession:
        """An edited device: same secrets if the person kept the name and target, new session regardless."""
        old = self._sessions.get(old_name)
        creds = old.credentials if old and old.entry.target == entry.target else None
        if creds is not None and entry.username != old.entry.username:  # type: ignore[union-attr]
            creds = replace(creds, username=entry.username)
        stopping = self.remove(old_name)
        return self.add(entry, creds, after=stopping)

    def set_password(self, name: str, password: str) -> None:
        session = self._sessions.get(name)
        if session is not None:
            session.reconnect(replace(session.credentials, password=password))

    def reconnect(self, name: str) -> None:
        session = self._sessions.get(name)
        if session is not None:
            session.reconnect()

    async def refresh(self, name: str) -> None:
        session = self._sessions.get(name)
        if session is not None and session.state.state is ConnState.UP:
            await session.refresh()

    async def close_all(self) -> None:
        self._ticker.stop()
        for name in list(self._sessions):
            self.remove(name)
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    # -- slots -------------------------------------------------------------------------------

    def _on_ticker_timeout(self) -> None:
        for name, session in list(self._sessions.items()):
            if session.state.state is ConnState.RETRYING:
                self.sig_state_changed.emit(name)

    def _on_snapshot(self, name: str, kind: str) -> None:
        if name in self._sessions:
            self.sig_snapshot_received.emit(name, kind)

    def _on_auth_error(self, name: str, exc: AuthError) -> None:
        if name in self._sessions:
            self.sig_password_needed.emit(name, str(exc))
