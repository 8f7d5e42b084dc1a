"""What every provisioning step codes against: the link to the device, the step context, the outcome.

A step is ``async def step(ctx: StepContext) -> StepOutcome``. It must be idempotent: it first reads what
the device already has and changes only what differs, so running it twice, or again after a pulled cable
or a reboot, ends in the same state as running it once. A step changes the device only through
``ctx.change`` / ``ctx.write_file``: that is what makes the dry run honest (it lists those calls, secrets
masked, and runs none of them) and what puts every change in the plan shown to the technician. Reads go
through ``ctx.read`` and run even in a dry run (they change nothing).

A step that cannot go on raises :class:`StepFailedError` (message + hint for a person); a step that must not go
on for safety raises :class:`StepRefusedError`. A link that drops raises TransportError out of the step: the
runner saves the job as interrupted and a later run resumes at that step.
"""

from __future__ import annotations

import base64
import copy
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from siteline.core.errors import SitelineError
from siteline.core.transports.base import Credentials, Result

if TYPE_CHECKING:
    from siteline.core.provisioning.job import ProvisionJob
    from siteline.core.provisioning.profile import Profile

MASK = "********"
MIN_SECRET_PREFIX = 8  # a cut-off secret this long or longer is masked too (errors quote command[:80])
WRITE_CHUNK = 540  # bytes of file per command: 720 base64 characters, inside a serial console line (1000)


class StepFailedError(SitelineError):
    """The step could not be done; the device is in a known state (the message says which)."""


class StepRefusedError(SitelineError):
    """The step must not be done (already provisioned, no vault to keep a secret in, ...)."""


class ProvisionLink(Protocol):
    """A link to the device being provisioned: serial or SSH (MQTT is refused before a step runs)."""

    kind: str  # "serial" | "ssh"

    @property
    def credentials(self) -> Credentials: ...

    async def run(self, command: str, timeout: float) -> Result: ...

    async def reconnect(self, timeout: float) -> None:
        """Drop the connection and log in afresh with the current credentials (AuthError / TransportError)."""
        ...

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        """A separate, fresh login with ``credentials``: True accepted, False refused (TransportError: no answer).

        The working connection stays usable afterwards (on serial, where there is one console, it is closed
        for the try and opened again with the current credentials)."""
        ...

    def use_credentials(self, credentials: Credentials) -> None:
        """Later (re)connections log in with these (after the factory password was replaced)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class PlannedCommand:
    """One change a step makes (or, in a dry run, would make): the command with its secrets masked."""

    step: str
    command: str
    what: str = ""  # in words: "set the hostname", "replace root's password"


@dataclass(frozen=True)
class StepOutcome:
    detail: str  # one line for the technician: "hostname nw-0042, site north-7"
    evidence: Mapping[str, Any] = field(default_factory=dict)  # no secrets: goes to the audit trail and record
    skipped: bool = False  # nothing needed doing (already so on the device)


Record = Callable[[str, Mapping[str, Any], str], None]  # (action, detail, result) -> audit trail


@dataclass
class StepContext:
    job: ProvisionJob
    profile: Profile
    link: ProvisionLink
    step: str = ""
    dry_run: bool = False
    plan: list[PlannedCommand] = field(default_factory=list)
    record: Record = lambda action, detail, result: None
    vault_put: Callable[[str, str], None] | None = None  # None: no unlocked vault (credential step refuses)
    vault_get: Callable[[str], str | None] | None = None
    outbox_put: Callable[[str, Mapping[str, Any]], str] | None = None  # (kind, payload) -> item id
    inbound_certificate: Callable[[], Mapping[str, Any] | None] = lambda: None  # the cached cert doc, if any
    progress: Callable[[str], None] = lambda line: None
    secrets: list[str] = field(default_factory=list)  # every secret seen so far: masked in plan and errors
    save: Callable[[], None] = lambda: None  # save the job now (the runner's): after a vault entry is written

    def mask(self, text: str) -> str:
        """``text`` with every secret masked, and any cut-off start of one (>= 8 characters: transports quote
        only the first 80 characters of a command in their errors, which can end mid-password)."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if secret:
                text = mask_secret(text, secret)
        return text

    def masked_error(self, exc: BaseException) -> BaseException:
        """The same error (same type, same hint) with every secret masked in its message and hint."""
        return masked_error(exc, self.mask)

    async def read(self, command: str, timeout: float = 30.0) -> Result:
        """Run a command that changes nothing (also in a dry run)."""
        return await self.link.run(command, timeout)

    async def change(self, command: str, *, what: str = "", secrets: Sequence[str] = (),
                     timeout: float = 30.0) -> Result:
        """Run a command that changes the device; in a dry run only plan it (and pretend it succeeded)."""
        self.secrets.extend(s for s in secrets if s and s not in self.secrets)
        self.plan.append(PlannedCommand(self.step, self.mask(command), what))
        if self.dry_run:
            return Result(0, "")
        return await self._run(command, timeout)

    async def _run(self, command: str, timeout: float) -> Result:
        """link.run with any error's text masked (a timeout message quotes the start of the command)."""
        try:
            return await self.link.run(command, timeout)
        except Exception as exc:
            masked = self.masked_error(exc)
            if masked is exc:
                raise
            raise masked from None

    async def write_file(self, path: str, data: bytes, *, mode: int = 0o644, what: str = "",
                         secret: bool = False, timeout: float = 30.0) -> None:
        """Put ``data`` at ``path`` on the device atomically: chunks to a temp file beside it, fsync, rename.

        Works on any shell link (serial or SSH): base64 through printf, no scp/sftp needed. A secret file's
        content never enters the plan or the audit trail (only its size)."""
        shown = what or f"write {path} ({len(data)} bytes{', secret' if secret else ''})"
        self.plan.append(PlannedCommand(self.step, f"write {path} mode {mode:o} ({len(data)} bytes)", shown))
        if self.dry_run:
            return
        q = shlex.quote
        tmp = f"{path}.siteline-tmp"
        directory = path.rsplit("/", 1)[0] or "/"
        first = await self._run(f"mkdir -p {q(directory)} && umask 077 && : > {q(tmp)} && chmod {mode:o} {q(tmp)}",
                                    timeout)
        _check(first, f"create {tmp}")
        for start in range(0, len(data), WRITE_CHUNK):
            chunk = base64.b64encode(data[start:start + WRITE_CHUNK]).decode()
            if secret and chunk not in self.secrets:
                self.secrets.append(chunk)  # a quoted command in an error would show the secret's base64
            _check(await self._run(f"printf %s {chunk} | base64 -d >> {q(tmp)}", timeout), f"write {tmp}")
        done = await self._run(f"sync {q(tmp)} 2>/dev/null || sync; mv -f {q(tmp)} {q(path)} && sync", timeout)
        _check(done, f"move {tmp} to {path}")


def mask_secret(text: str, secret: str) -> str:
    """``text`` with ``secret`` masked, and any run of at least MIN_SECRET_PREFIX characters that starts it."""
    if len(secret) < MIN_SECRET_PREFIX:
        return text.replace(secret, MASK)
    head = secret[:MIN_SECRET_PREFIX]
    out: list[str] = []
    pos = 0
    while (start := text.find(head, pos)) >= 0:
        end = start + MIN_SECRET_PREFIX
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        out.append(text[pos:start] + MASK)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def masked_error(exc: BaseException, mask: Callable[[str], str]) -> BaseException:
    """``exc`` itself when nothing in it needs masking; else a copy of the same type with its text masked."""
    if isinstance(exc, SitelineError):
        message, hint = mask(exc.message), mask(exc.hint)
        if message == exc.message and hint == exc.hint:
            return exc
        clone = copy.copy(exc)
        clone.message, clone.hint, clone.args = message, hint, (message, *exc.args[1:])
        return clone
    text = str(exc)
    masked = mask(text)
    if masked == text:
        return exc
    try:
        return type(exc)(masked)
    except Exception:  # a type that wants other arguments: a plain error of the nearest kind that says it
        return (TimeoutError if isinstance(exc, TimeoutError) else RuntimeError)(masked)


def _check(result: Result, doing: str) -> None:
    if not result.ok:
        why = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit status {result.exit_code}"]
        raise StepFailedError(f"The device could not {doing}: {why[0][:200]}",
                         "Check the device has space and a writable /etc (a read-only root needs its overlay).")
