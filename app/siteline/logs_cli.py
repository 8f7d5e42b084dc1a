"""`siteline logs TARGET [-f] [-u UNIT] [-p PRIO] [-g RE] [-S T] [--file PATH] [--source S] [-n N] [--json]`.

Prints the device's log as "time host unit[pid]: message" (or one JSON object a line with --json), read from
journald, else BusyBox logread, else dmesg, or from the file given with --file. With -f it keeps following
until Ctrl-C: live over SSH, by polling every --poll seconds over serial and MQTT; a dropped link is resumed
(journald: exactly from the last record; other sources: from the last line seen, with a note when there may be
a gap). What the tool says (following, polling, link lost, gap) goes to stderr, the records to stdout.

exit codes:
  0    ok; also when Ctrl-C ends -f
  1    the log command failed on the device (e.g. journalctl refused an option), or the file cannot be read
  2    usage: a bad target, --grep that is not a regular expression, a bad --priority or --since
  3    refused for safety: the device's SSH host key changed
  4    unreachable: no answer within --timeout, or the link broke (without -f; -f keeps resuming)
  5    authentication failed
  127  the device has no log tool (none of journalctl, logread, dmesg)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from typing import Any

from siteline.core.errors import SitelineError
from siteline.core.logs.filters import RecordFilter, parse_priority_range
from siteline.core.logs.follow import FollowStatus, LogBatch, LogReadError, NoLogToolError, follow, read_recent
from siteline.core.logs.parsers import parse_chunk
from siteline.core.logs.record import PRIORITY_NAMES, LogRecord, Source
from siteline.core.logs.since import parse_since
from siteline.core.logs.sources import Kind, LogQuery
from siteline.core.transports.base import Transport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NO_TOOL = 0, 1, 2, 4, 127
HELP = __doc__.split("\n\n", 2)[1] if __doc__ else ""
EPILOG = __doc__[__doc__.index("exit codes:"):] if __doc__ else ""


def add_logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="device URL, e.g. ssh://root@10.0.0.5 or serial:///dev/ttyUSB0")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new records until Ctrl-C")
    parser.add_argument("-u", "--unit", help="only this systemd unit or syslog tag (e.g. ModemManager)")
    parser.add_argument("-p", "--priority", help="only this priority and more important (err, warning, 0-7), "
                        "or a range such as warning..err")
    parser.add_argument("-g", "--grep", metavar="RE", help="only records whose unit or message match (Python regex)")
    parser.add_argument("-S", "--since", metavar="T", help="only records from T on: '2026-11-27 12:00', 'today', "
                        "'10 min ago', or --since=-1h (with '=': argparse reads a bare -1h as an option)")
    parser.add_argument("--file", metavar="PATH", help="read this file on the device (tail -F) instead of the journal")
    parser.add_argument("--source", choices=[k.value for k in Kind if k is not Kind.FILE],
                        help="read this source instead of the first the device has (journald, logread, dmesg)")
    parser.add_argument("-n", "--lines", type=int, default=100, metavar="N",
                        help="how many recent records to start with (default 100)")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    parser.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                        help="with -f over serial or MQTT (no live stream): seconds between looks (default 5)")


def add_logs_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                    connect: argparse.ArgumentParser) -> None:
    """`siteline logs`, with the shared connect options (cli.py's ``connect`` parent)."""
    parser = sub.add_parser("logs", parents=[connect], help="print or follow a device's log", description=HELP,
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_logs_arguments(parser)
    parser.set_defaults(handler=logs_main)


def logs_main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(logs_command(args))
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how -f is meant to end; the remote follower was stopped on the way out


def _usage(message: str) -> int:
    print(f"siteline: {message}", file=sys.stderr)
    return EXIT_USAGE


def record_filter(args: argparse.Namespace) -> RecordFilter | str:
    """The client-side filter, or what is wrong with the options (for exit 2)."""
    pattern = None
    if args.grep is not None:
        try:
            pattern = re.compile(args.grep)
        except re.error as exc:
            return f"--grep {args.grep!r} is not a regular expression: {exc}. Quote it, or escape ( [ * with \\."
    priorities = None
    if args.priority is not None:
        priorities = parse_priority_range(args.priority)
        if priorities is None:
            names = ", ".join(PRIORITY_NAMES)
            return f"--priority {args.priority!r}: use one of {names}, 0-7, or a range like warning..err"
    since = None
    if args.since is not None:
        since = parse_since(args.since)
        if since is None:
            return f"--since {args.since!r} is not a time: try '2026-11-27 12:00', '-1h', 'today' or '10 min ago'"
    if args.lines < 0:
        return "--lines must be 0 or more"
    return RecordFilter(args.unit, priorities, pattern, since)


async def logs_command(args: argparse.Namespace) -> int:
    from siteline.commands import connect_or_code
    from siteline.core.targets import parse_target

    wanted = record_filter(args)
    if isinstance(wanted, str):
        return _usage(wanted)
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return _usage(str(exc))
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    try:
        return await logs_on(args, transport, wanted)
    finally:
        await transport.close()


async def logs_on(args: argparse.Namespace, transport: Transport, wanted: RecordFilter) -> int:
    """Print (and with -f follow) the log over a connected transport; the exit code as documented above."""
    try:
        return await _print_logs(args, transport, wanted)
    except NoLogToolError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_FAILED if args.file else EXIT_NO_TOOL
    except LogReadError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (SitelineError, OSError, TimeoutError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


async def _print_logs(args: argparse.Namespace, transport: Transport, wanted: RecordFilter) -> int:
    printer = Printer(wanted, as_json=args.json)
    options: dict[str, Any] = {"unit": args.unit, "priority": args.priority, "since": args.since,
                               "lines": args.lines, "file": args.file,
                               "kind": Kind(args.source) if getattr(args, "source", None) else None}
    if not args.follow:
        _kind, batch = await read_recent(transport, LogQuery(**options))
        printer.batch(batch)
        return EXIT_OK
    events = follow(transport, **options, poll_interval=max(0.2, args.poll), reconnect=transport.connect)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, FollowStatus):
                print(f"siteline: {event.text}", file=sys.stderr, flush=True)
            else:
                printer.batch(event)
    return EXIT_OK


class Printer:
    """Parses each batch, filters it and writes the records (text or JSON lines) in one write."""

    def __init__(self, wanted: RecordFilter, *, as_json: bool) -> None:
        self.wanted, self.as_json = wanted, as_json

    def batch(self, batch: LogBatch) -> None:
        records = parse_chunk(batch.lines, batch.source, boot_time=batch.boot_time)
        wanted = self.wanted
        if batch.source is Source.JOURNAL:  # journalctl filtered unit, priority and time itself
            wanted = RecordFilter(pattern=wanted.pattern)
        shown = [self.format(r) for r in records if wanted.matches(r)]
        if shown:
            text = "".join(line + "\n" for line in shown)
            # Undecodable bytes a line may carry (lone surrogates) are written as escapes, never raised.
            sys.stdout.write(text.encode("utf-8", "backslashreplace").decode("utf-8"))
            sys.stdout.flush()

    def format(self, record: LogRecord) -> str:
        if self.as_json:
            return json.dumps(record_json(record), ensure_ascii=False)
        return text_line(record)


def _stamp(when: float | None) -> str:
    if when is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


# Control characters from the device (a terminal escape in a log line) are shown, not obeyed by the terminal.
_VISIBLE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09}


def text_line(record: LogRecord) -> str:
    """'2026-11-27 12:00:01 gw-01 ModemManager.service[612]: message' (unknowns as '-')."""
    pid = f"[{record.pid}]" if record.pid is not None else ""
    line = f"{_stamp(record.time)} {record.host or '-'} {record.unit or '-'}{pid}: {record.message}"
    return line.translate(_VISIBLE)


def record_json(record: LogRecord) -> dict[str, Any]:
    prio = record.priority
    return {"time": record.time, "host": record.host or None, "unit": record.unit or None, "pid": record.pid,
            "priority": prio, "priority_name": PRIORITY_NAMES[prio] if prio is not None else None,
            "message": record.message, "source": record.source.name.lower(), "problem": record.problem}
