"""The electrical side of the simulated serial console: a pty read and written at a baud rate.

The client (pyserial, screen, minicom ...) opens the pty's slave and sets its speed with termios;
on Linux ``tcgetattr`` on the master returns the slave's settings, so the device sees the rate the
client chose. Output is paced at that rate (10 bits a byte: start, 8 data, stop) and, as on real
hardware, a rate that differs from the device's own turns every byte into noise both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# termios speed constants (B9600 ...) back to bits per second.
_SPEEDS = {getattr(termios, n): int(n[1:]) for n in dir(termios) if n.startswith("B") and n[1:].isdigit()}
BAUD_CONSTANTS = {bps: const for const, bps in _SPEEDS.items()}
TICK = 0.01  # pace in slices of about 10 ms
MAX_BACKLOG = 1024 * 1024  # output waiting to be sent; past this it is dropped, as a UART FIFO overflows
# A program writing to a real tty blocks when the line is slower than it: the source is paused above
# HIGH_WATER and resumed below LOW_WATER, so only sources without flow control (the kernel) can overflow.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
GIVE_UP_AFTER = 1.0  # seconds the client's buffer may stay full before output is dropped (no reader)


class SerialLinkError(FileExistsError, ValueError):
    """The link path is taken by something that is not ours (a ValueError too: a bad argument)."""


class SerialLine:
    """A pty whose slave is linked at ``link``; ``write`` queues device output, ``on_input`` gets keystrokes."""

    def __init__(self, link: Path, device_baud: int, on_input: Callable[[bytes], None], seed: int = 0) -> None:
        self.link = Path(link)
        self.device_baud = device_baud
        self._on_input = on_input
        self._noise = random.Random(seed)
        self._master = -1
        self._slave = -1
        self._out = bytearray()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pause: Callable[[], None] | None = None
        self._resume: Callable[[], None] | None = None
        self._paused = False

    def set_flow(self, pause: Callable[[], None] | None, resume: Callable[[], None] | None) -> None:
        """Who to pause when the backlog is high (the shell's pty reader); None when that source ends."""
        if self._paused and self._resume is not None:
            self._resume()
        self._pause, self._resume, self._paused = pause, resume, False

    @property
    def slave_path(self) -> str:
        return os.ttyname(self._slave)

    def open(self) -> None:
        # Checked before anything is made: --serial-link names our symlink, never a user's file or a real tty.
        if self.link.exists() and not self.link.is_symlink():
            raise SerialLinkError(f"--serial-link {self.link}: something that is not a symlink is already there "
                                  "(a file or a real serial port); choose a new path, the simulator only "
                                  "replaces its own links")
        self._master, self._slave = os.openpty()
        # Raw like a UART, at the device's rate until a client sets its own; we keep the slave open so
        # the line never hangs up when a client closes it (a real UART does not vanish either).
        tty.setraw(self._slave)
        attrs = termios.tcgetattr(self._slave)
        speed = BAUD_CONSTANTS.get(self.device_baud, termios.B115200)
        attrs[4] = attrs[5] = speed
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self._master, False)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if self.link.is_symlink():
            self.link.unlink()  # a link left by an earlier run (or a dangling one): ours to replace
        self.link.symlink_to(self.slave_path)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._readable)
        self._writer = self._loop.create_task(self._pace_out(), name=f"serial out {self.link.name}")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._master >= 0 and self._loop is not None:
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        with contextlib.suppress(OSError):
            if self.link.is_symlink():
                self.link.unlink()

    def client_baud(self) -> int:
        """The rate the client last set on its end of the line (re-read every time: it can change)."""
        try:
            return _SPEEDS.get(termios.tcgetattr(self._master)[5], 0)
        except (termios.error, OSError):
            return 0

    def matched(self) -> bool:
        return self.client_baud() == self.device_baud

    def garble(self, data: bytes) -> bytes:
        """What bytes sent at the wrong rate look like: the same length of high-bit noise."""
        return bytes(0x80 | self._noise.getrandbits(7) for _ in data)

    def write(self, data: bytes) -> None:
        if not data:
            return
        if len(self._out) + len(data) > MAX_BACKLOG:
            data = data[: max(0, MAX_BACKLOG - len(self._out))]
        self._out += data
        self._wake.set()
        if not self._paused and self._pause is not None and len(self._out) > HIGH_WATER:
            self._paused = True
            self._pause()

    async def drain(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self._out and time.monotonic() < deadline:  # noqa: ASYNC110 - the pacer empties it tick by tick
            await asyncio.sleep(TICK)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            self._on_input(data if self.matched() else self.garble(data))

    async def _pace_out(self) -> None:
        next_at = time.monotonic()
        blocked_since: float | None = None
        while True:
            if not self._out:
                self._wake.clear()
                await self._wake.wait()
                next_at = max(next_at, time.monotonic())
            baud = self.client_baud() or self.device_baud
            size = max(1, int(baud / 10 * TICK))
            piece = bytes(self._out[:size])
            del self._out[:size]
            if self._paused and len(self._out) < LOW_WATER and self._resume is not None:
                self._paused = False
                self._resume()
            taken = self._send(piece if baud == self.device_baud else self.garble(piece))
            if taken < len(piece):
                # The client reads slower than the line (its buffer is full): hold the rest back, as
                # RTS/CTS would, unless nobody has read for a while (no client: the bytes are lost).
                now = time.monotonic()
                blocked_since = blocked_since or now
                if now - blocked_since < GIVE_UP_AFTER:
                    self._out[:0] = piece[taken:]
                piece = piece[:taken]
            else:
                blocked_since = None
            next_at += max(len(piece), 1) * 10 / baud
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                next_at = time.monotonic()  # we fell behind (a busy loop): do not burst to catch up

    def _send(self, piece: bytes) -> int:
        """Write to the line; returns how many bytes the kernel took (all of them when the line is gone)."""
        try:
            return os.write(self._master, piece)
        except BlockingIOError:
            return 0
        except OSError:
            return len(piece)
