"""Reads devices again on the schedule :mod:`siteline.core.refresh_policy` sets, with one timer for all of them.

The window tells the scheduler what the person looks at (``set_shown``, ``set_window_visible``) and when they
pressed F5 (``note_manual_refresh``, or ``refresh_now`` to run that round here); the scheduler works out,
every tick, which areas of which devices are due and runs them, one round per device at a time, only on a
link that is up. Any snapshot that arrives, whoever asked for it, counts as a read, so a link coming up
(which reads everything) or an F5 never causes an extra round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from PySide6.QtCore import QObject, QTimer, Signal

from siteline.core.device.network import Network
from siteline.core.refresh_policy import DeviceView, RefreshSettings, describe, plan
from siteline.core.transports.base import ConnState

if TYPE_CHECKING:
    from siteline.ui.sessions import SessionManager

log = logging.getLogger(__name__)

KINDS = ("system", "modem", "network", "slots", "posture")  # the built-in probes' kinds
TICK_MS = 1000


class RefreshScheduler(QObject):
    """Drives ``DeviceSession.refresh(kind)`` for every device per the refresh policy."""

    sig_policy_changed = Signal(str, str)  # device name, the policy in words ("refreshing every 5 min: ...")

    def __init__(
        self,
        sessions: SessionManager,
        settings: RefreshSettings | None = None,
        kinds: Sequence[str] = KINDS,
        control_plane_metered: Callable[[], bool] = lambda: False,
        tick_ms: int = TICK_MS,
        clock: Callable[[], float] = time.monotonic,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._sessions = sessions
        self._settings = settings or RefreshSettings()
        self.kinds = tuple(dict.fromkeys(kinds))
        self._control_plane_metered = control_plane_metered
        self._clock = clock
        self._shown: str | None = None
        self._tab_kind: str | None = None
        self._window_visible = True
        self._last: dict[tuple[str, str], float] = {}  # (device, kind) -> when it was last read (or asked for)
        self._rounds: dict[str, asyncio.Task[None]] = {}  # the one round per device in flight
        self._ending: set[asyncio.Task[None]] = set()  # rounds of removed devices, until their cancel went through
        self._texts: dict[str, str] = {}
        self._was_up: set[str] = set()
        sessions.sig_snapshot_received.connect(self._on_sessions_snapshot_received)
        sessions.sig_state_changed.connect(self._on_sessions_state_changed)
        sessions.sig_device_removed.connect(self._on_sessions_device_removed)
        self._timer = QTimer(self)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._timer.start()

    # -- told by the window --------------------------------------------------------------------

    @property
    def settings(self) -> RefreshSettings:
        return self._settings

    def set_settings(self, settings: RefreshSettings) -> None:
        self._settings = settings
        self._tell_all()

    def set_shown(self, name: str | None, tab_kind: str | None = None) -> None:
        """The device whose page is on screen (None: none) and the probe kind of its open tab (None: other tabs)."""
        before = self._shown
        self._shown, self._tab_kind = name, tab_kind
        for device in {before, name} - {None}:
            self._tell(device)  # type: ignore[arg-type]
        self._on_timer_timeout()  # a newly shown, stale device is read now, not a tick later

    def set_window_visible(self, visible: bool) -> None:
        self._window_visible = visible
        self._tell_all()
        if visible:
            self._on_timer_timeout()

    def note_manual_refresh(self, name: str) -> None:
        """The person pressed F5 (the round runs elsewhere): every area counts as read now."""
        self._mark(name, self.kinds)

    def refresh_now(self, name: str) -> asyncio.Task[None] | None:
        """F5 through the scheduler: a round of every area, or the round already running for ``name``."""
        running = self._rounds.get(name)
        if running is not None and not running.done():
            return running
        if not self._is_up(name):
            return None
        return self._start(name, list(self.kinds))

    # -- reading -------------------------------------------------------------------------------

    def view(self, name: str) -> DeviceView:
        session = self._sessions.get(name)
        network = session.snapshots.get("network") if session is not None else None
        active = self._sessions.active_target(name)
        return DeviceView(
            name=name,
            shown=name == self._shown,
            window_visible=self._window_visible,
            tab_kind=self._tab_kind if name == self._shown else None,
            connected=self._is_up(name),
            target_scheme=_scheme(active or (str(session.target) if session is not None else "")),
            network=network if isinstance(network, Network) else None,
            control_plane_metered=self._control_plane_metered(),
        )

    def describe(self, name: str) -> str:
        """The words for the status bar: "refreshing every 5 min: on cellular (metered)" / "paused: not shown"."""
        return describe(self.view(name), self._settings)

    def due(self, name: str, now: float | None = None) -> list[str]:
        """The kinds of ``name`` whose time has come (none while paused)."""
        now = self._clock() if now is None else now
        found = plan(self.view(name), self._settings)
        due = []
        for kind in self.kinds:
            interval = found.interval(kind)
            last = self._last.get((name, kind))
            if interval is not None and (last is None or now - last >= interval):
                due.append(kind)
        return due

    def running(self, name: str) -> bool:
        task = self._rounds.get(name)
        return task is not None and not task.done()

    # -- the rounds ----------------------------------------------------------------------------

    def _start(self, name: str, kinds: list[str]) -> asyncio.Task[None]:
        self._mark(name, kinds)  # counted from the start: a slow round is not started again behind itself
        task = asyncio.ensure_future(self._round(name, kinds))
        self._rounds[name] = task
        task.add_done_callback(lambda done: self._on_round_done(name, done))
        return task

    async def _round(self, name: str, kinds: list[str]) -> None:
        session = self._sessions.get(name)
        if session is None:
            return
        if set(kinds) >= set(self.kinds):
            await session.refresh()  # everything: one pass over the probes, in the session's order
            return
        for kind in kinds:
            if session.state.state is not ConnState.UP:
                return
            await session.refresh(kind)

    def _on_round_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._rounds.get(name) is task:
            del self._rounds[name]
        if not task.cancelled() and task.exception() is not None:
            log.warning("refreshing %s failed: %s", name, task.exception())

    def _mark(self, name: str, kinds: Sequence[str]) -> None:
        now = self._clock()
        for kind in kinds:
            self._last[(name, kind)] = now

    def _is_up(self, name: str) -> bool:
        return self._sessions.state(name).state is ConnState.UP

    async def close(self) -> None:
        """Stop the timer and end the rounds in flight (the window is closing)."""
        self._timer.stop()
        tasks = [*self._rounds.values(), *self._ending]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._rounds.clear()
        self._ending.clear()

    # -- telling -------------------------------------------------------------------------------

    def _tell(self, name: str) -> None:
        if self._sessions.get(name) is None:
            return
        text = self.describe(name)
        if self._texts.get(name) != text:
            self._texts[name] = text
            self.sig_policy_changed.emit(name, text)

    def _tell_all(self) -> None:
        for name in self._sessions.names():
            self._tell(name)

    # -- slots ---------------------------------------------------------------------------------

    def _on_timer_timeout(self) -> None:
        now = self._clock()
        for name in self._sessions.names():
            self._tell(name)
            if self.running(name) or not self._is_up(name):
                continue
            kinds = self.due(name, now)
            if kinds:
                self._start(name, kinds)

    def _on_sessions_snapshot_received(self, name: str, kind: str) -> None:
        self._mark(name, (kind,))
        if kind == "network":
            self._tell(name)  # the uplink may have moved to cellular (or back)

    def _on_sessions_state_changed(self, name: str) -> None:
        up = self._is_up(name)
        if up and name not in self._was_up:
            self._mark(name, self.kinds)  # the session reads everything when its link comes up
        if up:
            self._was_up.add(name)
        else:
            self._was_up.discard(name)
        self._tell(name)

    def _on_sessions_device_removed(self, name: str) -> None:
        self._was_up.discard(name)
        self._texts.pop(name, None)
        for key in [k for k in self._last if k[0] == name]:
            del self._last[key]
        task = self._rounds.pop(name, None)
        if task is not None and not task.done():
            # The session's stop ends its probe rounds (and waits for them); close() waits for this one too.
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)


def _scheme(url: str) -> str | None:
    try:
        return urlsplit(url).scheme.lower() or None
    except ValueError:
        return None
