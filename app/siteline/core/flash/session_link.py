"""A FlashLink over the app's live DeviceSession: the flash job uses the link the window already keeps up.

Commands go through ``session.run`` (the path in use now, whichever it is). Uploads take the session's
transport of the moment: SFTP (resumable, SHA-256 checked) when it is SSH, the console upload otherwise
(serial or MQTT). After a reboot nothing is reopened here: the session reconnects by itself, and
``reconnect`` only waits until it is UP and answers a command again, bounded by the timeout.

A ``reboot`` command returns before the device goes away, and the session may believe in its old link for a
moment: so when a command went over a live link since the link last dropped, ``reconnect`` first waits for the
drop (the reboot taking effect), then for the way back. Called on a link that has dropped since (or that never
carried a command, as after a restart of Siteline), it only waits for the way back. A session
that sits out a long backoff wait is nudged to try at once (``retry_now``: a path that needs a person stays
untried), so a device that is back is seen within a second or two instead of after the backoff's minute.
An image larger than the serial limit goes only over SSH: on a fallback the session is asked to try SSH now.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siteline.core.errors import SitelineError, TransportError
from siteline.core.flash.preflight import SERIAL_LIMIT, mib
from siteline.core.session import DeviceSession
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import ConnectionState, ConnState, Result
from siteline.core.transports.console_transfer import put_over_console
from siteline.core.transports.ssh import SshTransport
from siteline.core.transports.transfer import Progress, TransferResult

POLL = 0.05  # seconds between looks at the session while waiting for it to come back
ANSWER_TIMEOUT = 10.0  # a command that proves the link really carries commands again
NUDGE_AFTER = 3.0  # a retry due later than this is brought forward (the device may be back already)
SSH_WAIT = 20.0  # how long a large upload waits for the session to move back to SSH before it is link trouble


class SessionLink:
    """``FlashLink`` over a :class:`DeviceSession` that the caller owns (``close`` leaves it running).

    The window does not replace a device's session while a job drives it (an edit waits for the job's end): a new
    session mid-reboot could not tell whether the reboot took effect.
    """

    def __init__(self, session: DeviceSession, *, poll: float = POLL, nudge_after: float = NUDGE_AFTER,
                 ssh_wait: float = SSH_WAIT) -> None:
        self.session = session
        self._poll = poll
        self._nudge_after = nudge_after
        self._ssh_wait = ssh_wait
        self._changed = asyncio.Event()
        # Whether the link went down since the last command sent over a live link (see the module's doc).
        self._dropped = True
        self._remove: Callable[[], None] | None = session.add_state_listener(self._on_state)

    @property
    def kind(self) -> str:
        """"ssh" | "serial" | "mqtt": the path in use now (the preferred one while none is up)."""
        target = self.session.active_target or self.session.target
        return "ssh" if target.is_ssh else "serial" if target.is_serial else "mqtt"

    def _on_state(self, state: ConnectionState) -> None:
        if state.state is not ConnState.UP:
            self._dropped = True
        self._changed.set()

    def _sending(self) -> None:
        if self.session.state.state is ConnState.UP:
            self._dropped = False

    async def run(self, command: str, timeout: float) -> Result:
        self._sending()
        return await self.session.run(command, timeout)

    async def put(self, local: Path, remote: str, progress: Callable[[Progress], None]) -> TransferResult:
        session = self.session
        if self.kind != "ssh" and (await asyncio.to_thread(local.stat)).st_size > SERIAL_LIMIT:
            session = await self._back_on_ssh(session)
        # Held for the whole upload: a move to another path closes this link only once the upload is done.
        with session.using() as transport:
            self._sending()
            inner = _unwrapped(transport)
            if isinstance(inner, SshTransport):  # SFTP: resumable and pipelined; a console tops out at 16 MiB
                return await inner.put(local, remote, progress)
            # A serial line takes only short typed lines; the MQTT agent takes long ones (see console_transfer).
            max_line = cmds.MAX_TYPED_LINE if self.kind == "serial" else cmds.LONG_LINE
            return await put_over_console(session.run, local, remote, progress, max_line=max_line)

    async def _back_on_ssh(self, session: DeviceSession) -> DeviceSession:
        """A large image goes only over SSH: on a fallback, have the session try SSH now and wait for it (bounded).

        Not ``reconnect()``: that would close a console the technician has open on the fallback. Raises a link
        error (the upload waits and tries again) while SSH is not back.
        """
        name = session.entry.name
        if not any(t.is_ssh for t in session.targets):
            raise TransportError(f"{name} has no SSH path: an image over {mib(SERIAL_LIMIT)} cannot go over "
                                 f"its {self.kind} link.", "Add an SSH path to the device, or use a smaller image.")
        session.try_preferred_now()
        deadline = time.monotonic() + self._ssh_wait
        while self.kind != "ssh" or self.session.state.state is not ConnState.UP:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransportError(f"{name} is on its {self.kind} link and SSH does not answer yet: the image "
                                     f"(over {mib(SERIAL_LIMIT)}) waits for SSH.", "The upload resumes over SSH.")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(self._poll * 4, left))
        return self.session

    async def reconnect(self, timeout: float) -> None:
        """Return once the session is UP and a command answers; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last_nudge = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(self._timeout_text(timeout))
            up = self.session.state.state is ConnState.UP
            if self._dropped and up and await self._answers(min(left, ANSWER_TIMEOUT)):
                return
            if self._should_nudge(last_nudge):
                last_nudge = time.monotonic()
                self.session.retry_now()  # not reconnect(): a path that needs a person stays untried
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(self._poll * 4, max(left, 0.001)))

    def _timeout_text(self, timeout: float) -> str:
        name = self.session.entry.name
        if not self._dropped:
            return f"{name} did not go away within {timeout:g} s: the reboot did not take effect."
        return f"{name} did not answer again within {timeout:g} s ({self.session.state.describe()})."

    async def _answers(self, timeout: float) -> bool:
        """The session may still believe in a link the reboot cut: only an answered command proves it."""
        try:
            return (await self.session.run("true", timeout)).ok
        except (SitelineError, OSError, TimeoutError):
            await asyncio.sleep(self._poll)  # the session notices the dead link meanwhile
            return False

    def _should_nudge(self, last_nudge: float) -> bool:
        state = self.session.state
        if state.state is not ConnState.RETRYING or time.monotonic() - last_nudge < self._nudge_after:
            return False
        wait = state.retry_in()
        return wait is not None and wait > self._nudge_after

    async def close(self) -> None:
        """Stop listening; the session itself stays up (the window owns it)."""
        if self._remove is not None:
            self._remove()
            self._remove = None


def _unwrapped(transport: Any) -> Any:
    """The transport under the wrappers the window puts around a session's (they expose it as ``inner``)."""
    for _ in range(8):  # wrappers nest a level or two; never loop on one that names itself
        inner = getattr(transport, "inner", None)
        if inner is None or inner is transport:
            break
        transport = inner
    return transport
