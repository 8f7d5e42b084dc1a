"""One open serial port: its reader thread, what it received (bytes and cleaned text), and waits on it.

pyserial's I/O is blocking, so one reader thread per port reads with a short timeout and hands
bytes to the event loop (``call_soon_threadsafe``); writes and open/close go through executor
threads. The event loop itself never touches the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import serial

from siteline.core.errors import TransportError
from siteline.core.transports.console import AnsiStripper, ConsoleState, classify
from siteline.core.transports.serial_options import lost_reason, open_error

T = TypeVar("T")
MAX_BUFFER = 16 * 1024 * 1024
PROMPT_SETTLE = 0.08  # silence after a prompt before it is answered
READ_CHUNK = 4096  # the reader hands the loop batches this big, not the few bytes a pty has at a time
QUIET = 0.4  # a console that says nothing more for this long has finished answering
PROMPTS = frozenset({ConsoleState.LOGIN, ConsoleState.PASSWORD, ConsoleState.SHELL, ConsoleState.BOOTLOADER,
                     ConsoleState.LOGIN_INCORRECT})


class ReceivedText:
    """What the console said since the last reset, as text: O(1) appends, searches only over new text.

    ``str +=`` on an attribute copies the whole buffer per chunk (quadratic on a chatty console), so
    chunks are kept in a list and joined only when the whole text is really needed.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self.total = 0  # characters appended since the last clear, including any trimmed away

    def append(self, text: str) -> None:
        if text:
            self._parts.append(text)
            self._size += len(text)
            self.total += len(text)
        if self._size > MAX_BUFFER + MAX_BUFFER // 4:  # trim in bulk, so trimming stays amortized O(1)
            kept = self.text()[-MAX_BUFFER:]
            self._parts, self._size = [kept], len(kept)

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def since(self, position: int) -> str:
        """The text after ``position`` (counted in :attr:`total`), walking back only over new parts."""
        wanted = min(self.total - position, self._size)
        if wanted <= 0:
            return ""
        tail: list[str] = []
        got = 0
        for part in reversed(self._parts):
            tail.append(part)
            got += len(part)
            if got >= wanted:
                break
        return "".join(reversed(tail))[-wanted:]

    def clear(self) -> None:
        self._parts, self._size, self.total = [], 0, 0


class SerialLink:
    """The port, its reader thread and the received buffer; the transport decides what it all means.

    ``on_text`` sees every piece of cleaned text (the reboot watch), ``on_lost`` hears that the port
    failed, and ``tap`` (the interactive shell) takes the raw bytes instead of the buffers.
    """

    def __init__(self, device: str, settings: dict[str, Any], log: logging.LoggerAdapter[logging.Logger]) -> None:
        self.device = device
        self.settings = settings
        self.log = log
        self.port: Any = None  # serial.Serial once open
        self._reader: threading.Thread | None = None
        # Each reader has its own stop Event, which is also its identity: callbacks from a reader
        # that is not the current one (a join that timed out) are ignored.
        self.stop = threading.Event()
        self.changed = asyncio.Event()
        self.raw = bytearray()
        self.raw_total = 0  # bytes received since the last reset, trimmed or not
        self.text = ReceivedText()
        self._stripper = AnsiStripper()
        self.lost_reason: str | None = None
        self.lost_hint = ""
        self.on_text: Callable[[str], None] | None = None
        self.on_lost: Callable[[str], None] | None = None
        self.tap: Callable[[bytes], None] | None = None

    @property
    def is_open(self) -> bool:
        return self.port is not None

    # -- the reader thread and what it hands the loop ------------------------------------------

    def _read_forever(self, port: Any, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The reader thread: batched blocking reads with a short timeout so close() is prompt."""
        while not stop.is_set():
            try:
                # Block for the first byte only, then take what is already waiting: a prompt is handed on
                # at once instead of after the read timeout (pyserial's read(n) waits for n bytes or it).
                data = port.read(1)
                waiting = port.in_waiting if data else 0
                if waiting:
                    data += port.read(min(waiting, READ_CHUNK))
            except (serial.SerialException, OSError, TypeError, ValueError) as exc:
                if not stop.is_set():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self.port_lost, str(exc), stop)
                return
            if data:
                with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is listening
                    loop.call_soon_threadsafe(self.received, bytes(data), stop)

    def received(self, data: bytes, reader: threading.Event | None = None) -> None:
        if reader is not None and (reader is not self.stop or reader.is_set()):
            return  # a reader from an earlier (or closed) connection: its bytes belong to nobody now
        self.raw_total += len(data)
        if self.tap is not None:  # the interactive shell owns the line: raw bytes straight to it
            self.tap(data)
            self.changed.set()
            return
        self.raw += data
        if len(self.raw) > MAX_BUFFER + MAX_BUFFER // 4:  # a runaway console must not eat the laptop's memory
            del self.raw[: len(self.raw) - MAX_BUFFER]
        text = self._stripper.feed_bytes(data)
        self.text.append(text)
        if self.on_text is not None:
            self.on_text(text)
        self.changed.set()

    def port_lost(self, error: str, reader: threading.Event | None = None) -> None:
        if reader is not None and reader is not self.stop:
            return  # an old reader failing on an old port says nothing about the current link
        self.fail(lost_reason(self.device, error))
        if self.on_lost is not None:
            self.on_lost(self.lost_reason or error)

    def fail(self, reason: str, hint: str = "") -> None:
        """From now on every wait raises ``reason``: the console we talked to is gone."""
        self.lost_reason, self.lost_hint = reason, hint
        self.changed.set()

    def reset(self) -> None:
        self.raw.clear()
        self.raw_total = 0
        self.text.clear()

    # -- opening, writing, closing ---------------------------------------------------------------

    async def open(self, path: str | None = None) -> None:
        """Open ``path`` (default: the device) with the settings and start the reader thread."""
        loop = asyncio.get_running_loop()
        self.lost_reason, self.lost_hint = None, ""
        # A fresh Event, never a cleared one: a reader whose join timed out must still see its own stop.
        stop = self.stop = threading.Event()
        where = path or self.device

        def open_port() -> Any:
            # The short timeout only bounds how long close() waits for the reader thread. An
            # inter_byte_timeout makes pyserial set VMIN=1: with VMIN=0 a read that loses a race with a
            # flush returns nothing, which pyserial reports as a vanished device.
            return serial.Serial(where, timeout=0.05, inter_byte_timeout=0.01, write_timeout=10,
                                 exclusive=True, **self.settings)

        try:
            self.port = await loop.run_in_executor(None, open_port)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise open_error(exc, self.device) from exc
        self._reader = threading.Thread(target=self._read_forever, args=(self.port, loop, stop),
                                        name=f"serial reader {self.device}", daemon=True)
        self._reader.start()

    async def write(self, data: bytes) -> None:
        if self.port is None:
            raise TransportError(f"The serial port {self.device} is closed.")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.port.write, data)
        except (serial.SerialException, OSError) as exc:
            self.port_lost(str(exc))
            raise TransportError(f"Writing to {self.device} failed: {exc}.", "Check the cable.") from exc

    async def set_rate(self, rate: int) -> None:
        """Switch the open port to ``rate`` and drop what was received at the old one."""
        port = self.port
        if port is None:
            raise TransportError(f"The serial port {self.device} is closed.")

        def switch() -> None:
            port.baudrate = rate
            port.reset_input_buffer()  # noise received at the previous rate says nothing about this one

        try:
            await asyncio.to_thread(switch)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"Cannot set {self.device} to {rate} baud: {exc}.") from exc

    async def shutdown(self) -> None:
        port, self.port = self.port, None
        reader, self._reader = self._reader, None
        self.stop.set()
        self.tap = None
        if reader is not None:
            await asyncio.to_thread(reader.join, 2.0)
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)
        self.reset()
        self._stripper = AnsiStripper()

    # -- waiting on what arrives -----------------------------------------------------------------

    async def wait_for(self, check: Callable[[], T | None], timeout: float) -> T | None:
        """Re-run ``check`` on every new chunk until it gives a value, the port is lost, or time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            if self.lost_reason:
                raise TransportError(self.lost_reason, self.lost_hint)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def grew_past(self, size: int) -> Callable[[], bool | None]:
        return lambda: True if self.raw_total != size else None

    async def settle(self, timeout: float, quiet_ends: bool = True) -> bytes:
        """Collect what the console says until it shows a prompt, goes quiet, or ``timeout`` passes.

        During a login the console may pause (getty's delay after a wrong password): there only a
        prompt or the timeout ends the wait (``quiet_ends=False``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            seen = self.raw_total
            if seen and classify(bytes(self.raw)) in PROMPTS:
                # Answer only a prompt that stays the last word: a wake-up can be answered by a second
                # prompt right after the first, and typing into the first loses the answer.
                if not await self.wait_for(self.grew_past(seen), min(PROMPT_SETTLE, deadline - loop.time())):
                    break
                continue
            await self.wait_for(self.grew_past(seen), min(QUIET, deadline - loop.time()))
            if quiet_ends and seen and self.raw_total == seen:
                break  # quiet for QUIET seconds after saying something
        return bytes(self.raw)

    async def send_and_read(self, data: bytes, timeout: float, quiet_ends: bool = True) -> ConsoleState:
        self.reset()
        await self.write(data)
        return classify(await self.settle(timeout, quiet_ends))
