"""Wizard step 4 (device key + CSR) and the certificate coming back, against a simulated device (serial and SSH)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from tests.peers import require_tool
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.core.outbox.inbound import InboundCache, certificate_topic
from siteline.core.outbox.store import Outbox
from siteline.core.provisioning import identity
from siteline.core.provisioning.api import StepContext
from siteline.core.provisioning.certificates import PendingStore, pickup_on_connect, public_key_sha256
from siteline.core.provisioning.identity import identity_step
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.link import TransportProvisionLink
from siteline.core.provisioning.profile import CertificatePolicy, Profile
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio

SITE, DEVICE, SERIAL = "north-7", "nw-000042", "NWG0000042"
# The family's real paths: under /etc/siteline, which the host guard keeps in the device's state dir.
POLICY = CertificatePolicy(subject="/CN={device}/OU={site}/serialNumber={serial}", renew_days=7.0)


@dataclass
class Rig:
    state: DeviceState
    link: Any
    tmp: Path
    store: PendingStore
    queued: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    records: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    inbound: dict[str, Any] | None = None

    def device_file(self, path: str) -> Path:
        return rootfs.device_file(self.state.root, path)

    def context(self, job: ProvisionJob, *, policy: CertificatePolicy = POLICY, link: Any = None,
                dry_run: bool = False) -> StepContext:
        def put(kind: str, payload: Mapping[str, Any]) -> str:
            self.queued.append((kind, dict(payload)))
            return f"item-{len(self.queued)}"

        return StepContext(job=job, profile=Profile("p", ("*",), certificate=policy), link=link or self.link,
                           step="identity", dry_run=dry_run, outbox_put=put,
                           record=lambda a, d, r: self.records.append((a, dict(d), r)),
                           inbound_certificate=lambda: self.inbound)


def _job() -> ProvisionJob:
    job = ProvisionJob.new(target="device", site=SITE, profile_name="p", profile_sha256="0")
    job.device = DEVICE
    job.facts = {"serial": SERIAL}
    return job


@pytest_asyncio.fixture(params=["serial", "ssh"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    require_tool("openssl")
    state = make_state(tmp_path / "dev", name="gw-id")
    store = PendingStore(tmp_path / "pending.json")
    monkeypatch.setattr(identity, "pending_store", lambda: store)
    tty = tmp_path / "ttyGW"
    serial = request.param == "serial"
    async with running_device(state, ssh=not serial, serial_link=tty if serial else None) as device:
        url = f"serial://{tty}?baud=115200" if serial else f"ssh://root@127.0.0.1:{device.ssh_port}"
        target = parse_target(url)
        link = TransportProvisionLink(target, Credentials("root", PASSWORD), lambda c: open_transport(
            target, c, tmp_path / "known_hosts", accept_new_host_key=True), known_hosts=tmp_path / "known_hosts")
        try:
            yield Rig(state, link, tmp_path, store)
        finally:
            await link.close()


def _ca(tmp: Path) -> tuple[Path, Path]:
    key, pem = tmp / "ca.key", tmp / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "30", "-keyout", str(key), "-out", str(pem), "-subj", "/CN=Siteline test device CA"],
                   check=True, capture_output=True, timeout=30)
    return key, pem


def _sign(tmp: Path, csr_pem: str, days: int = 29) -> str:
    """The control plane's CA, played by the openssl CLI: sign the device's CSR."""
    ca_key, ca_pem = _ca(tmp)
    (tmp / "in.csr").write_text(csr_pem)
    subprocess.run(["openssl", "x509", "-req", "-in", str(tmp / "in.csr"), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                    "-CAcreateserial", "-days", str(days), "-out", str(tmp / "out.pem")],
                   check=True, capture_output=True, timeout=30)
    return (tmp / "out.pem").read_text()


def _doc(cert: str, chain: list[str] | None = None) -> dict[str, Any]:
    return {"v": 1, "site": SITE, "device": DEVICE, "certificate": cert, "chain": chain or []}


async def test_key_on_device_csr_valid_and_queued_once(rig: Rig) -> None:
    job = _job()
    outcome = await identity_step(rig.context(job))
    key = rig.device_file(POLICY.key_path)
    assert key.stat().st_mode & 0o777 == 0o600
    key_bytes = key.read_bytes()
    assert b"PRIVATE KEY" in key_bytes
    csr = x509.load_pem_x509_csr(rig.device_file(POLICY.csr_path).read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == f"2.5.4.5={SERIAL},OU={SITE},CN={DEVICE}"
    assert [k for k, _ in rig.queued] == ["csr"]
    payload = rig.queued[0][1]
    assert payload["public_key_sha256"] == public_key_sha256(key_bytes) == job.data["identity"]["public_key_sha256"]
    assert payload["key_type"] == "ec-p256"
    assert "PRIVATE" not in json.dumps(payload)
    assert "PRIVATE" not in json.dumps(dict(outcome.evidence))
    assert job.data["identity"]["where"] == "device"
    assert rig.store.get(SITE, DEVICE) is not None
    again = await identity_step(rig.context(job))  # idempotent: key kept, nothing queued a second time
    assert again.skipped
    assert key.read_bytes() == key_bytes
    assert len(rig.queued) == 1
    # A lost CSR is made again from the same key, not queued again. Removed on the device: its /etc is an
    # overlay whose upper layer must not change under it from the host.
    assert (await rig.link.run(f"rm -f {POLICY.csr_path}", 10)).ok
    await identity_step(rig.context(_job()))
    assert rig.device_file(POLICY.csr_path).exists()
    assert len(rig.queued) == 1


async def test_signed_certificate_installs_and_wrong_ones_are_refused(rig: Rig) -> None:
    job = _job()
    await identity_step(rig.context(job))
    csr_pem = rig.queued[0][1]["csr"]
    # A certificate for another key, and an expired one for the right key: refused, nothing installed.
    other = _sign(rig.tmp, _other_csr())
    rig.inbound = _doc(other)
    await identity_step(rig.context(job))
    assert not rig.device_file(POLICY.cert_path).exists()
    outbox = Outbox.open(rig.tmp / "outbox.db")
    try:
        inbound = InboundCache(outbox, technician="tech")
        topic = certificate_topic("tech", SITE, DEVICE)
        assert inbound.accept(topic, json.dumps(_doc(_expired(rig.tmp, csr_pem))).encode()).accepted
        refused = await pickup_on_connect(rig.link.run, inbound, SITE, DEVICE, rig.store,
                                          record=lambda a, d, r: rig.records.append((a, dict(d), r)))
        assert refused is not None
        assert not refused.installed
        assert "expired" in refused.detail
        assert not rig.device_file(POLICY.cert_path).exists()
        assert await pickup_on_connect(rig.link.run, inbound, SITE, DEVICE, rig.store) is None  # not again
        # The CA's answer for the device's own CSR: installed at the next connection, expiry reported.
        cert = _sign(rig.tmp, csr_pem, days=29)
        assert inbound.accept(topic, json.dumps(_doc(cert, [(rig.tmp / "ca.pem").read_text()])).encode()).accepted
        result = await pickup_on_connect(rig.link.run, inbound, SITE, DEVICE, rig.store,
                                         record=lambda a, d, r: rig.records.append((a, dict(d), r)))
        assert result is not None
        assert result.installed, result.detail
        assert "expires in 29 days" in result.detail
        assert not result.renew_due
        assert rig.device_file(POLICY.cert_path).read_text() == cert
        assert "BEGIN CERTIFICATE" in rig.device_file(POLICY.chain_path).read_text()
        assert [(a, r) for a, _, r in rig.records] == [("provision-certificate", "refused"),
                                                       ("provision-certificate", "ok")]
        assert await pickup_on_connect(rig.link.run, inbound, SITE, DEVICE, rig.store) is None  # done already
    finally:
        outbox.close()


@pytest.mark.parametrize("rig", ["ssh"], indirect=True)
async def test_certificate_already_back_is_installed_in_the_step(rig: Rig) -> None:
    job = _job()
    await identity_step(rig.context(job))
    rig.inbound = _doc(_sign(rig.tmp, rig.queued[0][1]["csr"], days=5))
    outcome = await identity_step(rig.context(job))
    assert outcome.evidence["certificate"]["installed"] is True
    assert outcome.evidence["certificate"]["renew_due"] is True  # 5 days left, renewal at 7
    assert job.data["identity"]["certificate"]["installed"] is True
    assert rig.records[-1][0] == "provision-certificate"


class _NoOpenssl:
    """The device as one without openssl: `command -v openssl` finds nothing."""

    def __init__(self, inner: TransportProvisionLink) -> None:
        self.inner = inner
        self.kind = inner.kind

    @property
    def credentials(self) -> Credentials:
        return self.inner.credentials

    async def run(self, command: str, timeout: float) -> Result:
        if command.startswith("command -v openssl"):
            return Result(1, "")
        return await self.inner.run(command, timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("rig", ["serial"], indirect=True)
async def test_without_openssl_the_key_is_made_on_the_laptop_and_never_stored_here(rig: Rig) -> None:
    job = _job()
    await identity_step(rig.context(job, link=_NoOpenssl(rig.link)))
    key = rig.device_file(POLICY.key_path)
    assert key.stat().st_mode & 0o777 == 0o600
    key_pem = key.read_bytes()
    csr = x509.load_pem_x509_csr(rig.device_file(POLICY.csr_path).read_bytes())
    assert csr.is_signature_valid
    assert public_key_sha256(key_pem) == job.data["identity"]["public_key_sha256"]
    assert job.data["identity"]["where"] == "laptop"
    body = b"".join(key_pem.splitlines()[1:-1])[:40]
    device_dir = rig.state.root.resolve()
    for folder in (rig.tmp, Path(os.environ["SITELINE_HOME"])):
        for path in folder.rglob("*"):
            if path.is_file() and not path.resolve().is_relative_to(device_dir) and path.stat().st_size < 10**7:
                assert body not in path.read_bytes(), f"the device key is on the laptop's disk: {path}"
    again = await identity_step(rig.context(job, link=_NoOpenssl(rig.link)))
    assert again.skipped
    assert key.read_bytes() == key_pem


@pytest.mark.parametrize("rig", ["ssh"], indirect=True)
async def test_dry_run_plans_and_changes_nothing(rig: Rig) -> None:
    ctx = rig.context(_job(), dry_run=True)
    outcome = await identity_step(ctx)
    assert ["openssl genpkey" in p.command for p in ctx.plan] == [True, False]
    assert "openssl req -new" in ctx.plan[1].command
    assert not rig.device_file(POLICY.key_path).exists()
    assert "would make" in outcome.detail
    assert rig.store.get(SITE, DEVICE) is None


@pytest.mark.parametrize("rig", ["ssh"], indirect=True)
async def test_an_empty_subject_value_is_left_out(rig: Rig) -> None:
    job = _job()
    job.facts = {"serial": ""}  # a board without a serial number: identify named it from its MAC
    await identity_step(rig.context(job))
    csr = x509.load_pem_x509_csr(rig.device_file(POLICY.csr_path).read_bytes())
    assert csr.subject.rfc4514_string() == f"OU={SITE},CN={DEVICE}"
    assert rig.queued[0][1]["subject"] == f"/CN={DEVICE}/OU={SITE}"


def _other_csr() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, DEVICE)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _expired(tmp: Path, csr_pem: str) -> str:
    """A certificate for the device's key that ended yesterday (openssl 3.0 cannot backdate: cryptography)."""
    ca_key = serialization.load_pem_private_key((tmp / "ca.key").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((tmp / "ca.pem").read_bytes())
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject).public_key(csr.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now - dt.timedelta(days=1)).sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.PEM).decode()

