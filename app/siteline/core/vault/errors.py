"""The vault's errors: each says what happened and what to do, and none carries a secret."""

from __future__ import annotations

from siteline.core.errors import SitelineError


class VaultError(SitelineError):
    """Anything the vault refuses or cannot do."""


class VaultLocked(VaultError):  # noqa: N818 (reads better at the raise site)
    """A secret was asked for while the vault is locked."""

    def __init__(self, message: str = "the vault is locked",
                 hint: str = "unlock it (GUI: Vault > Unlock; CLI: siteline vault unlock) and try again") -> None:
        super().__init__(message, hint)


class WrongPassphrase(VaultError):  # noqa: N818
    """The passphrase (or the OS keyring's key) does not open this file."""

    def __init__(self, message: str = "the passphrase is not right; the vault is unchanged",
                 hint: str = "check the passphrase (caps lock, keyboard layout) and try again") -> None:
        super().__init__(message, hint)


class VaultCorrupt(VaultError):  # noqa: N818
    """The file was damaged, truncated or changed by someone without the key."""

    def __init__(self, message: str = "the vault file is damaged or was changed; nothing was overwritten",
                 hint: str = "restore it from your export (siteline vault import)") -> None:
        super().__init__(message, hint)


class VaultTooNew(VaultError):  # noqa: N818
    """The file was written by a newer Siteline in a format this one does not know."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"the vault file has format version {version}, newer than this Siteline understands; it was not changed",
            "update Siteline to open it",
        )
        self.version = version


class KeyringUnavailable(VaultError):  # noqa: N818
    """No OS keyring backend works here (a headless Linux usually has none)."""

    def __init__(self, detail: str = "") -> None:
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"no OS keyring is available on this machine{why}",
            "use a passphrase for the vault instead (a headless Linux has no keyring service)",
        )
