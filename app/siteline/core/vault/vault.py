"""The vault: secrets at rest, encrypted under a passphrase or a key held by the OS keyring.

Python cannot wipe memory: lock() drops every reference to the data key and the decrypted
entries so the garbage collector can reclaim them, but copies may linger in freed memory until
reused. The on-disk file is what the design protects; a memory dump of a running, unlocked
Siteline is out of scope.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from siteline import paths
from siteline.core.vault import crypto, keyring_store, sealed
from siteline.core.vault.crypto import DEFAULT_COST, KdfCost
from siteline.core.vault.entries import Entry, EntryInfo, check_kind, check_name, check_value
from siteline.core.vault.errors import VaultCorrupt, VaultError, VaultLocked
from siteline.core.vault.format import KDF_KEYRING, KDF_PASSPHRASE, Header, decode

log = logging.getLogger(__name__)
DEFAULT_IDLE_TIMEOUT = 15 * 60.0
MIN_PASSPHRASE = 8


def default_path() -> Path:
    return paths.data_dir() / "vault.siteline"


def check_new_passphrase(passphrase: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE:
        raise VaultError(f"the passphrase is shorter than {MIN_PASSPHRASE} characters",
                         "choose a longer one: a few unrelated words are easy to type and hard to guess")
    return passphrase


def _not_a_vault(path: Path) -> VaultError:
    return VaultError(f"{path} is an export file, not a vault", "import it: siteline vault import FILE")


@dataclass(frozen=True)
class ImportSummary:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # already present, kept (no overwrite)
    replaced: list[str] = field(default_factory=list)


class Vault:
    """One vault file. ``open`` gives it locked; ``unlock`` reads and decrypts; every write is atomic."""

    def __init__(self, path: Path, header: Header | None, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._header = header
        self._key: bytes | None = None
        self._entries: dict[str, Entry] = {}
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._last_use = clock()
        self.problem: VaultError | None = None  # set by open() when the file cannot be used
        self.agent_stopped = False  # the last change_passphrase stopped a running agent (it held the old key)
        self.export_cost = header.cost if header is not None and header.kdf == KDF_PASSPHRASE else DEFAULT_COST

    # ---- creating and opening
    @classmethod
    def create(cls, path: Path, passphrase: str | None = None, *, use_keyring: bool = False,
               cost: KdfCost | None = None) -> Vault:
        """A new, empty, unlocked vault. Refuses to overwrite any existing file."""
        path = Path(path)
        if path.exists():
            raise VaultError(f"a file already exists at {path}; it was not overwritten",
                             "unlock that vault, or choose another path")
        if use_keyring == (passphrase is not None):
            raise VaultError("a new vault needs either a passphrase or the OS keyring, not both or neither",
                             "choose one")
        cost = cost or DEFAULT_COST
        data_key = crypto.new_key()
        if use_keyring:
            kek = crypto.new_key()
            header = sealed.new_header("vault", data_key, kek, kdf=KDF_KEYRING, salt=crypto.new_salt(), cost=cost)
            keyring_store.store_key(header.vault_id, kek)
        else:
            header = sealed.passphrase_header("vault", data_key, check_new_passphrase(passphrase or ""), cost)
        vault = cls(path, header)
        vault.export_cost = cost
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with sealed.file_lock(path):
                if path.exists():  # made by another process since the check above: theirs stays
                    raise VaultError(f"a file already exists at {path}; it was not overwritten",
                                     "unlock that vault, or choose another path")
                vault._commit(header, data_key, {})
        except BaseException:
            if use_keyring:
                keyring_store.delete_key(header.vault_id)
            raise
        vault._key = data_key
        log.info("vault created at %s (%s)", path, header.kdf)
        return vault

    @classmethod
    def open(cls, path: Path | None = None) -> Vault:
        """The vault at ``path`` (default: the user's), locked. Checks the header when the file exists.

        Never raises for a bad file: a damaged vault must not stop Siteline from starting. ``problem``
        then says what is wrong (VaultCorrupt, VaultTooNew, ...), and ``unlock`` raises it.
        """
        path = Path(path) if path is not None else default_path()
        header: Header | None = None
        problem: VaultError | None = None
        if path.exists():
            try:
                header = decode(sealed.read_bytes(path))[0]
                if header.kind != "vault":
                    raise _not_a_vault(path)
            except VaultError as exc:
                header, problem = None, exc
                log.warning("the vault file %s cannot be used: %s", path, exc)
        vault = cls(path, header)
        vault.problem = problem
        return vault

    # ---- state
    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def locked(self) -> bool:
        return self._key is None

    @property
    def uses_keyring(self) -> bool:
        return self._header is not None and self._header.kdf == KDF_KEYRING

    def unlock(self, passphrase: str | None = None) -> None:
        """WrongPassphrase, VaultCorrupt, VaultTooNew, KeyringUnavailable: the file is never touched."""
        opened = sealed.open_with_passphrase(sealed.read_bytes(self.path), passphrase)
        if opened.header.kind != "vault":
            raise _not_a_vault(self.path)
        self.problem = None
        self._adopt(opened)
        log.info("vault %s unlocked", self.path)

    def unlock_with_data_key(self, data_key: bytes) -> None:
        """For the agent, which holds the data key but never the passphrase."""
        self._adopt(sealed.open_with_data_key(sealed.read_bytes(self.path), data_key))

    def lock(self) -> None:
        # Dropping references is all Python allows (see the module docstring).
        self._key = None
        self._entries = {}

    def touch(self, now: float | None = None) -> None:
        self._last_use = self._clock() if now is None else now

    def lock_if_idle(self, now: float | None = None) -> bool:
        """Lock when unused for ``idle_timeout`` seconds (the GUI calls this from a timer). True if it locked."""
        now = self._clock() if now is None else now
        if self._key is not None and now - self._last_use >= self.idle_timeout:
            self.lock()
            log.info("vault %s locked after %.0f s idle", self.path, self.idle_timeout)
            return True
        return False

    # ---- entries
    def names(self) -> list[str]:
        return sorted(self._unlocked_entries())

    def entries(self) -> list[EntryInfo]:
        return [e.info() for _, e in sorted(self._unlocked_entries().items())]

    def get(self, name: str) -> str:
        """The value. VaultLocked when locked (or idle too long); KeyError when there is no such entry."""
        entry = self._unlocked_entries().get(name)
        if entry is None:
            raise KeyError(name)
        self.touch()
        return entry.value

    def put(self, name: str, value: str, kind: str = "password", note: str = "") -> None:
        check_name(name)
        check_kind(kind)
        check_value(value)

        def change(entries: dict[str, Entry]) -> None:
            now = time.time()
            old = entries.get(name)
            entries[name] = Entry(name, kind, value, old.created if old else now, now, note)

        self._modify(change)
        log.info("vault entry %s saved", name)

    def delete(self, name: str) -> None:
        def change(entries: dict[str, Entry]) -> None:
            if name not in entries:
                raise KeyError(name)
            del entries[name]

        self._modify(change)
        log.info("vault entry %s deleted", name)

    def change_passphrase(self, old: str, new: str) -> None:
        """A new data key under a new salt and passphrase, every entry re-encrypted with it, in one atomic write.

        Why not keep the data key and only re-wrap it: anyone holding an old copy of the file (a backup, a
        stolen laptop image) and the old passphrase would unwrap the same key and read every entry added after
        the change. A running agent holds the old key, so it is stopped; ``agent_stopped`` then says True (the
        caller says so: CLI commands need ``siteline vault unlock`` again).
        """
        check_new_passphrase(new)
        with sealed.file_lock(self.path):
            opened = sealed.open_with_passphrase(sealed.read_bytes(self.path), old)
            if opened.header.kdf != KDF_PASSPHRASE:
                raise VaultError("this vault is held by the OS keyring and has no passphrase",
                                 "export it and import the export into a new vault with a passphrase")
            data_key = crypto.new_key()
            header = sealed.passphrase_header("vault", data_key, new, opened.header.cost,
                                              vault_id=opened.header.vault_id)
            self._commit(header, data_key, opened.entries)
        self._adopt(sealed.Opened(self._header or header, data_key, opened.entries))
        log.info("vault %s passphrase changed; its entries were re-encrypted under a new data key", self.path)
        self.agent_stopped = self._stop_agent()

    def _stop_agent(self) -> bool:
        from siteline.core.vault import agent  # agent imports this module

        if not agent.supported():
            return False
        try:
            stopped = agent.stop_agent(self.path)
        except (OSError, VaultError) as exc:  # the passphrase did change: a stuck agent only fails its requests
            log.warning("the vault agent for %s could not be asked to stop: %s", self.path, exc)
            return False
        if stopped:
            log.info("the vault agent for %s was stopped: it held the old data key", self.path)
        return stopped

    def export_to(self, path: Path, export_passphrase: str, names: Iterable[str] | None = None) -> int:
        from siteline.core.vault.exchange import export_entries

        return export_entries(self, Path(path), export_passphrase, names)

    def import_from(self, path: Path, export_passphrase: str, *, overwrite: bool = False) -> ImportSummary:
        from siteline.core.vault.exchange import import_entries

        return import_entries(self, Path(path), export_passphrase, overwrite=overwrite)

    # ---- internals (exchange.py and agent.py use the ones without a leading underscore)
    def fresh_entries(self) -> dict[str, Entry]:
        """The entries as on disk now (another process may have written), decrypted with our data key."""
        return self._reload().entries

    def _unlocked_entries(self) -> dict[str, Entry]:
        self.lock_if_idle()
        if self._key is None:
            raise VaultLocked()
        return self._entries

    def _reload(self) -> sealed.Opened:
        if self._key is None:
            raise VaultLocked()
        data = sealed.read_bytes(self.path)
        try:
            return sealed.open_with_data_key(data, self._key)
        except VaultCorrupt:
            if self._rekeyed(data):
                self.lock()
                raise VaultLocked("the vault's passphrase was changed since it was unlocked here, so it was locked",
                                  "unlock it again with the new passphrase") from None
            raise VaultCorrupt("the vault file was damaged or replaced since it was unlocked; nothing was "
                               "overwritten", "lock and unlock it again; restore it from your export if that "
                               "fails") from None

    def _rekeyed(self, data: bytes) -> bool:
        """The same vault with another wrapped key: another process changed the passphrase (and the data key)."""
        try:
            header = decode(data)[0]
        except VaultError:
            return False
        mine = self._header
        return (mine is not None and header.kind == "vault" and header.vault_id == mine.vault_id
                and (header.salt, header.wrapped_key) != (mine.salt, mine.wrapped_key))

    def modify(self, change: Callable[[dict[str, Entry]], None]) -> None:
        self._modify(change)

    def _modify(self, change: Callable[[dict[str, Entry]], None]) -> None:
        self._unlocked_entries()
        with sealed.file_lock(self.path):
            opened = self._reload()
            entries = dict(opened.entries)
            change(entries)
            self._commit(opened.header, opened.data_key, entries)
        self._entries = entries
        self.touch()

    def _commit(self, header: Header, data_key: bytes, entries: dict[str, Entry]) -> None:
        header, data = sealed.seal_file(header, data_key, entries)
        sealed.write_file(self.path, data)
        self._header = header

    def _adopt(self, opened: sealed.Opened) -> None:
        self._header, self._key, self._entries = opened.header, opened.data_key, dict(opened.entries)
        if opened.header.kdf == KDF_PASSPHRASE:
            self.export_cost = opened.header.cost
        self.touch()

    def data_key_for_agent(self) -> bytes:
        if self._key is None:
            raise VaultLocked()
        return self._key

    def __repr__(self) -> str:
        return f"Vault({str(self.path)!r}, locked={self.locked})"
