"""Fix helper X (issue 7 review): masking cut-off secrets, the hash kind chpasswd used, resumes that ask for
another site, a missing chpasswd."""

from __future__ import annotations

import argparse

import pytest

from siteline.core.errors import CommandTimeout, TransportError
from siteline.core.provisioning.api import MASK, StepContext, StepFailedError, mask_secret
from siteline.core.provisioning.credentials import chpasswd_command, credentials_step
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.profile import CredentialPolicy, FactoryLogin, Profile
from siteline.core.transports.base import Credentials, Result

SECRET = "Abcdefghijkmnpqrstuvwxyz23456789"


def test_mask_hides_a_cut_off_secret_and_leaves_short_lookalikes() -> None:
    assert mask_secret(f"'printf {SECRET[:11]}' did not finish", SECRET) == f"'printf {MASK}' did not finish"
    assert mask_secret(f"x {SECRET} y", SECRET) == f"x {MASK} y"
    assert mask_secret(f"{SECRET[:7]} stays", SECRET) == f"{SECRET[:7]} stays"  # shorter than 8: too common


class Link:
    kind = "serial"

    def __init__(self, answers: dict[str, Result] | None = None, hang: bool = False) -> None:
        self.answers, self.hang, self.commands = answers or {}, hang, []  # type: list[str]
        self.login = Credentials("root", "root")

    @property
    def credentials(self) -> Credentials:
        return self.login

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if self.hang:
            raise CommandTimeout(f"'{command[:80]}' did not finish", f"hint quoting {command[:40]}")
        return next((r for k, r in self.answers.items() if k in command), Result(0, ""))

    async def reconnect(self, timeout: float) -> None:
        return None

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return False

    def use_credentials(self, credentials: Credentials) -> None:
        self.login = credentials

    async def close(self) -> None:
        return None


def _ctx(link: Link, **kw: object) -> StepContext:
    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site="s", profile_name="p", profile_sha256="0")
    job.device = "nw-1"
    profile = Profile("p", ("*",), credentials=CredentialPolicy(users=("root",),
                                                                factory=(FactoryLogin("root", "root"),)))
    return StepContext(job=job, profile=profile, link=link, step="credentials", **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_change_and_write_file_reraise_the_same_error_type_masked() -> None:
    ctx = _ctx(Link(hang=True))
    with pytest.raises(CommandTimeout) as caught:
        await ctx.change(f"printf %s 'x:{SECRET}' | chpasswd", secrets=[SECRET])
    assert SECRET[:8] not in str(caught.value)
    assert MASK in caught.value.message
    data = b"k" * 300
    with pytest.raises(TransportError) as caught2:
        await ctx.write_file("/etc/x.key", data, secret=True)
    assert len(ctx.secrets) == 1  # the first command failed before any chunk
    ctx2 = _ctx(Link())
    await ctx2.write_file("/etc/x.key", data, secret=True)
    assert len(ctx2.secrets) == 1
    assert ctx2.secrets[0] in ctx2.link.commands[1]
    assert str(caught2.value)


def test_chpasswd_asks_for_strong_hashes_and_keeps_the_exit_status() -> None:
    command = chpasswd_command("root", "Abc12345")
    assert "chpasswd -c SHA512" in command
    assert "chpasswd -c sha512" in command
    assert command.endswith("(exit $r)")
    assert "'root:Abc12345'" in command


@pytest.mark.asyncio
async def test_a_missing_chpasswd_says_so_in_its_hint() -> None:
    vault: dict[str, str] = {}
    link = Link({"chpasswd": Result(1, "", "chpasswd: not found\n")})
    ctx = _ctx(link, vault_put=vault.__setitem__, vault_get=vault.get)
    with pytest.raises(StepFailedError) as caught:
        await credentials_step(ctx)
    assert "no chpasswd" in caught.value.hint


@pytest.mark.asyncio
async def test_a_weak_shadow_hash_is_refused() -> None:
    vault: dict[str, str] = {}
    link = Link({"/etc/shadow": Result(0, "$1$\n")})

    async def accept_new(credentials: Credentials, timeout: float) -> bool:
        return credentials.password == vault.get("device/s/nw-1/password")

    link.try_login = accept_new  # type: ignore[method-assign]
    ctx = _ctx(link, vault_put=vault.__setitem__, vault_get=vault.get)
    with pytest.raises(StepFailedError, match="weak hash"):
        await credentials_step(ctx)


def test_a_resume_asked_for_another_site_is_refused_with_how_to_start_fresh() -> None:
    from siteline.provision_cli import CliStop, _same_request

    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site="north-7", profile_name="p", profile_sha256="0",
                           tags=["a"])
    _same_request(argparse.Namespace(site=None, tag=[]), job)
    _same_request(argparse.Namespace(site="north-7", tag=["a"]), job)
    for args in (argparse.Namespace(site="south-1", tag=[]), argparse.Namespace(site=None, tag=["b"])):
        with pytest.raises(CliStop, match="--new-job"):
            _same_request(args, job)
