"""The image library: update images copied into ``<data dir>/images/<sha256>/`` with their .sig and .bmap.

Each entry is a folder named by the image's SHA-256 holding the image (its original name), the detached
signature and bmap when there were any, and ``info.json`` (the ImageInfo read at import). An import is built in
a ``.<sha>.part`` folder, every file fsync'd, then renamed into place: a crash or a full disk leaves no entry,
only a staging folder that the next import removes. Importing the same image again is a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from siteline.core.atomic import fsync_dir, write_atomic
from siteline.core.errors import SitelineError
from siteline.core.images.formats import describe

CHUNK = 1 << 20
INFO = "info.json"
MARGIN = 1 << 20  # room for info.json and the folder itself


class LibraryError(SitelineError):
    """A refused library action (full disk, unknown or ambiguous prefix); the message says why."""


@dataclass(frozen=True)
class LibraryEntry:
    sha256: str
    folder: Path
    image: Path
    sig: Path | None
    bmap: Path | None
    info: dict[str, Any]  # the ImageInfo as JSON
    imported: bool = True  # False: it was already in the library (a no-op)

    @property
    def message(self) -> str:
        if self.imported:
            return f"imported {self.image.name} as {self.sha256[:12]}"
        return f"{self.image.name} is already in the library as {self.sha256[:12]}: nothing changed"


def default_root() -> Path:
    from siteline.paths import data_dir  # not at import time: data_dir() creates the folder

    return data_dir() / "images"


class ImageLibrary:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def import_image(self, path: Path, sig: Path | None = None) -> LibraryEntry:
        """Copy ``path`` (and FILE.sig / FILE.bmap beside it) into the library; raises ImageError/LibraryError."""
        path = Path(path)
        info = describe(path)  # ImageError when the file cannot be used at all
        sig = sig if sig is not None else _beside(path, ".sig")
        if sig is not None and not Path(sig).is_file():
            raise LibraryError(f"the signature {sig} does not exist", "give the right --sig, or leave it out")
        bmap = _beside(path, ".bmap") or _beside(path.with_suffix(""), ".bmap")
        folder = self.root / info.sha256
        if (folder / INFO).is_file():
            existing = self._read(folder)
            return LibraryEntry(**{**asdict(existing), "imported": False})
        sources = [(path, path.name)]
        if sig is not None:
            sources.append((Path(sig), path.name + ".sig"))
        if bmap is not None:
            sources.append((bmap, bmap.name))
        self._stage(folder, sources, _info_json(info, path.name))
        return self._read(folder)

    def _stage(self, folder: Path, sources: list[tuple[Path, str]], info: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        part = self.root / f".{folder.name}.part"
        shutil.rmtree(part, ignore_errors=True)  # a crashed earlier import of the same image
        needed = sum(src.stat().st_size for src, _ in sources) + MARGIN
        free = shutil.disk_usage(self.root).free
        if free < needed:
            raise LibraryError(_full(needed, free, self.root), "free some space, then import again")
        try:
            part.mkdir()
            digests = [_copy(src, part / name) for src, name in sources]
            if digests[0] != folder.name:  # the image changed (or a USB stick misread) since it was hashed
                shutil.rmtree(part, ignore_errors=True)
                raise LibraryError(f"{sources[0][0].name} changed while it was imported (SHA-256 differs)",
                                   "nothing was imported; check the medium and import again")
            write_atomic(part / INFO, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
            os.replace(part, folder)
            fsync_dir(self.root)
        except OSError as exc:
            shutil.rmtree(part, ignore_errors=True)
            if exc.errno == errno.ENOSPC:
                raise LibraryError(_full(needed, shutil.disk_usage(self.root).free, self.root),
                                   "nothing was imported; free some space, then import again") from None
            raise LibraryError(f"importing failed: {exc.strerror or exc}", "nothing was imported; try again") \
                from None

    def entries(self) -> list[LibraryEntry]:
        if not self.root.is_dir():
            return []
        found = [self._read(d) for d in sorted(self.root.iterdir()) if d.is_dir() and (d / INFO).is_file()]
        return sorted(found, key=lambda e: e.image.name)

    def find(self, sha_prefix: str) -> LibraryEntry:
        prefix = sha_prefix.strip().lower()
        if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
            raise LibraryError(f"'{sha_prefix}' is not a SHA-256 prefix", "give 4 or more hex digits (siteline image "
                               "list shows them)")
        matches = [e for e in self.entries() if e.sha256.startswith(prefix)]
        if not matches:
            raise LibraryError(f"no image in the library starts with {prefix}", "see siteline image list")
        if len(matches) > 1:
            names = ", ".join(f"{e.sha256[:16]} ({e.image.name})" for e in matches)
            raise LibraryError(f"{prefix} matches {len(matches)} images: {names}", "give more digits")
        return matches[0]

    def remove(self, sha_prefix: str) -> LibraryEntry:
        entry = self.find(sha_prefix)
        gone = self.root / f".{entry.sha256}.removing"
        os.replace(entry.folder, gone)  # one rename: the entry is gone at once, never half-listed
        shutil.rmtree(gone, ignore_errors=True)
        return entry

    def _read(self, folder: Path) -> LibraryEntry:
        try:
            info = json.loads((folder / INFO).read_text(encoding="utf-8"))
            name = str(info["file"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LibraryError(f"the library entry {folder.name} is damaged ({exc})",
                               f"remove it (siteline image remove {folder.name[:12]}) and import again") from None
        sig = folder / (name + ".sig")
        bmaps = sorted(folder.glob("*.bmap"))
        return LibraryEntry(folder.name, folder, folder / name, sig if sig.is_file() else None,
                            bmaps[0] if bmaps else None, info)


def _beside(path: Path, suffix: str) -> Path | None:
    candidate = path.with_name(path.name + suffix)
    return candidate if candidate.is_file() else None


def _copy(src: Path, dst: Path) -> str:
    """Stream in 1 MiB reads, fsync before the caller renames; returns the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst)
    return digest.hexdigest()


def _info_json(info: Any, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(asdict(info), default=str))
    data["path"] = name
    data["file"] = name
    data["details"] = {k: v for k, v in data.get("details", {}).items() if k not in ("manifest", "sw_description")}
    return data


def _full(needed: int, free: int, root: Path) -> str:
    return f"not enough space in {root}: the import needs {_mib(needed)}, {_mib(free)} is free"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
