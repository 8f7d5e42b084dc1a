"""`siteline diag TARGET -o FILE.zip [--logs N] [--no-outbox] [--force]`: a diagnostics bundle for support staff.

Collects the device's probes (system, modem, network, slots, posture), its newest log records, the raw boot
counters, the usual config files and the end of Siteline's own log into one zip, every secret blanked, and
puts it in the outbox for the control plane when it is small enough for the data budget.

exit codes:
  0    the bundle was written (areas the device could not give are listed in it, "not collected: why")
  1    the bundle could not be written (a full disk, a folder that cannot be written); nothing was left
  2    usage: a bad target or option, FILE exists (use --force), or FILE's folder does not exist
  3    refused for safety: the device's SSH host key changed
  4    unreachable: no answer within --timeout; or the link broke, or the device stopped answering, mid-way
       (what was collected is saved, marked partial)
  5    authentication failed
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from siteline.core.errors import SitelineError

if TYPE_CHECKING:
    from siteline.core.diag.collect import Collected
    from siteline.core.targets import Target

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 4
HELP = __doc__.split("\n\n", 2)[1] if __doc__ else ""
EPILOG = __doc__[__doc__.index("exit codes:"):] if __doc__ else ""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], connect: argparse.ArgumentParser) -> None:
    from siteline.core.diag.collect import DEFAULT_LOG_LINES

    diag = sub.add_parser("diag", parents=[connect], help="collect a device's diagnostics into one zip for support",
                          description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    diag.add_argument("target", help="device URL, e.g. ssh://root@10.0.0.5 or serial:///dev/ttyUSB0")
    diag.add_argument("-o", "--output", required=True, help="the .zip file to write")
    diag.add_argument("--logs", type=int, default=DEFAULT_LOG_LINES, metavar="N",
                      help=f"how many recent log records to include (default {DEFAULT_LOG_LINES}, at most 5000)")
    diag.add_argument("--no-outbox", action="store_true", help="do not queue the bundle for the control plane")
    diag.add_argument("--force", action="store_true", help="replace FILE when it exists")
    diag.set_defaults(handler=diag_command)


def diag_command(args: argparse.Namespace) -> int:
    output = Path(args.output).expanduser()
    if args.logs < 0:
        return _usage("--logs must be 0 or more")
    if output.is_dir():
        return _usage(f"{output} is a folder: give a file name such as {output / 'diag.zip'}")
    if output.exists() and not args.force:
        return _usage(f"{output} already exists: choose another name, or pass --force to replace it")
    if not output.parent.is_dir():  # said now, not after minutes of collecting (or hidden behind "unreachable")
        return _usage(f"the folder {output.parent} does not exist: create it, or choose another file name")
    return asyncio.run(diag_async(args, output))


def _say(text: str) -> None:
    print(f"siteline: {text}", file=sys.stderr, flush=True)


async def diag_async(args: argparse.Namespace, output: Path) -> int:
    from siteline.cli_audit import device_of
    from siteline.commands import connect_or_code
    from siteline.core.targets import parse_target

    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return _usage(str(exc))
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    from siteline.core.diag.collect import AREAS, collect
    from siteline.core.plugins import load_plugins

    areas = AREAS if args.logs else tuple(a for a in AREAS if a != "logs")  # --logs 0: no log records at all
    try:
        collected = await collect(transport.run, load_plugins(), target=str(target), device=device_of(target)[1],
                                  log_lines=args.logs, areas=areas, progress=_progress)
    finally:
        await transport.close()
    return _finish(args, target, collected, output)


def _usage(message: str) -> int:
    _say(message)
    return EXIT_USAGE


def _progress(area: str, what: str) -> None:
    if what == "collecting":
        _say(f"collecting {area}…")


def _finish(args: argparse.Namespace, target: Target, collected: Collected, output: Path) -> int:
    from siteline.cli_audit import device_of, record
    from siteline.core import app_log
    from siteline.core.diag.archive import BundleWriteError, build_bundle, own_log_tail, summary, write_bundle
    from siteline.core.diag.outbox import queue_with_settings

    site, device = device_of(target)
    bundle = build_bundle(collected, site=site, own_log=own_log_tail(app_log.path()))
    try:
        write_bundle(bundle, output, force=args.force)
    except BundleWriteError as exc:
        _say(str(exc))
        return EXIT_FAILED
    print("\n".join(summary(collected)))
    print(f"saved {output} ({bundle.size_text}, {len(bundle.manifest['files']) + 1} files, "
          f"{collected.bytes_received:,} bytes read from the device in {len(collected.commands)} commands)")
    if collected.partial:
        print(f"PARTIAL: {collected.partial}")
    if args.no_outbox:
        queued = "not queued (--no-outbox)"
    else:
        decision = queue_with_settings(bundle, site=site, device=device, file_name=output.name)
        queued = decision.message
    print(queued)
    record(target, "diagnostics-bundle", {"file": output.name, "bytes": bundle.size, "sha256": bundle.sha256,
                                          "partial": bool(collected.partial), "outbox": queued})
    return EXIT_UNREACHABLE if collected.partial else EXIT_OK
