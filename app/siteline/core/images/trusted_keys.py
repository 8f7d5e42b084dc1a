"""The trusted-keys store: the public keys images must be signed by, added only by an explicit action.

Lives in ``<data dir>/trusted-keys/``: ``index.json`` (name, fingerprint, algorithm, file, added) and one PEM
(SubjectPublicKeyInfo) per key, each written atomically. Adding returns the audit detail the caller records as
``trusted-key-added``: this module never writes the audit trail itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic
from siteline.core.errors import SitelineError
from siteline.core.images.signature import (
    LoadedKey,
    SignatureRefused,
    Verdict,
    load_public_key,
    verify_with_keys,
)

INDEX = "index.json"
VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")


class KeyStoreError(SitelineError):
    """A refused store action (bad name, unknown key, damaged index); the message says why."""


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    algorithm: str
    file: str  # the PEM's name inside the store folder
    added: float  # unix time

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AddResult:
    key: TrustedKey
    added: bool  # False: the same key was already trusted (a no-op)
    message: str
    audit_detail: dict[str, Any] | None  # what to record as trusted-key-added; None for a no-op


def default_root() -> Path:
    from siteline.paths import data_dir  # not at import time: data_dir() creates the folder

    return data_dir() / "trusted-keys"


class TrustedKeys:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def entries(self) -> list[TrustedKey]:
        return sorted(self._read_index(), key=lambda k: k.name)

    def find(self, fingerprint: str) -> TrustedKey | None:
        return next((k for k in self._read_index() if k.fingerprint == fingerprint), None)

    def add(self, key_data: bytes, name: str) -> AddResult:
        """Trust a public key under ``name``; raises :class:`KeyStoreError` with the reason when refused."""
        if not _NAME.match(name):
            raise KeyStoreError(f"bad key name {name!r}", "use 1-64 letters, digits and . _ @ + - (e.g. ops-2026)")
        try:
            loaded = load_public_key(key_data)
        except SignatureRefused as exc:
            raise KeyStoreError(f"cannot trust this key: {exc}") from None
        keys = self._read_index()
        same = next((k for k in keys if k.fingerprint == loaded.fingerprint), None)
        if same is not None:
            return AddResult(same, False, f"already trusted as '{same.name}' ({same.fingerprint}): nothing changed",
                             None)
        if any(k.name == name for k in keys):
            raise KeyStoreError(f"a different key is already trusted as '{name}'",
                                "pick another name, or remove the old key first (siteline keys remove)")
        entry = TrustedKey(name, loaded.fingerprint, loaded.algorithm, _file_name(loaded.fingerprint), time.time())
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / entry.file, loaded.pem())
        self._write_index([*keys, entry])
        detail = {"name": name, "fingerprint": entry.fingerprint, "algorithm": entry.algorithm}
        return AddResult(entry, True, f"trusted '{name}': {entry.fingerprint} ({entry.algorithm})", detail)

    def remove(self, name_or_fingerprint: str) -> TrustedKey:
        keys = self._read_index()
        gone = next((k for k in keys if name_or_fingerprint in (k.name, k.fingerprint)), None)
        if gone is None:
            raise KeyStoreError(f"no trusted key named or with fingerprint '{name_or_fingerprint}'",
                                "see siteline keys list")
        self._write_index([k for k in keys if k is not gone])
        (self.root / gone.file).unlink(missing_ok=True)  # after the index: a stray PEM is harmless
        return gone

    def loaded(self) -> list[LoadedKey]:
        """The trusted keys, read back and re-checked (a PEM edited on disk must not pass under the old name)."""
        result = []
        for entry in self.entries():
            try:
                key = load_public_key((self.root / entry.file).read_bytes(), entry.name)
            except (OSError, SignatureRefused) as exc:
                raise KeyStoreError(f"trusted key '{entry.name}' cannot be read: {exc}",
                                    "remove it and add it again (siteline keys remove / add)") from None
            if key.fingerprint != entry.fingerprint:
                raise KeyStoreError(f"trusted key '{entry.name}' was changed on disk (fingerprint differs)",
                                    "remove it and add the right key again")
            result.append(key)
        return result

    def verify_trusted(self, path: Path, signature: Path | bytes) -> Verdict:
        """Check the file's signature against every trusted key; the verdict names the one that signed."""
        try:
            keys = self.loaded()
        except KeyStoreError as exc:
            return Verdict(False, str(exc))
        if not keys:
            return Verdict(False, "signed by no trusted key: no key is trusted yet (siteline keys add PEM --name N)")
        verdict = verify_with_keys(path, signature, keys)
        if len(keys) == 1 and not verdict.ok and verdict.sha256:
            reason = f"signed by no trusted key (tried {keys[0].name}: {verdict.reason})"
            return Verdict(False, reason, sha256=verdict.sha256)
        return verdict

    def _read_index(self) -> list[TrustedKey]:
        path = self.root / INDEX
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise KeyStoreError(f"the trusted-keys index {path} cannot be read: {exc}",
                                "restore it from a backup, or remove it and add the keys again") from None
        try:
            if raw.get("version") != VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
            return [TrustedKey(str(k["name"]), str(k["fingerprint"]), str(k["algorithm"]), str(k["file"]),
                               float(k["added"])) for k in raw["keys"]]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"the trusted-keys index {path} is damaged ({exc})",
                                "restore it from a backup, or remove it and add the keys again") from None

    def _write_index(self, keys: list[TrustedKey]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {"version": VERSION, "keys": [k.as_json() for k in keys]}
        write_atomic(self.root / INDEX, (json.dumps(data, indent=2) + "\n").encode(), mode=0o644)


def _file_name(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:32] + ".pem"
