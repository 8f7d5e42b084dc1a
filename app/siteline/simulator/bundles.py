"""Reading a RAUC bundle's manifest: a real squashfs bundle (via unsquashfs) or a tar holding manifest.raucm.

Signature checking is deliberately not done here yet (a later issue adds it, with the keyring
in the device's /etc/rauc); the simulator trusts the manifest it reads.
"""

from __future__ import annotations

import configparser
import hashlib
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.raucm"
SIM_FLAGS = "siteline-sim.conf"  # optional drill flags inside the bundle: [siteline-sim] boots=false healthy=false
MAX_MANIFEST = 64 * 1024  # a manifest is a few hundred bytes; anything huge is not one
SQUASHFS_MAGIC = b"hsqs"


class BundleError(Exception):
    """The file is not a bundle this device can read; the message says why."""


@dataclass(frozen=True)
class Manifest:
    compatible: str
    version: str
    description: str
    build: str
    boots: bool  # [siteline-sim] boots=false: the image panics at boot (for rollback drills)
    sha256: str
    size: int
    healthy: bool = True  # [siteline-sim] healthy=false: boots, but edge-agent.service fails (health-check drills)


def read_manifest(path: Path) -> Manifest:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise BundleError(f"Failed to open bundle {path}: {exc.strerror}") from exc
    reader = _from_squashfs if magic == SQUASHFS_MAGIC else _from_tar
    text = reader(path, MANIFEST)
    if text is None:
        raise BundleError(f"Invalid bundle: no {MANIFEST} inside")
    # RAUC 1.8's `rauc bundle` drops unknown manifest groups, so the drill flag can also ride in a
    # file of its own inside the bundle (every file of the bundle directory is kept).
    return _parse(text, reader(path, SIM_FLAGS) or "", *_digest(path))


def _from_squashfs(path: Path, name: str) -> str | None:
    tool = shutil.which("unsquashfs") or shutil.which("unsquashfs", path="/usr/sbin:/sbin:/usr/bin")
    if tool is None:
        raise BundleError("cannot read a squashfs bundle: unsquashfs not found (install squashfs-tools)")
    proc = subprocess.run([tool, "-cat", str(path), name], capture_output=True, timeout=30, check=False)
    if proc.returncode != 0 or not proc.stdout:
        if name == MANIFEST:
            raise BundleError(f"bundle has no {MANIFEST}: {proc.stderr.decode(errors='replace').strip()[:200]}")
        return None
    return proc.stdout[:MAX_MANIFEST].decode("utf-8", "replace")


def _from_tar(path: Path, name: str) -> str | None:
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name == name:
                    if member.size > MAX_MANIFEST:
                        raise BundleError(f"{name} is {member.size} bytes: too large to be a manifest")
                    fh = tar.extractfile(member)
                    return fh.read(MAX_MANIFEST).decode("utf-8", "replace") if fh else ""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleError(f"Invalid bundle format: not a squashfs or tar bundle ({exc})") from exc
    return None


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _parse(text: str, flags_text: str, sha256: str, size: int) -> Manifest:
    parser = _ini(text, "manifest")
    if not parser.has_option("update", "compatible"):
        raise BundleError("Failed to parse manifest: missing [update] compatible=")
    update = parser["update"]
    flags = _ini(flags_text, SIM_FLAGS) if flags_text else parser
    boots, healthy = _flag(flags, parser, "boots"), _flag(flags, parser, "healthy")
    return Manifest(update.get("compatible", "").strip(), update.get("version", "").strip(),
                    update.get("description", "").strip(), update.get("build", "").strip(), boots, sha256, size,
                    healthy)


def flag_value(text: str) -> bool:
    """A drill flag's value: only an explicit false/0/no/off turns the default (true) off."""
    return text.strip().lower() not in ("false", "0", "no", "off")


def _flag(flags: configparser.ConfigParser, manifest: configparser.ConfigParser, name: str) -> bool:
    # [siteline-sim] in a hand-made manifest or in siteline-sim.conf; [meta.siteline-sim] for RAUC >= 1.9.
    value = "true"
    for group in ("siteline-sim", "meta.siteline-sim"):
        for source in (flags, manifest):
            if source.has_option(group, name):
                value = source.get(group, name)
    return flag_value(value)


def sim_flags(text: str) -> dict[str, bool]:
    """The drill flags a siteline-sim.conf sets (only those it names); BundleError when it is not INI."""
    parser = _ini(text, SIM_FLAGS)
    return {name: flag_value(parser.get(group, name)) for group in ("siteline-sim", "meta.siteline-sim")
            for name in ("boots", "healthy") if parser.has_option(group, name)}


def _ini(text: str, what: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise BundleError(f"Failed to parse {what}: {str(exc).splitlines()[0]}") from exc
    return parser
