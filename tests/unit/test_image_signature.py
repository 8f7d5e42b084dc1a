"""Detached signatures made by the real openssl CLI, checked by siteline.core.images, and openssl agreeing."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from siteline.core.images import signature as sigmod
from siteline.core.images.signature import load_public_key, verify_detached
from siteline.core.images.trusted_keys import KeyStoreError, TrustedKeys
from tests.peers import require_tool

GENKEY = {
    "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ed25519": ["-algorithm", "ED25519"],
}
ALGORITHMS = {"rsa2048": "RSA 2048-bit, SHA-256", "p256": "ECDSA P-256, SHA-256", "p384": "ECDSA P-384, SHA-256",
              "ed25519": "Ed25519"}


@dataclass
class Kit:
    dir: Path
    openssl: str

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([self.openssl, *map(str, args)], capture_output=True, timeout=30, check=False)

    def key(self, name: str, kind: str) -> tuple[Path, Path]:
        private, public = self.dir / f"{name}.key", self.dir / f"{name}.pub"
        if not private.exists():
            assert self.run("genpkey", *GENKEY[kind], "-out", private).returncode == 0
            assert self.run("pkey", "-in", private, "-pubout", "-out", public).returncode == 0
        return private, public

    def sign(self, kind: str, private: Path, file: Path, out: Path) -> Path:
        if kind == "ed25519":
            done = self.run("pkeyutl", "-sign", "-rawin", "-inkey", private, "-in", file, "-out", out)
        else:
            done = self.run("dgst", "-sha256", "-sign", private, "-out", out, file)
        assert done.returncode == 0, done.stderr
        return out

    def openssl_ok(self, kind: str, public: Path, file: Path, sig: Path) -> bool:
        if kind == "ed25519":
            done = self.run("pkeyutl", "-verify", "-pubin", "-inkey", public, "-rawin", "-in", file, "-sigfile", sig)
        else:
            done = self.run("dgst", "-sha256", "-verify", public, "-signature", sig, file)
        return done.returncode == 0


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    k = Kit(tmp_path_factory.mktemp("sigkit"), require_tool("openssl"))
    (k.dir / "image.swu").write_bytes(bytes(range(256)) * 12_000 + b"tail")  # ~3 MiB: several 1 MiB reads
    return k


def _flipped(kit: Kit) -> Path:
    data = bytearray((kit.dir / "image.swu").read_bytes())
    data[1_500_000] ^= 0x01
    path = kit.dir / "flipped.swu"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", list(GENKEY))
def test_openssl_signatures_verify_and_tampering_is_refused(kit: Kit, kind: str) -> None:
    private, public = kit.key(kind, kind)
    _, other = kit.key(f"{kind}-other", kind)
    image = kit.dir / "image.swu"
    sig = kit.sign(kind, private, image, kit.dir / f"{kind}.sig")

    good = verify_detached(image, sig, public)
    assert good.ok
    assert good.reason == ""
    assert kit.openssl_ok(kind, public, image, sig)
    assert good.algorithm == ALGORITHMS[kind]
    assert good.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    der = kit.run("pkey", "-pubin", "-in", public, "-outform", "DER").stdout
    assert good.fingerprint == "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")

    flipped = _flipped(kit)
    bad = verify_detached(flipped, sig, public)
    assert not bad.ok
    assert "does not match" in bad.reason
    assert not kit.openssl_ok(kind, public, flipped, sig)
    wrong = verify_detached(image, sig, other)
    assert not wrong.ok
    assert not kit.openssl_ok(kind, other, image, sig)

    truncated = kit.dir / f"{kind}-short.sig"
    truncated.write_bytes(sig.read_bytes()[:-7])
    cut = verify_detached(image, truncated, public)
    assert not cut.ok
    assert cut.reason
    assert not kit.openssl_ok(kind, public, image, truncated)

    missing = verify_detached(image, kit.dir / "nope.sig", public)
    assert not missing.ok
    assert "cannot read the signature file" in missing.reason
    assert not kit.openssl_ok(kind, public, image, kit.dir / "nope.sig")

    garbage = kit.dir / "garbage.sig"
    garbage.write_bytes(b"\x30\x07not a signature at all" * 3)
    junk = verify_detached(image, garbage, public)
    assert not junk.ok
    assert junk.reason
    assert not kit.openssl_ok(kind, public, image, garbage)

    assert verify_detached(image, sig, private).reason.startswith("that is a private key")


def test_key_formats_der_and_pkcs1_and_certificate(kit: Kit) -> None:
    private, public = kit.key("rsa2048", "rsa2048")
    image = kit.dir / "image.swu"
    sig = kit.sign("rsa2048", private, image, kit.dir / "fmt.sig")
    expected = load_public_key(public.read_bytes()).fingerprint
    der = kit.dir / "pub.der"
    assert kit.run("pkey", "-pubin", "-in", public, "-outform", "DER", "-out", der).returncode == 0
    pkcs1 = kit.dir / "pub.pkcs1.pem"
    assert kit.run("rsa", "-pubin", "-in", public, "-RSAPublicKey_out", "-out", pkcs1).returncode == 0
    assert b"BEGIN RSA PUBLIC KEY" in pkcs1.read_bytes()
    cert = kit.dir / "cert.pem"
    assert kit.run("req", "-x509", "-new", "-key", private, "-subj", "/CN=ops", "-days", "1", "-out", cert,
                   ).returncode == 0
    for key in (der, pkcs1, cert):
        verdict = verify_detached(image, sig, key)
        assert verdict.ok, key
        assert verdict.fingerprint == expected, key
    der_private = kit.dir / "priv.der"
    assert kit.run("pkey", "-in", private, "-outform", "DER", "-out", der_private).returncode == 0
    assert verify_detached(image, sig, der_private).reason.startswith("that is a private key")


def test_weak_and_unsupported_keys_are_refused(kit: Kit) -> None:
    image = kit.dir / "image.swu"
    cases = {
        "rsa1024": (["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "1024 bits is too weak"),
        "secp256k1": (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "unsupported curve"),
        "ed448": (["-algorithm", "ED448"], "unsupported key type"),
    }
    for name, (args, reason) in cases.items():
        private, public = kit.dir / f"{name}.key", kit.dir / f"{name}.pub"
        assert kit.run("genpkey", *args, "-out", private).returncode == 0
        assert kit.run("pkey", "-in", private, "-pubout", "-out", public).returncode == 0
        verdict = verify_detached(image, b"\x00" * 128, public)
        assert not verdict.ok
        assert reason in verdict.reason, (name, verdict.reason)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                                     b"\x30\x82\x01\x00" + b"\xff" * 300, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"])
def test_garbage_keys_give_reasons(kit: Kit, content: bytes, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_bytes(content)
    verdict = verify_detached(kit.dir / "image.swu", b"x" * 64, key)
    assert not verdict.ok
    assert verdict.reason


def test_unreadable_image_and_empty_signature(kit: Kit, tmp_path: Path) -> None:
    _, public = kit.key("p256", "p256")
    assert "cannot read" in verify_detached(tmp_path / "none.img", b"x" * 70, public).reason
    assert "cannot read" in verify_detached(tmp_path, b"x" * 70, public).reason  # a directory
    empty = tmp_path / "empty.sig"
    empty.write_bytes(b"")
    assert "empty" in verify_detached(kit.dir / "image.swu", empty, public).reason


def test_ed25519_size_limit(kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = kit.key("ed25519", "ed25519")
    image = kit.dir / "image.swu"
    sig = kit.sign("ed25519", private, image, kit.dir / "ed-limit.sig")
    monkeypatch.setattr(sigmod, "ED25519_MAX_BYTES", 1 << 20)
    verdict = verify_detached(image, sig, public)
    assert not verdict.ok
    assert "cannot be checked in a stream" in verdict.reason
    # In a store with RSA/ECDSA keys too, those are still tried on a large image, and the reason names the rest.
    store = TrustedKeys(kit.dir / "mixed-store")
    ec_private, ec_public = kit.key("p256", "p256")
    ec_sig = kit.sign("p256", ec_private, image, kit.dir / "mixed-ec.sig")
    store.add(public.read_bytes(), "ed")
    store.add(ec_public.read_bytes(), "ec")
    assert store.verify_trusted(image, ec_sig).key_name == "ec"
    refused = store.verify_trusted(image, sig)
    assert not refused.ok
    assert "tried ec; not tried (Ed25519, file over 1 MiB): ed" in refused.reason


def test_trusted_store(kit: Kit, tmp_path: Path) -> None:
    store = TrustedKeys(tmp_path / "trusted")
    image = kit.dir / "image.swu"
    ec_private, ec_public = kit.key("p384", "p384")
    ed_private, ed_public = kit.key("ed25519", "ed25519")
    _, stranger = kit.key("rsa2048-other", "rsa2048")
    ec_sig = kit.sign("p384", ec_private, image, kit.dir / "store-ec.sig")
    ed_sig = kit.sign("ed25519", ed_private, image, kit.dir / "store-ed.sig")

    assert "no key is trusted yet" in store.verify_trusted(image, ec_sig).reason
    first = store.add(ec_public.read_bytes(), "ops-ec")
    assert first.added
    assert first.audit_detail == {"name": "ops-ec", "fingerprint": first.key.fingerprint,
                                                  "algorithm": "ECDSA P-384"}
    again = store.add(ec_public.read_bytes(), "other-name")
    assert not again.added
    assert again.audit_detail is None
    assert "already trusted as 'ops-ec'" in again.message
    with pytest.raises(KeyStoreError, match="already trusted as 'ops-ec'"):
        store.add(ed_public.read_bytes(), "ops-ec")
    with pytest.raises(KeyStoreError, match="bad key name"):
        store.add(ed_public.read_bytes(), "bad name/")
    with pytest.raises(KeyStoreError, match="private key"):
        store.add(ed_private.read_bytes(), "priv")
    store.add(ed_public.read_bytes(), "ops-ed")
    store.add(stranger.read_bytes(), "stranger")

    assert [k.name for k in store.entries()] == ["ops-ec", "ops-ed", "stranger"]
    assert store.find(first.key.fingerprint) == first.key
    ec = store.verify_trusted(image, ec_sig)
    assert ec.ok
    assert ec.key_name == "ops-ec"
    ed = store.verify_trusted(image, ed_sig)
    assert ed.ok
    assert ed.key_name == "ops-ed"
    assert "signed by no trusted key" in store.verify_trusted(_flipped(kit), ec_sig).reason

    store.remove("ops-ed")
    store.remove(first.key.fingerprint)
    with pytest.raises(KeyStoreError, match="no trusted key named"):
        store.remove("ops-ed")
    assert "signed by no trusted key (tried stranger" in store.verify_trusted(image, ec_sig).reason
    assert len(list((tmp_path / "trusted").glob("*.pem"))) == 1

    # A PEM swapped on disk is not trusted under the old name; a damaged index is a reason, not a crash.
    only = store.entries()[0]
    (tmp_path / "trusted" / only.file).write_bytes(ec_public.read_bytes())
    assert "changed on disk" in store.verify_trusted(image, ec_sig).reason
    (tmp_path / "trusted" / "index.json").write_text(json.dumps({"version": 1, "keys": [{"name": 3}]}))
    with pytest.raises(KeyStoreError, match="damaged"):
        store.entries()
    (tmp_path / "trusted" / "index.json").write_bytes(b"\xff{")
    assert "cannot be read" in store.verify_trusted(image, ec_sig).reason
