"""`siteline` command line: no arguments opens the GUI; subcommands work on headless boxes.

Qt is imported only by the commands that open a window.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from siteline import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siteline", description="Field tool for edge and IoT Linux devices.")
    parser.add_argument("--version", action="version", version=f"siteline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="open the main window (the default)")

    run = sub.add_parser("run", help="run one command on a device and print its output")
    run.add_argument("target", help="device URL, e.g. ssh://root@10.0.0.5")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    run.add_argument("--timeout", type=float, default=30.0)
    run.add_argument("--user", help="login name for serial consoles")
    run.add_argument("--identity", "-i", help="SSH private key file")
    run.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")

    probe = sub.add_parser("probe", help="print a device's system snapshot")
    probe.add_argument("target")
    probe.add_argument("--user")
    probe.add_argument("--identity", "-i")
    probe.add_argument("--password-env", metavar="VAR")

    sub.add_parser("plugins", help="list plugins and their status")

    from siteline.simulator import cli as sim_cli

    sim_cli.add_sim_parser(sub)
    sim_cli.add_demo_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.command in ("sim", "demo") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = args.command or "gui"
    if command == "gui":
        from siteline.ui.app import run_gui

        return run_gui()
    if command in ("run", "probe"):
        from siteline.commands import run_or_probe

        return asyncio.run(run_or_probe(args))
    if command == "plugins":
        from siteline.commands import list_plugins

        return list_plugins()
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
