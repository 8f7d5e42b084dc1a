"""Export and import: hand a site's secrets to a colleague in a file under a separate passphrase.

An export has the vault's own format with kind "export" and its own random data key, so the
colleague never learns the vault's passphrase and the vault's key never leaves the laptop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from siteline.core.vault import crypto, sealed
from siteline.core.vault.entries import Entry
from siteline.core.vault.errors import VaultCorrupt, VaultError, WrongPassphrase
from siteline.core.vault.format import KDF_PASSPHRASE

if TYPE_CHECKING:
    from siteline.core.vault.vault import ImportSummary, Vault

log = logging.getLogger(__name__)


def export_entries(vault: Vault, path: Path, export_passphrase: str, names: Iterable[str] | None) -> int:
    """Write the chosen entries (all when ``names`` is None) to ``path``; returns how many. Never overwrites."""
    from siteline.core.vault.vault import check_new_passphrase

    check_new_passphrase(export_passphrase)
    if path.exists():
        raise VaultError(f"{path} already exists; it was not overwritten", "choose a new file name")
    entries = vault.fresh_entries()
    wanted = sorted(entries) if names is None else list(dict.fromkeys(names))
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise VaultError(f"no such vault entries: {', '.join(missing)}", "see siteline vault list")
    chosen = {n: entries[n] for n in wanted}
    data_key = crypto.new_key()
    header = sealed.passphrase_header("export", data_key, export_passphrase, vault.export_cost)
    _, data = sealed.seal_file(header, data_key, chosen)
    path.parent.mkdir(parents=True, exist_ok=True)
    sealed.write_file(path, data)
    log.info("exported %d vault entries to %s: %s", len(chosen), path, ", ".join(chosen))
    return len(chosen)


def read_export(path: Path, export_passphrase: str) -> dict[str, Entry]:
    data = sealed.read_bytes(path, what="export")
    try:
        opened = sealed.open_with_passphrase(data, export_passphrase)
    except WrongPassphrase:
        raise WrongPassphrase("the export passphrase is not right; nothing was imported",
                              "ask the colleague who made the export for its passphrase") from None
    except VaultCorrupt:
        raise VaultCorrupt("the export file is damaged or was changed; nothing was imported",
                           "ask for a new export") from None
    if opened.header.kdf != KDF_PASSPHRASE:
        raise VaultError(f"{path} is held by an OS keyring, not an export passphrase",
                         "export it from the machine it belongs to")
    return opened.entries


def import_entries(vault: Vault, path: Path, export_passphrase: str, *, overwrite: bool) -> ImportSummary:
    """Merge an export (or another vault file, with its passphrase) into ``vault`` in one atomic write."""
    from siteline.core.vault.vault import ImportSummary

    incoming = read_export(path, export_passphrase)
    summary = ImportSummary()

    def merge(entries: dict[str, Entry]) -> None:
        for name, entry in sorted(incoming.items()):
            if name not in entries:
                summary.added.append(name)
            elif overwrite:
                summary.replaced.append(name)
            else:
                summary.skipped.append(name)
                continue
            entries[name] = entry

    vault.modify(merge)
    log.info("imported from %s: added %s, replaced %s, kept %s", path, summary.added, summary.replaced,
             summary.skipped)
    return summary
