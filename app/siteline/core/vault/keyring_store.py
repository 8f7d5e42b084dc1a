"""The OS keyring (Secret Service, macOS Keychain, Windows Credential Locker) as the vault's key holder.

When the user chooses it, the keyring holds a random key-encryption key under
("siteline-vault", <vault id>); the vault file still holds only the wrapped data key, so the
file alone opens nothing. `keyring` is imported lazily: finding backends reads entry points.
"""

from __future__ import annotations

import base64
import binascii
import logging

from siteline.core.vault.crypto import KEY_LEN
from siteline.core.vault.errors import KeyringUnavailable, VaultError

SERVICE = "siteline-vault"
log = logging.getLogger(__name__)


def _backend_problem() -> str | None:
    """Why no keyring can be used here, or None when one looks usable."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null
    except ImportError:
        return "the 'keyring' package is not installed"
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return "no keyring service was found"
    if isinstance(backend, null.Keyring):
        # keyring's documented off switch (PYTHON_KEYRING_BACKEND or `keyring --disable`): it stores nothing.
        return "the keyring is switched off on this account (keyring.backends.null)"
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        # An empty chain accepts a key and keeps nothing: the vault could never be opened again.
        return "no keyring service was found"
    return None


def keyring_problem() -> str | None:
    """Why the OS keyring cannot hold a vault key here (for a GUI to say before offering it), or None."""
    return _backend_problem()


def store_key(vault_id: str, key: bytes) -> None:
    problem = _backend_problem()
    if problem:
        raise KeyringUnavailable(problem)
    import keyring
    from keyring.errors import KeyringError

    text = base64.b64encode(key).decode()
    try:
        keyring.set_password(SERVICE, vault_id, text)
        # Read it back: a backend that accepts and drops the key would leave a vault nobody can open.
        kept = keyring.get_password(SERVICE, vault_id) == text
    except (KeyringError, OSError, RuntimeError) as exc:
        raise KeyringUnavailable(f"the keyring refused to store the key: {type(exc).__name__}") from exc
    if not kept:
        delete_key(vault_id)
        raise KeyringUnavailable(f"the keyring ({type(keyring.get_keyring()).__name__}) did not keep the key")
    log.info("vault key stored in the OS keyring (%s)", type(keyring.get_keyring()).__name__)


def load_key(vault_id: str) -> bytes:
    problem = _backend_problem()
    if problem:
        raise KeyringUnavailable(problem)
    import keyring
    from keyring.errors import KeyringError

    try:
        text = keyring.get_password(SERVICE, vault_id)
    except (KeyringError, OSError, RuntimeError) as exc:
        raise KeyringUnavailable(f"the keyring could not be read: {type(exc).__name__}") from exc
    if text is None:
        raise VaultError("the OS keyring holds no key for this vault",
                         "it was made on another machine or account, or the keyring was reset; "
                         "import your export into a new vault")
    try:
        key = base64.b64decode(text, validate=True)
        if len(key) != KEY_LEN:
            raise ValueError("wrong key length")
        return key
    except (binascii.Error, ValueError) as exc:
        raise VaultError("the key in the OS keyring for this vault is not readable",
                         "import your export into a new vault") from exc


def delete_key(vault_id: str) -> None:
    """Best effort: used when creating a vault failed half way."""
    try:
        import keyring
        from keyring.errors import KeyringError

        keyring.delete_password(SERVICE, vault_id)
    except (ImportError, KeyringError, OSError, RuntimeError):
        log.debug("could not remove the keyring entry of vault %s", vault_id)
