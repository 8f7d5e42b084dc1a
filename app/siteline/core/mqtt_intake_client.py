"""The UI side of the MQTT intake: starts the child process and talks to it without ever blocking the loop.

Replies are read with the loop's ``add_reader`` on the child's stdout and requests written without
blocking (what does not fit in the pipe waits for ``add_writer``), so the UI process does no
CPU-bound work for a flood: it decodes one small snapshot per tick. One poll is out at a time; a tick
that finds the previous one unanswered simply skips (a busy child is never flooded with polls).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from siteline.core.errors import SitelineError, TransportError
from siteline.core.mqtt_intake import (
    FrameDecoder,
    ProtocolError,
    Published,
    Query,
    Snapshot,
    StateReport,
    encode_frame,
    parse_reply,
)
from siteline.core.mqtt_subscriber import check_filter
from siteline.core.mqtt_topics import topic_problem
from siteline.core.transports.base import ConnState, Credentials, StatefulLink

log = logging.getLogger(__name__)
CHILD = [sys.executable, "-m", "siteline.core.mqtt_intake_child"]
EXIT_WAIT = 3.0  # seconds a closing child gets before it is killed


POLL_ANSWER_LIMIT = 10.0  # seconds a snapshot may take before the intake counts as stuck


class IntakeClient(StatefulLink):
    """Subscribe ``filters`` at the broker ``url`` through a child process; see the module docstring."""

    def __init__(self, url: str, filters: Sequence[str], *, credentials: Credentials | None = None, qos: int = 0,
                 connect_timeout: float = 20.0, command: Sequence[str] | None = None) -> None:
        super().__init__()
        self.url = url.strip()
        self.filters = [check_filter(f) for f in filters] or ["#"]
        self.qos = qos
        self.connect_timeout = connect_timeout
        self.on_snapshot: Callable[[Snapshot], None] | None = None
        self.on_published: Callable[[Published], None] | None = None
        self.last: Snapshot | None = None
        self.waiting = False  # a poll is out and not answered yet
        self._credentials = credentials or Credentials()
        self._command = list(command or CHILD)
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._decoder = FrameDecoder()
        self._out = bytearray()
        self._writing = False
        self._opened: asyncio.Future[None] | None = None
        self._ident = 0
        self._closing = False
        self._asked_at = 0.0

    # ---- lifetime ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the child and connect; raises the child's TransportError/AuthError/TargetError as is."""
        self._loop = loop = asyncio.get_running_loop()
        self._closing = False
        self._state.set(ConnState.CONNECTING, self.url)
        self._proc = proc = self._spawn()
        assert proc.stdout is not None
        assert proc.stdin is not None
        os.set_blocking(proc.stdout.fileno(), False)
        os.set_blocking(proc.stdin.fileno(), False)
        loop.add_reader(proc.stdout.fileno(), self._on_readable)
        self._opened = loop.create_future()
        creds = self._credentials
        self._send({"t": "open", "url": self.url, "filters": self.filters, "qos": self.qos,
                    "username": creds.username, "password": creds.password})
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), self.connect_timeout)
        except TimeoutError:
            await self._reap()
            err = TransportError(f"No answer from the broker {self.url} within {self.connect_timeout:g} s.",
                                 "Check the address and that the broker is up.")
            self._state.set(ConnState.DOWN, err.message)
            raise err from None
        except SitelineError as exc:
            await self._reap()
            self._state.set(ConnState.DOWN, exc.message)
            raise
        except asyncio.CancelledError:  # no awaiting here: end the child at once (killed, it is gone in ms)
            proc, self._proc = self._proc, None
            if proc is not None:
                self._detach(proc)
                proc.kill()
                proc.wait(5)
                _close_pipes(proc)
            self._state.set(ConnState.DOWN, "connecting was cancelled")
            raise

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [*self._command, "--parent", str(os.getpid())]
        # Linux ties the parent-death signal to the thread that forked: only from the main thread.
        if threading.current_thread() is threading.main_thread():
            args.append("--pdeathsig")
        try:
            return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        except OSError as exc:
            raise TransportError(f"Cannot start the MQTT intake process: {exc}.", "Reinstall Siteline.") from exc

    async def close(self) -> None:
        """Ask the child to disconnect and end; kill it if it does not within EXIT_WAIT seconds."""
        self._closing = True
        if self._proc is not None and self._proc.poll() is None:
            self._send({"t": "close"})
        opened = self._opened
        if opened is not None and not opened.done():  # a connect() still waiting ends now, not at its timeout
            opened.set_exception(TransportError(f"Closed before the broker {self.url} answered.", "Connect again."))
        await self._reap()
        self._state.set(ConnState.DOWN, "disconnected")

    async def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._detach(proc)
        deadline = time.monotonic() + EXIT_WAIT
        # No child watcher under qasync: poll the exit.
        while proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        _close_pipes(proc)

    def _detach(self, proc: subprocess.Popen[bytes]) -> None:
        if self._loop is None:
            return
        if proc.stdout is not None and not proc.stdout.closed:
            self._loop.remove_reader(proc.stdout.fileno())
        if self._writing and proc.stdin is not None and not proc.stdin.closed:
            self._loop.remove_writer(proc.stdin.fileno())
        self._writing = False
        self._out.clear()
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # EOF: the child stops even if the close frame was lost

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # ---- requests ------------------------------------------------------------------------------

    def poll(self, query: Query) -> bool:
        """Ask for a snapshot; False (nothing sent) while the previous poll is unanswered or when not up."""
        if self.waiting and time.monotonic() - self._asked_at > POLL_ANSWER_LIMIT:
            # Alive but silent (wedged, or it dropped a reply): stale numbers must not pass for live ones.
            self._fail(TransportError("The MQTT intake process stopped answering.", "Disconnect and connect again."))
            return False
        if self.waiting or self._proc is None or self._opened is None or not self._opened.done():
            return False
        self._ident += 1
        self.waiting, self._asked_at = True, time.monotonic()
        self._send(query.to_wire(self._ident))
        return True

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> int:
        """Send a message through the child; its outcome comes back as ``on_published``. Returns its id."""
        if self.state.state is not ConnState.UP or self._proc is None:
            raise TransportError(f"Not connected to the broker {self.url}.", "Connect first.")
        problem = topic_problem(topic)
        if problem is not None:
            raise TransportError(f"Cannot publish to '{topic[:60]}': {problem}.",
                                 "A topic to publish to has no '+' or '#' and is not empty.")
        if qos not in (0, 1, 2):
            raise TransportError(f"QoS {qos} does not exist.", "Use 0, 1 or 2.")
        self._ident += 1
        self._send({"t": "publish", "id": self._ident, "topic": topic, "qos": qos, "retain": retain,
                    "payload": base64.b64encode(payload).decode("ascii")})
        return self._ident

    def _send(self, message: dict[str, Any]) -> None:
        self._out += encode_frame(message)
        self._flush()

    def _flush(self) -> None:
        proc, loop = self._proc, self._loop
        if proc is None or proc.stdin is None or proc.stdin.closed or loop is None:
            self._out.clear()
            return
        fd = proc.stdin.fileno()
        try:
            while self._out:
                del self._out[:os.write(fd, self._out)]
        except BlockingIOError:
            pass
        except OSError:  # the child is gone: its EOF on stdout reports it
            self._out.clear()
        if self._out and not self._writing:
            loop.add_writer(fd, self._flush)
            self._writing = True
        elif not self._out and self._writing:
            loop.remove_writer(fd)
            self._writing = False

    # ---- replies -------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        try:
            data = os.read(proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._ended(proc)
            return
        try:
            replies = [parse_reply(obj) for obj in self._decoder.feed(data)]
        except ProtocolError as exc:
            self._fail(TransportError(f"The MQTT intake process sent a malformed reply ({exc}).",
                                      "Reconnect; if it happens again, report it as a bug."))
            return
        for reply in replies:
            try:
                self._dispatch(reply)
            except Exception:  # a bug in a listener must not stop the replies
                log.exception("handling an MQTT intake reply failed")

    def _dispatch(self, reply: Snapshot | StateReport | Published) -> None:
        if isinstance(reply, Snapshot):
            self.waiting = False
            self.last = reply
            if self.on_snapshot is not None:
                self.on_snapshot(reply)
        elif isinstance(reply, StateReport):
            opened = self._opened
            if opened is not None and not opened.done():
                if reply.error is not None:
                    opened.set_exception(reply.error)
                    return
                opened.set_result(None)
            self._state.set(reply.state, reply.reason)
        elif self.on_published is not None:
            self.on_published(reply)

    def _ended(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.poll()
        self._fail(TransportError(f"The MQTT intake process ended{'' if code is None else f' (exit code {code})'}.",
                                  "Reconnect; its errors are in the log."))

    def _fail(self, err: TransportError) -> None:
        """The child cannot be trusted or is gone: stop reading it, end it, and say so."""
        proc = self._proc
        if proc is not None:
            self._detach(proc)
            if proc.poll() is None:
                proc.kill()
        self.waiting = False
        opened = self._opened
        if opened is not None and not opened.done():
            opened.set_exception(err)
        elif not self._closing:
            log.error("%s", err)
            self._state.set(ConnState.DOWN, str(err))


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
