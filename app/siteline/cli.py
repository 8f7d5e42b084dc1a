"""`siteline` command line: no arguments opens the GUI; subcommands work on headless boxes.

Qt is imported only by the commands that open a window.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from siteline import __version__

EXIT_CODES = """exit codes:
  0  ok (for run: the remote command's own code)
  2  usage: a bad target or option
  3  refused for safety: the device's SSH host key changed
  4  unreachable: no answer within --timeout, or the link broke
  5  authentication failed"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siteline", description="Field tool for edge and IoT Linux devices.")
    parser.add_argument("--version", action="version", version=f"siteline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="open the main window (the default)")

    connect = argparse.ArgumentParser(add_help=False)
    connect.add_argument("--user", help="login name for serial consoles (ssh/mqtt take it from the URL)")
    connect.add_argument("--identity", "-i", metavar="KEY", help="SSH private key file")
    connect.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust and pin an unknown SSH host key (a changed key is always refused)",
    )
    connect.add_argument(
        "--timeout", type=float, default=20.0, help="give up after this many seconds (exit 4); default 20"
    )

    run = sub.add_parser(
        "run",
        parents=[connect],
        help="run one command on a device and print its output",
        description="Runs the command after -- and exits with its exit code. The password comes from "
        "SITELINE_PASSWORD, else a prompt on a terminal (never without one).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("target", help="device URL, e.g. ssh://root@10.0.0.5")
    # Not REMAINDER: that would swallow options written after the target (-i KEY ...).
    run.add_argument("cmd", nargs="*", help="the command, after --")

    probe = sub.add_parser(
        "probe",
        parents=[connect],
        help="print a device's snapshots",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument("target")
    from siteline.probe_cli import add_probe_arguments

    add_probe_arguments(probe)
    from siteline.logs_cli import add_logs_parser

    add_logs_parser(sub, connect)

    _add_device_parsers(sub, connect)
    _add_flash_parsers(sub, connect)
    from siteline.provision_cli import add_parser as add_provision_parser

    add_provision_parser(sub, connect)

    from siteline import diag_cli, plugins_cli

    plugins_cli.add_parsers(sub)  # plugins [list|enable NAME|disable NAME]
    diag_cli.add_parsers(sub, connect)  # diag TARGET -o FILE.zip
    sub.add_parser("ports", help="list serial ports with the chip or modem behind each and its target URL")

    from siteline import audit_cli, image_cli, mqtt_cli, outbox_cli, vault_cli
    from siteline.simulator import cli as sim_cli

    mqtt_cli.add_mqtt_parser(sub)
    outbox_cli.add_parsers(sub)
    outbox_cli.add_note_parser(sub)
    audit_cli.add_parsers(sub)
    vault_cli.add_parsers(sub)
    image_cli.add_parsers(sub)  # image verify, keys add|list|remove

    sim_cli.add_sim_parser(sub)
    sim_cli.add_demo_parser(sub)
    return parser


def _add_device_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                        connect: argparse.ArgumentParser) -> None:
    """shell, put, get, forward: the commands that work with one device's shell, files and ports."""

    def add(name: str, help_text: str, description: str, *positionals: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=[connect], help=help_text, description=description,
                                epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
        for positional in positionals:
            parser.add_argument(positional)
        return parser

    files = "SFTP over ssh://; checked chunks over serial:// and mqtt:// (small files). A second run resumes " \
        "a cut transfer. Prints the SHA-256 of the result on stdout."
    add("shell", "the device's interactive shell in this terminal (ssh, serial)",
        "Type ~. at the start of a line to disconnect.", "target")
    add("put", "copy a file to the device (resumes a cut upload)", files, "target", "local", "remote")
    add("get", "copy a file from the device (resumes a cut download)", files, "target", "remote", "local")
    fwd = add("forward", "reach a port of the device on localhost (ssh)",
              "Forwards 127.0.0.1:LOCAL_PORT (default: any free port) to REMOTE_PORT on the device until Ctrl-C.",
              "target")
    fwd.add_argument("spec", metavar="[LOCAL_PORT:]REMOTE_PORT")


def _add_flash_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                       connect: argparse.ArgumentParser) -> None:
    """flash, rollback, rollout, jobs: updating devices (handlers and exit codes in flash_cli)."""
    from siteline import flash_cli

    def add(name: str, help_text: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=parents, help=help_text, description=flash_cli.__doc__.split("\n\n")[1]
                              if flash_cli.__doc__ else None, epilog=flash_cli.EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    health = argparse.ArgumentParser(add_help=False)
    health.add_argument("--health-unit", action="append", metavar="UNIT",
                        help="a systemd unit that must be active after the reboot (repeat for more)")
    health.add_argument("--health-command", metavar="CMD", help="a command that must exit 0 after the reboot")
    health.add_argument("--health-settle", type=float, metavar="SECONDS", help="wait this long after the boot "
                        "before the health check (default 30)")
    health.add_argument("--boot-timeout", type=float, metavar="SECONDS",
                        help="wait this long for the device to come back after the reboot (default 300)")
    health.add_argument("--yes", action="store_true", help="do not ask (needed from a script)")
    image = argparse.ArgumentParser(add_help=False)
    image.add_argument("--sig", metavar="F", help="the detached signature (default: IMAGE.sig)")
    image.add_argument("--no-reboot", action="store_true", help="install and switch, leave the reboot to you")
    image.add_argument("--allow-metered", action="store_true", help="send a large image over a metered link")
    image.add_argument("--allow-downgrade", action="store_true", help="flash an older version than installed")
    image.add_argument("--bootloader-override", metavar="TEXT",
                       help="for an image that rewrites the bootloader: the exact sentence the refusal shows")
    image.add_argument("--confirm-compatible", metavar="TEXT",
                       help="for a raw image (it declares no compatible): type the device's compatible string")
    flash = add("flash", "flash a signed image onto a device (health check, automatic rollback)",
                [connect, image, health])
    flash.add_argument("target", help="device URL, e.g. ssh://root@10.0.0.5")
    flash.add_argument("image", help="the image: .raucb, .swu, .img[.gz|.xz|.zst]")
    flash.set_defaults(handler=flash_cli.flash_main)
    rollback = add("rollback", "switch a device back to its other slot, reboot, check it", [connect, health])
    rollback.add_argument("target")
    rollback.set_defaults(handler=flash_cli.rollback_main)
    rollout = add("rollout", "flash every device of a site: canary, soak, waves; stop at the first failure",
                  [connect, image, health])
    rollout.add_argument("site", help="the site's name in the device list")
    rollout.add_argument("image")
    rollout.add_argument("--canary", type=int, default=1, metavar="N", help="devices in the canary wave (default 1)")
    rollout.add_argument("--soak", metavar="DURATION", help="wait after the canary, e.g. 90s, 10m, 1h (default 30m; "
                         "a shorter soak is recorded as your choice)")
    rollout.add_argument("--wave", type=int, metavar="N", help="devices per wave after the soak (default: a quarter "
                         "of the rest, rounded up)")
    rollout.set_defaults(handler=flash_cli.rollout_main)
    jobs = sub.add_parser("jobs", help="flash jobs and rollouts not finished (resume them)", epilog=flash_cli.EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs.add_argument("--all", action="store_true", help="finished ones too")
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION")
    resume = actions.add_parser("resume", parents=[connect], help="finish a job or rollout that was cut")
    resume.add_argument("id", metavar="ID")
    jobs.set_defaults(handler=flash_cli.jobs_main)
    from siteline.recover_cli import add_recover_parser

    add_recover_parser(sub, connect)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the remote command, taken as is: argparse cannot mix
    # options after a positional with a trailing command line.
    tail: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, tail = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    if tail:
        if args.command != "run":
            parser.error("'--' and a command after it only go with 'siteline run'")
        args.cmd = [*args.cmd, *tail]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.command in ("sim", "demo") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command != "sim":  # a simulated device is not Siteline: its lines stay out of the support log
        from siteline.core import app_log

        # After basicConfig, which does nothing once the root logger has a handler.
        app_log.install(logging.DEBUG if args.verbose else logging.INFO)
    command = args.command or "gui"
    if command == "gui":
        from siteline.ui.app import run_gui

        return run_gui()
    if command in ("run", "probe"):
        from siteline.commands import run_or_probe

        return asyncio.run(run_or_probe(args))
    if command == "shell" and sys.platform == "win32":
        print("siteline: 'siteline shell' needs a POSIX terminal and is not available on Windows yet; "
              "open the device's Console tab in the Siteline window instead.", file=sys.stderr)
        return 2
    if command == "shell":
        from siteline.shell_cli import shell_command

        return asyncio.run(shell_command(args))
    if command in ("put", "get"):
        from siteline.transfer_cli import put_or_get

        try:
            return asyncio.run(put_or_get(args))
        except KeyboardInterrupt:
            print(f"\nsiteline: the {command} was interrupted; run it again to resume.", file=sys.stderr)
            return 130
    if command == "forward":
        from siteline.commands import forward

        return asyncio.run(forward(args))
    if command == "ports":
        from siteline.commands import list_ports

        return list_ports()
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        result: int = handler(args)
    except BrokenPipeError:
        # `siteline plugins | head`: the reader left; say nothing more (and not at exit's flush either).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return result


if __name__ == "__main__":
    sys.exit(main())
