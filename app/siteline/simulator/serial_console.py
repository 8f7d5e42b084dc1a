"""The simulated device's serial console: getty login, a shell, kernel messages, reboots.

What a technician sees on a real UART: ``<hostname> login:``, ``Password:`` without echo,
``Login incorrect`` after a wrong password, a banner and a shell prompt; kernel lines such as
``[ 1234.567890] ...`` dropped into the middle of whatever is on screen; on reboot the shutdown
messages, silence, the bootloader and kernel, and a fresh login prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path

from siteline.simulator.boot import BootOutcome
from siteline.simulator.ptyproc import PtyProcess
from siteline.simulator.serial_line import SerialLine
from siteline.simulator.shell import interactive_shell_argv
from siteline.simulator.state import DeviceState

log = logging.getLogger(__name__)
FAILED_LOGIN_DELAY = 0.3  # real getty waits ~3 s; short here so tests stay fast
MAX_LINE = 256
KERNEL_MESSAGES = (
    "wwan0: link becomes ready",
    "usb 1-1.2: USB disconnect, device number 4",
    "usb 1-1.2: new high-speed USB device number 5 using ehci-platform",
    "option 1-1.2:1.2: GSM modem (1-port) converter detected",
    "EXT4-fs (mmcblk0p4): mounted filesystem with ordered data mode. Quota mode: none.",
    "IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready",
    "fec 30be0000.ethernet eth0: Link is Up - 100Mbps/Full - flow control rx/tx",
    "watchdog: imx2-wdt 30280000.watchdog: timeout 60 sec (nowayout=0)",
    "cdc_wdm 1-1.2:1.4: cdc-wdm0: USB WDM device",
)
SHUTDOWN_LINES = (
    "         Stopping Session 1 of User root...",
    "[  OK  ] Stopped target Multi-User System.",
    "         Stopping Network Manager...",
    "[  OK  ] Stopped Network Manager.",
    "         Stopping Modem Manager...",
    "[  OK  ] Stopped Modem Manager.",
    "[  OK  ] Reached target System Reboot.",
    "reboot: Restarting system",
)


class SerialConsole:
    """One console on a pty linked at ``link``; ``start``/``stop``, and ``shutdown``/``booted`` on reboot."""

    def __init__(self, state: DeviceState, link: Path) -> None:
        self.state = state
        seed = sum(state.config.name.encode())
        self._rng = random.Random(seed)
        self.line = SerialLine(link, state.config.serial_baud, self._on_input, seed=seed)
        self._input: asyncio.Queue[bytes] = asyncio.Queue()
        self._shell: PtyProcess | None = None
        self._getty: asyncio.Task[None] | None = None
        self._kernel: asyncio.Task[None] | None = None
        self._booted_at = time.monotonic()

    @property
    def url(self) -> str:
        return f"serial://{self.line.link}?baud={self.state.config.serial_baud}"

    @property
    def running(self) -> bool:
        """True while the getty (or a logged-in shell) serves the line; False while rebooting."""
        return self._getty is not None

    async def start(self) -> None:
        self.line.open()
        self._booted_at = time.monotonic()
        self._begin()

    async def stop(self) -> None:
        await self._halt()
        await self.line.close()

    async def shutdown(self) -> None:
        """The device goes down: the session ends, shutdown lines print, then the line goes quiet."""
        await self._halt()
        self.line.write(b"".join(b"\r\n" + text.encode() for text in SHUTDOWN_LINES) + b"\r\n")
        await self.line.drain(timeout=5.0)

    def booted(self, outcome: BootOutcome) -> None:
        """The device is up again: bootloader and kernel lines, then a fresh login prompt."""
        self._booted_at = time.monotonic()
        self.line.write(b"".join(text.encode() + b"\r\n" for text in outcome.console_lines))
        self._begin()

    def _begin(self) -> None:
        self._drain_input()
        loop = asyncio.get_running_loop()
        self._getty = loop.create_task(self._getty_loop(), name="serial getty")
        self._kernel = loop.create_task(self._kernel_messages(), name="serial kernel log")

    async def _halt(self) -> None:
        for task in (self._getty, self._kernel):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._getty, self._kernel) if t is not None), return_exceptions=True)
        self._getty = self._kernel = None
        if self._shell is not None:
            await self._shell.close()
            self._shell = None

    # -- input -------------------------------------------------------------------------------

    def _on_input(self, data: bytes) -> None:
        if self._shell is not None:
            self._shell.write(data)
        elif self._getty is not None:
            self._input.put_nowait(data)
        # otherwise the device is rebooting: keystrokes fall on the floor

    def _drain_input(self) -> None:
        while not self._input.empty():
            self._input.get_nowait()

    async def _read_line(self, echo: bool) -> str:
        """A line as getty reads it: echo (or not), backspace, ends at CR or LF."""
        buf = bytearray()
        while True:
            data = await self._input.get()
            for byte in data:
                if byte in (0x0D, 0x0A):
                    self.line.write(b"\r\n")
                    return buf.decode("utf-8", errors="replace")
                if byte in (0x08, 0x7F):
                    if buf:
                        buf.pop()
                        if echo:
                            self.line.write(b"\b \b")
                elif byte == 0x03:  # Ctrl-C: start over, as agetty does
                    buf.clear()
                    self.line.write(b"^C\r\n")
                    return ""
                elif byte >= 0x20 and len(buf) < MAX_LINE:
                    buf.append(byte)
                    if echo:
                        self.line.write(bytes([byte]))

    # -- getty -------------------------------------------------------------------------------

    async def _getty_loop(self) -> None:
        while True:
            self.line.write(f"\r\n{self.state.hostname()} login: ".encode())
            user = (await self._read_line(echo=True)).strip()
            if not user:
                continue
            self.line.write(b"Password: ")
            password = await self._read_line(echo=False)
            if not await self._check(user, password):
                await asyncio.sleep(FAILED_LOGIN_DELAY)
                self.line.write(b"\r\nLogin incorrect\r\n")
                continue
            await self._session(user)

    async def _check(self, user: str, password: str) -> bool:
        # scrypt takes tens of ms: in a thread, so the console's output pacing never stalls on it.
        try:
            return await asyncio.to_thread(self.state.check_password, user, password)
        except (OSError, ValueError) as exc:
            log.warning("password check failed: %s", exc)
            return False

    async def _session(self, user: str) -> None:
        self.line.write(self._banner().encode())
        env = self.state.shell_env()
        # An interactive login keeps a history file, as a device's ash or bash does (Siteline switches it off).
        env.update({"TERM": "vt100", "USER": user, "LOGNAME": user,
                    "HISTFILE": f"{env.get('HOME', '/root')}/.ash_history"})
        shell = PtyProcess(interactive_shell_argv(self.state), env, env.get("HOME"), self.line.write)
        self._drain_input()
        shell.start(80, 24)
        self._shell = shell
        self.line.set_flow(shell.pause_reading, shell.resume_reading)
        try:
            await shell.wait()
        finally:
            self.line.set_flow(None, None)
            self._shell = None
            await shell.close()
        self.line.write(b"\r\n")

    def _banner(self) -> str:
        return f"\r\nLast login: {time.strftime('%a %b %e %H:%M:%S %Y')} on ttymxc0\r\n"

    # -- kernel messages ---------------------------------------------------------------------

    async def _kernel_messages(self) -> None:
        interval = max(0.01, float(self.state.config.kernel_log_interval))
        while True:
            await asyncio.sleep(self._rng.expovariate(1.0 / interval))
            message = self._rng.choice(KERNEL_MESSAGES)
            stamp = time.monotonic() - self._booted_at + 2.5  # the kernel starts counting before userspace
            # A console shows the line wherever the cursor is; it ends with CRLF as printk's do.
            self.line.write(f"[{stamp:12.6f}] {message}\r\n".encode())
            if interval >= 1.0:  # the fast test intervals would only flood the journal
                with contextlib.suppress(OSError, ValueError):
                    self.state.log(message, unit="kernel", priority=6)
