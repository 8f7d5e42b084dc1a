"""`siteline provision TARGET --profile FILE|NAME`: provision a new device offline, over serial or SSH.

Eight steps, each idempotent: identify, hostname/site/tags, replace the factory passwords (kept in the vault
first), device key + CSR (queued in the outbox), MQTT client settings, firewall baseline (dead-man switch),
posture checks, provisioning record. A pulled cable or a closed laptop leaves the job "interrupted": the same
command again resumes it at the step it stopped in. --dry-run shows every command that would run (secrets
masked) and changes nothing. `siteline provision --jobs` lists the jobs.

The vault: its passphrase comes from SITELINE_VAULT_PASSPHRASE, else a prompt on a terminal; without an
unlocked vault the password step refuses (a generated password must be kept before the device takes it).

exit codes:
  0  provisioned (every step done, every required posture check passed); for --dry-run: the plan is complete
  2  usage: a bad target, option or profile
  3  refused: nothing unsafe was done (already provisioned: pass --reprovision; no vault; a changed profile;
     wrong device family; no confirmation; a changed SSH host key; the job is run by another Siteline)
  4  unreachable or interrupted: the link dropped; run the same command again to resume
  5  authentication failed (neither the vault's password nor the factory one was accepted)
  7  failed: a step could not be done (the message says what to do)
  8  incomplete: provisioned, but a required posture check did not pass (the record says which)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from siteline.commands import EXIT_AUTH_FAILED, EXIT_OK, EXIT_REFUSED_FOR_SAFETY, EXIT_UNREACHABLE, EXIT_USAGE
from siteline.core.errors import AuthError, HostKeyError, SitelineError, TransportError

if TYPE_CHECKING:
    from siteline.core.keep import Keep
    from siteline.core.provisioning.job import ProvisionJob
    from siteline.core.provisioning.link import TransportProvisionLink
    from siteline.core.provisioning.profile import Profile
    from siteline.core.provisioning.store import ProvisionStore
    from siteline.core.targets import Target

log = logging.getLogger(__name__)
EXIT_REFUSED, EXIT_FAILED, EXIT_INCOMPLETE = EXIT_REFUSED_FOR_SAFETY, 7, 8
STATUS_EXIT = {"provisioned": EXIT_OK, "incomplete": EXIT_INCOMPLETE, "refused": EXIT_REFUSED,
               "interrupted": EXIT_UNREACHABLE, "failed": EXIT_FAILED, "running": EXIT_FAILED}
EPILOG = __doc__[__doc__.index("exit codes:"):] if __doc__ else ""
DEFAULT_SITE = "unassigned"
FACTORY_PASSWORD_ENV = "SITELINE_FACTORY_PASSWORD"  # for scripts: the factory password when the profile has none


class CliStop(Exception):  # noqa: N818 (reads as what it does)
    """Stop with this exit code after one line on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], connect: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("provision", parents=[connect], help="provision a new device offline (serial or SSH)",
                            description=__doc__.split("\n\n")[1] if __doc__ else None, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", help="device URL, e.g. serial:///dev/ttyUSB0 or ssh://root@10.0.0.5")
    parser.add_argument("--profile", metavar="FILE|NAME", help="the device family's profile (.toml path or name)")
    parser.add_argument("--site", help=f"the site the device is installed at (default: its site in the device list, "
                        f"else {DEFAULT_SITE})")
    parser.add_argument("--tag", action="append", default=[], metavar="T", help="a tag for the device (repeat)")
    parser.add_argument("--dry-run", action="store_true", help="show every command that would run; change nothing")
    parser.add_argument("--reprovision", action="store_true", help="provision a device that was provisioned before")
    parser.add_argument("--new-job", action="store_true",
                        help="abandon the unfinished job on this target and start a new one")
    parser.add_argument("--yes", action="store_true", help="do not ask (needed from a script)")
    parser.add_argument("--factory-password-prompt", action="store_true",
                        help="ask for the factory password instead of taking the profile's")
    parser.add_argument("--jobs", action="store_true", help="list provisioning jobs (with --all: finished ones too)")
    parser.add_argument("--all", action="store_true", help="with --jobs: finished jobs too")
    parser.set_defaults(handler=provision_main)


def provision_main(args: argparse.Namespace) -> int:
    if args.jobs:
        return list_jobs(args)
    try:
        return asyncio.run(_provision(args))
    except CliStop as stop:
        print(f"siteline: {stop}", file=sys.stderr)
        return stop.code
    except KeyboardInterrupt:
        print("\nsiteline: provisioning stopped; run the same command again to resume it.", file=sys.stderr)
        return 130


def list_jobs(args: argparse.Namespace) -> int:
    from siteline.core.provisioning.job import STEP_TITLES
    from siteline.core.provisioning.store import ProvisionStore

    jobs = [j for j in ProvisionStore().jobs() if args.all or not j.final]
    if not jobs:
        print("no provisioning jobs" + ("" if args.all else " to resume (--all shows finished ones)"))
        return EXIT_OK
    for job in jobs:
        step = job.next_step()
        where = f"at \"{STEP_TITLES.get(step, step)}\"" if step and not job.final else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.updated))
        print(f"{job.id}  {when}  {job.status:11} {job.site}/{job.device or '?'}  {job.profile_name}  "
              f"{job.target}  {where}".rstrip())
        if job.message:
            print(f"    {job.message}")
    return EXIT_OK


# -- the pieces -------------------------------------------------------------------------------------------------

def _target(args: argparse.Namespace) -> Target:
    from siteline.core.targets import parse_target

    if not args.target:
        raise CliStop(EXIT_USAGE, "give the device's TARGET (or --jobs to list the jobs)")
    if not args.profile:
        raise CliStop(EXIT_USAGE, "give the device family's profile: --profile FILE|NAME")
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        raise CliStop(EXIT_USAGE, str(exc)) from exc
    if not (target.is_serial or target.is_ssh):
        raise CliStop(EXIT_REFUSED, f"{target} is reached over MQTT, which cannot provision a device; connect a "
                      "serial cable (or SSH on the local network)")
    return target


def _profile(args: argparse.Namespace) -> Profile:
    from siteline.core.provisioning.profile import find_profile, load_profile

    try:
        return load_profile(find_profile(args.profile))
    except SitelineError as exc:
        raise CliStop(EXIT_USAGE, str(exc)) from exc


def _site(args: argparse.Namespace, target: Target) -> str:
    if args.site:
        return str(args.site)
    from siteline.cli_audit import UNLISTED_SITE, device_of

    site, _ = device_of(target)
    return DEFAULT_SITE if site == UNLISTED_SITE else site


def _unlock_vault(keep: Keep) -> str:
    """Unlock the vault in this process (the password step writes to it); returns why it is not, or ""."""
    from siteline.core.vault.errors import WrongPassphrase
    from siteline.vault_cli import PASSPHRASE_ENV, ask

    vault = keep.vault
    if not vault.exists:
        return "there is no vault (create one: siteline vault init)"
    if not vault.locked:
        return ""
    try:
        vault.unlock(None if vault.uses_keyring else ask(f"Passphrase for the vault {vault.path}: ", PASSPHRASE_ENV))
    except WrongPassphrase as exc:
        raise CliStop(EXIT_AUTH_FAILED, f"the vault: {exc}") from exc
    except SitelineError as exc:  # no terminal to ask on, a damaged vault: the password step will refuse
        return str(exc)
    return ""


def _job(args: argparse.Namespace, store: ProvisionStore, target: Target, profile: Profile,
         keep: Keep) -> tuple[ProvisionJob, bool]:
    """The unfinished job for this target (resumed), else a new one (not saved yet). (job, resumed)"""
    from siteline.core.provisioning.job import ProvisionJob

    waiting = store.unfinished(target=str(target))
    if waiting and getattr(args, "new_job", False):
        for old in waiting:
            old.status, old.message = "failed", "abandoned: a new job was started on this target with --new-job"
            store.save(old)
        waiting = []
    if waiting and waiting[-1].profile_sha256 == profile.sha256:
        _same_request(args, waiting[-1])
        return waiting[-1], True
    if waiting and not args.reprovision:
        old = waiting[-1]
        raise CliStop(EXIT_REFUSED, f"job {old.id} on this device was started with another version of the profile "
                      f"{old.profile_name}; put that profile back to resume it, or pass --reprovision to start over "
                      "with this one")
    for old in waiting:  # --reprovision over a job begun with another profile: that job ends here
        old.status, old.message = "failed", "abandoned: started over with --reprovision and a changed profile"
        store.save(old)
    job = ProvisionJob.new(target=str(target), site=_site(args, target), profile_name=profile.name,
                           profile_sha256=profile.sha256, tags=list(args.tag))
    job.data["identify"] = {"reprovision": bool(args.reprovision)}
    job.data["technician"] = keep.technician
    return job, False


def _same_request(args: argparse.Namespace, job: ProvisionJob) -> None:
    """A resume must not quietly drop a --site/--tag the technician typed this time (another box, another site)."""
    site_differs = bool(args.site) and args.site != job.site
    tags_differ = bool(args.tag) and sorted(set(args.tag)) != sorted(set(job.tags))
    if site_differs or tags_differ:
        raise CliStop(EXIT_REFUSED, f"job {job.id} on this target was started for site {job.site} with tags "
                      f"{', '.join(job.tags) or '(none)'}, not what this command asks; run it without --site/--tag to "
                      "resume that job, or add --new-job to abandon it and start a new one")


def _logins(args: argparse.Namespace, profile: Profile, store: ProvisionStore, job: ProvisionJob,
            keep: Keep) -> list[tuple[str, Any]]:
    """The credentials to try, in order: the vault's password when a job for this device replaced the factory one,
    then the factory login (the profile's, SITELINE_FACTORY_PASSWORD, or a prompt)."""
    from siteline.core.keep import device_secret_name
    from siteline.core.transports.base import Credentials

    factory = profile.credentials.factory
    user = args.user or (factory[0].user if factory else "root")
    found: list[tuple[str, Any]] = []
    for earlier in (job, store.latest_for_target(job.target)):
        creds = earlier.data.get("credentials") if earlier is not None else None
        if earlier is not None and earlier.device and isinstance(creds, dict) and creds.get("vault"):
            for what, entry in (("the vault's password", "password"),
                                ("the vault's previous password", "password-previous")):
                # previous: what a re-provisioning whose password change failed left the device taking
                password = keep.secret(device_secret_name(earlier.site, earlier.device, entry))
                if password and all(c.password != password for _, c in found):
                    found.append((what, Credentials(username=user, password=password, key_path=args.identity)))
            if found:
                break
    password = os.environ.get(FACTORY_PASSWORD_ENV) or next((f.password for f in factory if f.user == user), None)
    if args.factory_password_prompt:
        if not sys.stdin.isatty():
            raise CliStop(EXIT_USAGE, "--factory-password-prompt needs a terminal")
        password = getpass.getpass(f"Factory password for {user}: ")
    if password is not None or args.identity:
        found.append(("the factory login", Credentials(username=user, password=password, key_path=args.identity)))
    return found


async def _link(args: argparse.Namespace, target: Target, logins: list[tuple[str, Any]]) -> TransportProvisionLink:
    """A connected link with the first login accepted."""
    from siteline import paths
    from siteline.core.provisioning.link import TransportProvisionLink
    from siteline.core.transports.factory import open_transport

    known = paths.data_dir() / "known_hosts"

    def opener(credentials: Any) -> Any:
        return open_transport(target, credentials, known, accept_new_host_key=args.accept_new_host_key,
                              connect_timeout=args.timeout)

    if not logins:
        raise CliStop(EXIT_AUTH_FAILED, "the profile names no factory password for this login; pass "
                      "--factory-password-prompt (or set SITELINE_FACTORY_PASSWORD)")
    refused: list[str] = []
    for what, credentials in logins:
        link = TransportProvisionLink(target, credentials, opener, known_hosts=known, connect_timeout=args.timeout)
        try:
            async with asyncio.timeout(args.timeout + 5):
                await link.connect()
            return link
        except AuthError:
            refused.append(what)
            await link.close()
        except HostKeyError as exc:
            await link.close()
            raise CliStop(EXIT_REFUSED, str(exc)) from exc
        except TimeoutError as exc:
            await link.close()
            raise CliStop(EXIT_UNREACHABLE, f"{target} did not answer within {args.timeout:g} s") from exc
        except (TransportError, OSError) as exc:
            await link.close()
            raise CliStop(EXIT_UNREACHABLE, str(exc)) from exc
    raise CliStop(EXIT_AUTH_FAILED, f"{target} refused {' and '.join(refused)}")


def _confirm(args: argparse.Namespace, job: ProvisionJob, target: Target, resumed: bool) -> None:
    if args.yes or args.dry_run:
        return
    if not sys.stdin.isatty():
        raise CliStop(EXIT_REFUSED, "not a terminal: pass --yes to provision from a script (nothing was changed)")
    verb = f"Resume job {job.id} on" if resumed else "Provision"
    try:
        answer = input(f"{verb} {target} with profile {job.profile_name} at site {job.site}? This replaces its "
                       "passwords and firewall. [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CliStop(EXIT_REFUSED, "not confirmed (answer y to go ahead); nothing was changed")


class StepLines:
    """One stderr line when a step starts and when it ends."""

    def __init__(self, dry_run: bool = False) -> None:
        self._said: dict[str, str] = {}
        self._dry_run = dry_run  # a dry run's "done" is a plan: nothing was done

    def __call__(self, job: ProvisionJob) -> None:
        from siteline.core.provisioning.job import STEP_TITLES, STEPS

        for number, rec in enumerate(job.steps, 1):
            if rec.state == "pending" or self._said.get(rec.name) == rec.state:
                continue
            self._said[rec.name] = rec.state
            words = f": {rec.detail}" if rec.detail and rec.state != "running" else ""
            state = "planned" if self._dry_run and rec.state in ("done", "skipped") else rec.state
            print(f"[{number}/{len(STEPS)}] {STEP_TITLES.get(rec.name, rec.name)}: {state}{words}",
                  file=sys.stderr, flush=True)


def _outcome(job: ProvisionJob) -> int:
    name = job.device or job.target
    if job.status == "interrupted" and job.message.startswith("the login was refused"):
        print(f"{name}: interrupted: {job.message}")
        return EXIT_AUTH_FAILED
    words = {"provisioned": "provisioned", "incomplete": "provisioned, incomplete"}.get(job.status, job.status)
    print(f"{name}: {words}" + (f": {job.message}" if job.message else ""))
    if job.status == "refused" and job.step("identify").state == "failed" and "--reprovision" not in job.message:
        print("  if it is to be provisioned again, run the same command with --reprovision")
    if job.status in ("provisioned", "incomplete"):
        print(f"  job {job.id}; the new passwords are in the vault; the record and the CSR wait in the outbox")
    return STATUS_EXIT.get(job.status, EXIT_FAILED)


def _show_plan(plan: ProvisionJob) -> int:
    from siteline.core.provisioning.job import STEP_TITLES

    print(f"dry run for {plan.target} (profile {plan.profile_name}); nothing was changed:")
    current = ""
    for entry in plan.data.get("plan", []):
        if entry["step"] != current:
            current = entry["step"]
            print(f"{STEP_TITLES.get(current, current)}:")
        what = f"   # {entry['what']}" if entry.get("what") else ""
        print(f"  {entry['command']}{what}")
    if not plan.data.get("plan") and not plan.message:
        print("  (no change: the device already has everything)")
    if plan.message:
        print(f"siteline: {plan.message}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


async def _is_the_device_of(link: TransportProvisionLink, earlier: ProvisionJob, profile: Profile) -> bool:
    """The box on the link is the one ``earlier`` identified (a serial target is a port: any box may be on it)."""
    from siteline.core.provisioning import device_steps
    from siteline.core.provisioning.api import StepContext

    check = getattr(device_steps, "check_same_device", None)
    if check is None or not (earlier.facts.get("serial") or earlier.facts.get("mac")):
        return False  # nothing to compare with: no certificate is installed on a box that may be another one
    try:
        await check(StepContext(job=earlier, profile=profile, link=link, step="identify"))
    except SitelineError as exc:
        print(f"siteline: no device certificate installed: {exc}", file=sys.stderr)
        return False
    return True


async def _certificate_pickup(link: TransportProvisionLink, keep: Keep, earlier: ProvisionJob | None,
                              profile: Profile) -> None:
    """A certificate the control plane signed for this device since it was provisioned: installed at this
    connection (and recorded). Never stops the command: a problem is one line on stderr."""
    if earlier is None or not earlier.device:
        return
    from siteline.core.provisioning.certificates import PendingStore, pickup_on_connect
    from siteline.core.provisioning.runner import hooks_from_keep

    if not await _is_the_device_of(link, earlier, profile):
        return

    record = hooks_from_keep(keep, earlier.site, lambda: earlier.device).record
    try:
        result = await pickup_on_connect(link.run, keep.inbound, earlier.site, earlier.device, PendingStore(),
                                         record=record)
    except SitelineError as exc:
        print(f"siteline: warning: the device certificate that came back could not be installed: {exc}",
              file=sys.stderr)
        return
    if result is not None:
        print(f"siteline: device certificate: {result.detail}", file=sys.stderr)


async def _provision(args: argparse.Namespace) -> int:
    from siteline.core.keep import Keep
    from siteline.core.provisioning.runner import hooks_from_keep, run_provision
    from siteline.core.provisioning.store import JobBusyError, JobStoreError, ProvisionStore

    target, profile = _target(args), _profile(args)
    keep = Keep.open()
    link: TransportProvisionLink | None = None
    try:
        why_no_vault = _unlock_vault(keep)
        if why_no_vault and not args.dry_run:
            print(f"siteline: warning: {why_no_vault}; the password step will refuse", file=sys.stderr)
        store = ProvisionStore()
        job, resumed = _job(args, store, target, profile, keep)
        if resumed:
            print(f"siteline: resuming job {job.id} at \"{job.next_step()}\" (site {job.site})", file=sys.stderr)
        link = await _link(args, target, _logins(args, profile, store, job, keep))
        _confirm(args, job, target, resumed)
        hooks = hooks_from_keep(keep, job.site, lambda: job.device or job.target)
        if not args.dry_run:
            await _certificate_pickup(link, keep, store.latest_for_target(job.target), profile)
        try:
            done = await run_provision(job, link, profile, store=store, keep_hooks=hooks, dry_run=args.dry_run,
                                       listener=StepLines(args.dry_run))
        except JobStoreError as exc:  # also JobBusyError: another Siteline drives it
            raise CliStop(EXIT_REFUSED if isinstance(exc, JobBusyError) else EXIT_FAILED, str(exc)) from exc
        except SitelineError as exc:  # a changed profile; a step module missing from this install
            raise CliStop(EXIT_REFUSED, str(exc)) from exc
        return _show_plan(done) if args.dry_run else _outcome(done)
    finally:
        if link is not None:
            await link.close()
        await keep.close()
