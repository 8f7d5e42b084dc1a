"""Issue 7 end to end: provision a simulated device over its serial console with no broker, then let the outbox
reach a real Mosquitto, the control plane's CA sign the CSR, and the certificate come back and be installed.

The control plane is what an operator runs: Mosquitto, a consumer reading the outbox topics, and a CA made with
the openssl CLI (tests/peers/control_plane_ca.py). Nothing of the control plane is Siteline's code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.integration.test_outbox_sync_support import TECH, settings_for, until
from tests.peers import require_tool
from tests.peers.control_plane_ca import (
    ControlPlaneCA,
    CsrConsumer,
    csr_subject,
    public_key_sha256,
    publish_certificate,
)
from tests.peers.sim import make_state, running_device

from siteline.core.keep import Keep, device_secret_name
from siteline.core.outbox.inbound import InboundCache, certificate_topic
from siteline.core.outbox.model import Item, NewItem
from siteline.core.outbox.settings import save_settings
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import Syncer
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.vault import Vault
from siteline.core.vault.crypto import KdfCost
from siteline.simulator.broker import BrokerHandle, start_mosquitto
from siteline.simulator.state import DeviceState

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("mosquitto")]

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "resources" / "profiles" / "nwedge-gw-imx8mm.toml"
SITE = "north-7"
VAULT_PASS = "e2e vault passphrase 7"
CHEAP = KdfCost(1, 64, 1)  # Argon2id cost for a test vault


# --- the control plane -----------------------------------------------------------------------------------------


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    require_tool("mosquitto")
    return tmp_path / "mosquitto"


@asynccontextmanager
async def control_plane(workdir: Path) -> AsyncIterator[BrokerHandle]:
    """Mosquitto started now (not before: provisioning runs with no broker at all)."""
    handle = await asyncio.to_thread(start_mosquitto, workdir, 0)
    try:
        yield handle
    finally:
        await asyncio.to_thread(handle.stop)


async def sync_once(outbox: Outbox, port: int, *, until_topic: str | None = None) -> InboundCache:
    """One sync as the app runs it: send what waits, take the retained inbound documents (until ``until_topic``
    is cached when given), stop."""
    cache = InboundCache(outbox, technician=TECH)
    syncer = Syncer(outbox, settings_for(port), inbound=cache)
    task = asyncio.create_task(syncer.run())
    try:
        await until(lambda: not outbox.pending(limit=1), "the outbox drained", 20)
        if until_topic is not None:
            await until(lambda: cache.get_topic(until_topic) is not None, f"{until_topic} cached", 20)
    finally:
        await syncer.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return cache


def laptop_csr(tmp: Path, subject: str) -> str:
    """A CSR made with the openssl CLI (stands in for one a device made), for the control-plane round trip."""
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp / "k.pem"), "-out", str(tmp / "r.csr"), "-subj", subject],
                   check=True, capture_output=True, timeout=30)
    return (tmp / "r.csr").read_text()


async def test_a_queued_csr_reaches_the_ca_and_its_certificate_comes_back_to_the_cache(
        tmp_path: Path, broker_dir: Path) -> None:
    """The contract alone (no device): a "csr" item in the outbox is what the operator's CA reads; the retained
    certificate it publishes is cached for the device at the next sync."""
    csr = laptop_csr(tmp_path, f"/CN=gw-0042/OU={SITE}")
    outbox = Outbox.open(tmp_path / "outbox.sqlite3")
    ca = ControlPlaneCA(tmp_path / "ca")
    try:
        item = outbox.put(NewItem("csr", SITE, "gw-0042", {
            "site": SITE, "device": "gw-0042", "csr": csr, "subject": f"/CN=gw-0042/OU={SITE}",
            "key_type": "ec-p256", "public_key_sha256": public_key_sha256(csr), "job": "j1"}))
        async with control_plane(broker_dir) as broker:
            consumer = CsrConsumer(broker.port, TECH, ca=ca, lifetime=dt.timedelta(hours=1))
            try:
                await sync_once(outbox, broker.port)
                assert await asyncio.to_thread(consumer.wait_for, [item.id]) == set()
                topic = certificate_topic(TECH, SITE, "gw-0042")
                await until(lambda: item.id in consumer.answered, "the CA answered")
                cache = await sync_once(outbox, broker.port, until_topic=topic)
            finally:
                consumer.close()
        assert not consumer.bad
        doc = cache.get_topic(topic)
        assert doc is not None
        assert doc.data["certificate"] == ca.signed[0]
        assert public_key_sha256(doc.data["certificate"]) == public_key_sha256(csr)
        assert csr_subject(csr) == f"CN = gw-0042, OU = {SITE}"
    finally:
        outbox.close()


# --- the device, the laptop's keep, a provisioning run ----------------------------------------------------------


def load_e2e_profile() -> Any:
    """The simulator family's profile, as shipped (helper P's load_profile)."""
    from siteline.core.provisioning.profile import load_profile

    return load_profile(PROFILE)


@asynccontextmanager
async def device_with_factory_login(tmp: Path) -> AsyncIterator[tuple[DeviceState, Path, Any]]:
    """A new simulated box on a serial pty, its root password the factory one the profile publishes."""
    profile = load_e2e_profile()
    factory = profile.credentials.factory[0]
    assert factory.user == "root", "the simulator's login is root: a profile for it names root's factory password"
    state = make_state(tmp / "device", name="gw-e2e", site="factory", password=factory.password)
    tty = tmp / "ttyGW"
    async with running_device(state, ssh=False, serial_link=tty):
        yield state, tty, profile


@asynccontextmanager
async def keep_for(tmp: Path, home: Path | None = None) -> AsyncIterator[Keep]:
    """The laptop's keep: an outbox, an unlocked vault (made now when there is none), the technician TECH."""
    outbox_path = (home / "data" / "outbox.sqlite3") if home else tmp / "outbox.sqlite3"
    vault_path = (home / "data" / "vault.siteline") if home else tmp / "vault.siteline"
    if vault_path.exists():
        vault = Vault.open(vault_path)
        vault.unlock(VAULT_PASS)
    else:
        vault = Vault.create(vault_path, VAULT_PASS, cost=CHEAP)
    keep = Keep(Outbox.open(outbox_path), vault, settings_for(1883))
    try:
        yield keep
    finally:
        await keep.close()


def serial_link(tmp: Path, tty: Path, credentials: Credentials) -> Any:
    from siteline.core.provisioning.link import TransportProvisionLink
    from siteline.core.transports.factory import open_transport

    target = parse_target(f"serial://{tty}?baud=115200")
    return TransportProvisionLink(target, credentials, lambda c: open_transport(target, c, tmp / "known_hosts"))


def job_store(tmp: Path) -> Any:
    from siteline.core.provisioning.store import ProvisionStore

    return ProvisionStore(tmp / "provision-jobs")


async def provision_core(tmp: Path, tty: Path, profile: Any, keep: Keep, *, site: str = SITE) -> Any:
    """One run of the real eight steps through the core (the runner), as the GUI's wizard does it."""
    from siteline.core.provisioning.job import ProvisionJob
    from siteline.core.provisioning.runner import hooks_from_keep, run_provision

    factory = profile.credentials.factory[0]
    job = ProvisionJob.new(target=f"serial://{tty}?baud=115200", site=site, profile_name=profile.name,
                           profile_sha256=profile.sha256, tags=["e2e"])
    link = serial_link(tmp, tty, Credentials(factory.user, factory.password, use_agent=False))
    try:
        return await run_provision(job, link, profile, store=job_store(tmp), keep_hooks=hooks_from_keep(
            keep, site, lambda: job.device))
    finally:
        await link.close()


def outbox_items(outbox: Outbox, kind: str) -> list[Item]:
    return [i for i in outbox.items(limit=5000) if i.kind == kind]


async def device_run(link: Any, command: str) -> str:
    result = await link.run(command, 30)
    return str(result.stdout)


async def assert_firewall_baseline_confirmed(link: Any, backend: str) -> None:
    """OUTPUT policy DROP on the device (with the backend the step chose), and no dead-man timer left armed."""
    if backend == "nft":
        rules = await device_run(link, "nft list ruleset")
        assert "policy drop" in rules, f"OUTPUT is not DROP on the device: {rules[:800]}"
    else:
        rules = await device_run(link, "iptables -S OUTPUT")
        assert rules.splitlines()[:1] == ["-P OUTPUT DROP"], f"OUTPUT is not DROP on the device: {rules[:800]}"
        assert "-A OUTPUT -o lo -j ACCEPT" in rules, rules
    timers = await device_run(link, "systemctl list-timers --all --no-pager 2>&1")
    assert "siteline-firewall-revert" not in timers, f"the dead-man timer is still listed: {timers[:800]}"
    active = (await device_run(link, "systemctl is-active siteline-firewall-revert.timer 2>&1")).strip()
    assert active != "active", "the dead-man timer is still armed"


def device_file(state: DeviceState, path: str) -> Path:
    from siteline.simulator.rootfs import device_file as locate

    located: Path = locate(state.root, path)
    return located


def run_cli(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`siteline ...` as the technician types it, with a private SITELINE_HOME and the vault's passphrase given
    the way scripts give it (no terminal: a prompt could reach nobody)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_")}
    env.pop("XDG_RUNTIME_DIR", None)  # no vault agent of the developer's session
    env.update(SITELINE_HOME=str(home), SITELINE_VAULT_PASSPHRASE=VAULT_PASS, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "siteline", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout, start_new_session=True, stdin=subprocess.DEVNULL)


@dataclass
class Provisioned:
    """What the laptop holds after an offline provisioning run."""

    job: Any
    device: str
    password: str  # the generated root password, read back from the vault
    record: Item
    csr: Item


def check_offline_result(keep: Keep, job: Any, state: DeviceState, profile: Any) -> Provisioned:
    """Every step passed; the factory password is refused and the vault's works; the outbox holds the record
    and the CSR (nothing sent: there is no broker)."""
    assert job.status == "provisioned", f"{job.status}: {job.message}"
    assert [(s.name, s.state) for s in job.steps if s.state != "done"] == [], [(s.name, s.state, s.detail)
                                                                                for s in job.steps]
    factory = profile.credentials.factory[0]
    assert not state.check_password("root", factory.password), "the factory password still works"
    entry = device_secret_name(job.site, job.device, "password")
    assert job.data["credentials"]["vault"].get("root") == entry
    password = keep.vault.get(entry)
    assert password
    assert password != factory.password
    assert state.check_password("root", password), "the password in the vault is not the device's"
    records, csrs = outbox_items(keep.outbox, "provisioning"), outbox_items(keep.outbox, "csr")
    assert len(records) == 1, records
    assert len(csrs) == 1, csrs
    assert records[0].device == csrs[0].device == job.device
    record_text = records[0].payload
    assert password not in record_text, "the generated password is in the provisioning record"
    assert entry in records[0].vault_refs, "the record does not name the vault entry of the new password"
    csr = csrs[0].payload_obj()
    subject = csr_subject(csr["csr"])  # openssl also checks the request's signature
    assert f"CN = {job.device}" in subject, subject
    assert f"OU = {job.site}" in subject, subject
    assert csr["public_key_sha256"] == job.data["identity"]["public_key_sha256"] == public_key_sha256(csr["csr"])
    assert (csr["site"], csr["device"], csr["job"]) == (job.site, job.device, job.id)
    assert keep.outbox.status().sent == 0
    assert job.data["firewall"]["confirmed"] is True
    assert device_file(state, "/etc/hostname").read_text().strip() == job.device  # hostname_template "{device}"
    marker = json.loads(device_file(state, profile.identity.marker).read_text())
    assert marker["job"] == job.id
    key = device_file(state, profile.certificate.key_path)
    assert key.stat().st_mode & 0o077 == 0, "the device key is readable by others"
    return Provisioned(job, job.device, password, records[0], csrs[0])


async def deliver_and_sign(keep: Keep, done: Provisioned, broker_dir: Path, tmp: Path,
                           lifetime: dt.timedelta) -> tuple[ControlPlaneCA, InboundCache, str]:
    """Start the control plane: the record and the CSR arrive; the CA signs the CSR and publishes the certificate
    back, retained; the next sync caches it."""
    ca = ControlPlaneCA(tmp / "ca")
    topic = certificate_topic(TECH, done.job.site, done.device)
    async with control_plane(broker_dir) as broker:
        consumer = CsrConsumer(broker.port, TECH)
        try:
            await sync_once(keep.outbox, broker.port)
            assert await asyncio.to_thread(consumer.wait_for, [done.record.id, done.csr.id]) == set()
            arrived = {r.kind: r.payload for r in consumer.items()}
            assert arrived["csr"]["csr"] == done.csr.payload_obj()["csr"]
            assert arrived["provisioning"] == done.record.payload_obj()
            assert done.password not in json.dumps(arrived)
            pem = ca.sign(arrived["csr"]["csr"], lifetime)
            doc = ca.certificate_doc(done.job.site, done.device, pem)
            await asyncio.to_thread(publish_certificate, broker.port, TECH, doc)
            cache = await sync_once(keep.outbox, broker.port, until_topic=topic)
        finally:
            consumer.close()
    assert not consumer.bad
    return ca, cache, topic


async def pick_up_at_next_connection(tmp: Path, tty: Path, done: Provisioned, cache: InboundCache,
                                     recorded: list[tuple[str, Any, str]] | None = None) -> Any:
    """What a connection does when it opens (the hook certificates.pickup_on_connect), with the new password."""
    from siteline.core.provisioning import certificates

    def record(action: str, detail: Any, result: str) -> None:
        if recorded is not None:
            recorded.append((action, dict(detail), result))

    link = serial_link(tmp, tty, Credentials("root", done.password, use_agent=False))
    try:
        await link.connect()
        return await certificates.pickup_on_connect(link.run, cache, done.job.site, done.device,
                                                    certificates.PendingStore(), record=record)
    finally:
        await link.close()


def check_result(result: Any, done: Provisioned) -> None:
    """What pickup_on_connect said: installed, for the device's own key, with its expiry."""
    assert result is not None, "the cached certificate was not picked up at the connection"
    assert result.installed, result
    assert "expires" in result.detail, result.detail
    assert result.days_left is not None
    assert result.public_key_sha256 == done.job.data["identity"]["public_key_sha256"]


async def check_installed(tmp: Path, tty: Path, state: DeviceState, done: Provisioned, profile: Any,
                          pem: str) -> None:
    """On the device: the certificate the CA signed and its chain, valid by the device's own openssl; the firewall
    baseline still in place."""
    policy = profile.certificate
    assert device_file(state, policy.cert_path).read_text().strip() == pem.strip()
    assert "BEGIN CERTIFICATE" in device_file(state, policy.chain_path).read_text()
    link = serial_link(tmp, tty, Credentials("root", done.password, use_agent=False))
    try:
        await link.connect()  # the vault's password is accepted on the console, the factory one is not:
        factory = profile.credentials.factory[0]
        assert not await link.try_login(Credentials(factory.user, factory.password, use_agent=False), 30)
        end = await device_run(link, f"openssl x509 -noout -enddate -checkend 60 -in {policy.cert_path}")
        assert "notAfter=" in end, end
        assert "will not expire" in end, end
        await assert_firewall_baseline_confirmed(link, done.job.data["firewall"]["backend"])
    finally:
        await link.close()


@pytest.mark.timeout(240)
async def test_cli_provisions_offline_over_serial_then_the_certificate_comes_back_and_is_installed(
        tmp_path: Path, broker_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's main test through `siteline provision` itself; the certificate is picked up when the same
    command connects to the device again (the technician's next visit)."""
    home = tmp_path / "home"
    monkeypatch.setenv("SITELINE_HOME", str(home))
    save_settings(settings_for(1883))  # who the technician is (TECH); nothing connects to it while provisioning
    async with device_with_factory_login(tmp_path) as (state, tty, profile):
        Vault.create(home / "data" / "vault.siteline", VAULT_PASS, cost=CHEAP).lock()
        argv = ["provision", f"serial://{tty}?baud=115200", "--profile", str(PROFILE), "--site", SITE, "--yes"]
        out = await asyncio.to_thread(run_cli, home, *argv)
        assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
        jobs = job_store(home / "data").jobs()
        assert len(jobs) == 1
        async with keep_for(tmp_path, home) as keep:
            done = check_offline_result(keep, jobs[0], state, profile)
            assert done.password not in out.stdout + out.stderr
            ca, _cache, _topic = await deliver_and_sign(keep, done, broker_dir, tmp_path, dt.timedelta(days=2))
        again = await asyncio.to_thread(run_cli, home, *argv)
        shown = f"exit {again.returncode}\n{again.stdout}\n{again.stderr}"
        assert "device certificate: installed" in again.stderr, shown
        assert again.returncode in (0, 3), shown  # 3: the device is provisioned already (nothing else to do)
        assert done.password not in again.stdout + again.stderr
        assert "expires in" in again.stderr, shown
        await check_installed(tmp_path, tty, state, done, profile, ca.signed[0])
        async with keep_for(tmp_path, home) as keep:
            keep.flush_records()
            actions = [i.payload_obj()["action"] for i in outbox_items(keep.outbox, "audit")]
            assert "provision-certificate" in actions


@pytest.mark.timeout(240)
async def test_core_run_then_a_short_lived_certificate_is_installed_and_its_renewal_reported(
        tmp_path: Path, broker_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner in-process (as the wizard runs it); the control plane issues a certificate shorter-lived than
    the profile's renewal window: it is installed all the same, and the result says renewal is due."""
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    async with device_with_factory_login(tmp_path) as (state, tty, profile), keep_for(tmp_path) as keep:
        job = await provision_core(tmp_path, tty, profile, keep)
        keep.flush_records()
        done = check_offline_result(keep, job, state, profile)
        audit = [i.payload_obj() for i in outbox_items(keep.outbox, "audit")]
        steps = [a for a in audit if a.get("action") == "provision-step"]
        assert steps, "no provision-step in the audit trail"
        assert done.password not in json.dumps(audit)
        lifetime = dt.timedelta(days=profile.certificate.renew_days / 2)
        ca, cache, _topic = await deliver_and_sign(keep, done, broker_dir, tmp_path, lifetime)
        recorded: list[tuple[str, Any, str]] = []
        result = await pick_up_at_next_connection(tmp_path, tty, done, cache, recorded)
        check_result(result, done)
        await check_installed(tmp_path, tty, state, done, profile, ca.signed[0])
        assert result.renew_due, result
        assert result.days_left < profile.certificate.renew_days
        assert [(a, r) for a, _d, r in recorded] == [("provision-certificate", "ok")]
        again = await pick_up_at_next_connection(tmp_path, tty, done, cache, recorded)
        assert again is None, "a certificate already installed was installed again at the next connection"
