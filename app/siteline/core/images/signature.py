"""Detached image signatures, checked as the openssl CLI checks them.

``openssl dgst -sha256 -sign key -out f.sig f`` (RSA PKCS#1 v1.5, ECDSA P-256/P-384) is verified over the SHA-256
of the file, hashed once in 1 MiB reads (constant memory, multi-GB images). Ed25519 signs the message itself
(``openssl pkeyutl -sign -rawin``), so it cannot be checked in a stream: those files are read whole, up to
:data:`ED25519_MAX_BYTES`. Every failure is a :class:`Verdict` with a reason, never an exception.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

CHUNK = 1 << 20
ED25519_MAX_BYTES = 512 << 20
MAX_SIGNATURE_BYTES = 16 << 10  # the largest real one (RSA 16384) is 2 KiB; anything bigger is not a signature
MAX_KEY_BYTES = 64 << 10
MIN_RSA_BITS = 2048
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
PRIVATE_KEY = "that is a private key: give the public one (openssl pkey -pubout)"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SignatureRefused(Exception):  # noqa: N818 (reads as what happened)
    """A key or signature that cannot be used; the message is the reason shown to the technician."""


@dataclass(frozen=True)
class LoadedKey:
    key: PublicKey
    fingerprint: str  # SHA256:base64 of the DER SubjectPublicKeyInfo, as OpenSSH shows fingerprints
    algorithm: str  # in words: "RSA 2048-bit", "ECDSA P-256", "Ed25519"
    name: str = ""  # the trusted store's name, when it came from there

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, when not ok; empty when ok
    fingerprint: str = ""
    algorithm: str = ""  # the key's and the scheme's, in words
    sha256: str = ""  # hex digest of the file, when it was read
    key_name: str = ""  # the trusted key that signed, when checked against the store

    def describe(self) -> str:
        if not self.ok:
            return f"signature refused: {self.reason}"
        who = f"trusted key '{self.key_name}' " if self.key_name else "key "
        return f"signature good: {who}{self.fingerprint} ({self.algorithm}); file sha256 {self.sha256}"


def fingerprint(key: PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def load_public_key(data: bytes, name: str = "") -> LoadedKey:
    """PEM (SubjectPublicKeyInfo, "RSA PUBLIC KEY", a certificate) or DER; raises :class:`SignatureRefused`."""
    if not data.strip():
        raise SignatureRefused("the key file is empty")
    if len(data) > MAX_KEY_BYTES:
        raise SignatureRefused(f"the key file is {len(data)} bytes: not a public key")
    key = _parse_pem(data) if b"-----BEGIN" in data else _parse_der(data)
    return LoadedKey(key, fingerprint(key), _check_supported(key), name)


def load_key_file(path: Path, name: str = "") -> LoadedKey:
    return load_public_key(_read_small(path, "key", MAX_KEY_BYTES), name)


def _parse_pem(data: bytes) -> PublicKey:
    if b"PRIVATE KEY-----" in data:
        raise SignatureRefused(PRIVATE_KEY)
    try:
        if b"-----BEGIN CERTIFICATE" in data:
            return _supported_type(x509.load_pem_x509_certificate(data).public_key())
        return _supported_type(serialization.load_pem_public_key(data))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SignatureRefused(f"not a readable PEM public key ({_short(exc)})") from None


def _parse_der(data: bytes) -> PublicKey:
    try:
        return _supported_type(serialization.load_der_public_key(data))
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:  # an encrypted private key: still a private key
        raise SignatureRefused(PRIVATE_KEY) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureRefused("not a public key: expected PEM (BEGIN PUBLIC KEY) or DER") from None
    raise SignatureRefused(PRIVATE_KEY)


def _supported_type(key: object) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return key
    kind = type(key).__name__.removesuffix("PublicKey").lstrip("_")
    raise SignatureRefused(f"unsupported key type {kind}: use RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519")


def _check_supported(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise SignatureRefused(f"RSA key of {key.key_size} bits is too weak: {MIN_RSA_BITS} bits or more")
        return f"RSA {key.key_size}-bit"
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = CURVES.get(key.curve.name)
        if curve is None:
            raise SignatureRefused(f"unsupported curve {key.curve.name}: use P-256 or P-384")
        return f"ECDSA {curve}"
    return "Ed25519"


def scheme(loaded: LoadedKey) -> str:
    return loaded.algorithm if isinstance(loaded.key, ed25519.Ed25519PublicKey) else f"{loaded.algorithm}, SHA-256"


def load_signature(signature: Path | bytes) -> bytes:
    data = signature if isinstance(signature, bytes) else _read_small(signature, "signature", MAX_SIGNATURE_BYTES)
    if not data:
        raise SignatureRefused("the signature file is empty")
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SignatureRefused(f"the signature is {len(data)} bytes: not a detached signature")
    return data


def _read_small(path: Path, what: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise SignatureRefused(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise SignatureRefused(f"the {what} file {path} is larger than {limit} bytes: not a {what}")
    return data


def hash_file(path: Path) -> tuple[bytes, int]:
    """SHA-256 of the file in 1 MiB reads into one buffer (constant memory); returns (digest, size)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while count := fh.readinto(buffer):
            digest.update(view[:count])
            size += count
    return digest.digest(), size


def _check(loaded: LoadedKey, sig: bytes, digest: bytes, message: bytes | None) -> str:
    """Empty when the signature holds, else the reason."""
    key = loaded.key
    try:
        if isinstance(key, rsa.RSAPublicKey):
            expected = (key.key_size + 7) // 8
            if len(sig) != expected:
                return (f"the signature is {len(sig)} bytes but an {loaded.algorithm} signature is {expected}: "
                        "truncated, or made with another key")
            key.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not _is_der_ecdsa(sig):
                return ("the signature is not a DER-encoded ECDSA signature (as openssl dgst makes them): "
                        "truncated, or not made with this kind of key")
            key.verify(sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            if len(sig) != 64:
                return f"the signature is {len(sig)} bytes but an Ed25519 signature is 64: truncated, or not Ed25519"
            key.verify(sig, message if message is not None else b"")
    except InvalidSignature:
        return "the signature does not match: the file was changed, or it was signed with another key"
    except ValueError as exc:  # e.g. an ECDSA signature that is not DER
        return f"the signature is malformed ({_short(exc)})"
    return ""


def verify_detached(path: Path, signature: Path | bytes, public_key: Path | bytes | LoadedKey) -> Verdict:
    """Check FILE's detached signature against one public key, trusted or not."""
    try:
        loaded = public_key if isinstance(public_key, LoadedKey) else (
            load_public_key(public_key) if isinstance(public_key, bytes) else load_key_file(public_key))
    except SignatureRefused as exc:
        return Verdict(False, str(exc))
    verdict = verify_with_keys(path, signature, [loaded])
    if verdict.ok:
        return verdict
    return Verdict(False, verdict.reason, loaded.fingerprint, scheme(loaded), verdict.sha256)


def verify_with_keys(path: Path, signature: Path | bytes, keys: Sequence[LoadedKey]) -> Verdict:
    """Hash the file once and try each key; the verdict names the first that holds.

    With one key the reason is that key's; with several it is "signed by no trusted key".
    """
    skipped = ""
    try:
        sig = load_signature(signature)
        size = os.stat(path).st_size
        if size > ED25519_MAX_BYTES and any(_is_ed(k) for k in keys) and not all(_is_ed(k) for k in keys):
            # A large image in a mixed store: the RSA/ECDSA keys can still be tried; say which were not.
            skipped = "; not tried (Ed25519, file over {} MiB): {}".format(
                ED25519_MAX_BYTES >> 20, ", ".join(k.name or k.fingerprint for k in keys if _is_ed(k)))
            keys = [k for k in keys if not _is_ed(k)]
        message = _read_whole(path, size) if any(_is_ed(k) for k in keys) else None
        digest = hashlib.sha256(message).digest() if message is not None else hash_file(path)[0]
    except SignatureRefused as exc:
        return Verdict(False, str(exc))
    except OSError as exc:
        return Verdict(False, f"cannot read {path}: {exc.strerror or exc}")
    reasons = [(k, _check(k, sig, digest, message)) for k in keys]
    for key, reason in reasons:
        if not reason:
            return Verdict(True, "", key.fingerprint, scheme(key), digest.hex(), key.name)
    if len(reasons) == 1 and not skipped:
        return Verdict(False, reasons[0][1], sha256=digest.hex())
    tried = ", ".join(k.name or k.fingerprint for k in keys)
    reason = f"signed by no trusted key (tried {tried}{skipped})" if keys else "signed by no trusted key (none given)"
    return Verdict(False, reason, sha256=digest.hex())


def _is_der_ecdsa(sig: bytes) -> bool:
    try:
        r, s = utils.decode_dss_signature(sig)
    except ValueError:
        return False
    return r > 0 and s > 0


def _is_ed(key: LoadedKey) -> bool:
    return isinstance(key.key, ed25519.Ed25519PublicKey)


def _read_whole(path: Path, size: int) -> bytes:
    if size > ED25519_MAX_BYTES:
        raise SignatureRefused(f"the file is {size >> 20} MiB: Ed25519 signatures are checked on files up to "
                               f"{ED25519_MAX_BYTES >> 20} MiB (pure Ed25519 cannot be checked in a stream); "
                               "sign large images with RSA or ECDSA (openssl dgst -sha256 -sign)")
    with open(path, "rb") as fh:
        return fh.read()


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
