"""The vault file against damage: every flipped byte, every truncation, a newer version, foreign files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from siteline.core.vault import KdfCost, Vault, VaultCorrupt, VaultError, VaultTooNew
from siteline.core.vault.format import MAGIC

CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)
PASS = "correct horse battery staple"
VERSION_BYTES = (8, 9)  # magic (8) then the u16 format version


@pytest.fixture
def vault_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault.siteline"
    vault = Vault.create(path, PASS, cost=CHEAP)
    vault.put("device/site-a/gw1/password", "flip-me-secret")
    return path


def _unlock(path: Path) -> Vault:
    vault = Vault(path, None)
    vault.unlock(PASS)
    return vault


def test_every_flipped_byte_is_detected_and_nothing_written(vault_file: Path) -> None:
    good = vault_file.read_bytes()
    assert _unlock(vault_file).get("device/site-a/gw1/password") == "flip-me-secret"
    for pos in range(len(good)):
        for mask in (0x01, 0x80):
            bad = bytearray(good)
            bad[pos] ^= mask
            vault_file.write_bytes(bytes(bad))
            expected: type[VaultError] = VaultCorrupt
            if pos in VERSION_BYTES and struct.unpack(">H", bytes(bad[8:10]))[0] > 1:
                expected = VaultTooNew  # a flip there reads as a future version: refused all the same
            with pytest.raises(expected):
                _unlock(vault_file)
            assert vault_file.read_bytes() == bytes(bad), f"byte {pos} flipped: the file was rewritten"


def test_every_truncation_is_detected(vault_file: Path) -> None:
    good = vault_file.read_bytes()
    for cut in range(len(good)):
        vault_file.write_bytes(good[:cut])
        with pytest.raises(VaultCorrupt):
            _unlock(vault_file)
    vault_file.write_bytes(good + b"\0")  # a byte appended breaks the tag too
    with pytest.raises(VaultCorrupt):
        _unlock(vault_file)


def test_newer_version_refused_with_file_unchanged(vault_file: Path) -> None:
    data = bytearray(vault_file.read_bytes())
    data[8:10] = struct.pack(">H", 2)
    vault_file.write_bytes(bytes(data))
    vault = Vault.open(vault_file)  # opening never raises: Siteline still starts, and says what is wrong
    assert isinstance(vault.problem, VaultTooNew)
    assert vault.problem.version == 2
    assert "update Siteline" in str(vault.problem)
    with pytest.raises(VaultTooNew, match="update Siteline"):
        vault.unlock(PASS)
    with pytest.raises(VaultError):
        vault.put("a/b", "c")
    assert vault_file.read_bytes() == bytes(data)


def test_a_consistent_but_forged_header_still_fails(vault_file: Path) -> None:
    """Recomputing the plain checksum does not help: the header is the body's associated data."""
    import hashlib

    data = vault_file.read_bytes()
    (length,) = struct.unpack_from(">I", data, 10)
    header = json.loads(data[14 : 14 + length])
    header["vault_id"] = "0" * 32
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head = MAGIC + struct.pack(">HI", 1, len(text)) + text
    forged = head + hashlib.sha256(head).digest() + data[14 + length + 32 :]
    vault_file.write_bytes(forged)
    with pytest.raises(VaultError):  # the wrapped key is bound to the id: it no longer unwraps
        _unlock(vault_file)


@pytest.mark.parametrize("content", [b"", b"hello", b"SQLite format 3\0" + b"\0" * 100, MAGIC, b"\xff" * 4096])
def test_foreign_files_are_refused_not_overwritten(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "vault.siteline"
    path.write_bytes(content)
    assert isinstance(Vault.open(path).problem, VaultCorrupt)
    with pytest.raises(VaultCorrupt):
        Vault.open(path).unlock(PASS)
    with pytest.raises(VaultError, match="already exists"):
        Vault.create(path, PASS, cost=CHEAP)
    assert path.read_bytes() == content


def test_huge_kdf_parameters_in_a_header_are_refused(vault_file: Path) -> None:
    """A tampered header must not make unlock allocate terabytes."""
    import hashlib

    data = vault_file.read_bytes()
    (length,) = struct.unpack_from(">I", data, 10)
    header = json.loads(data[14 : 14 + length])
    header["kdf"]["memory_kib"] = 2**40
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head = MAGIC + struct.pack(">HI", 1, len(text)) + text
    vault_file.write_bytes(head + hashlib.sha256(head).digest() + data[14 + length + 32 :])
    with pytest.raises(VaultCorrupt):
        _unlock(vault_file)


def test_export_file_is_not_a_vault(vault_file: Path, tmp_path: Path) -> None:
    vault = _unlock(vault_file)
    out = tmp_path / "handover.siteline-export"
    vault.export_to(out, "export passphrase 1")
    opened = Vault.open(out)
    assert opened.problem is not None
    assert "export file, not a vault" in str(opened.problem)
    with pytest.raises(VaultError, match="export file, not a vault"):
        opened.unlock("export passphrase 1")
