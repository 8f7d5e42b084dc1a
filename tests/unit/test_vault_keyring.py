"""The OS-keyring option with a real keyring backend (a file-backed one, set with keyring.set_keyring)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordDeleteError

from siteline.core.vault import KdfCost, KeyringUnavailable, Vault, VaultError
from siteline.core.vault.keyring_store import SERVICE

CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)
KEYRING_FILE_ENV = "SITELINE_TEST_KEYRING_FILE"


class FileKeyring(KeyringBackend):
    """A keyring backend that keeps its secrets in a JSON file named by $SITELINE_TEST_KEYRING_FILE.

    Only for tests (it is plain text). Subprocesses load it with
    PYTHON_KEYRING_BACKEND=tests.unit.test_vault_keyring.FileKeyring.
    """

    # Below the "fail" backend (0): never picked on its own, only by set_keyring or PYTHON_KEYRING_BACKEND,
    # so defining it cannot change which keyring the rest of the test session sees.
    priority = -1  # type: ignore[assignment]

    def _path(self) -> Path:
        return Path(os.environ[KEYRING_FILE_ENV])

    def _load(self) -> dict[str, str]:
        path = self._path()
        return json.loads(path.read_text()) if path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\x00{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\x00{username}"] = password
        self._path().write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\x00{username}", None) is None:
            raise PasswordDeleteError(username)
        self._path().write_text(json.dumps(data))


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FileKeyring]:
    monkeypatch.setenv(KEYRING_FILE_ENV, str(tmp_path / "keyring.json"))
    before = keyring.get_keyring()
    backend = FileKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(before)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


def test_keyring_vault_unlocks_without_passphrase(file_keyring: FileKeyring, tmp_path: Path) -> None:
    path = tmp_path / "vault.siteline"
    vault = Vault.create(path, use_keyring=True)
    vault.put("control-plane/password", "kr-secret-unique")
    again = Vault.open(path)
    assert again.uses_keyring
    again.unlock()
    assert again.get("control-plane/password") == "kr-secret-unique"
    stored = (tmp_path / "keyring.json").read_text()
    assert SERVICE in stored
    assert b"kr-secret-unique" not in path.read_bytes()


def test_keyring_vault_without_its_key_says_so(file_keyring: FileKeyring, tmp_path: Path) -> None:
    path = tmp_path / "vault.siteline"
    Vault.create(path, use_keyring=True)
    (tmp_path / "keyring.json").write_text("{}")
    before = path.read_bytes()
    with pytest.raises(VaultError, match="holds no key for this vault"):
        Vault.open(path).unlock()
    assert path.read_bytes() == before


def test_keyring_vault_with_a_wrong_key(file_keyring: FileKeyring, tmp_path: Path) -> None:
    path = tmp_path / "vault.siteline"
    vault = Vault.create(path, use_keyring=True)
    assert vault._header is not None
    file_keyring.set_password(SERVICE, vault._header.vault_id, "A" * 43 + "=")  # 32 bytes, not the key
    with pytest.raises(VaultError, match="does not open this vault"):
        Vault.open(path).unlock()
    file_keyring.set_password(SERVICE, vault._header.vault_id, "not base64!")
    with pytest.raises(VaultError, match="not readable"):
        Vault.open(path).unlock()


def test_no_keyring_backend_is_a_clear_error(no_keyring: None, tmp_path: Path) -> None:
    path = tmp_path / "vault.siteline"
    with pytest.raises(KeyringUnavailable, match="no OS keyring is available") as caught:
        Vault.create(path, use_keyring=True)
    assert "passphrase" in caught.value.hint
    assert not path.exists()


def test_keyring_vault_has_no_passphrase_to_change(file_keyring: FileKeyring, tmp_path: Path) -> None:
    path = tmp_path / "vault.siteline"
    vault = Vault.create(path, use_keyring=True)
    with pytest.raises(VaultError):
        vault.change_passphrase("anything at all", "a new passphrase")


def test_keyring_vault_exports_under_a_passphrase(file_keyring: FileKeyring, tmp_path: Path) -> None:
    vault = Vault.create(tmp_path / "vault.siteline", use_keyring=True)
    vault.export_cost = CHEAP
    vault.put("token/x", "tok-unique")
    vault.export_to(tmp_path / "out.export", "hand over passphrase")
    other = Vault.create(tmp_path / "other.siteline", "other vault passphrase", cost=CHEAP)
    assert other.import_from(tmp_path / "out.export", "hand over passphrase").added == ["token/x"]


def test_both_or_neither_refused(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="either a passphrase or the OS keyring"):
        Vault.create(tmp_path / "v", "a passphrase here", use_keyring=True)
    with pytest.raises(VaultError, match="either a passphrase or the OS keyring"):
        Vault.create(tmp_path / "v")
