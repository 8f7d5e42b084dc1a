"""The certificate checks and the pending store (with a 'device' that is a bash in a temp folder); passwords."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from siteline.core.provisioning.certificates import (
    CertificateResult,
    PendingCertificate,
    PendingStore,
    days_text,
    install_certificate,
    public_key_sha256,
)
from siteline.core.provisioning.credentials import ALPHABET, chpasswd_command, generate_password
from siteline.core.provisioning.identity import check_csr, make_csr, parse_subject, subj_escape
from siteline.core.provisioning.profile import CertificatePolicy
from siteline.core.transports.base import Result

NOW = dt.datetime.now(dt.UTC)


class Device:
    """Runs each command with bash in ``folder`` (policy paths point there); ``clock`` answers `date -u +%s`."""

    def __init__(self, folder: Path, clock: dt.datetime | None = None) -> None:
        self.folder = folder
        self.clock = clock or NOW
        self.commands: list[str] = []

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if command.startswith("date -u"):
            return Result(0, f"{int(self.clock.timestamp())}\n")
        proc = await asyncio.create_subprocess_exec("bash", "-c", command, cwd=self.folder,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return Result(proc.returncode or 0, out.decode(), err.decode())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(key: ec.EllipticCurvePrivateKey, start: dt.datetime, end: dt.datetime) -> str:
    ca = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nw-000042")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .sign(ca, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _setup(tmp_path: Path) -> tuple[ec.EllipticCurvePrivateKey, CertificatePolicy]:
    key = _key()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/device.key").write_bytes(_pem_key(key))
    policy = CertificatePolicy(key_path=str(tmp_path / "etc/device.key"), cert_path=str(tmp_path / "etc/device.crt"),
                               chain_path=str(tmp_path / "etc/chain.pem"), renew_days=7.0)
    return key, policy


def _install(device: Device, cert: str, policy: CertificatePolicy, expected: str) -> CertificateResult:
    doc: dict[str, Any] = {"v": 1, "site": "s", "device": "d", "certificate": cert, "chain": []}
    return asyncio.run(install_certificate(device.run, doc, policy, expected))


def test_a_valid_certificate_installs_and_says_when_it_ends(tmp_path: Path) -> None:
    key, policy = _setup(tmp_path)
    cert = _cert(key, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=29, hours=1))
    result = _install(Device(tmp_path), cert, policy, public_key_sha256(_pem_key(key)))
    assert result.installed, result.detail
    assert "expires in 29 days" in result.detail
    assert not result.renew_due
    assert result.notes == ()
    assert Path(policy.cert_path).read_text() == cert
    assert not list(tmp_path.rglob("*.siteline-tmp"))


def test_renewal_due_and_long_lived_noted(tmp_path: Path) -> None:
    key, policy = _setup(tmp_path)
    soon = _install(Device(tmp_path), _cert(key, NOW - dt.timedelta(days=360), NOW + dt.timedelta(days=3)),
                    policy, public_key_sha256(_pem_key(key)))
    assert soon.installed
    assert soon.renew_due
    assert "renewal due" in soon.detail
    assert any("valid for 363 days" in n for n in soon.notes)


def test_refusals_change_nothing(tmp_path: Path) -> None:
    key, policy = _setup(tmp_path)
    mine = public_key_sha256(_pem_key(key))
    other = _install(Device(tmp_path), _cert(_key(), NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=9)),
                     policy, mine)
    assert not other.installed
    assert "another key" in other.detail
    expired = _install(Device(tmp_path), _cert(key, NOW - dt.timedelta(days=9), NOW - dt.timedelta(days=1)),
                       policy, mine)
    assert "expired" in expired.detail
    future = _install(Device(tmp_path), _cert(key, NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=9)),
                      policy, mine)
    assert "not valid yet by the laptop's clock" in future.detail
    assert not Path(policy.cert_path).exists()


def test_device_clock_counts_unless_it_is_plainly_unset(tmp_path: Path) -> None:
    key, policy = _setup(tmp_path)
    mine = public_key_sha256(_pem_key(key))
    cert = _cert(key, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=20))
    behind = _install(Device(tmp_path, NOW - dt.timedelta(days=2)), cert, policy, mine)
    assert not behind.installed
    assert "device's clock" in behind.detail
    unset = _install(Device(tmp_path, dt.datetime(1970, 1, 1, 0, 5, tzinfo=dt.UTC)), cert, policy, mine)
    assert unset.installed
    assert any("1970-01-01" in n and "not trusted" in n for n in unset.notes)


def test_a_certificate_that_does_not_fit_the_key_on_the_device_fails(tmp_path: Path) -> None:
    key, policy = _setup(tmp_path)
    mine = public_key_sha256(_pem_key(key))
    (tmp_path / "etc/device.key").write_bytes(_pem_key(_key()))  # the key was replaced since the CSR
    # Refused before anything is written: the working certificate (if any) stays.
    result = _install(Device(tmp_path), _cert(key, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=20)), policy,
                      mine)
    assert not result.installed
    assert "was replaced" in result.detail
    assert not Path(policy.cert_path).exists()


def test_pending_store_round_trip_and_damage(tmp_path: Path) -> None:
    store = PendingStore(tmp_path / "p" / "pending.json")
    assert store.get("s", "d") is None
    store.put(PendingCertificate("s", "d", "a" * 64, csr_item="item-1"))
    store.mark_installed("s", "d", CertificateResult(True, "ok", certificate_sha256="c" * 64, not_after="2030"))
    store.put(PendingCertificate("s", "d", "a" * 64, csr_item="item-1"))  # same key again: the install stays known
    entry = store.get("s", "d")
    assert entry is not None
    assert entry.installed_sha256 == "c" * 64
    assert (store.path.stat().st_mode & 0o777) == 0o600
    store.put(PendingCertificate("s", "d", "b" * 64))  # a new key: waiting again
    entry = store.get("s", "d")
    assert entry is not None
    assert entry.installed_sha256 == ""
    store.path.write_text("{not json")
    assert store.all() == []
    store.path.write_text('{"version": 1, "devices": {"x/y": {"bogus": 1}}}')
    assert store.all() == []


def test_subject_escaping_and_csr_checks() -> None:
    subject = f"/CN={subj_escape('a/b+c')}/OU=site"
    assert parse_subject(subject) == [("CN", "a/b+c"), ("OU", "site")]
    with pytest.raises(ValueError, match="starts with"):
        parse_subject("CN=x")
    with pytest.raises(ValueError, match="NAME=value"):
        parse_subject("/CN")
    key = _key()
    csr = make_csr(key, parse_subject(subject))
    mine = public_key_sha256(_pem_key(key))
    assert check_csr(csr, parse_subject(subject), mine) == ""
    assert "subject" in check_csr(csr, [("CN", "other")], mine)
    assert "another key" in check_csr(csr, parse_subject(subject), "0" * 64)
    assert "not a PEM" in check_csr("garbage", [], mine)


def test_days_text() -> None:
    assert days_text(29.2) == "expires in 29 days"
    assert days_text(1.0) == "expires in 1 day"
    assert days_text(0.5) == "expires in 12 hours"
    assert days_text(1 / 24) == "expires in 1 hour"
    assert days_text(-3) == "expired 3 days ago"



def test_generated_passwords_have_no_look_alikes() -> None:
    for _ in range(50):
        password = generate_password(24)
        assert len(password) == 24
        assert set(password) <= set(ALPHABET)
        assert not set(password) & set("0O1lI")
    assert len({generate_password(16) for _ in range(20)}) == 20
    with pytest.raises(ValueError, match="at least 8"):
        generate_password(4)
    assert "'root:Abc'" in chpasswd_command("root", "Abc")
    assert "chpasswd -c SHA512" in chpasswd_command("root", "Abc")
