"""`siteline flash`, `rollback`, `rollout` and `jobs`: update devices from a terminal or a script.

flash checks the image first (signature by a trusted key, compatible with the device, no bootloader write or
downgrade without the override), shows the verdict and the plan, asks (or takes --yes), then runs the flash
job: upload, install, reboot, health check, mark good, or roll back by itself. A job cut by Ctrl-C, a lost
link or a closed laptop is kept: `siteline jobs` lists it and `siteline jobs resume ID` finishes it.
rollout updates a site's devices from the device list: canary first, a soak, then waves; it stops at the first
device that does not end "succeeded". Progress goes to stderr; the outcome in words is the last line on stdout.

exit codes:
  0  done: the new slot booted, is healthy and marked good (installed: switched, reboot left to you);
     for rollback: back on the other slot, healthy; for rollout: every device done
  2  usage: a bad target or option
  3  refused: nothing was changed (unsigned, bad signature, unknown key, wrong compatible, bootloader or
     downgrade without the override, unknown or empty site, no confirmation, an unfinished job in the way,
     a changed SSH host key)
  4  unreachable: no answer within --timeout, or the link broke before the job could start
  5  authentication failed
  6  rolled back: the new image did not boot or was not healthy; the device is back on its old slot
  7  failed or cancelled, or a rollout stopped at a device that failed (the message says where it stopped)
  8  needs attention: the device is in a state Siteline will not fix alone (the message says what to do)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from siteline.commands import EXIT_OK, EXIT_REFUSED_FOR_SAFETY, EXIT_UNREACHABLE, EXIT_USAGE, connect_or_code, fail
from siteline.core.errors import SitelineError, TransportError
from siteline.core.flash.job import FlashJob, FlashOptions, HealthCheck
from siteline.core.flash.store import JobStore
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import Transport
from siteline.transfer_cli import size_text

log = logging.getLogger(__name__)
EXIT_REFUSED = EXIT_REFUSED_FOR_SAFETY
EXIT_ROLLED_BACK, EXIT_FAILED, EXIT_ATTENTION = 6, 7, 8
STATUS_EXIT = {"succeeded": EXIT_OK, "installed": EXIT_OK, "refused": EXIT_REFUSED, "rolled-back": EXIT_ROLLED_BACK,
               "failed": EXIT_FAILED, "cancelled": EXIT_FAILED, "needs-attention": EXIT_ATTENTION,
               "running": EXIT_FAILED}
STATUS_WORDS = {"succeeded": "updated", "installed": "installed (reboot it to use the new slot)",
                "rolled-back": "rolled back", "refused": "refused", "failed": "failed", "cancelled": "cancelled",
                "needs-attention": "needs attention", "running": "not finished"}
EPILOG = __doc__[__doc__.index("exit codes:"):] if __doc__ else ""
PLAIN_EVERY = 5.0  # seconds between unchanged progress lines when stderr is not a terminal
ASSUMED_BPS = {"ssh": 20e6 / 8}  # bytes/s for the estimate: a good LTE link; a serial line uses its baud rate


# -- shared pieces ------------------------------------------------------------------------------------------------

def refuse(reason: str) -> int:
    print(f"siteline: refused: {reason}", file=sys.stderr)
    return EXIT_REFUSED


def job_store() -> JobStore:
    from siteline import paths

    return JobStore(paths.data_dir() / "flash-jobs")


def options_from(args: argparse.Namespace) -> FlashOptions:
    """The job's options from the command line (rollback has no image options: their defaults hold)."""
    health: dict[str, Any] = {"units": tuple(args.health_unit or ()), "command": args.health_command or ""}
    if args.health_settle is not None:
        health["settle"] = args.health_settle
    extra: dict[str, Any] = {}
    if getattr(args, "confirm_compatible", None) and "raw_compatible" in FlashOptions.__dataclass_fields__:
        extra["raw_compatible"] = args.confirm_compatible  # lead's API change of 15:58 (FlashOptions gains it)
    if args.boot_timeout is not None:
        extra["boot_timeout"] = args.boot_timeout
    return FlashOptions(reboot=not getattr(args, "no_reboot", False),
                        allow_metered=getattr(args, "allow_metered", False),
                        bootloader_override=getattr(args, "bootloader_override", None),
                        allow_downgrade=getattr(args, "allow_downgrade", False), health=HealthCheck(**health), **extra)


def recorder(site: str, device: str) -> Callable[[str, Mapping[str, Any], str], None]:
    from siteline.cli_audit import record_for

    def record(action: str, detail: Mapping[str, Any], result: str) -> None:
        record_for(site, device, action, dict(detail), result)

    return record


def open_link(args: argparse.Namespace, target: Target, first: Transport | None = None) -> Any:
    """A FlashLink whose reconnect (after a reboot) connects with the same arguments: vault password, pinned
    host key, --timeout. ``first`` is a transport connected already (so its refusal codes were given)."""
    from siteline.commands import _connect
    from siteline.core.flash.link import TransportLink

    ready = [first] if first is not None else []

    async def connect() -> Transport:
        return ready.pop() if ready else await _connect(args, target)

    return TransportLink(connect)


def confirm(args: argparse.Namespace, question: str, ask: Callable[[str], str] = input) -> str | None:
    """None when it may go ahead, else the refusal reason (a script must pass --yes; nobody answered y)."""
    if args.yes:
        return None
    if not sys.stdin.isatty():
        return "not a terminal: pass --yes to flash from a script"
    try:
        answer = ask(question)
    except EOFError:
        answer = ""
    return None if answer.strip().lower() in ("y", "yes") else "not confirmed (answer y to go ahead)"


class JobProgress:
    """Status lines on stderr from a job's saved changes: device, step, % and the step's own words."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._last: dict[str, tuple[tuple[str, str], float]] = {}
        self._drawn = False

    def __call__(self, job: FlashJob) -> None:
        # The step at work, else the last one that ended (a "pending" next step says nothing yet).
        step = next((s for s in job.steps if s.state == "running"), None) or next(
            (s for s in reversed(job.steps) if s.state != "pending"), None)
        if step is None:
            return
        pct = f"{step.done * 100 / step.total:5.1f}%" if step.total else "   -  "
        eta = f"  ETA {int(step.eta) // 60}:{int(step.eta) % 60:02d}" if step.eta is not None else ""
        text = f"{job.device}: {step.name:9} {step.state:8} {pct}  {step.detail}{eta}".rstrip()
        key, now = (step.name, step.state), time.monotonic()
        seen = self._last.get(job.device)
        if self.tty:
            self.stream.write("\r" + text[:200] + "\x1b[K")
            self._drawn = True
        elif seen is None or seen[0] != key or now - seen[1] >= PLAIN_EVERY or (step.total and step.done >= step.total):
            self.stream.write(text + "\n")
        else:
            return
        self._last[job.device] = (key, now)
        self.stream.flush()

    def end(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class RolloutProgress:
    """One stderr line when the rollout moves on: a wave starts, the soak begins (and when it ends)."""

    def __init__(self) -> None:
        self._said: tuple[str, int] | None = None

    def __call__(self, rollout: Any) -> None:
        running = [d for d in rollout.devices if d.status == "running"]
        now = (rollout.phase, running[0].wave if running else -1)
        if now == self._said or rollout.finished:
            return
        self._said = now
        if rollout.phase == "soak" and rollout.soak_ends:
            until = time.strftime("%H:%M:%S", time.localtime(rollout.soak_ends))
            print(f"siteline: rollout: soaking until {until}, then the canary is checked again", file=sys.stderr)
        elif running:
            wave = running[0].wave
            names = ", ".join(d.name for d in rollout.devices if d.wave == wave)
            print(f"siteline: rollout: {'canary' if wave == 0 else f'wave {wave}'}: {names}", file=sys.stderr)


def outcome(job: FlashJob) -> int:
    """The evidence, then the final line in words on stdout; returns the exit code for the job's status."""
    for line in job.evidence[-12:]:
        print(f"  {line}")
    words = STATUS_WORDS.get(job.status, job.status)
    print(f"{job.device}: {words}" + (f": {job.message}" if job.message else ""))
    return STATUS_EXIT.get(job.status, EXIT_FAILED)


async def run_machine(job: FlashJob, link: Any, record: Callable[[str, Mapping[str, Any], str], None],
                      progress: JobProgress) -> FlashJob:
    from siteline.core.flash.machine import run_job
    from siteline.core.images.trusted_keys import TrustedKeys

    try:
        return await run_job(job, link, store=job_store(), record=record, backends=update_backends(),
                             keys=TrustedKeys(), listener=progress)
    finally:
        progress.end()
        await link.close()


def update_backends() -> list[Any]:
    from siteline.core.plugins import load_plugins

    host = load_plugins()
    return [c.item for c in host.update_backends()]


def run_async(coro: Awaitable[int], what: str) -> int:
    from siteline.core.flash.store import JobStoreError

    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except JobStoreError as exc:  # another Siteline drives that job now, or the disk is full: device untouched
        return refuse(str(exc))
    except KeyboardInterrupt:
        print(f"\nsiteline: the {what} was interrupted; `siteline jobs` shows it and `siteline jobs resume ID` "
              "finishes it.", file=sys.stderr)
        return 130


def job_in_the_way(devices: set[str]) -> str | None:
    """Why a new job must wait: one of ``devices`` has a job not finished (flash, rollback and rollout ask)."""
    pending = next((j for j in job_store().unfinished() if j.device in devices), None)
    if pending is None:
        return None
    what = f"{pending.kind} of {Path(pending.image).name}" if pending.image else pending.kind
    return (f"{pending.device} has an unfinished job {pending.id} ({what}); finish it first: "
            f"siteline jobs resume {pending.id}")


# -- flash --------------------------------------------------------------------------------------------------------

def flash_main(args: argparse.Namespace) -> int:
    return run_async(_flash(args), "flash")


async def _flash(args: argparse.Namespace) -> int:
    from siteline.cli_audit import device_of

    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    image = Path(args.image)
    sig = Path(args.sig) if args.sig else None
    site, device = device_of(target)
    record = recorder(site, device)
    problem = local_signature_problem(image, sig)
    if problem:  # nothing about the device can make a bad signature good: no login needed to say no
        record("flash", {"image": image.name, "target": str(target), "ok": False, "refusals": [problem]}, "refused")
        return refuse(problem)
    in_the_way = job_in_the_way({device})
    if in_the_way:
        return refuse(in_the_way)
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    link = open_link(args, target, transport)
    try:
        verdict = await gate_on_device(link, device, str(target), image, sig, options_from(args),
                                       raw_compatible=args.confirm_compatible)
    except (TransportError, OSError, TimeoutError) as exc:
        await link.close()
        return fail(EXIT_UNREACHABLE, exc)
    except SitelineError as exc:  # its slots cannot be read: nothing can say the image is for it
        await link.close()
        return refuse(str(exc))
    print(verdict.text)
    if not verdict.ok:
        await link.close()
        record("flash", {**verdict.audit_detail, "target": str(target)}, "refused")
        return refuse(verdict.reason)
    reason = confirm(args, "Flash? [y/N] ")
    if reason:
        await link.close()
        return refuse(reason)
    from siteline.core.flash.machine import prepare_flash

    try:
        job = prepare_flash(image, sig, device=device, site=site, target=str(target), options=options_from(args))
    except (SitelineError, OSError, ValueError) as exc:
        await link.close()
        return refuse(str(exc))
    return outcome(await run_machine(job, link, record, JobProgress()))


# -- rollback -----------------------------------------------------------------------------------------------------

def rollback_main(args: argparse.Namespace) -> int:
    return run_async(_rollback(args), "rollback")


async def _rollback(args: argparse.Namespace) -> int:
    from siteline.cli_audit import device_of
    from siteline.core.flash.machine import prepare_rollback

    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    site, device = device_of(target)
    in_the_way = job_in_the_way({device})
    if in_the_way:
        return refuse(in_the_way)
    reason = confirm(args, f"Roll {device} back to its other slot and reboot it? [y/N] ")
    if reason:
        return refuse(reason.replace("to flash", "to roll back"))
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    job = prepare_rollback(device=device, site=site, target=str(target), options=options_from(args))
    return outcome(await run_machine(job, open_link(args, target, transport), recorder(site, device), JobProgress()))


# -- jobs ---------------------------------------------------------------------------------------------------------

def jobs_main(args: argparse.Namespace) -> int:
    from siteline import paths
    from siteline.core.flash.rollout import RolloutStore

    if args.jobs_command == "resume":
        return run_async(_resume(args), "job")
    store, rollouts = job_store(), RolloutStore(paths.data_dir() / "flash-jobs")
    jobs = store.jobs() if args.all else store.unfinished()
    runs = rollouts.rollouts() if args.all else rollouts.unfinished()
    for r in runs:
        done = sum(d.status == "succeeded" for d in r.devices)
        print(f"{r.id}  rollout  {r.site:16} {r.status:12} {done}/{len(r.devices)} devices, {r.phase}"
              f"  {Path(r.image).name}  {r.message}".rstrip())
    for j in jobs:
        step = j.current
        where = f"at {step.name}" if step is not None and not j.finished else ""
        print(f"{j.id}  {j.kind:8} {j.device:16} {j.status:12} {where:14} {Path(j.image).name}"
              f"{'  rollout ' + j.rollout if j.rollout else ''}  {j.message}".rstrip())
    if not jobs and not runs:
        print("no unfinished jobs" if not args.all else "no jobs")
    return EXIT_OK


async def _resume(args: argparse.Namespace) -> int:
    from siteline import paths
    from siteline.core.flash.rollout import RolloutStore

    rollouts = RolloutStore(paths.data_dir() / "flash-jobs")
    if rollouts.path(args.id).exists():
        return await _run_rollout(args, rollouts.load(args.id), resumed=True)
    try:
        job = job_store().load(args.id)
    except (FileNotFoundError, ValueError) as exc:
        return fail(EXIT_USAGE, SitelineError(f"no job or rollout {args.id} can be read ({exc}).",
                                              "`siteline jobs` lists them."))
    if job.finished:
        return outcome(job)
    if job.rollout:
        return refuse(f"job {job.id} belongs to rollout {job.rollout}: resume that: siteline jobs resume {job.rollout}")
    try:
        target = parse_target(job.target)
    except SitelineError as exc:
        return fail(EXIT_USAGE, exc)
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    print(f"siteline: resuming job {job.id} ({job.kind} of {Path(job.image).name or 'the other slot'} on "
          f"{job.device})", file=sys.stderr)
    return outcome(await run_machine(job, open_link(args, target, transport), recorder(job.site, job.device),
                                     JobProgress()))


def estimate(size: int, kind: str, baud: int | None) -> str:
    """The transfer time in words, at an assumed rate (a serial line: its baud rate, 10 bits a byte, base64)."""
    rate = baud / 10 * 3 / 4 if kind == "serial" and baud else ASSUMED_BPS.get(kind)
    if not rate:
        return "time unknown over this link"
    seconds = int(size / rate)
    when = f"{seconds // 3600} h {seconds // 60 % 60} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{max(seconds, 1)} s"
    at = f"{baud} baud" if kind == "serial" else "20 Mbit/s"
    return f"about {when} at {at}"


def plan_text(size: int, kind: str, baud: int | None, backend: str) -> str:
    return f"plan: send {size_text(size)} over {kind} ({estimate(size, kind, baud)}), install with {backend}"


# -- the checks before a byte is sent -----------------------------------------------------------------------------

def local_signature_problem(image: Path, sig: Path | None) -> str | None:
    """The signature part of the gate, which needs no device: None when a trusted key signed the image."""
    from siteline.core.images.gate import UNSIGNED, signature_path
    from siteline.core.images.trusted_keys import KeyStoreError, TrustedKeys

    if not image.is_file():
        return f"the image {image} does not exist or is not a file"
    path = sig if sig is not None else signature_path(image)
    if not path.is_file():
        return UNSIGNED if sig is None else f"unsigned: the signature {path} does not exist"
    try:
        verdict = TrustedKeys().verify_trusted(image, path)
    except KeyStoreError as exc:
        return f"the trusted keys cannot be read: {exc}"
    return None if verdict.ok else f"signature refused: {verdict.reason}"


class GateView:
    """The gate's result for one device, with the verdict and the plan in words for the technician."""

    def __init__(self, result: Any, slots: Any, plan: str) -> None:
        self.ok: bool = result.ok
        self.reason: str = "; ".join(result.reasons)
        self.audit_detail: dict[str, Any] = result.audit_detail
        verdict, info = result.verdict, result.info
        lines = []
        if verdict is not None and verdict.ok:
            lines.append(f"signature: good, key '{verdict.key_name}' {verdict.fingerprint} ({verdict.algorithm})")
        if info is not None:
            booted = slots.booted_slot
            installed = booted.bundle_version if booted is not None and booted.bundle_version else "unknown"
            lines.append(f"image: {info.path.name}, {info.format}, version {info.version or 'unknown'} "
                         f"(installed: {installed}), {size_text(info.size)}")
            lines.append(f"compatible: image '{info.compatible or ', '.join(info.compatibles) or 'none declared'}'"
                         f", device '{slots.compatible or 'unknown'}'")
        lines += [f"note: {n}" for n in result.notes] + [f"refused: {r}" for r in result.reasons]
        self.text = "\n".join([*lines, plan] if result.ok else lines)


async def gate_on_device(link: Any, device: str, target: str, image: Path, sig: Path | None,
                         options: FlashOptions, raw_compatible: str | None = None) -> GateView:
    """Read the device's slots, then run the whole gate (signature, compatible, bootloader, downgrade)."""
    from siteline.core.flash.reading import Reader
    from siteline.core.images.gate import DeviceFacts, Overrides, check_before_flash
    from siteline.core.images.trusted_keys import TrustedKeys
    from siteline.core.plugin_api import make_context

    ctx = make_context(device, target, link.run, log)
    slots = await Reader(ctx).slots()
    booted = slots.booted_slot
    facts = DeviceFacts(slots.compatible, booted.bundle_version if booted is not None else None, device)
    overrides = Overrides(bootloader=options.bootloader_override, downgrade=options.allow_downgrade,
                          raw_compatible=raw_compatible)
    result = check_before_flash(image, sig, facts, overrides, TrustedKeys())
    plan = ""
    if result.ok and result.info is not None:
        backend = await _backend_for(ctx, result.info.format)
        baud = link.line_bps if getattr(link, "kind", "ssh") == "serial" else None
        plan = plan_text(result.info.size, getattr(link, "kind", "ssh"), baud, backend)
    return GateView(result, slots, plan)


async def _backend_for(ctx: Any, image_format: str) -> str:
    for backend in update_backends():
        if image_format in backend.formats and await backend.detect(ctx):
            return str(backend.name)
    return f"no installed backend for {image_format} images found on the device (preflight will say)"


# -- rollout ------------------------------------------------------------------------------------------------------

def rollout_main(args: argparse.Namespace) -> int:
    args.image = os.path.abspath(args.image)  # the jobs of a resumed rollout must find it from anywhere
    if args.sig:  # so must the signature: a relative one is not found from another folder (device "refused")
        args.sig = os.path.abspath(args.sig)
    return run_async(_rollout(args), "rollout")


async def _rollout(args: argparse.Namespace) -> int:
    from siteline import paths
    from siteline.core.flash.rollout import RolloutStore, parse_duration, plan_rollout, site_devices
    from siteline.core.inventory import Inventory

    try:
        soak = parse_duration(args.soak) if args.soak is not None else None
    except ValueError as exc:
        return fail(EXIT_USAGE, exc)
    if args.no_reboot:
        return refuse("a rollout cannot use --no-reboot: each device must prove the image boots and is healthy "
                      "before the next one is touched")
    image, sig = Path(args.image), Path(args.sig) if args.sig else None
    inventory = Inventory(paths.config_dir() / "devices.json")
    try:
        inventory.load()
        devices = site_devices(inventory.devices, args.site)
        rollout = plan_rollout(args.site, devices, image=args.image, signature=str(sig or ""),
                               canary=args.canary, wave_size=args.wave, soak=soak, options=options_from(args))
    except SitelineError as exc:
        return refuse(str(exc))
    store = RolloutStore(paths.data_dir() / "flash-jobs")
    same = [r for r in store.unfinished() if r.site == args.site]
    if same:
        return refuse(f"the rollout {same[0].id} at {args.site} is not finished; resume it: "
                      f"siteline jobs resume {same[0].id}")
    problem = local_signature_problem(image, sig)
    if problem:
        return refuse(problem)
    in_the_way = job_in_the_way({name for name, _ in devices})
    if in_the_way:
        return refuse(in_the_way)
    _print_plan(rollout)
    reason = confirm(args, f"Roll out to {len(devices)} devices at {args.site}? [y/N] ")
    if reason:
        return refuse(reason.replace("to flash", "to roll out"))
    return await _run_rollout(args, rollout, resumed=False)


def _print_plan(rollout: Any) -> None:
    detail = rollout.plan_detail()
    for index, wave in enumerate(detail["waves"]):
        print(f"{'canary' if index == 0 else f'wave {index}'}: {', '.join(wave)}")
    print(f"soak after the canary: {detail['soak']}; then the canary is checked again")


async def _run_rollout(args: argparse.Namespace, rollout: Any, *, resumed: bool) -> int:
    from siteline import paths
    from siteline.cli_audit import record_for
    from siteline.core.flash.rollout import RolloutHooks, RolloutStore, run_rollout

    if resumed:
        print(f"siteline: resuming rollout {rollout.id} at {rollout.site} ({rollout.phase})", file=sys.stderr)
    progress = JobProgress()
    hooks = RolloutHooks(run_one=lambda d: _rollout_device(args, rollout, d, progress),
                         recheck=lambda d: _recheck(args, d),
                         record=lambda a, d, r: record_for(rollout.site, "-", a, dict(d), r),
                         listener=RolloutProgress())
    done = await run_rollout(rollout, RolloutStore(paths.data_dir() / "flash-jobs"), hooks)
    progress.end()
    for device in done.devices:
        print(f"  {device.name}: {device.status}" + (f": {device.message}" if device.message else ""))
    print(done.message)
    return EXIT_OK if done.status == "succeeded" else EXIT_FAILED


async def _rollout_device(args: argparse.Namespace, rollout: Any, device: Any, progress: JobProgress) -> FlashJob:
    """Run this device's job of the rollout: the one already finished, the one cut (resumed), or a new one."""
    from siteline.core.flash.machine import prepare_flash

    mine = [j for j in job_store().jobs() if j.rollout == rollout.id and j.device == device.name]
    if mine and mine[-1].finished:
        return mine[-1]
    if mine:
        job = mine[-1]
    else:
        job = prepare_flash(Path(rollout.image), Path(rollout.signature) if rollout.signature else None,
                            device=device.name, site=rollout.site, target=device.target, options=rollout.options)
        job.rollout = rollout.id
        job_store().save(job)
    target = parse_target(device.target)
    print(f"siteline: {device.name}: {'resuming' if mine else 'starting'} ({device.target})", file=sys.stderr)
    return await run_machine(job, open_link(args, target), recorder(rollout.site, device.name), progress)


async def _recheck(args: argparse.Namespace, device: Any) -> str | None:
    from siteline.core.flash.rollout import canary_problem

    if device.job_id is None:
        return "its job is not recorded"
    link = open_link(args, parse_target(device.target))
    try:
        return await canary_problem(link, job_store().load(device.job_id))
    finally:
        await link.close()
