"""The headless subcommands behind `siteline run|probe|plugins`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from siteline import paths
from siteline.core.errors import SitelineError
from siteline.core.plugin_api import DeviceContext
from siteline.core.plugins import PluginHost
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.factory import open_transport

log = logging.getLogger(__name__)


def _credentials(args: argparse.Namespace) -> Credentials:
    password = os.environ.get(args.password_env) if args.password_env else None
    return Credentials(username=args.user, password=password, key_path=args.identity)


async def run_or_probe(args: argparse.Namespace) -> int:
    try:
        target = parse_target(args.target)
        transport = open_transport(target, _credentials(args), paths.data_dir() / "known_hosts")
        await transport.connect()
    except SitelineError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            cmd = [c for c in args.cmd if c != "--"]
            if not cmd:
                print("siteline: give the command after --, e.g. siteline run TARGET -- uptime", file=sys.stderr)
                return 2
            result = await transport.run(" ".join(cmd), args.timeout)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.exit_code
        host = PluginHost()
        host.load_entry_points()
        ctx = DeviceContext(args.target, args.target, transport.run, logging.LoggerAdapter(log, {}))
        for entry in host.probes():
            snapshot = await host.run_probe(entry, ctx)
            print(f"[{entry.item.kind}]")
            for key, value in vars(snapshot).items() if snapshot is not None else ():
                print(f"  {key}: {value}")
        for failure in host.failures:
            print(failure.describe(), file=sys.stderr)
        return 1 if host.failures else 0
    except SitelineError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return 1
    finally:
        await transport.close()


def list_plugins() -> int:
    host = PluginHost()
    host.load_entry_points()
    for info in host.plugins:
        status = "enabled" if info.enabled else f"disabled ({info.error})"
        print(f"{info.name:20} {info.version:10} {status:30} {info.source}")
    return 0
