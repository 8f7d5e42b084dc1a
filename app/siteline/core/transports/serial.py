"""Serial console transport over pyserial: wake the console, log in, run framed commands, hand over a shell.

The port and its reader thread live in :mod:`.serial_link`, waking and logging in in
:mod:`.serial_login`, the interactive shell in :mod:`.serial_shell`. What the console says is
interpreted by the pure functions in :mod:`siteline.core.transports.console`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from siteline.core.errors import CommandTimeout, TransportError
from siteline.core.targets import Target
from siteline.core.transports.base import ConnState, Credentials, Result, StatefulLink
from siteline.core.transports.console import (
    MAX_TYPED_LINE,
    CommandFrame,
    ConsoleState,
    RebootWatch,
    normalize_lines,
)
from siteline.core.transports.serial_link import SerialLink
from siteline.core.transports.serial_login import detect_baud, login
from siteline.core.transports.serial_options import BY_ID, port_settings, stable_alias
from siteline.core.transports.serial_shell import SerialShell

if TYPE_CHECKING:
    from siteline.core.transports.transfer import ProgressCallback, TransferResult

log = logging.getLogger(__name__)

REBOOTED = "the device rebooted during the command"
LEFT_IN_PROGRAM = ("the console was left inside a running program (it shows no shell prompt); quit it at the "
                   "device, then press Reconnect (until then Siteline types nothing into it)")
LEFT_AT_LOGIN = ("the console was left at a login prompt (the shell there was logged out); Siteline logs in "
                 "again when it reconnects")
LEFT_IN_BOOTLOADER = ("the console was left at the boot loader prompt; boot the device at the device, then press "
                      "Reconnect (a bare Enter in the boot loader repeats its last command)")
HAND_BACK_QUIET = 0.2  # the echo of the last keystrokes arrives within this when the shell is handed back
HAND_BACK_LIMIT = 1.0  # ... or, on a console that keeps talking (tail -f), we stop waiting after this
SHELL_TERM = "xterm"  # in the terminfo of nearly every image, Buildroot's minimal set included


class SerialTransport(StatefulLink):
    """A link to one device's serial console."""

    by_id_dir: Path = BY_ID  # where stable port names live (tests point it at a folder of their own)

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
        self.log = logging.LoggerAdapter(log, {"target": str(target)})
        self._link = SerialLink(target.device, self._settings, self.log)
        self._link.on_text = self._watch_text
        self._link.on_lost = self._port_lost
        self._stable: str | None = None  # the port's /dev/serial/by-id name, found at the first connect
        self._reboots = RebootWatch()
        self._watch_reboots = False  # off while we log in or out: the login prompts then are ours
        self._logged_in_by_us = False
        # Set before connect() to prove a password: a console left at a shell prompt is logged out first.
        self.fresh_login = False
        # Set before connect() when secrets will be typed: history off even in a shell someone left logged in.
        self.private_history = False
        self._shell: SerialShell | None = None
        # A person's shell was handed back outside a shell prompt: type nothing more on this connection.
        self._hands_off = False
        self._judging = False  # a closed shell's console is being judged: nothing may be typed meanwhile
        self._left_reason = ""
        self._left_alternate = False  # ... and the program it was left in held the alternate screen

    # -- what the line tells us --------------------------------------------------------------

    def _watch_text(self, text: str) -> None:
        if self._watch_reboots and self._reboots.feed(text, idle=not self._lock.locked()):
            self._device_rebooted()

    def _device_rebooted(self) -> None:
        """Boot lines or a fresh login prompt: our shell is gone; fail what runs, go DOWN to log in again."""
        self.log.warning("the device on %s rebooted", self.target.device)
        self._watch_reboots = False
        self._link.fail(REBOOTED, "Run it again once the device is back; Siteline logs in again by itself.")
        self._logged_in_by_us = False  # nothing to log out of: typing 'exit' now would answer the login prompt
        self._state.set(ConnState.DOWN, "device rebooted")

    def _port_lost(self, reason: str) -> None:
        self.log.warning("%s", reason)
        shell, self._shell = self._shell, None
        if shell is not None:  # the person's terminal says why it ended; commands say "not connected" now
            self._link.tap = None
            shell.end(reason)
        if self._state.state.state is ConnState.UP:
            self._state.set(ConnState.DOWN, reason)

    # -- connecting --------------------------------------------------------------------------

    async def connect(self) -> None:
        await self.close()
        self._hands_off = self._left_alternate = False
        self._left_reason = ""
        self._state.set(ConnState.CONNECTING)
        link = self._link
        try:
            await link.open(self._path_to_open())
            if self.autobaud:
                self.detected_baud = await detect_baud(link, self.detected_baud, self.log)
            self._logged_in_by_us = await login(link, self.credentials, self.wake_timeout, self.login_timeout,
                                                self.log, fresh=self.fresh_login)
            if self._logged_in_by_us or self.private_history:
                await self._forget_history()
        except BaseException as exc:
            await link.shutdown()
            self._state.set(ConnState.DOWN, str(exc))
            raise
        if self._stable is None:
            self._stable = stable_alias(self.target.device, self.by_id_dir)
        self.log.info("logged in on %s", self.target.device)
        self._reboots, self._watch_reboots = RebootWatch(), True
        baud = self._settings["baudrate"]
        self._state.set(ConnState.UP, f"{baud} baud (detected)" if self.autobaud else "")

    def _path_to_open(self) -> str | None:
        """The by-id name of the adapter we had, if it is there (its ttyUSB number may have moved); else None."""
        stable = self._stable
        if not stable or not os.path.exists(stable):
            return None
        if os.path.realpath(stable) != os.path.realpath(self.target.device):
            self.log.info("%s is back as %s", stable, os.path.realpath(stable))
        return stable

    # -- using -------------------------------------------------------------------------------

    def _refuse_if_shell(self) -> None:
        if self._shell is not None:
            raise TransportError(
                f"The console on {self.target.device} is in use by the interactive console.",
                "Close the interactive console (Console tab) and try again.",
            )

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        frame = CommandFrame.new(command)
        typed = len(frame.line().encode()) + 1  # with the Enter; a console line holds bytes
        if typed > MAX_TYPED_LINE:
            raise TransportError(
                f"The command is too long to type on a serial console ({typed} characters, limit "
                f"{MAX_TYPED_LINE}, framing included).",
                "Put it in a script file with `siteline put` and run that.",
            )
        self._refuse_if_shell()
        async with self._lock:
            self._refuse_if_shell()  # the shell may have opened while we waited for the lock
            self._require_up()
            result = await self._exchange(frame, timeout)
            if result is not None:
                return result
            if not await self._recover():
                raise CommandTimeout(
                    f"'{command[:80]}' did not finish within {timeout:g} s on {self.target.device}, and Ctrl-C "
                    "did not stop it: it may still be running (a console shell without job control ignores Ctrl-C).",
                    "Wait for it to finish, then reconnect. On the device, start the console shell through a getty "
                    "or BusyBox's cttyhack so that Ctrl-C reaches commands.",
                )
            raise CommandTimeout(
                f"'{command[:80]}' did not finish within {timeout:g} s on {self.target.device}; "
                "it was interrupted with Ctrl-C.",
                "Give it a longer timeout; a slow serial line needs more time for long output.",
            )

    def _require_up(self) -> None:
        if not self._link.is_open or self._state.state.state is not ConnState.UP:
            raise TransportError(f"Not connected to {self.target.device} ({self._state.state.describe()}).",
                                 "Connect first.")

    async def _exchange(self, frame: CommandFrame, timeout: float) -> Result | None:
        link = self._link
        link.reset()
        await link.write(frame.line().encode() + b"\r")
        marker = f"__SL_END_{frame.nonce}_"
        scan = 0

        def check() -> Result | None:
            nonlocal scan
            # Search only what is new, plus a marker's length before it: a marker may straddle two chunks.
            if marker not in link.text.since(scan):
                scan = max(0, link.text.total - len(marker) - 8)
                return None
            return frame.parse(normalize_lines(link.text.text()))

        return await link.wait_for(check, timeout)

    async def _recover(self) -> bool:
        """After a timeout: Ctrl-C, then a marker-only command proves the shell listens again."""
        await self._link.write(b"\x03")
        await asyncio.sleep(0.1)
        if await self._exchange(CommandFrame.new("true"), 5.0) is None:
            reason = f"the console on {self.target.device} stopped answering after Ctrl-C"
            self._state.set(ConnState.DOWN, reason)
            return False
        return True

    # -- the interactive shell ---------------------------------------------------------------

    async def open_shell(self, cols: int = 80, rows: int = 24) -> SerialShell:
        """Hand the console's shell to a person; commands are refused until the shell is closed."""
        async with self._lock:
            self._refuse_if_shell()
            hands_off = self._hands_off and self._link.is_open and not self._link.lost_reason
            if hands_off:
                # Left inside a program: the person may quit it here. Type nothing (Ctrl-L redraws most screens).
                first = b""
            else:
                self._require_up()
                first = await self._prepare_terminal(cols, rows)
            shell = SerialShell(self._link.write, self._release_shell, first, cols, rows,
                                alternate=hands_off and self._left_alternate)
            # No await from the prompt check to here: every byte goes either into ``first`` or the tap.
            self._shell = shell
            self._watch_reboots = False  # the person may log out or reboot; that is theirs to see
            self._link.tap = shell.feed
            return shell

    async def _forget_history(self) -> None:
        """Keep what Siteline types out of the login's shell history (a provisioning password, a key's chunks).

        Only in a shell Siteline logged into itself: a person's open shell keeps its history. A shell without
        history features ignores the line (errors hidden); no answer in time is not fatal, only logged.
        """
        link, nonce = self._link, secrets.token_hex(6)
        line = f" unset HISTFILE; command set +o history 2>/dev/null; printf '%s_%s\\n' __SL_NOH {nonce}"
        marker = f"__SL_NOH_{nonce}".encode()
        link.reset()
        await link.write(line.encode() + b"\r")
        if await link.wait_for(lambda: True if marker in link.raw else None, 5.0) is None:
            self.log.warning("the console on %s did not confirm that its history is off", self.target.device)
        await link.settle(0.3)
        link.reset()

    async def _prepare_terminal(self, cols: int, rows: int) -> bytes:
        """Set TERM and the window size in the console's own shell (one typed line); return the prompt after it.

        A serial line has no window-size signal, so full-screen programs (top, vi, less) read the
        size stty stores on the device's tty. Typed directly, not framed: a framed command runs in
        a subshell with stdin from /dev/null, where neither export nor stty would stick.
        """
        link, nonce = self._link, secrets.token_hex(6)
        line = f"export TERM={SHELL_TERM}; stty rows {int(rows)} cols {int(cols)} 2>/dev/null; " \
               f"printf '%s_%s\\n' __SL_RDY {nonce}"
        marker = f"__SL_RDY_{nonce}".encode()  # the echo shows "__SL_RDY <nonce>": only the output matches
        link.reset()
        await link.write(line.encode() + b"\r")
        if await link.wait_for(lambda: True if marker in link.raw else None, 5.0) is None:
            raise TransportError(f"The console on {self.target.device} did not answer the terminal setup.",
                                 "Try again; if it persists, reconnect to the device.")
        await link.settle(1.0)  # until the prompt that follows is there
        after = bytes(link.raw[link.raw.find(marker) + len(marker):])
        return after.lstrip(b"\r\n")

    async def _release_shell(self, shell: SerialShell) -> None:
        """The shell closed: back to command mode if the console shows a prompt, else type nothing and go DOWN.

        After a person had the console, a typed line lands in whatever runs there: our Ctrl-C and
        marker command would end up as text in the file vi has open, or keep a pager stuck.
        """
        if self._shell is not shell:
            return
        self._judging = True
        try:
            await self._judge_hand_back(shell)
        finally:
            self._judging = False

    async def _judge_hand_back(self, shell: SerialShell) -> None:
        link = self._link
        link.tap = None
        link.reset()  # from here the buffer holds what came after the shell: the last echoes
        async with self._lock:
            self._shell = None
            if not link.is_open or link.lost_reason or (self._state.state.state is not ConnState.UP
                                                        and not self._hands_off):
                return
            try:
                shown = shell.shows(await self._quiet_output())
            except TransportError:
                return  # the line was lost while we waited: on_lost said so
            if shown is not ConsoleState.SHELL:
                self._left_alternate = shell.alternate
                self._leave_alone(shown)
                return
            recovered = False
            with contextlib.suppress(TransportError):
                recovered = await self._recover()
            if recovered and self._hands_off:  # the person quit the program it was left in: usable again
                self._hands_off, self._left_reason = False, ""
                self._state.set(ConnState.UP, "back at a shell prompt")
            if self._state.state.state is ConnState.UP:
                self._reboots, self._watch_reboots = RebootWatch(), True

    async def _quiet_output(self) -> bytes:
        """What the console says until it is quiet for HAND_BACK_QUIET (at most HAND_BACK_LIMIT)."""
        link = self._link
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HAND_BACK_LIMIT
        while (remaining := deadline - loop.time()) > 0:
            if await link.wait_for(link.grew_past(link.raw_total), min(HAND_BACK_QUIET, remaining)) is None:
                break
        return bytes(link.raw)

    def _leave_alone(self, shown: ConsoleState) -> None:
        """The console is not at a shell prompt: touch nothing, say what to do, and go DOWN."""
        if shown in (ConsoleState.LOGIN, ConsoleState.PASSWORD, ConsoleState.LOGIN_INCORRECT):
            reason = LEFT_AT_LOGIN
            self._logged_in_by_us = False  # nothing of ours to log out of
        elif shown is ConsoleState.BOOTLOADER:
            reason = LEFT_IN_BOOTLOADER
        else:
            reason = LEFT_IN_PROGRAM
        self._hands_off, self._left_reason = True, reason
        self.log.warning("%s (%s)", reason, shown.value)
        self._state.set(ConnState.DOWN, reason)

    @property
    def left_busy(self) -> bool:
        """The console was left inside a program (or the boot loader): waking it would type into it.

        A console left at its login prompt is not: waking it there only brings the prompt again.
        """
        return self._hands_off and self._left_reason != LEFT_AT_LOGIN

    # -- files over the console --------------------------------------------------------------

    async def put(self, local: Path, remote: str, progress: ProgressCallback | None = None) -> TransferResult:
        """Copy ``local`` to the device in checked, resumable chunks typed over the console."""
        from siteline.core.transports.console_transfer import put_over_console

        return await put_over_console(self.run, local, remote, progress)

    async def get(self, remote: str, local: Path, progress: ProgressCallback | None = None) -> TransferResult:
        """Copy ``remote`` from the device in checked, resumable chunks read over the console."""
        from siteline.core.transports.console_transfer import get_over_console

        return await get_over_console(self.run, remote, local, progress)

    # -- closing -----------------------------------------------------------------------------

    async def close(self) -> None:
        link = self._link
        had = link.is_open
        self._watch_reboots = False  # the login prompt after our 'exit' is no reboot
        shell, self._shell = self._shell, None
        if shell is not None:
            link.tap = None
            shell.end("the connection to the device was closed")
            # Ctrl-C and 'exit' only at a prompt: typed into vi they would be text in the person's file.
            self._hands_off = self._hands_off or shell.shows() is not ConsoleState.SHELL
        if self._judging:  # a hand-back is being judged: what the console shows is not known yet
            self._hands_off = True
        if had and self._logged_in_by_us and not self._hands_off and link.lost_reason is None:
            # A console stays logged in after the cable is pulled: leave it at login: as we found it,
            # not as an open root shell for the next person at the cabinet.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.write((b"\x03" if shell else b"") + b"exit\r"), 2.0)
        self._logged_in_by_us = False
        await link.shutdown()
        if had:
            self._state.set(ConnState.DOWN, "closed")
