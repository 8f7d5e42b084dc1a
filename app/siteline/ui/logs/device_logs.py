"""The device page's Logs tab: the shown device's log, followed while the tab is open and the device is up.

Nobody reading the tab means nothing is read from the device: on a metered link a log stream is the
costliest thing Siteline could leave running. Over SSH the log streams; over a serial console or MQTT
it is polled (slowly on a metered link). Another device, or the tab closed, stops the follower, and
with it the command on the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QVBoxLayout, QWidget

from siteline.core.errors import SitelineError, TransportError
from siteline.core.logs.follow import FollowStatus, LogBatch, follow
from siteline.core.logs.record import LogRecord
from siteline.core.logs.warnings import warnings_of
from siteline.core.session import DeviceSession
from siteline.core.tasks import cancel_and_wait
from siteline.core.transports.base import ConnState, Result
from siteline.ui.help_text import HelpLine
from siteline.ui.logs.log_view import LogView

log = logging.getLogger(__name__)

RECENT_LINES = 1000  # read back when following starts: enough for "what just happened" on a slow link
POLL_SECONDS = 5.0  # over a serial console, unmetered
POLL_SECONDS_METERED = 60.0


class SessionLogLink:
    """What the follower needs from a device session to poll: run."""

    def __init__(self, session: DeviceSession) -> None:
        self._session = session

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        return await self._session.run(command, timeout)


class SessionLogStream(SessionLogLink):
    """The same over a link that can stream (SSH): the follower streams instead of polling."""

    def stream(self, command: str) -> Any:
        opener = getattr(self._session.transport, "stream", None)
        if not callable(opener):  # the session moved to a path without streams meanwhile
            raise TransportError("The link in use now cannot stream the log.", "It is read again when SSH is back.")
        return opener(command)


def log_link(session: DeviceSession) -> SessionLogLink:
    streams = callable(getattr(session.transport, "stream", None))
    return SessionLogStream(session) if streams else SessionLogLink(session)


class DeviceLogsTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = LogView()
        self.help_line = HelpLine("logs")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.help_line)
        layout.addWidget(self.view)
        self.device: str | None = None
        self._session: DeviceSession | None = None
        self._shown = False
        self._metered = False
        self._task: asyncio.Task[None] | None = None
        # Told the warnings (and worse) of each batch: the device's Timeline shows them.
        self.on_warnings: Callable[[str, list[LogRecord]], None] | None = None
        self.view.set_status("The log is read while this tab is open and the device is connected.")

    # -- told by the page -----------------------------------------------------------------------

    def set_device(self, name: str | None, session: DeviceSession | None, metered: bool = False) -> None:
        """Show ``name``'s log (another device: the old follower stops and the view starts empty)."""
        if name != self.device or session is not self._session or metered != self._metered:
            self._stop()  # another device, a replaced session or a new pace: _update starts it again
        if name != self.device:
            self.view.clear()
            self.view.set_status("")
        self.device, self._session, self._metered = name, session, metered
        self._update()

    def set_shown(self, shown: bool) -> None:
        self._shown = shown
        self._update()

    def device_state_changed(self) -> None:
        self._update()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    # -- following --------------------------------------------------------------------------------

    @property
    def following(self) -> bool:
        return self._task is not None and not self._task.done()

    def _update(self) -> None:
        session = self._session
        up = session is not None and session.state.state is ConnState.UP
        if not (self._shown and up):
            self._stop()
            return
        if not self.following and session is not None:
            self._task = asyncio.ensure_future(self._follow(session, self.device or "the device"))

    def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            self.view.set_status(f"Paused: {self.device} is not being read (open this tab to read it again).")

    def _tell_warnings(self, name: str, batch: LogBatch) -> None:
        if self.on_warnings is not None:
            found = warnings_of(batch.lines, batch.source, batch.boot_time)
            if found:
                self.on_warnings(name, found)

    async def _follow(self, session: DeviceSession, name: str) -> None:
        link = log_link(session)
        poll = POLL_SECONDS_METERED if self._metered else POLL_SECONDS
        self.view.set_status(f"Looking for {name}'s log…")
        try:
            events = follow(link, lines=RECENT_LINES, poll_interval=poll, retries=3)
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, LogBatch):
                        self.view.append_lines(event.lines, event.source, event.boot_time)
                        self._tell_warnings(name, event)
                    elif isinstance(event, FollowStatus):
                        self.view.set_status(f"{name}: {event.text}")
        except SitelineError as exc:
            self.view.set_status(f"{name}: {exc}" + (f" {exc.hint}" if getattr(exc, "hint", "") else ""))
        except OSError as exc:
            self.view.set_status(f"{name}: the log stopped: {exc}")
