"""What the provisioning wizard asks of the core: the profiles to offer, a job found unfinished, a dry run
and a run. No protocol here: every step is core.provisioning.runner.run_provision's, run on the qasync loop
over a TransportProvisionLink; this only builds the job, the link and the keep's hooks, and picks the
login (the profile's factory login, or the vault's password once a job replaced it).

The runner is imported when a run starts, not when the wizard opens: a missing core module shows as a
message on the page ("this Siteline cannot provision yet"), never as a window that does not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siteline.core.errors import AuthError, SitelineError
from siteline.core.provisioning.api import PlannedCommand
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Transport

if TYPE_CHECKING:
    from siteline.core.keep import Keep
    from siteline.core.provisioning.api import ProvisionLink
    from siteline.core.provisioning.profile import Profile
    from siteline.core.targets import Target

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 30.0  # s: a serial console that says nothing in this long is not there

Listener = Callable[..., None]  # (job, *anything the runner adds, e.g. a progress line)
Runner = Callable[..., Awaitable[ProvisionJob]]  # run_provision's signature
LinkFactory = Callable[["Target", Credentials], Any]  # -> a ProvisionLink
TransportFactory = Callable[["Target", Credentials], Transport]
Pause = Callable[[str], Awaitable[Callable[[], None]]]  # target URL -> (after the run) start them again


def same_port(a: str, b: str) -> bool:
    """Two serial target URLs on one port (whatever their baud rates): only one of them can have it open."""
    try:
        ta, tb = parse_target(a), parse_target(b)
    except SitelineError:
        return False
    return ta.is_serial and tb.is_serial and ta.device == tb.device


def session_pauser(inventory: Any, sessions: Any) -> Pause:
    """Stops the device list's sessions on the serial port a run uses (the port opens exclusively, and a console
    has one login) and gives back what starts them again. SSH needs no pause: it takes several connections."""

    async def pause(target: str) -> Callable[[], None]:
        names = [e.name for e in inventory.devices
                 if any(same_port(target, t) for t in (e.target, *getattr(e, "fallbacks", ())))]
        stopped = [s for s in (sessions.get(n) for n in names) if s is not None]
        for session in stopped:
            await session.stop()

        def start_again() -> None:
            for session in stopped:
                session.start()

        return start_again

    return pause


@dataclass(frozen=True)
class ProfileChoice:
    """One profile file found: usable (``profile``) or not (``error`` says why, for the person)."""

    name: str
    path: Path
    profile: Profile | None = None
    error: str = ""


@dataclass
class ProvisionRequest:
    target: str
    profile: Profile
    site: str
    tags: list[str] = field(default_factory=list)
    factory_password: str = ""  # typed in the wizard: overrides the profile's published default
    reprovision: bool = False


def profile_folders() -> list[Path]:
    """The technician's own profiles first (config dir), then the ones Siteline ships."""
    from siteline import paths
    from siteline.resources import ResourceError, resource_root

    folders = [paths.config_dir() / "profiles"]
    with contextlib.suppress(ResourceError):
        folders.append(resource_root() / "profiles")
    return folders


def find_profiles(folders: Iterable[Path] | None = None) -> list[ProfileChoice]:
    """Every *.toml in the profile folders, loaded; a name in the config dir hides the shipped one."""
    from siteline.core.provisioning.profile import load_profile

    found: dict[str, ProfileChoice] = {}
    for folder in profile_folders() if folders is None else folders:
        try:
            files = sorted(folder.glob("*.toml"))
        except OSError:
            continue
        for path in files:
            if path.stem in found:
                continue
            try:
                found[path.stem] = ProfileChoice(path.stem, path, load_profile(path))
            except (SitelineError, OSError, ValueError) as exc:
                found[path.stem] = ProfileChoice(path.stem, path, error=str(exc))
    return list(found.values())


def plan_of(result: object) -> list[PlannedCommand]:
    """The dry run's planned commands, wherever the runner left them (an attribute or job.data["plan"])."""
    raw: Any = getattr(result, "plan", None)
    if raw is None and isinstance(getattr(result, "data", None), Mapping):
        raw = result.data.get("plan")  # type: ignore[attr-defined]
    commands: list[PlannedCommand] = []
    for item in raw or []:
        if isinstance(item, PlannedCommand):
            commands.append(item)
        elif isinstance(item, Mapping):
            commands.append(PlannedCommand(str(item.get("step", "")), str(item.get("command", "")),
                                           str(item.get("what", ""))))
    return commands


def _real_runner() -> Runner:
    from siteline.core.provisioning.runner import run_provision

    runner: Runner = run_provision
    return runner


class Provisioner:
    """Builds and runs provisioning jobs for the wizard; every part can be replaced (tests inject a runner)."""

    def __init__(self, *, keep: Keep | None = None, transports: TransportFactory | None = None,
                 runner: Runner | None = None, store: Any = None, link_factory: LinkFactory | None = None,
                 profiles: Callable[[], list[ProfileChoice]] = find_profiles, pause: Pause | None = None) -> None:
        self.keep = keep
        self._transports = transports
        self._runner = runner
        self._store = store
        self._link_factory = link_factory
        self.profiles = profiles
        self._pause = pause
        self.secrets: list[str] = []  # typed here (a factory password): never shown, whatever echoes it

    @property
    def store(self) -> Any:
        if self._store is None:
            from siteline.core.provisioning.store import ProvisionStore

            self._store = ProvisionStore()  # the data folder's provision-jobs, as the CLI uses
        return self._store

    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = _real_runner()
        return self._runner

    def vault_problem(self) -> str | None:
        """Why the new passwords would have nowhere to go (the credentials step refuses then), or None."""
        if self.keep is None:
            return ("Nothing can be kept on this laptop (Siteline's keep did not open), so the device's new "
                    "passwords would be lost. Fix that first (see the status bar).")
        vault = self.keep.vault
        if not vault.exists:
            return "There is no vault on this laptop yet: create one (Tools → Vault…) to keep the new passwords."
        if vault.locked:
            return "The vault is locked: unlock it, so the device's new passwords can be kept in it."
        return None

    def unfinished(self, target: str) -> ProvisionJob | None:
        """The newest job for this target that neither finished nor was given up (resume it, not a new one)."""
        try:
            jobs = list(self.store.jobs())
        except (ImportError, SitelineError, OSError) as exc:
            log.warning("provisioning jobs cannot be read: %s", exc)
            return None
        open_jobs = [j for j in jobs if isinstance(j, ProvisionJob) and not j.final and j.target == target]
        return max(open_jobs, key=lambda j: j.updated, default=None)

    def new_job(self, request: ProvisionRequest) -> ProvisionJob:
        job = ProvisionJob.new(target=request.target, site=request.site, profile_name=request.profile.name,
                               profile_sha256=request.profile.sha256, tags=request.tags)
        job.data["identify"] = {"reprovision": request.reprovision}
        if self.keep is not None:
            job.data["technician"] = self.keep.technician  # the record and the device's marker name who did it
        return job

    def logins(self, request: ProvisionRequest, job: ProvisionJob) -> list[Credentials]:
        """What to log in with, in order: the vault's password for this device (a run that replaced the factory
        one, even if it stopped before saving that it did: the vault is written before the device), then the
        factory login (typed in the wizard, else the profile's published default)."""
        factory = request.profile.credentials.factory
        user = parse_target(request.target).user or (factory[0].user if factory else "root")
        found: list[Credentials] = []
        earlier = [job, *([] if job.device else [self._latest(request.target)])]
        for known in earlier:
            if known is not None and known.device and self.keep is not None:
                from siteline.core.keep import device_secret_name

                stored = self.keep.secret(device_secret_name(known.site, known.device, "password"))
                # A re-provisioning whose chpasswd failed left the device on the password kept as "-previous".
                previous = self.keep.secret(device_secret_name(known.site, known.device, "password-previous"))
                for secret in dict.fromkeys(p for p in (stored, previous) if p):
                    found.append(Credentials(username=user, password=secret, use_agent=False))
                if found:
                    break
        password = request.factory_password or next((f.password for f in factory if f.user == user), "")
        found.append(Credentials(username=user, password=password, use_agent=False))
        return found

    def _latest(self, target: str) -> ProvisionJob | None:
        latest = getattr(self.store, "latest_for_target", None)
        try:
            found = latest(target) if latest is not None else None
        except (SitelineError, OSError):
            return None
        return found if isinstance(found, ProvisionJob) else None

    async def connect(self, request: ProvisionRequest, job: ProvisionJob) -> ProvisionLink:
        """A link logged in with the first login the device accepts (AuthError when it takes none)."""
        target = parse_target(request.target)
        logins = self.logins(request, job)
        if self._link_factory is not None:
            made: ProvisionLink = self._link_factory(target, logins[0])
            return made
        from siteline import paths
        from siteline.core.provisioning.link import TransportProvisionLink

        known_hosts = paths.data_dir() / "known_hosts"
        make = self._transports
        if make is None:
            from siteline.ui.sessions import default_factory

            make = default_factory(known_hosts)
        transports = make
        for credentials in logins:
            link = TransportProvisionLink(target, credentials, lambda creds: transports(target, creds),
                                          known_hosts=known_hosts, connect_timeout=CONNECT_TIMEOUT)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT + 5):
                    await link.connect()
                return link
            except AuthError:
                await link.close()
            except BaseException:
                await link.close()
                raise
        raise AuthError(f"{target.label} refused {'the vault password and ' if len(logins) > 1 else ''}the "
                        "factory login.", "Type the device's factory password on the first page (Back), then "
                        "try again.")

    def hooks(self, job: ProvisionJob) -> Any:
        """The keep's audit trail, vault and outbox; without a keep nothing is kept (the credentials step refuses)."""
        from siteline.core.provisioning.runner import KeepHooks, hooks_from_keep

        return KeepHooks() if self.keep is None else hooks_from_keep(self.keep, job.site, lambda: job.device)

    async def run(self, request: ProvisionRequest, job: ProvisionJob, listener: Listener,
                  dry_run: bool = False) -> Any:
        """One run (or dry run) of ``job`` to its end or its first stop; the link is closed afterwards."""
        if request.factory_password and request.factory_password not in self.secrets:
            self.secrets.append(request.factory_password)
        runner = self.runner()  # it claims the job (a lock file) so two Siteline windows never both run it
        start_again = await self._pause(request.target) if self._pause is not None else None
        try:
            link = await self.connect(request, job)
            try:
                return await runner(job, link, request.profile, store=self.store, keep_hooks=self.hooks(job),
                                    dry_run=dry_run, listener=listener)
            finally:
                with contextlib.suppress(Exception):
                    await link.close()
        finally:
            if start_again is not None:
                start_again()
