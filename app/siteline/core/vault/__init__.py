"""Secrets at rest: an encrypted vault file, its OS-keyring option, export/import, and a CLI agent."""

from siteline.core.vault.crypto import DEFAULT_COST, KdfCost
from siteline.core.vault.entries import KINDS, EntryInfo, parse_ref, ref
from siteline.core.vault.errors import (
    KeyringUnavailable,
    VaultCorrupt,
    VaultError,
    VaultLocked,
    VaultTooNew,
    WrongPassphrase,
)
from siteline.core.vault.vault import DEFAULT_IDLE_TIMEOUT, ImportSummary, Vault, check_new_passphrase, default_path

__all__ = [
    "DEFAULT_COST",
    "DEFAULT_IDLE_TIMEOUT",
    "KINDS",
    "EntryInfo",
    "ImportSummary",
    "KdfCost",
    "KeyringUnavailable",
    "Vault",
    "VaultCorrupt",
    "VaultError",
    "VaultLocked",
    "VaultTooNew",
    "WrongPassphrase",
    "check_new_passphrase",
    "default_path",
    "parse_ref",
    "ref",
]
