"""A real process on its own pseudo-terminal, read and written from asyncio.

Both the SSH server's interactive shell and the serial console's logged-in shell need the same
thing a real getty or sshd gives: a new session whose controlling terminal is a fresh pty, so
job control, echo and line editing come from the kernel's line discipline, not from us.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)
READ_SIZE = 65536


def _become_tty_leader() -> None:
    # Runs in the child between fork and exec: stdin is the pty slave; make it the controlling tty
    # of the new session (start_new_session already called setsid()).
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_winsize(fd: int, cols: int, rows: int, xpixel: int = 0, ypixel: int = 0) -> None:
    if cols > 0 and rows > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, xpixel, ypixel))


def kill_group(pgid: int, *, hangup: bool = False) -> None:
    """Signal a command's whole process group (its pipeline and children), SIGKILL unless ``hangup``.

    The one process-group killer of the simulator. Callers only call it while the group's leader
    has not been reaped, so the id cannot have been reused by an unrelated process group.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGHUP if hangup else signal.SIGKILL)


class PtyProcess:
    """``argv`` running on a new pty; output goes to ``on_output``; ``write`` feeds its keyboard."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None,
                 on_output: Callable[[bytes], None]) -> None:
        self._argv = list(argv)
        self._env = dict(env)
        self._cwd = cwd
        self._on_output = on_output
        self._master = -1
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, cols: int = 80, rows: int = 24) -> None:
        master, slave = os.openpty()
        try:
            set_winsize(slave, cols, rows)
            self._proc = subprocess.Popen(
                self._argv, stdin=slave, stdout=slave, stderr=slave, env=self._env, cwd=self._cwd,
                start_new_session=True, preexec_fn=_become_tty_leader, close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._readable)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _readable(self) -> None:
        try:
            data = os.read(self._master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave descriptor closed, the program has gone
            data = b""
        if data:
            self._on_output(data)
            return
        self._finish_reading()

    def pause_reading(self) -> None:
        """Stop reading the program's output: its writes then block on the full pty, as on a slow tty."""
        if self._loop is not None and self._master >= 0 and not self._closed.is_set():
            self._loop.remove_reader(self._master)

    def resume_reading(self) -> None:
        if self._loop is not None and self._master >= 0 and not self._closed.is_set():
            self._loop.add_reader(self._master, self._readable)

    def _finish_reading(self) -> None:
        if self._loop is not None and self._master >= 0:
            self._loop.remove_reader(self._master)
        self._closed.set()

    def write(self, data: bytes) -> None:
        """Type ``data``; bytes the pty cannot take right now are dropped, as a full UART would."""
        if self._master < 0 or self._closed.is_set():
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)

    def resize(self, cols: int, rows: int, xpixel: int = 0, ypixel: int = 0) -> None:
        if self._master >= 0:
            with contextlib.suppress(OSError):
                set_winsize(self._master, cols, rows, xpixel, ypixel)
            if self._proc is not None:
                with contextlib.suppress(OSError):
                    os.killpg(self._proc.pid, signal.SIGWINCH)

    async def wait(self) -> int:
        """Wait until the program has exited and its output is read; returns its exit status."""
        await self._closed.wait()
        proc = self._proc
        if proc is None:
            return 255
        while proc.poll() is None:  # noqa: ASYNC110 - the pty closed first; the exit status follows at once
            await asyncio.sleep(0.02)
        return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode

    async def close(self) -> None:
        """Hang up: SIGHUP the session, then SIGKILL what is left, and release the pty."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            for hangup, grace in ((True, 0.5), (False, 2.0)):
                kill_group(proc.pid, hangup=hangup)
                for _ in range(int(grace / 0.02)):
                    if proc.poll() is not None:
                        break
                    await asyncio.sleep(0.02)
                if proc.poll() is not None:
                    break
        if self._master >= 0:
            if not self._closed.is_set():
                self._finish_reading()
            os.close(self._master)
            self._master = -1
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
