"""`siteline put` and `siteline get`: SFTP for ssh://, checked console chunks for serial:// and mqtt://.

Progress goes to stderr: one line redrawn with a carriage return on a terminal, a plain line every
few seconds otherwise (a CI log must not fill with redraws). The final SHA-256 goes to stdout in
sha256sum's format with the path the file landed at (a destination that is a folder, or ends in a
separator, gets the source's name inside it, as scp does), so a script can compare it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from siteline.commands import EXIT_UNREACHABLE, EXIT_USAGE, connect_or_code, fail
from siteline.core.errors import SitelineError
from siteline.core.targets import Target, parse_target
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import Transport
from siteline.core.transports.console_transfer import get_over_console, put_over_console
from siteline.core.transports.transfer import Progress, TransferResult, check_local_destination, local_destination

PLAIN_EVERY = 5.0  # seconds between progress lines when stderr is not a terminal


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressLine:
    """Turns Progress callbacks into stderr text: a redrawn line on a terminal, periodic lines elsewhere."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.what = what
        self._last = 0.0
        self._drawn = False
        self.first = True
        self.announced_resume = False

    def __call__(self, p: Progress) -> None:
        if self.first:
            self.first = False
            if 0 < p.done < p.total and p.rate == 0:  # a starting-point report: nothing has moved yet
                self.stream.write(f"siteline: resuming at {size_text(p.done)} of {size_text(p.total)}\n")
                self.announced_resume = True
        text = (f"{self.what}: {p.fraction * 100:5.1f}%  {size_text(p.done)} of {size_text(p.total)}  "
                f"{p.rate / 1e6:.2f} MB/s  ETA {_eta(p.eta)}")
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        elif time.monotonic() - self._last >= PLAIN_EVERY or p.done >= p.total:
            self.stream.write(text + "\n")
            self._last = time.monotonic()
        self.stream.flush()

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


async def put_or_get(args: argparse.Namespace) -> int:
    """`siteline put TARGET LOCAL REMOTE` / `siteline get TARGET REMOTE LOCAL`."""
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    upload = args.command == "put"
    try:
        local = _local_path(upload, args.local, args.remote)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    line = ProgressLine(f"{'put' if upload else 'get'} {local.name if upload else args.remote}")
    from siteline.cli_audit import record

    action, where = ("file-put" if upload else "file-get"), {"local": str(local), "remote": args.remote}
    try:
        result = await _transfer(transport, target, upload, local, args.remote, line)
    except (SitelineError, OSError, TimeoutError) as exc:
        line.end()
        record(target, action, {**where, "error": str(exc)[:500]}, result="error")  # a part may have been written
        return fail(EXIT_UNREACHABLE, exc)
    finally:
        await transport.close()
    line.end()
    record(target, action, {**where, "bytes": result.size, "sha256": result.sha256})
    if result.resumed_from and not line.announced_resume:
        print(f"siteline: resumed at {size_text(result.resumed_from)} of {size_text(result.size)} "
              f"(sent {size_text(result.transferred)} this time)", file=sys.stderr)
    print(f"{result.sha256}  {result.path or (args.remote if upload else local)}")
    return 0


def _local_path(upload: bool, text: str, remote: str) -> Path:
    """The local file, checked before connecting: a typo in a local path should not cost a login on a slow line."""
    if upload:
        if not Path(text).is_file():
            raise SitelineError(f"The local file {text} does not exist.", "Check the path.")
        return Path(text)
    local = local_destination(text, remote)  # from the text: Path() would drop a trailing separator
    check_local_destination(local)
    return local


async def _transfer(transport: Transport, target: Target, upload: bool, local: Path, remote: str,
                    line: ProgressLine) -> TransferResult:
    from siteline.core.transports.ssh import SshTransport

    if isinstance(transport, SshTransport):  # SFTP: pipelined, resumable, far faster than a console
        return await (transport.put(local, remote, line) if upload else transport.get(remote, local, line))
    bps = target.baud if target.is_serial else None
    # A serial line goes through the device's line editor; MQTT hands the command to a shell whole.
    max_line = cmds.MAX_TYPED_LINE if target.is_serial else cmds.LONG_LINE
    if upload:
        return await put_over_console(transport.run, local, remote, line, line_bps=bps, max_line=max_line)
    return await get_over_console(transport.run, remote, local, line, line_bps=bps, max_line=max_line)
