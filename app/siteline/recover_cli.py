"""`siteline recover TARGET [--yes]`: a device whose slots ran out of boot attempts, made bootable again.

Power cut again and again while it boots, a device burns a boot attempt each time until no slot has any left.
recover connects (the serial console is the usual way: such a device may not get as far as SSH), shows each
slot — its version, the attempts it has left, which one boots first — and, when the counters need it, resets
every slot's counter with the running slot first, reads the env back and records it in the audit trail.
It does not reboot: do that when ready (`siteline run TARGET -- reboot`).

exit codes:
  0  done: the counters are reset and read back
  2  usage: a bad target
  3  refused: nothing was changed (the counters are fine, or no confirmation)
  4  unreachable: no answer within --timeout
  5  authentication failed
  7  failed: the slots could not be read, or the reset did not happen or could not be confirmed
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from siteline.commands import EXIT_OK, EXIT_REFUSED_FOR_SAFETY, EXIT_USAGE, connect_or_code, fail
from siteline.core.device.slots import Slots
from siteline.core.errors import SitelineError
from siteline.core.flash.reading import Reader, attempts_words, is_primary
from siteline.core.flash.recovery import first_slot, needs_reset, reset_boot_counters, reset_plan
from siteline.core.plugin_api import make_context
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import Transport

EXIT_FAILED = 7
log = logging.getLogger("siteline.recover")


def add_recover_parser(sub: Any, connect: argparse.ArgumentParser) -> None:
    """`recover TARGET [--yes]` with the usual connect options (--user, --identity, --timeout ...)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "recover", parents=[connect], help="reset the boot counters of a device whose slots ran out of attempts",
        description=(__doc__ or "").split("\n\n")[1], epilog="exit codes:" + (__doc__ or "").split("exit codes:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="device URL, e.g. serial:///dev/ttyUSB0?baud=115200 (or ssh://root@10.0.0.5)")
    p.add_argument("--yes", action="store_true", help="do not ask (needed from a script)")
    p.set_defaults(handler=recover_main)


def recover_main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(recover(args))
    except KeyboardInterrupt:
        print("siteline: recover interrupted; read the slots again before doing anything else", file=sys.stderr)
        return EXIT_FAILED


def slots_lines(slots: Slots) -> list[str]:
    """Each A/B slot in words: version, attempts left, running, booted first."""
    lines = []
    for slot in slots.slots:
        if not slot.bootname:
            continue
        marks = [m for m, on in (("running", slot.booted), ("boots first", is_primary(slots, slot))) if on]
        lines.append(f"  slot {slot.bootname}: {slot.bundle_version or 'version unknown'}, {attempts_words(slot)}"
                     + (f" ({', '.join(marks)})" if marks else ""))
    return lines or ["  no A/B slots found"]


async def recover(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    from siteline.cli_audit import device_of
    from siteline.flash_cli import recorder

    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    site, device = device_of(target)
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    try:
        return await _recover(args, target, device, transport, recorder(site, device), ask)
    finally:
        await transport.close()


async def _read(device: str, target: Target, transport: Transport) -> Slots | str:
    reader = Reader(make_context(device, str(target), transport.run, log))
    try:
        return await reader.slots()
    except (SitelineError, OSError, TimeoutError, EOFError) as exc:
        return str(exc)


async def _recover(args: argparse.Namespace, target: Target, device: str, transport: Transport,
                   record: Callable[[str, dict[str, Any], str], None], ask: Callable[[str], str]) -> int:
    slots = await _read(device, target, transport)
    if isinstance(slots, str):
        return fail(EXIT_FAILED, SitelineError(f"{device}: {slots}"))
    print(f"{device}:", *slots_lines(slots), sep="\n")
    why = needs_reset(slots)
    if why is None:
        print(f"siteline: nothing to reset on {device}: the boot counters are fine.", file=sys.stderr)
        return EXIT_REFUSED_FOR_SAFETY
    todo = reset_plan(slots, first_slot(slots))
    print(f"{why[0].upper()}{why[1:]}.\nThe recovery resets every slot's counter, {todo.order.split()[0]} first: "
          f"`{todo.linux}`")
    refusal = _confirm(args, f"Reset the boot counters of {device}? [y/N] ", ask)
    if refusal:
        print(f"siteline: {refusal}; nothing was changed", file=sys.stderr)
        return EXIT_REFUSED_FOR_SAFETY
    outcome = await reset_boot_counters(transport.run, slots, record)
    print(str(outcome), file=sys.stdout if outcome.ok else sys.stderr)
    after = await _read(device, target, transport)
    print("Read back:", *(slots_lines(after) if isinstance(after, Slots) else [f"  {after}"]), sep="\n")
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _confirm(args: argparse.Namespace, question: str, ask: Callable[[str], str]) -> str | None:
    """None when it may go ahead, else why not (a script must pass --yes)."""
    if args.yes:
        return None
    if not sys.stdin.isatty():
        return "not a terminal: pass --yes to reset the counters from a script"
    try:
        answer = ask(question)
    except EOFError:
        answer = ""
    return None if answer.strip().lower() in ("y", "yes") else "not confirmed (answer y to go ahead)"
