"""The vault's "key in the OS keyring" across keyring backends, run on Linux.

Windows (Credential Locker), macOS (Keychain) and Linux desktops (Secret Service) each get a different
keyring backend; a headless box or a locked-down account gets none, keyring's off switch, or an empty
chain. The vault must work with the first kind, refuse the others clearly (keeping the passphrase way
open), and never leave a vault whose key was silently dropped. Backends here live in memory and are set
with keyring.set_keyring: the real user keyring is never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.backends.macOS import Keyring as MacOSKeyring
from keyring.backends.Windows import WinVaultKeyring
from keyring.errors import PasswordDeleteError

from siteline.core.vault import KdfCost, KeyringUnavailable, Vault
from siteline.core.vault.keyring_store import SERVICE, keyring_problem

CHEAP = KdfCost(iterations=1, memory_kib=64, lanes=1)
UseBackend = Callable[[KeyringBackend], KeyringBackend]


class MemoryKeyring(KeyringBackend):
    """Secrets in a dict. Priority below "fail" (0): keyring never picks it by itself, only set_keyring does."""

    priority = -1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class DroppingKeyring(MemoryKeyring):
    """Says yes to a key and keeps nothing (a misconfigured or sandboxed store)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        return None


@pytest.fixture
def use_backend() -> Iterator[UseBackend]:
    before = keyring.get_keyring()

    def use(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    yield use
    keyring.set_keyring(before)


def test_a_chained_keyring_holds_the_vault_key(use_backend: UseBackend, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # keyring picks a ChainerBackend when several backends are viable (a Linux desktop with Secret
    # Service and KWallet): the key goes to the first one in the chain.
    store = MemoryKeyring()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [store])
    use_backend(chainer.ChainerBackend())
    assert keyring_problem() is None
    path = tmp_path / "vault.siteline"
    vault = Vault.create(path, use_keyring=True)
    vault.put("ssh/gw1", "chained-secret")
    assert [service for service, _user in store.secrets] == [SERVICE]
    again = Vault.open(path)
    again.unlock()
    assert again.get("ssh/gw1") == "chained-secret"


@pytest.mark.parametrize("backend", [WinVaultKeyring, MacOSKeyring], ids=["windows", "macos"])
def test_windows_and_macos_backends_count_as_usable(backend: type[KeyringBackend], use_backend: UseBackend) -> None:
    # Only instantiated (their calls need the real OS); what matters is that they are not mistaken for
    # "no keyring", which would hide the option on exactly the machines that have one.
    use_backend(backend())
    assert keyring_problem() is None


@pytest.mark.parametrize(
    ("backend", "words"),
    [
        (fail.Keyring, "no keyring service was found"),
        (null.Keyring, "switched off"),  # PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring / keyring --disable
        (chainer.ChainerBackend, "no keyring service was found"),  # a chain with nothing in it
    ],
    ids=["fail", "null", "empty-chain"],
)
def test_no_usable_keyring_is_said_and_the_passphrase_still_works(
    backend: type[KeyringBackend], words: str, use_backend: UseBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    use_backend(backend())
    problem = keyring_problem()
    assert problem is not None
    assert words in problem
    path = tmp_path / "vault.siteline"
    with pytest.raises(KeyringUnavailable) as caught:
        Vault.create(path, use_keyring=True)
    assert words in str(caught.value)
    assert "passphrase" in (caught.value.hint or "")  # what to do instead
    assert not path.exists()
    vault = Vault.create(path, "correct horse battery staple", cost=CHEAP)
    vault.put("ssh/gw1", "still-works")
    again = Vault.open(path)
    again.unlock("correct horse battery staple")
    assert again.get("ssh/gw1") == "still-works"


def test_a_keyring_that_drops_the_key_leaves_no_vault(use_backend: UseBackend, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    use_backend(DroppingKeyring())
    path = tmp_path / "vault.siteline"
    with caplog.at_level(logging.INFO), pytest.raises(KeyringUnavailable) as caught:
        Vault.create(path, use_keyring=True)
    assert "DroppingKeyring" in str(caught.value)
    assert "did not keep the key" in str(caught.value)
    assert not path.exists()  # else: a vault no one could ever open
