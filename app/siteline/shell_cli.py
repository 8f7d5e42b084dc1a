"""`siteline shell TARGET`: the device's interactive shell in this terminal (SSH or serial).

The local terminal goes into raw mode so every key (Ctrl-C, arrows, Tab) reaches the device, and
is restored on every way out: the shell ending, the link breaking, ``~.``, an exception, SIGTERM.
As in OpenSSH, ``~.`` typed at the start of a line disconnects and ``~~`` sends one ``~``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from siteline.commands import EXIT_UNREACHABLE, EXIT_USAGE, connect_or_code, fail
from siteline.core.errors import SitelineError
from siteline.core.targets import parse_target

if TYPE_CHECKING:
    from siteline.core.console_audit import ConsoleInputRecorder

READ_SIZE = 4096
BROKEN = "the link broke"  # how ShellChannel's close reason starts when the connection died


class Shell(Protocol):
    """What ssh's ShellChannel and serial's SerialShell both offer."""

    close_reason: str

    def write(self, data: bytes) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def close(self) -> None: ...


class EscapeFilter:
    """OpenSSH's escape: ``~.`` at the start of a line means disconnect, ``~~`` a literal tilde."""

    def __init__(self) -> None:
        self.at_line_start = True
        self.pending = False  # a '~' at line start, waiting for the next byte

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to send, whether to disconnect)."""
        out = bytearray()
        for b in data:
            if self.pending:
                self.pending = False
                if b == ord("."):
                    return bytes(out), True
                out += b"~" if b == ord("~") else bytes((ord("~"), b))
            elif self.at_line_start and b == ord("~"):
                self.pending = True
                continue
            else:
                out.append(b)
            self.at_line_start = b in (ord("\r"), ord("\n"))
        return bytes(out), False


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Raw mode on ``fd`` for the block; the saved settings come back however the block ends."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def window_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 80, 24
    return max(1, size.columns), max(1, size.lines)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def shell_command(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    if target.is_mqtt:
        return fail(EXIT_USAGE, SitelineError("MQTT has no interactive shell; use `siteline run TARGET -- CMD`."))
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    if not os.isatty(stdin):
        return fail(EXIT_USAGE, SitelineError("siteline shell needs a terminal on stdin.",
                                              "In scripts use `siteline run TARGET -- CMD`."))
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    try:
        opener: Callable[[int, int], Awaitable[Shell]] | None = getattr(transport, "open_shell", None)
        if opener is None:
            return fail(EXIT_USAGE, SitelineError(f"{target.scheme}:// has no interactive shell here.",
                                                  "Use `siteline run TARGET -- CMD`."))
        from siteline.cli_audit import shell_recorder

        shell = await opener(*window_size(stdin))
        with shell_recorder(target, window_size(stdin)[0]) as recorder, raw_terminal(stdin):
            reason = await interact(shell, stdin, stdout, recorder)
    except (SitelineError, OSError) as exc:
        return fail(EXIT_UNREACHABLE, exc)
    finally:
        await transport.close()
    print(f"siteline: {reason}", file=sys.stderr)
    return EXIT_UNREACHABLE if reason.startswith(BROKEN) else 0


async def interact(shell: Shell, stdin: int, stdout: int, recorder: ConsoleInputRecorder | None = None) -> str:
    """Carry keys to the shell and its output to the terminal until one side ends; returns why.

    ``recorder`` sees both directions: the command lines typed go to the audit trail."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[str] = loop.create_future()
    escape = EscapeFilter()

    def finish(reason: str) -> None:
        if not finished.done():
            finished.set_result(reason)

    def on_input() -> None:
        try:
            data = os.read(stdin, READ_SIZE)
        except OSError:
            data = b""
        if not data:
            finish("the terminal closed")
            return
        keys, quit_now = escape.feed(data)
        if recorder is not None and keys:
            recorder.typed(keys)
        shell.write(keys)
        if quit_now:
            finish("disconnected (~.)")

    async def pump() -> None:
        async for chunk in shell:
            _write_all(stdout, chunk)
            if recorder is not None:
                recorder.received(chunk)
        finish(shell.close_reason or "the shell ended")

    loop.add_reader(stdin, on_input)
    def on_resize() -> None:
        cols, rows = window_size(stdin)
        shell.resize(cols, rows)
        if recorder is not None:
            recorder.resize(cols)

    loop.add_signal_handler(signal.SIGWINCH, on_resize)
    loop.add_signal_handler(signal.SIGTERM, lambda: finish("terminated (SIGTERM)"))
    output = asyncio.ensure_future(pump())
    output.add_done_callback(lambda t: finish(f"{BROKEN}: {t.exception()}") if not t.cancelled()
                             and t.exception() else None)
    try:
        return await finished
    finally:
        loop.remove_reader(stdin)
        loop.remove_signal_handler(signal.SIGWINCH)
        loop.remove_signal_handler(signal.SIGTERM)
        output.cancel()
        await asyncio.gather(output, return_exceptions=True)
        await shell.close()
