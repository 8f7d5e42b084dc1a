"""Fixes of the issue 7 review (identity, certificates, device facts): a 'device' that is bash in a temp folder."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from siteline.core.provisioning import identity
from siteline.core.provisioning.api import StepContext, StepRefusedError
from siteline.core.provisioning.certificates import PendingStore, ca_problem, install_certificate, public_key_sha256
from siteline.core.provisioning.device_steps import check_same_device
from siteline.core.provisioning.identity import identity_step
from siteline.core.provisioning.job import ProvisionJob
from siteline.core.provisioning.profile import CertificatePolicy, Profile, ProfileError, load_profile
from siteline.core.transports.base import Credentials, Result

NOW = dt.datetime.now(dt.UTC)
SITE, DEVICE = "north-7", "nw-000042"


class BashDevice:
    """Runs each command with bash (policy paths point into a temp folder); ``openssl`` False hides it; ``rewrite``
    replaces parts of a command before it runs (the device tree's serial file -> a temp file)."""

    kind = "ssh"

    def __init__(self, openssl: bool = True, rewrite: Mapping[str, str] | None = None) -> None:
        self.openssl = openssl
        self.rewrite = dict(rewrite or {})
        self.commands: list[str] = []

    @property
    def credentials(self) -> Credentials:
        return Credentials("root", "x")

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if command.startswith("command -v openssl") and not self.openssl:
            return Result(1, "")
        for part, instead in self.rewrite.items():
            command = command.replace(part, instead)
        proc = await asyncio.create_subprocess_exec("bash", "-c", command, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return Result(proc.returncode or 0, out.decode(), err.decode())

    async def reconnect(self, timeout: float) -> None:
        return None

    async def try_login(self, credentials: Credentials, timeout: float) -> bool:
        return True

    def use_credentials(self, credentials: Credentials) -> None:
        return None

    async def close(self) -> None:
        return None


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(public: Any, issuer: str, signer: Any, *, ca: bool = False, subject: str = DEVICE) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer)).public_key(public)
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(hours=1))
               .not_valid_after(NOW + dt.timedelta(days=20)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _policy(tmp_path: Path, **kw: Any) -> CertificatePolicy:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    return CertificatePolicy(key_path=str(etc / "device.key"), csr_path=str(etc / "device.csr"),
                             cert_path=str(etc / "device.crt"), chain_path=str(etc / "chain.pem"), **kw)


def _job(facts: dict[str, Any] | None = None) -> ProvisionJob:
    job = ProvisionJob.new(target="serial:///dev/ttyUSB0", site=SITE, profile_name="p", profile_sha256="0")
    job.device, job.facts = DEVICE, facts or {}
    return job


# -- 1. the same box on resume ------------------------------------------------------------------------------------
LINKS = "2: eth0: <UP> mtu 1500 link/ether 02:00:00:00:00:42 brd ff:ff:ff:ff:ff:ff\n"
LOOPBACK = "1: lo: <LOOPBACK> mtu 65536 link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"


def _box(tmp_path: Path, name: str, serial: str, links: str) -> BashDevice:
    """A device whose serial file and `ip -o link` answer are files in the temp folder."""
    (tmp_path / f"{name}.serial").write_text(serial)
    (tmp_path / f"{name}.links").write_text(links)
    return BashDevice(rewrite={"/proc/device-tree/serial-number": str(tmp_path / f"{name}.serial"),
                               "/sys/firmware/devicetree/base/serial-number": "/nonexistent",
                               "/sys/class/dmi/id/product_serial": "/nonexistent",
                               "ip -o link": f"cat {tmp_path / f'{name}.links'}"})


def _ctx(job: ProvisionJob, device: BashDevice) -> StepContext:
    return StepContext(job=job, profile=Profile("p", ("*",)), link=device, step="names")


@pytest.mark.asyncio
async def test_check_same_device_passes_the_same_box_and_refuses_another_or_an_unreadable_one(tmp_path: Path) -> None:
    facts = {"serial": "NWG0000042", "mac": "02:00:00:00:00:42"}
    same = _box(tmp_path, "a", "NWG0000042\0", LINKS)
    await check_same_device(_ctx(_job(facts), same))
    assert len(same.commands) == 1, "one cheap round trip"
    other = _box(tmp_path, "b", "NWG0000099\n", LINKS)
    with pytest.raises(StepRefusedError) as refused:
        await check_same_device(_ctx(_job(facts), other))
    assert "NWG0000042" in refused.value.message
    assert "NWG0000099" in refused.value.message
    swapped_board = _box(tmp_path, "c", "NWG0000042\n", LINKS.replace(":42 ", ":43 "))
    with pytest.raises(StepRefusedError, match="02:00:00:00:00:43"):
        await check_same_device(_ctx(_job(facts), swapped_board))
    blank = _box(tmp_path, "d", "\n", LOOPBACK)
    with pytest.raises(StepRefusedError, match="neither a serial number nor a MAC"):
        await check_same_device(_ctx(_job(facts), blank))
    fresh = BashDevice()
    await check_same_device(_ctx(_job(), fresh))  # not identified yet: nothing to compare, nothing read
    assert fresh.commands == []


# -- 6. the CA the device trusts ------------------------------------------------------------------------------------
def test_ca_pin_accepts_direct_and_intermediate_chains_and_refuses_others() -> None:
    root_key, mid_key, leaf_key = _key(), _key(), _key()
    root = _cert(root_key.public_key(), "root CA", root_key, ca=True, subject="root CA")
    mid = _cert(mid_key.public_key(), "root CA", root_key, ca=True, subject="issuing CA")
    direct = _cert(leaf_key.public_key(), "root CA", root_key)
    via_mid = _cert(leaf_key.public_key(), "issuing CA", mid_key)
    assert ca_problem(direct, [root], _fingerprint(root)) == ""
    assert ca_problem(via_mid, [mid, root], _fingerprint(root).upper()) == ""
    colons = ":".join(_fingerprint(root)[i:i + 2] for i in range(0, 64, 2))
    assert ca_problem(via_mid, [mid, root], colons) == ""
    assert "does not carry" in ca_problem(direct, [root], "0" * 64)
    assert "does not carry" in ca_problem(direct, [], _fingerprint(root))
    impostor_key = _key()  # same CA name, another key: the chain names the pinned CA but did not sign the leaf
    forged = _cert(leaf_key.public_key(), "root CA", impostor_key)
    assert "not signed" in ca_problem(forged, [root], _fingerprint(root))
    not_a_ca = _cert(mid_key.public_key(), "root CA", root_key, subject="issuing CA")  # no CA:TRUE
    assert "not signed" in ca_problem(via_mid, [not_a_ca, root], _fingerprint(root))


def _install(policy: CertificatePolicy, device: BashDevice, cert: x509.Certificate,
             chain: list[x509.Certificate]) -> Any:
    doc = {"v": 1, "site": SITE, "device": DEVICE, "certificate": _pem(cert), "chain": [_pem(c) for c in chain]}
    return asyncio.run(install_certificate(device.run, doc, policy, public_key_sha256(_pem(cert))))


def _device_key(policy: CertificatePolicy, key: ec.EllipticCurvePrivateKey) -> None:
    Path(policy.key_path).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))


def test_a_pinned_ca_refuses_a_certificate_from_another_ca_and_installs_its_own(tmp_path: Path) -> None:
    ca_key, other_key, key = _key(), _key(), _key()
    ca = _cert(ca_key.public_key(), "siteline CA", ca_key, ca=True, subject="siteline CA")
    other = _cert(other_key.public_key(), "other CA", other_key, ca=True, subject="other CA")
    policy = _policy(tmp_path, ca_sha256=_fingerprint(ca))
    _device_key(policy, key)
    refused = _install(policy, BashDevice(), _cert(key.public_key(), "other CA", other_key), [other])
    assert not refused.installed
    assert "CA the profile trusts" in refused.detail
    assert not Path(policy.cert_path).exists()
    good = _install(policy, BashDevice(), _cert(key.public_key(), "siteline CA", ca_key), [ca])
    assert good.installed, good.detail
    assert "CA not pinned" not in good.detail
    unpinned = _install(replace(policy, ca_sha256=""), BashDevice(), _cert(key.public_key(), "other CA", other_key),
                        [other])
    assert unpinned.installed
    assert "CA not pinned" in unpinned.detail


def test_profile_ca_sha256_is_checked(tmp_path: Path) -> None:
    base = 'name = "p"\nfamily = ["x"]\n[mqtt]\nbroker = "192.0.2.1"\n[certificate]\n'
    good = tmp_path / "good.toml"
    good.write_text(base + f'ca_sha256 = "{":".join(["ab"] * 32)}"\n')
    assert load_profile(good).certificate.ca_sha256.startswith("ab:")
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'ca_sha256 = "sha256:abc"\n')
    with pytest.raises(ProfileError, match="ca_sha256"):
        load_profile(bad)


# -- 3. a stale certificate never overwrites the working one ----------------------------------------------------------
def test_without_openssl_a_certificate_for_a_replaced_key_is_refused_by_the_csr_beside_it(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    ca_key, old, new = _key(), _key(), _key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(DEVICE)).sign(new, hashes.SHA256())
    Path(policy.csr_path).write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    Path(policy.cert_path).write_text("working\n")
    device = BashDevice(openssl=False)
    result = _install(policy, device, _cert(old.public_key(), "ca", ca_key), [])
    assert not result.installed
    assert "replaced" in result.detail
    assert Path(policy.cert_path).read_text() == "working\n"
    assert not any("device.key" in c and "cat " in c for c in device.commands)


# -- 2 + 4. laptop-made keys: never read back, the CSR queued once ------------------------------------------------
def test_a_laptop_made_key_is_never_read_back_and_its_csr_is_queued_once(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = PendingStore(tmp_path / "pending.json")
    monkeypatch.setattr(identity, "pending_store", lambda: store)
    policy = _policy(tmp_path)
    profile = Profile("p", ("*",), certificate=policy)
    device = BashDevice(openssl=False)
    queued: list[Mapping[str, Any]] = []
    job = _job({"serial": "NWG0000042"})
    saved: list[str] = []

    def put(kind: str, payload: Mapping[str, Any]) -> str:  # as runner._saving_put: noted and saved at once
        queued.append(payload)
        job.data.setdefault("queued", {})[f"identity:{kind}"] = f"item-{len(queued)}"
        saved.append(job.to_json())
        return f"item-{len(queued)}"

    first = asyncio.run(identity_step(StepContext(job=job, profile=profile, link=device, step="identity",
                                                  outbox_put=put)))
    assert first.evidence["made"] == ["key", "csr"]
    assert Path(policy.key_path).stat().st_mode & 0o777 == 0o600
    csr_pem = Path(policy.csr_path).read_text()
    assert public_key_sha256(csr_pem) == public_key_sha256(Path(policy.key_path).read_bytes())
    assert job.data["identity"]["public_key_sha256"] == public_key_sha256(csr_pem)
    assert not list((tmp_path / "etc").glob("*.siteline-*"))
    # Killed right after the save in the outbox hook (the pending store never written); then resumed twice.
    store.path.unlink(missing_ok=True)
    resumed = ProvisionJob.from_json(saved[-1])
    again = asyncio.run(identity_step(StepContext(job=resumed, profile=profile, link=device, step="identity",
                                                  outbox_put=put)))
    dry = asyncio.run(identity_step(StepContext(job=resumed, profile=profile, link=device, step="identity",
                                                dry_run=True, outbox_put=lambda kind, payload: "dry-run")))
    assert len(queued) == 1, "the CSR was queued twice"
    assert again.skipped
    assert dry.skipped
    assert Path(policy.csr_path).read_text() == csr_pem
    reads = [c for c in device.commands if "device.key" in c and ("cat " in c or c.startswith("base64 "))]
    assert not reads, f"the private key was read off the device: {reads}"


# -- 5. device text reaching the terminal -----------------------------------------------------------------------------
def test_device_text_in_facts_and_marker_messages_is_printable_and_bounded() -> None:
    from siteline.core.provisioning.device_steps import _marker_text, parse_macs, printable

    evil = "\x1b]0;pwned\x07ok\x9b2J\r\n"
    assert printable(evil + "x" * 10_000) == "]0;pwnedok2J" + "x" * 244
    text = _marker_text({"job": evil, "when": evil, "technician": evil, "profile": evil * 50})
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    assert len(text) < 300
    macs = parse_macs("2: et\x1bh0: <UP> mtu 1500 link/ether 02:00:00:00:00:42 brd ff:ff:ff:ff:ff:ff\n")
    assert macs == {"eth0": "02:00:00:00:00:42"}
