"""The vault file's layout.

    magic "SLVAULT\\0" (8) | format version u16 | header length u32 | header JSON | SHA-256 of all before (32) | body

The magic and the version field never move, so a future version can change everything after them
and this one still says "too new" instead of "damaged". The header (KDF name, parameters and
salt, cipher, wrapped data key, nonces) is the associated data of the body's AES-GCM, so a changed
header fails the body's tag. The plain SHA-256 exists only to tell damage from a wrong passphrase:
without it a flipped salt byte would look like a mistyped passphrase. It is not a security check
(anyone can recompute it); the GCM tags are.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from siteline.core.vault import crypto
from siteline.core.vault.crypto import KdfCost
from siteline.core.vault.errors import VaultCorrupt, VaultTooNew

MAGIC = b"SLVAULT\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sHI")
_DIGEST = 32
MAX_HEADER = 16 * 1024
KINDS = ("vault", "export")
KDF_PASSPHRASE = "argon2id"
KDF_KEYRING = "keyring"


@dataclass(frozen=True)
class Header:
    kind: str               # "vault" or "export"
    vault_id: str           # random; names the OS keyring entry and binds the wrapped key to this file
    kdf: str                # "argon2id" (passphrase) or "keyring"
    cost: KdfCost
    salt: bytes
    wrap_nonce: bytes
    wrapped_key: bytes      # the data key, sealed under the key-encryption key
    body_nonce: bytes
    cipher: str = crypto.CIPHER

    def wrap_aad(self) -> bytes:
        """The wrapped key belongs to this file and this kind: it cannot be pasted into another."""
        return f"siteline-vault-key/{FORMAT_VERSION}/{self.kind}/{self.vault_id}".encode()

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "kind": self.kind, "vault_id": self.vault_id, "cipher": self.cipher,
            "kdf": {"name": self.kdf, "salt": _b64(self.salt), "iterations": self.cost.iterations,
                    "memory_kib": self.cost.memory_kib, "lanes": self.cost.lanes},
            "wrap_nonce": _b64(self.wrap_nonce), "wrapped_key": _b64(self.wrapped_key),
            "body_nonce": _b64(self.body_nonce),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any, length: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    data = base64.b64decode(text, validate=True)
    if length is not None and len(data) != length:
        raise ValueError("wrong length")
    return data


def header_bytes(header: Header) -> bytes:
    """Everything before the body: the associated data of the body cipher."""
    text = header.to_json()
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text)) + text
    return head + hashlib.sha256(head).digest()


def encode(header: Header, body: bytes) -> bytes:
    return header_bytes(header) + body


def decode(data: bytes) -> tuple[Header, bytes, bytes]:
    """(header, associated data, body ciphertext); VaultCorrupt or VaultTooNew when it cannot be read."""
    if len(data) < _PREFIX.size or data[:8] != MAGIC:
        raise VaultCorrupt("this is not a Siteline vault file, or its start is damaged; nothing was overwritten",
                           "check the path; restore the vault from your export if it was one")
    _, version, length = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise VaultTooNew(version)
    end = _PREFIX.size + length
    if version < 1 or length > MAX_HEADER or len(data) < end + _DIGEST + 16:
        raise VaultCorrupt()
    if hashlib.sha256(data[:end]).digest() != data[end : end + _DIGEST]:
        raise VaultCorrupt()
    try:
        header = _parse_header(json.loads(data[_PREFIX.size : end]))
    except (ValueError, TypeError, KeyError) as exc:
        raise VaultCorrupt() from exc
    return header, data[: end + _DIGEST], data[end + _DIGEST :]


def _parse_header(doc: Any) -> Header:
    if not isinstance(doc, dict) or not isinstance(doc.get("kdf"), dict):
        raise ValueError("header is not an object")
    kdf = doc["kdf"]
    ints = [kdf["iterations"], kdf["memory_kib"], kdf["lanes"]]
    if not all(type(v) is int for v in ints):
        raise ValueError("bad KDF parameters")
    cost = KdfCost(*ints)
    if doc["kind"] not in KINDS or kdf["name"] not in (KDF_PASSPHRASE, KDF_KEYRING) or not cost.valid():
        raise ValueError("unknown kind or KDF")
    if doc["cipher"] != crypto.CIPHER or not isinstance(doc["vault_id"], str) or len(doc["vault_id"]) > 64:
        raise ValueError("unknown cipher or id")
    return Header(
        kind=doc["kind"], vault_id=doc["vault_id"], kdf=kdf["name"], cost=cost,
        salt=_unb64(kdf["salt"], crypto.SALT_LEN), wrap_nonce=_unb64(doc["wrap_nonce"], crypto.NONCE_LEN),
        wrapped_key=_unb64(doc["wrapped_key"], crypto.KEY_LEN + 16),
        body_nonce=_unb64(doc["body_nonce"], crypto.NONCE_LEN),
    )
