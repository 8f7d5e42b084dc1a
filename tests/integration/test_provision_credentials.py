"""Wizard step 3 (replace factory passwords) against a simulated device, over its serial console and over SSH."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.errors import TransportError
from siteline.core.keep import device_secret_name
from siteline.core.provisioning.api import StepContext, StepFailedError, StepRefusedError
from siteline.core.provisioning.credentials import chpasswd_command, credentials_step
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import CredentialPolicy, FactoryLogin, Profile
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport
from siteline.core.vault import KdfCost, Vault
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio

SITE, DEVICE = "north-7", "nw-000042"
CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)
NAME = device_secret_name(SITE, DEVICE, "password")


@dataclass
class Rig:
    state: DeviceState
    link: TransportProvisionLink
    vault: Vault
    tmp: Path
    make_link: object


def _profile(factory: str = PASSWORD) -> Profile:
    logins = (FactoryLogin("root", factory),) if factory else ()
    return Profile("p", ("*",), credentials=CredentialPolicy(users=("root",), factory=logins, length=20))


def _job() -> ProvisionJob:
    job = ProvisionJob.new(target="device", site=SITE, profile_name="p", profile_sha256="0")
    job.device = DEVICE
    return job


def _link(target_url: str, tmp: Path, password: str) -> TransportProvisionLink:
    target = parse_target(target_url)
    return TransportProvisionLink(target, Credentials("root", password), lambda c: open_transport(
        target, c, tmp / "known_hosts", accept_new_host_key=True), known_hosts=tmp / "known_hosts")


def _context(rig: Rig, job: ProvisionJob, link: object | None = None, *, profile: Profile | None = None,
             dry_run: bool = False) -> StepContext:
    return StepContext(job=job, profile=profile or _profile(), link=link or rig.link,  # type: ignore[arg-type]
                       step="credentials", dry_run=dry_run, vault_put=lambda n, v: rig.vault.put(n, v),
                       vault_get=lambda n: rig.vault.get(n) if n in rig.vault.names() else None)


@pytest_asyncio.fixture(params=["serial", "ssh"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    state = make_state(tmp_path / "dev", name="gw-cred")
    tty = tmp_path / "ttyGW"
    serial = request.param == "serial"
    async with running_device(state, ssh=not serial, serial_link=tty if serial else None) as device:
        url = f"serial://{tty}?baud=115200" if serial else f"ssh://root@127.0.0.1:{device.ssh_port}"
        link = _link(url, tmp_path, PASSWORD)
        vault = Vault.create(tmp_path / "vault.slv", "correct horse battery staple", cost=CHEAP)
        try:
            yield Rig(state, link, vault, tmp_path, lambda pw: _link(url, tmp_path, pw))
        finally:
            await link.close()


async def test_password_replaced_old_refused_new_works(rig: Rig) -> None:
    job = _job()
    ctx = _context(rig, job)
    outcome = await credentials_step(ctx)
    new = rig.vault.get(NAME)
    assert len(new) == 20
    assert not rig.state.check_password("root", PASSWORD)
    assert rig.state.check_password("root", new)
    assert rig.link.credentials == Credentials("root", new)
    assert (await rig.link.run("echo still-here", 10)).stdout.strip() == "still-here"
    assert job.data["credentials"] == {"users": ["root"], "vault": {"root": NAME}, "proved": True}
    assert outcome.evidence["proved"] is True
    assert new not in repr(outcome)
    assert new not in repr(ctx.plan)
    assert any("chpasswd" in p.command and "********" in p.command for p in ctx.plan)


@pytest.mark.parametrize("rig", ["serial"], indirect=True)
async def test_vault_written_before_the_device_changes(rig: Rig) -> None:
    seen: list[bool] = []

    def refusing(name: str, value: str) -> None:
        seen.append(rig.state.check_password("root", PASSWORD))  # the device still has the old one at this point
        raise OSError(28, "No space left on device")

    ctx = _context(rig, _job())
    ctx.vault_put = refusing
    with pytest.raises(StepRefusedError, match="vault"):
        await credentials_step(ctx)
    assert seen == [True]
    assert rig.state.check_password("root", PASSWORD)
    assert not ctx.plan  # chpasswd never even planned

    locked = _context(rig, _job())
    locked.vault_put = None
    with pytest.raises(StepRefusedError, match="vault"):
        await credentials_step(locked)
    assert rig.state.check_password("root", PASSWORD)


class _CutAfterChpasswd:
    """A link that runs chpasswd on the device and then 'loses the cable' before the answer comes back."""

    def __init__(self, inner: TransportProvisionLink) -> None:
        self.inner = inner
        self.kind = inner.kind

    @property
    def credentials(self) -> Credentials:
        return self.inner.credentials

    async def run(self, command: str, timeout: float) -> Result:
        result = await self.inner.run(command, timeout)
        if "chpasswd" in command:
            await self.inner.close()
            raise TransportError("the serial cable was pulled")
        return result

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_cut_after_chpasswd_then_resume_keeps_one_password(rig: Rig) -> None:
    job = _job()
    with pytest.raises(TransportError):
        await credentials_step(_context(rig, job, _CutAfterChpasswd(rig.link)))
    first = rig.vault.get(NAME)
    assert rig.state.check_password("root", first)  # the device took it before the cut
    # The resume logs in with the vault's password (the factory one is refused now).
    resumed = rig.make_link(first)  # type: ignore[operator]
    try:
        ctx = _context(rig, job, resumed)
        outcome = await credentials_step(ctx)
        assert rig.vault.get(NAME) == first
        assert rig.vault.names() == [NAME]
        assert not any("chpasswd" in p.command for p in ctx.plan)  # not run a second time
        assert outcome.evidence["reused"] == ["root"]
        assert job.data["credentials"]["proved"] is True
        assert rig.state.check_password("root", first)
        assert not rig.state.check_password("root", PASSWORD)
    finally:
        await resumed.close()


@pytest.mark.parametrize("rig", ["serial"], indirect=True)
async def test_resume_before_chpasswd_sends_the_vault_password(rig: Rig) -> None:
    job = _job()
    rig.vault.put(NAME, "Abcdefghijkmnpqrstu2")
    job.data["credentials"] = {"users": [], "vault": {"root": NAME}, "proved": False}
    ctx = _context(rig, job, profile=_profile(factory=""))  # factory unknown: the link's login is the old one
    outcome = await credentials_step(ctx)
    assert rig.state.check_password("root", "Abcdefghijkmnpqrstu2")
    assert outcome.evidence["reused"] == ["root"]
    assert outcome.evidence["proved"] is True


@pytest.mark.parametrize("rig", ["ssh"], indirect=True)
async def test_dry_run_changes_nothing(rig: Rig) -> None:
    ctx = _context(rig, _job(), dry_run=True)
    ctx.vault_put = lambda name, value: None
    await credentials_step(ctx)
    assert rig.state.check_password("root", PASSWORD)
    assert [p.command for p in ctx.plan] == [chpasswd_command("root", "********")]
    assert rig.link.credentials == Credentials("root", PASSWORD)



@pytest.mark.parametrize("rig", ["ssh"], indirect=True)
async def test_every_listed_user_is_replaced_and_proven(rig: Rig) -> None:
    rig.state.set_password("operator", "operator")
    rootfs.write_accounts(rig.state.root, rig.state.users())
    profile = Profile("p", ("*",), credentials=CredentialPolicy(
        users=("root", "operator"), factory=(FactoryLogin("root", PASSWORD), FactoryLogin("operator", "operator")),
        length=18))
    job = _job()
    outcome = await credentials_step(_context(rig, job, profile=profile))
    other = device_secret_name(SITE, DEVICE, "password-operator")
    assert job.data["credentials"]["vault"] == {"root": NAME, "operator": other}
    assert rig.state.check_password("operator", rig.vault.get(other))
    assert not rig.state.check_password("operator", "operator")
    assert rig.link.credentials == Credentials("root", rig.vault.get(NAME))  # the login user's, not operator's
    assert outcome.evidence["proved"] is True


class _IgnoresChpasswd(_CutAfterChpasswd):
    """A device whose chpasswd 'succeeds' but changes nothing (a PAM stack that checks elsewhere)."""

    async def run(self, command: str, timeout: float) -> Result:
        return await self.inner.run("true" if "chpasswd" in command else command, timeout)


@pytest.mark.parametrize("rig", ["serial"], indirect=True)
async def test_a_change_that_does_not_take_fails_and_names_the_vault_entry(rig: Rig) -> None:
    ctx = _context(rig, _job(), _IgnoresChpasswd(rig.link))
    with pytest.raises(StepFailedError, match=f"in the vault as {NAME}"):
        await credentials_step(ctx)
    assert rig.state.check_password("root", PASSWORD)
    assert rig.link.credentials == Credentials("root", PASSWORD)  # later connections still log in
    assert (await rig.link.run("echo still-here", 10)).stdout.strip() == "still-here"


@pytest.mark.parametrize("rig", ["ssh"], indirect=True)
async def test_the_login_password_and_the_published_one_are_both_proven_refused(rig: Rig) -> None:
    tried: list[str] = []
    real = rig.link.try_login

    async def spy(credentials: Credentials, timeout: float) -> bool:
        tried.append(credentials.password or "")
        return await real(credentials, timeout)

    rig.link.try_login = spy  # type: ignore[method-assign]
    outcome = await credentials_step(_context(rig, _job(), profile=_profile(factory="root")))
    assert outcome.evidence["proved"] is True
    assert tried[1:] == ["root", PASSWORD]  # after the new one: the manual's default, then the one we logged in with
