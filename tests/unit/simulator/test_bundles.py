"""Reading RAUC bundle manifests from tar and squashfs bundles; bad files give typed errors."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from siteline.simulator.bundles import BundleError, read_manifest
from tests.peers import find_tool

MANIFEST = "[update]\ncompatible=nwedge-gw-imx8mm\nversion=2024.06.1\n\n[siteline-sim]\nboots=false\n"


def _tar(path: Path, name: str, data: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_tar_bundle(tmp_path: Path) -> None:
    m = read_manifest(_tar(tmp_path / "b.raucb", "manifest.raucm", MANIFEST.encode()))
    assert (m.compatible, m.version, m.boots) == ("nwedge-gw-imx8mm", "2024.06.1", False)
    assert len(m.sha256) == 64
    assert m.size > 0


def test_squashfs_bundle(tmp_path: Path) -> None:
    mksquashfs = find_tool("mksquashfs")
    if mksquashfs is None or (shutil.which("unsquashfs") is None and find_tool("unsquashfs") is None):
        pytest.skip("squashfs-tools not installed")
    content = tmp_path / "content"
    content.mkdir()
    (content / "manifest.raucm").write_text(MANIFEST.replace("boots=false", "boots=true"))
    (content / "rootfs.ext4").write_bytes(b"\0" * 4096)
    bundle = tmp_path / "real.raucb"
    subprocess.run([mksquashfs, str(content), str(bundle), "-quiet", "-noappend"], check=True, timeout=30)
    m = read_manifest(bundle)
    assert m.version == "2024.06.1"
    assert m.boots


@pytest.mark.parametrize(
    ("data", "match"),
    [(b"random garbage" * 100, "Invalid bundle"), (b"", "Invalid bundle")],
)
def test_garbage_is_a_typed_error(tmp_path: Path, data: bytes, match: str) -> None:
    p = tmp_path / "x.raucb"
    p.write_bytes(data)
    with pytest.raises(BundleError, match=match):
        read_manifest(p)


def test_bad_manifests(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no manifest"):
        read_manifest(_tar(tmp_path / "a.raucb", "other.txt", b"x"))
    with pytest.raises(BundleError, match="compatible"):
        read_manifest(_tar(tmp_path / "b.raucb", "manifest.raucm", b"[update]\nversion=1\n"))
    with pytest.raises(BundleError, match="parse"):
        read_manifest(_tar(tmp_path / "c.raucb", "manifest.raucm", b"no section header\n"))
    with pytest.raises(BundleError, match="too large"):
        read_manifest(_tar(tmp_path / "d.raucb", "manifest.raucm", b"#" * 100_000))
    with pytest.raises(BundleError, match="Failed to open"):
        read_manifest(tmp_path / "missing.raucb")
