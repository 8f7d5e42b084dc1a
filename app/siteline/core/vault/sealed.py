"""Reading and writing one sealed file (a vault or an export): header, wrapped key, encrypted entries."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from siteline.core.atomic import write_atomic
from siteline.core.vault import crypto, keyring_store
from siteline.core.vault.crypto import KdfCost, TagMismatchError
from siteline.core.vault.entries import Entry, dump_entries, load_entries
from siteline.core.vault.errors import VaultCorrupt, VaultError, WrongPassphrase
from siteline.core.vault.format import KDF_KEYRING, KDF_PASSPHRASE, Header, decode, header_bytes


@dataclass(frozen=True)
class Opened:
    header: Header
    data_key: bytes
    entries: dict[str, Entry]


def read_bytes(path: Path, what: str = "vault") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        hint = "create one: siteline vault init (GUI: Vault > Create)" if what == "vault" else "check the path"
        raise VaultError(f"there is no {what} file at {path}", hint) from None
    except OSError as exc:
        raise VaultError(f"the {what} file {path} cannot be read: {exc.strerror}", "check its permissions") from exc


def kek_for(header: Header, passphrase: str | None) -> bytes:
    if header.kdf == KDF_KEYRING:
        return keyring_store.load_key(header.vault_id)
    if passphrase is None:
        raise VaultError("this vault needs its passphrase to unlock", "enter the passphrase")
    return crypto.derive_kek(passphrase, header.salt, header.cost)


def unwrap(header: Header, kek: bytes) -> bytes:
    try:
        return crypto.open_sealed(kek, header.wrap_nonce, header.wrapped_key, header.wrap_aad())
    except TagMismatchError:
        if header.kdf == KDF_KEYRING:
            raise VaultError("the key in the OS keyring does not open this vault; the vault is unchanged",
                             "restore the vault from your export") from None
        raise WrongPassphrase() from None


def open_body(header: Header, aad: bytes, body: bytes, data_key: bytes) -> dict[str, Entry]:
    try:
        return load_entries(crypto.open_sealed(data_key, header.body_nonce, body, aad))
    except TagMismatchError:
        raise VaultCorrupt() from None


def open_with_passphrase(data: bytes, passphrase: str | None) -> Opened:
    header, aad, body = decode(data)
    data_key = unwrap(header, kek_for(header, passphrase))
    return Opened(header, data_key, open_body(header, aad, body, data_key))


def open_with_data_key(data: bytes, data_key: bytes) -> Opened:
    """Re-read a file whose data key we hold (after a write by another process, or in the agent)."""
    header, aad, body = decode(data)
    return Opened(header, data_key, open_body(header, aad, body, data_key))


def new_header(kind: str, data_key: bytes, kek: bytes, *, kdf: str, salt: bytes, cost: KdfCost,
               vault_id: str | None = None) -> Header:
    header = Header(kind=kind, vault_id=vault_id or uuid.uuid4().hex, kdf=kdf, cost=cost, salt=salt,
                    wrap_nonce=crypto.new_nonce(), wrapped_key=b"\0" * (crypto.KEY_LEN + 16),
                    body_nonce=crypto.new_nonce())
    wrapped = crypto.seal(kek, header.wrap_nonce, data_key, header.wrap_aad())
    return replace(header, wrapped_key=wrapped)


def passphrase_header(kind: str, data_key: bytes, passphrase: str, cost: KdfCost,
                      vault_id: str | None = None) -> Header:
    salt = crypto.new_salt()
    kek = crypto.derive_kek(passphrase, salt, cost)
    return new_header(kind, data_key, kek, kdf=KDF_PASSPHRASE, salt=salt, cost=cost, vault_id=vault_id)


def seal_file(header: Header, data_key: bytes, entries: dict[str, Entry]) -> tuple[Header, bytes]:
    """A fresh body nonce on every write: AES-GCM must never reuse a nonce under one key."""
    header = replace(header, body_nonce=crypto.new_nonce())
    aad = header_bytes(header)
    return header, aad + crypto.seal(data_key, header.body_nonce, dump_entries(entries), aad)


def write_file(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data, mode=0o600)
    except OSError as exc:
        raise VaultError(f"the vault could not be written to {path}: {exc.strerror}; the old file is intact",
                         "free some disk space or check the folder's permissions") from exc


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise read-modify-write between processes (the GUI and a CLI `vault add` at the same time)."""
    if sys.platform == "win32":  # no flock: one writer at a time is then the user's business
        yield
        return
    import fcntl

    lock_path = path.with_name(path.name + ".lock")
    fd = lock_path.open("a+b")
    try:
        lock_path.chmod(0o600)
        fcntl.flock(fd.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        fd.close()
