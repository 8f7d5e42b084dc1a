"""The headless subcommands behind `siteline run|probe|plugins`."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable

from siteline import paths
from siteline.core.errors import SitelineError
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport

log = logging.getLogger(__name__)


def _credentials(args: argparse.Namespace) -> Credentials:
    password = os.environ.get(args.password_env) if args.password_env else None
    return Credentials(username=args.user, password=password, key_path=args.identity)


# As ssh does: 255 says "Siteline could not reach the device", so scripts can tell it from the
# remote command's own exit code.
EXIT_UNREACHABLE = 255
EXIT_USAGE = 2


def command_line(words: list[str]) -> str | None:
    """The remote command: one word is taken as a shell line as typed; several are quoted and joined."""
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        return None
    return words[0] if len(words) == 1 else shlex.join(words)


async def run_or_probe(args: argparse.Namespace) -> int:
    command = command_line(list(args.cmd)) if args.command == "run" else ""
    if command is None:
        print("siteline: give the command after --, e.g. siteline run TARGET -- uptime", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    transport = open_transport(target, _credentials(args), paths.data_dir() / "known_hosts")
    try:
        await transport.connect()
        if args.command == "run":
            result = await transport.run(command, args.timeout)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.exit_code
        return await _probe(args.target, transport.run)
    except (SitelineError, OSError) as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await transport.close()


async def _probe(target: str, run: Callable[[str, float], Awaitable[Result]]) -> int:
    host = PluginHost()
    host.load_entry_points()
    ctx = make_context(target, target, run, log)
    for entry in host.probes():
        snapshot = await host.run_probe(entry, ctx)
        print(f"[{entry.item.kind}]")
        for key, value in vars(snapshot).items() if snapshot is not None else ():
            print(f"  {key}: {value}")
    for failure in host.failures:
        print(failure.describe(), file=sys.stderr)
    return 1 if host.failures else 0


def list_plugins() -> int:
    host = PluginHost()
    host.load_entry_points()
    for info in host.plugins:
        status = "enabled" if info.enabled else f"disabled ({info.error})"
        print(f"{info.name:20} {info.version:10} {status:30} {info.source}")
    return 0
