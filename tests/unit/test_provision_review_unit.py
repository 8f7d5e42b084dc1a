"""Review findings on the provisioning steps that need no device: a scripted link answers like one would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from siteline.core.keep import device_secret_name
from siteline.core.provisioning.api import StepContext, StepFailedError
from siteline.core.provisioning.credentials import credentials_step
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.profile import CredentialPolicy, FactoryLogin, Profile
from siteline.core.transports.base import Credentials, Result

pytestmark = pytest.mark.asyncio

SITE, DEVICE = "north-7", "nw-000042"


@dataclass
class ScriptedDevice:
    """A device whose root password is ``password``; its chpasswd refuses (a PAM quality rule, a read-only
    /etc/shadow) when ``chpasswd_fails``."""

    password: str
    chpasswd_fails: bool = False
    commands: list[str] = field(default_factory=list)
    kind: str = "serial"
    login: Credentials = field(default_factory=lambda: Credentials("root", ""))

    @property
    def credentials(self) -> Credentials:
        return self.login

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if "chpasswd" in command:
            if self.chpasswd_fails:
                return Result(1, "", "chpasswd: (user root) pam_chauthtok() failed, error:\n"
                                     "Authentication token manipulation error")
            self.password = command.split("'root:", 1)[1].split("'", 1)[0]
        return Result(0, "")

    async def reconnect(self, timeout: float) -> None:
        return None

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return credentials.password == self.password

    def use_credentials(self, credentials: Credentials) -> None:
        self.login = credentials

    async def close(self) -> None:
        return None


def _profile() -> Profile:
    return Profile("p", ("*",), credentials=CredentialPolicy(users=("root",), factory=(FactoryLogin("root", "root"),)))


async def test_reprovision_whose_chpasswd_fails_keeps_the_devices_working_password_in_the_vault() -> None:
    """Re-provisioning: the vault holds the password the device takes now (P0, set by the first provisioning).
    The step overwrites that vault entry with a new password BEFORE the device takes it; when chpasswd then fails,
    the device still takes only P0, which is nowhere any more: the next run is refused with the vault's password and
    with the factory one. The technician is locked out of a device that was fine."""
    current = "Pzx7Kq2mWn4Rt8Vb"  # what the first provisioning put in the vault and on the device
    name = device_secret_name(SITE, DEVICE, "password")
    vault = {name: current}
    device = ScriptedDevice(password=current, chpasswd_fails=True, login=Credentials("root", current))
    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site=SITE, profile_name="p", profile_sha256="0")
    job.device = DEVICE
    job.data["identify"] = {"reprovision": True}
    ctx = StepContext(job=job, profile=_profile(), link=device, step="credentials",
                      vault_put=vault.__setitem__, vault_get=vault.get)
    with pytest.raises(StepFailedError):
        await credentials_step(ctx)
    assert device.password == current  # the device did not change
    assert current in vault.values(), "the only password the device takes is gone from the vault"


async def test_a_new_password_is_not_overwritten_in_the_vault_by_a_resume_after_a_laptop_crash() -> None:
    """The vault entry name is noted in job.data only in memory; the runner saves the job after the step. A laptop
    that dies after chpasswd (device takes A, the last saved job knows no vault entry) is resumed: the step makes a
    second password B and overwrites A in the vault before the device is told. A second cut there (cable, battery)
    leaves the device taking A and the vault holding only B: locked out. The step must never overwrite a vault
    entry whose password the device may take (or the job must be saved the moment the entry is written)."""
    name = device_secret_name(SITE, DEVICE, "password")
    vault: dict[str, str] = {}
    device = ScriptedDevice(password="root", login=Credentials("root", "root"))
    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site=SITE, profile_name="p", profile_sha256="0")
    job.device = DEVICE
    saved = job.to_json()  # what the runner saved before the step ("running")
    ctx = StepContext(job=job, profile=_profile(), link=device, step="credentials",
                      vault_put=vault.__setitem__, vault_get=vault.get)
    await credentials_step(ctx)
    first = vault[name]
    assert device.password == first
    # The laptop died before the runner's save after the step: the resumed job is the one saved before it.
    resumed = ProvisionJob.from_json(saved)
    puts: list[str] = []

    def put(key: str, value: str) -> None:
        puts.append(value)
        vault[key] = value

    device.login = Credentials("root", first)  # the CLI logs in with the vault's password
    ctx2 = StepContext(job=resumed, profile=_profile(), link=device, step="credentials", vault_put=put,
                       vault_get=vault.get)
    await credentials_step(ctx2)
    assert puts == [], f"the vault entry {name} (which the device takes) was overwritten before the device changed"


class TimingOutDevice(ScriptedDevice):
    """chpasswd hangs (a PAM module waiting on a dead LDAP server, a full /etc): the serial transport gives up with
    its usual message, which quotes the first 80 characters of the command (transports/serial.py:177)."""

    async def run(self, command: str, timeout: float) -> Result:
        if "chpasswd" in command:
            from siteline.core.errors import CommandTimeout

            raise CommandTimeout(f"'{command[:80]}' did not finish within {timeout:g} s on /dev/ttyUSB0; "
                                 "it was interrupted with Ctrl-C.", "Give it a longer timeout.")
        return await super().run(command, timeout)


async def test_a_long_password_cut_at_80_characters_in_a_timeout_message_is_masked(tmp_path: Path) -> None:
    """ctx.mask replaces the WHOLE password only. A profile may ask for up to 128 characters; the transports quote
    command[:80] in their errors, so a chpasswd that times out puts the password's first 60 characters (for root)
    unmasked into job.message, the job JSON, the audit trail ("provision-step") and the CLI's output."""
    from siteline.core.provisioning.runner import KeepHooks, run_provision
    from siteline.core.provisioning.store import ProvisionStore

    policy = CredentialPolicy(users=("root",), factory=(FactoryLogin("root", "root"),), length=96)
    profile = Profile("p", ("*",), credentials=policy)
    vault: dict[str, str] = {}
    records: list[str] = []
    device = TimingOutDevice(password="root", login=Credentials("root", "root"))
    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site=SITE, profile_name="p", profile_sha256="")
    job.device = DEVICE
    store = ProvisionStore(tmp_path / "jobs")
    hooks = KeepHooks(record=lambda action, detail, result: records.append(json.dumps(detail, default=str)),
                      vault_put=vault.__setitem__, vault_get=vault.get)
    job = await run_provision(job, device, profile, store=store, keep_hooks=hooks,
                              steps=[("credentials", credentials_step)])
    assert job.status == "interrupted"
    password = vault[device_secret_name(SITE, DEVICE, "password")]
    on_disk = store.path(job.id).read_text()
    for where, text in (("job.message", job.message), ("the job file", on_disk), ("the audit trail", "".join(records))):
        assert password[:16] not in text, f"the first characters of the new password are in {where}: {text[:300]}"


async def test_device_answers_with_control_characters_never_reach_the_technicians_terminal() -> None:
    """identify keeps os-release PRETTY_NAME, the hostname and the RAUC compatible as the device wrote them; the step
    detail ("nw-...: serial ..., <PRETTY_NAME>") is printed by the CLI's StepLines and shown by the wizard, and the
    facts go into the audit trail and the provisioning record. A device (tampered, or just broken firmware) with an
    escape sequence there rewrites the technician's terminal (clear screen, fake "provisioned" line, set the title);
    one with a huge os-release fills every record (and shlex.split takes ~13 s on 1 MB). Facts must be printable
    and bounded."""
    from siteline.api import Section
    from siteline.core.provisioning.device_steps import read_facts

    evil = "\x1b[2J\x1b[1;1H\x1b]0;pwned\x07all good\rnw-x: provisioned"

    def section(name: str, out: str) -> Section:
        return Section(name, "", out, "", 0)

    facts = read_facts({
        "serial": section("serial", "NWG0000042\0"),
        "links": section("links", "2: eth0: <UP> mtu 1500 link/ether 02:00:00:00:00:42 brd ff:ff:ff:ff:ff:ff\n"),
        "os": section("os", f'ID=nwedge\nPRETTY_NAME="{evil}"\nVERSION_ID="{"9" * 200_000}"\n'),
        "rauc": section("rauc", f"compatible=nwedge-gw-imx8mm{evil}\n"),
        "hostname": section("hostname", f"gw{evil}\n"),
    })
    texts = [facts["hostname"], facts["compatible"], *facts["os_release"].values()]
    bad = [t[:60] for t in texts if any(ord(c) < 0x20 or ord(c) == 0x7F for c in t)]
    assert not bad, f"control characters kept in the device's facts: {bad}"
    assert max(len(t) for t in texts) <= 4096, "a 200 kB os-release value is kept whole"


class NoOpensslDevice(ScriptedDevice):
    """A BusyBox device without openssl whose key (made on the laptop by an earlier run) is at key_path already."""

    key_pem: str = ""

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if command.startswith("command -v openssl"):
            return Result(1, "")
        if "device.key" in command and command.startswith("cat "):
            return Result(0, self.key_pem)
        return Result(0, "")


async def test_a_resumed_or_dry_run_identity_step_does_not_read_the_private_key_off_the_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without openssl on the device the key is made on the laptop, in memory, and "never written to a file here".
    But every later run (a resume, a --dry-run, a re-run after a sync) `cat`s the private key back over the serial
    line into the laptop's memory (identity.py:202) to rebuild the CSR: the key leaves the device again and again,
    through the console (and anything tapping it). Keep the public key / CSR hash in job.data (or read only the
    CSR, which is public) instead."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from siteline.core.provisioning import identity
    from siteline.core.provisioning.certificates import PendingStore
    from siteline.core.provisioning.identity import identity_step

    store = PendingStore(tmp_path / "pending.json")
    monkeypatch.setattr(identity, "pending_store", lambda: store)
    device = NoOpensslDevice(password="x", login=Credentials("root", "x"))
    key = ec.generate_private_key(ec.SECP256R1())
    device.key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()
    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site=SITE, profile_name="p", profile_sha256="0")
    job.device = DEVICE
    ctx = StepContext(job=job, profile=Profile("p", ("*",)), link=device, step="identity", dry_run=True,
                      outbox_put=lambda kind, payload: "dry-run")
    await identity_step(ctx)
    reads = [c for c in device.commands if c.startswith("cat ") and "device.key" in c]
    assert not reads, f"the private key was read off the device: {reads}"
