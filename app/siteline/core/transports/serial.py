"""Serial console transport over pyserial: wake the console, log in, run framed commands.

pyserial's I/O is blocking, so one reader thread per port reads with a short timeout and hands
bytes to the event loop (``call_soon_threadsafe``); writes and open/close go through the
default executor. The event loop itself never touches the port. What the console says is
interpreted by the pure functions in :mod:`siteline.core.transports.console`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import serial
import serial.tools.list_ports

from siteline.core.errors import AuthError, CommandTimeout, TransportError
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Result, StatefulLink
from siteline.core.transports.console import (
    AUTOBAUD_RATES,
    AnsiStripper,
    CommandFrame,
    ConsoleState,
    RebootWatch,
    classify,
    clean,
    last_line,
    normalize_lines,
    printable_share,
    reads_as_text,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Received:
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

COMMON_BAUDS = "9600, 57600 or 115200"
MAX_LINE = 3500  # a canonical-mode tty line holds 4095 bytes; stay clear of it with the framing around
MAX_BUFFER = 16 * 1024 * 1024
READ_CHUNK = 4096  # the reader hands the loop batches this big, not the few bytes a pty has at a time
AUTOBAUD_WINDOW = 0.6  # at most this long listening at each candidate rate
AUTOBAUD_QUIET = 0.15  # an answer followed by this much silence is complete enough to judge
AUTOBAUD_BUDGET = 8.0  # all rates together
REBOOTED = "the device rebooted during the command"
QUIET = 0.4  # a console that says nothing more for this long has finished answering
PARITIES = {"n": serial.PARITY_NONE, "e": serial.PARITY_EVEN, "o": serial.PARITY_ODD,
            "m": serial.PARITY_MARK, "s": serial.PARITY_SPACE}
STOPBITS = {"1": serial.STOPBITS_ONE, "1.5": serial.STOPBITS_ONE_POINT_FIVE, "2": serial.STOPBITS_TWO}
FLOWS = ("none", "rtscts", "xonxoff", "dsrdtr")


def port_settings(target: Target) -> dict[str, Any]:
    """pyserial keyword arguments from the target's options (default 115200 8N1, no flow control)."""
    opts = target.options
    parity = opts.get("parity", "n")[:1].lower()
    stopbits, flow = opts.get("stopbits", "1"), opts.get("flow", "none").lower()
    bytesize = opts.get("bytesize", "8")
    if parity not in PARITIES or stopbits not in STOPBITS or flow not in FLOWS or bytesize not in "5678":
        raise TransportError(
            f"The serial options in {target} are not valid.",
            f"parity: none/even/odd/mark/space, bytesize: 5-8, stopbits: 1/1.5/2, flow: {'/'.join(FLOWS)}.",
        )
    return {
        "baudrate": target.baud, "parity": PARITIES[parity], "stopbits": STOPBITS[stopbits],
        "bytesize": int(bytesize), "rtscts": flow == "rtscts", "xonxoff": flow == "xonxoff",
        "dsrdtr": flow == "dsrdtr",
    }


def ports_seen() -> str:
    names = sorted(p.device for p in serial.tools.list_ports.comports())
    return ", ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else "none"


def open_error(exc: BaseException, port: str) -> TransportError:
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return TransportError(f"The serial port {port} does not exist.",
                              f"Is the cable plugged in? Ports seen: {ports_seen()}.")
    if code in (errno.EACCES, errno.EPERM):
        return TransportError(f"Permission denied on {port}.",
                              "Add your user to the 'dialout' group (sudo usermod -aG dialout $USER), "
                              "then log out and back in.")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return TransportError(f"The serial port {port} is busy: another program holds it.",
                              "Close the other terminal (screen, minicom, picocom, another Siteline) and retry.")
    return TransportError(f"Cannot open the serial port {port}: {text}.", "Check the cable and the port name.")


class SerialTransport(StatefulLink):
    """A link to one device's serial console."""

    def __init__(
        self,
        target: Target,
        credentials: Credentials,
        *,
        wake_timeout: float = 3.0,
        login_timeout: float = 10.0,
    ) -> None:
        if not target.is_serial:
            raise TransportError(f"{target} is not a serial:// target.")
        self.target = target
        self.credentials = credentials
        self.wake_timeout = wake_timeout
        self.login_timeout = login_timeout
        self._settings = port_settings(target)
        # From the target's baud=auto; code may also set it before connect(). (Not a constructor keyword:
        # the factory passes **dict[str, float] timeouts, which mypy would match against a bool.)
        self.autobaud = target.autobaud
        self.detected_baud: int | None = None  # the rate autobaud found, kept for reconnects
        super().__init__()
        self._lock = asyncio.Lock()
        self._port: Any = None  # serial.Serial once open
        self._reader: threading.Thread | None = None
        # Each reader has its own stop Event, which is also its identity: callbacks from a reader
        # that is not the current one (a join that timed out) are ignored.
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._raw = bytearray()
        self._raw_total = 0  # bytes received since the last reset, trimmed or not
        self._text = _Received()
        self._stripper = AnsiStripper()
        self._lost_reason: str | None = None
        self._lost_hint = ""
        self._reboots = RebootWatch()
        self._watch_reboots = False  # off while we log in or out: the login prompts then are ours
        self._logged_in_by_us = False
        self.log = logging.LoggerAdapter(log, {"target": str(target)})

    # -- port I/O ----------------------------------------------------------------------------

    def _read_forever(self, port: Any, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The reader thread: batched blocking reads with a short timeout so close() is prompt."""
        while not stop.is_set():
            try:
                data = port.read(max(READ_CHUNK, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, ValueError) as exc:
                if not stop.is_set():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(self._port_lost, str(exc), stop)
                return
            if data:
                with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is listening
                    loop.call_soon_threadsafe(self._received, bytes(data), stop)

    def _received(self, data: bytes, reader: threading.Event | None = None) -> None:
        if reader is not None and (reader is not self._stop or reader.is_set()):
            return  # a reader from an earlier (or closed) connection: its bytes belong to nobody now
        self._raw += data
        self._raw_total += len(data)
        if len(self._raw) > MAX_BUFFER + MAX_BUFFER // 4:  # a runaway console must not eat the laptop's memory
            del self._raw[: len(self._raw) - MAX_BUFFER]
        text = self._stripper.feed_bytes(data)
        self._text.append(text)
        if self._watch_reboots and self._reboots.feed(text, idle=not self._lock.locked()):
            self._device_rebooted()
        self._changed.set()

    def _device_rebooted(self) -> None:
        """Boot lines or a fresh login prompt: our shell is gone; fail what runs, go DOWN to log in again."""
        self.log.warning("the device on %s rebooted", self.target.device)
        self._watch_reboots = False
        self._lost_reason = REBOOTED
        self._lost_hint = "Run it again once the device is back; Siteline logs in again by itself."
        self._logged_in_by_us = False  # nothing to log out of: typing 'exit' now would answer the login prompt
        self._state.set(ConnState.DOWN, "device rebooted")

    def _port_lost(self, reason: str, reader: threading.Event | None = None) -> None:
        if reader is not None and reader is not self._stop:
            return  # an old reader failing on an old port says nothing about the current link
        self._lost_reason = f"the serial port {self.target.device} went away ({reason}); is the cable unplugged?"
        self._lost_hint = ""
        self._changed.set()
        if self._state.state.state is ConnState.UP:
            self._state.set(ConnState.DOWN, self._lost_reason)

    def _reset_buffer(self) -> None:
        self._raw.clear()
        self._raw_total = 0
        self._text.clear()

    async def _write(self, data: bytes) -> None:
        if self._port is None:
            raise TransportError(f"The serial port {self.target.device} is closed.")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._port.write, data)
        except (serial.SerialException, OSError) as exc:
            self._port_lost(str(exc))
            raise TransportError(f"Writing to {self.target.device} failed: {exc}.", "Check the cable.") from exc

    async def _wait_for(self, check: Callable[[], T | None], timeout: float) -> T | None:
        """Re-run ``check`` on every new chunk until it gives a value, the port is lost, or time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            if self._lost_reason:
                raise TransportError(self._lost_reason, self._lost_hint)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _grew_past(self, size: int) -> Callable[[], bool | None]:
        return lambda: True if self._raw_total != size else None

    async def _settle(self, timeout: float, quiet_ends: bool = True) -> bytes:
        """Collect what the console says until it shows a prompt, goes quiet, or ``timeout`` passes.

        During a login the console may pause (getty's delay after a wrong password): there only a
        prompt or the timeout ends the wait (``quiet_ends=False``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        prompts = {ConsoleState.LOGIN, ConsoleState.PASSWORD, ConsoleState.SHELL, ConsoleState.BOOTLOADER,
                   ConsoleState.LOGIN_INCORRECT}
        while loop.time() < deadline:
            seen = self._raw_total
            if seen and classify(bytes(self._raw)) in prompts:
                break
            await self._wait_for(self._grew_past(seen), min(QUIET, deadline - loop.time()))
            if quiet_ends and seen and self._raw_total == seen:
                break  # quiet for QUIET seconds after saying something
        return bytes(self._raw)

    # -- connecting --------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.close()
        self._state.set(ConnState.CONNECTING)
        try:
            await self._open()
            if self.autobaud:
                await self._detect_baud()
            await self._login()
        except BaseException as exc:
            await self._shutdown()
            self._state.set(ConnState.DOWN, str(exc))
            raise
        self.log.info("logged in on %s", self.target.device)
        self._reboots, self._watch_reboots = RebootWatch(), True
        baud = self._settings["baudrate"]
        self._state.set(ConnState.UP, f"{baud} baud (detected)" if self.autobaud else "")

    async def _open(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._lost_reason, self._lost_hint = None, ""
        # A fresh Event, never a cleared one: a reader whose join timed out must still see its own stop.
        stop = self._stop = threading.Event()

        def open_port() -> Any:
            # inter_byte_timeout ends a read soon after the line goes quiet, so reads come in batches
            # without delaying a prompt that is followed by silence.
            return serial.Serial(self.target.device, timeout=0.05, inter_byte_timeout=0.01, write_timeout=10,
                                 exclusive=True, **self._settings)

        try:
            self._port = await loop.run_in_executor(None, open_port)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise open_error(exc, self.target.device) from exc
        self._reader = threading.Thread(target=self._read_forever, args=(self._port, loop, stop),
                                         name=f"serial reader {self.target.device}", daemon=True)
        self._reader.start()

    async def _send_and_read(self, data: bytes, timeout: float, quiet_ends: bool = True) -> ConsoleState:
        self._reset_buffer()
        await self._write(data)
        return classify(await self._settle(timeout, quiet_ends))

    async def _detect_baud(self) -> None:
        """Wake the console at each common rate (the last one found first) and keep the first that reads as text."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AUTOBAUD_BUDGET
        rates = [r for r in (self.detected_baud,) if r] + [r for r in AUTOBAUD_RATES if r != self.detected_baud]
        tried: list[int] = []
        for rate in rates:
            if loop.time() >= deadline:
                break
            tried.append(rate)
            if reads_as_text(await self._probe(rate, min(AUTOBAUD_WINDOW, deadline - loop.time()))):
                self.detected_baud = self._settings["baudrate"] = rate
                self.log.info("autobaud: %s answers at %d baud", self.target.device, rate)
                return
        raise TransportError(
            f"No readable response on {self.target.device} at any common baud rate "
            f"(tried {', '.join(map(str, tried))}).",
            "Check the cable, the port and whether the device is powered.")

    async def _probe(self, rate: int, window: float) -> bytes:
        """Switch the port to ``rate``, send a carriage return and return what comes back within ``window``."""
        port = self._port
        if port is None:
            raise TransportError(f"The serial port {self.target.device} is closed.")

        def switch() -> None:
            port.baudrate = rate
            port.reset_input_buffer()  # noise received at the previous rate says nothing about this one

        try:
            await asyncio.to_thread(switch)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"Cannot set {self.target.device} to {rate} baud: {exc}.") from exc
        await asyncio.sleep(0.02)  # let the reader hand over what it read before the switch, then drop it
        self._reset_buffer()
        await self._write(b"\r")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while loop.time() < deadline:
            seen = self._raw_total
            if seen and reads_as_text(bytes(self._raw)):
                break
            await self._wait_for(self._grew_past(seen), min(AUTOBAUD_QUIET, deadline - loop.time()))
            if seen and self._raw_total == seen:
                break  # answered, then quiet: judge what we have
        return bytes(self._raw)

    async def _login(self) -> None:
        state = ConsoleState.SILENCE
        for _attempt in range(3):  # a console in the middle of printing may need a second wake-up
            state = await self._send_and_read(b"\r", self.wake_timeout)
            if state not in (ConsoleState.SILENCE, ConsoleState.UNKNOWN):
                break
        self.log.info("console on %s shows a %s", self.target.device, state.value)
        if state is ConsoleState.PASSWORD:  # someone typed a user name before us: start over
            state = await self._send_and_read(b"\r", self.login_timeout, quiet_ends=False)
        if state in (ConsoleState.LOGIN, ConsoleState.LOGIN_INCORRECT):
            state = await self._answer_login()
            self._logged_in_by_us = True
        if state is not ConsoleState.SHELL:
            raise self._not_a_shell(state)

    async def _answer_login(self) -> ConsoleState:
        user, password = self.credentials.username, self.credentials.password
        if not user:
            raise AuthError(f"The console on {self.target.device} asks for a login.",
                            "Give a user name (and password) for this device.")
        state = await self._send_and_read(user.encode() + b"\r", self.login_timeout, quiet_ends=False)
        if state is ConsoleState.PASSWORD:
            state = await self._send_and_read((password or "").encode() + b"\r", self.login_timeout, quiet_ends=False)
        if state in (ConsoleState.LOGIN_INCORRECT, ConsoleState.LOGIN, ConsoleState.PASSWORD):
            raise AuthError(f"The device on {self.target.device} answered 'Login incorrect' for user '{user}'.",
                            "Check the user name and password.")
        return state

    def _not_a_shell(self, state: ConsoleState) -> TransportError:
        where, baud = self.target.device, self._settings["baudrate"]
        # A wrong rate may answer a wake-up with only a garbled echo byte or two: too few for classify().
        if state is ConsoleState.GARBAGE or (state is ConsoleState.UNKNOWN and printable_share(bytes(self._raw)) < 0.5):
            return TransportError(f"No readable response on {where} at {baud} baud.",
                                  f"Try {COMMON_BAUDS}, or baud=auto to let Siteline find the rate.")
        if state is ConsoleState.SILENCE:
            return TransportError(f"No answer on {where} at {baud} baud.",
                                  f"Is the device powered, and are TX/RX the right way round? Try {COMMON_BAUDS}.")
        if state is ConsoleState.BOOTLOADER:
            return TransportError(f"The device on {where} is at its boot loader prompt, not a shell.",
                                  "Type 'boot' in the Console tab or reset the device, then connect again.")
        shown = last_line(clean(bytes(self._raw)))[-60:]
        return TransportError(f"The console on {where} shows something that is not a prompt: '{shown}'.",
                              "Open the Console tab to see what the device is doing.")

    # -- using -------------------------------------------------------------------------------

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        if len(command) > MAX_LINE:
            raise TransportError(f"A console command may be at most {MAX_LINE} characters long.",
                                 "Put long scripts in a file on the device and run that.")
        async with self._lock:
            if self._port is None or self._state.state.state is not ConnState.UP:
                raise TransportError(f"Not connected to {self.target.device} ({self._state.state.describe()}).",
                                     "Connect first.")
            frame = CommandFrame.new(command)
            result = await self._exchange(frame, timeout)
            if result is not None:
                return result
            await self._recover()
            raise CommandTimeout(
                f"'{command[:80]}' did not finish within {timeout:g} s on {self.target.device}; "
                "it was interrupted with Ctrl-C.",
                "Give it a longer timeout; a slow serial line needs more time for long output.",
            )

    async def _exchange(self, frame: CommandFrame, timeout: float) -> Result | None:
        self._reset_buffer()
        await self._write(frame.line().encode() + b"\r")
        marker = f"__SL_END_{frame.nonce}_"
        scan = 0

        def check() -> Result | None:
            nonlocal scan
            # Search only what is new, plus a marker's length before it: a marker may straddle two chunks.
            if marker not in self._text.since(scan):
                scan = max(0, self._text.total - len(marker) - 8)
                return None
            return frame.parse(normalize_lines(self._text.text()))

        return await self._wait_for(check, timeout)

    async def _recover(self) -> None:
        """After a timeout: Ctrl-C, then a marker-only command proves the shell listens again."""
        await self._write(b"\x03")
        await asyncio.sleep(0.1)
        if await self._exchange(CommandFrame.new("true"), 5.0) is None:
            reason = f"the console on {self.target.device} stopped answering after Ctrl-C"
            self._state.set(ConnState.DOWN, reason)

    async def close(self) -> None:
        had = self._port is not None
        self._watch_reboots = False  # the login prompt after our 'exit' is no reboot
        if had and self._logged_in_by_us and self._lost_reason is None:
            # A console stays logged in after the cable is pulled: leave it at login: as we found it,
            # not as an open root shell for the next person at the cabinet.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write(b"exit\r"), 2.0)
        self._logged_in_by_us = False
        await self._shutdown()
        if had:
            self._state.set(ConnState.DOWN, "closed")

    async def _shutdown(self) -> None:
        port, self._port = self._port, None
        reader, self._reader = self._reader, None
        self._stop.set()
        if reader is not None:
            await asyncio.to_thread(reader.join, 2.0)
        if port is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(port.close)
        self._reset_buffer()
        self._stripper = AnsiStripper()
