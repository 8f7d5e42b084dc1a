"""The image library and `siteline image import|list|remove`: real files, real openssl signatures, exit codes."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.peers import require_tool

from siteline.core.images import library as libmod
from siteline.core.images.formats import describe
from siteline.core.images.library import ImageLibrary, LibraryError


def _openssl(*args: str | Path) -> None:
    done = subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def _image(d: Path, name: str = "disk.img.gz", size: int = 4096) -> Path:
    path = d / name
    path.write_bytes(gzip.compress(os.urandom(size) + bytes(4096)))
    return path


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("importkeys")
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", d / "k.key")
    _openssl("pkey", "-in", d / "k.key", "-pubout", "-out", d / "k.pub")
    return {"key": d / "k.key", "pub": d / "k.pub"}


def test_import_reimport_sig_and_bmap(tmp_path: Path, key: dict[str, Path]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    image = _image(src)
    _openssl("dgst", "-sha256", "-sign", key["key"], "-out", src / "disk.img.gz.sig", image)
    (src / "disk.img.gz.bmap").write_text("<bmap/>")  # copied as is; its checking is formats' business
    lib = ImageLibrary(tmp_path / "lib")
    entry = lib.import_image(image)
    assert entry.imported
    assert entry.image.read_bytes() == image.read_bytes()
    assert entry.sig is not None
    assert entry.sig.read_bytes() == (src / "disk.img.gz.sig").read_bytes()
    assert entry.bmap is not None
    assert entry.info["format"] == "raw"
    assert entry.info["sha256"] == entry.sha256
    again = lib.import_image(image)
    assert not again.imported
    assert "already in the library" in again.message
    assert [e.sha256 for e in lib.entries()] == [entry.sha256]
    assert not [p for p in (tmp_path / "lib").iterdir() if p.name.startswith(".")]


def test_find_and_remove(tmp_path: Path) -> None:
    lib = ImageLibrary(tmp_path / "lib")
    entries = [lib.import_image(_image(tmp_path, f"i{n}.img.gz")) for n in range(3)]
    first = entries[0]
    assert lib.find(first.sha256[:12]).sha256 == first.sha256
    assert lib.find(first.sha256.upper()).sha256 == first.sha256
    with pytest.raises(LibraryError, match="not a SHA-256 prefix"):
        lib.find("zz12")
    with pytest.raises(LibraryError, match="not a SHA-256 prefix"):
        lib.find("ab")
    gone = lib.remove(first.sha256[:8])
    assert gone.sha256 == first.sha256
    assert not gone.folder.exists()
    with pytest.raises(LibraryError, match="no image"):
        lib.find(first.sha256[:8])
    assert sorted(e.sha256 for e in lib.entries()) == sorted(e.sha256 for e in entries[1:])
    assert not [p for p in (tmp_path / "lib").iterdir() if p.name.startswith(".")]


def test_ambiguous_prefix_lists_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = ImageLibrary(tmp_path / "lib")
    a, b = (lib.import_image(_image(tmp_path, f"{n}.img.gz")) for n in "ab")
    # Two real hashes sharing 4+ digits are rare; give the two real entries made-up hashes that do.
    fake_a = libmod.LibraryEntry("abcd1111", a.folder, a.image, None, None, a.info)
    fake_b = libmod.LibraryEntry("abcd2222", b.folder, b.image, None, None, b.info)
    monkeypatch.setattr(lib, "entries", lambda: [fake_a, fake_b])
    with pytest.raises(LibraryError) as err:
        lib.find("abcd")
    assert "abcd1111 (a.img.gz)" in str(err.value)
    assert "abcd2222 (b.img.gz)" in str(err.value)
    assert "2 images" in str(err.value)
    assert lib.find("abcd2").sha256 == "abcd2222"


def test_full_disk_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path, size=200_000)
    lib = ImageLibrary(tmp_path / "lib")
    real_fsync = os.fsync

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(LibraryError, match=r"not enough space.*needs"):
        lib.import_image(image)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert lib.entries() == []
    assert list((tmp_path / "lib").iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(LibraryError, match=r"needs .* MiB, 0\.0 MiB is free"):
        lib.import_image(image)
    assert list((tmp_path / "lib").iterdir()) == []


def _cli(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "siteline", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def test_cli_import_list_remove(tmp_path: Path, key: dict[str, Path]) -> None:
    home = tmp_path / "home"
    image = _image(tmp_path)
    unsigned = _cli(home, "image", "import", image)
    assert unsigned.returncode == 0, unsigned.stderr
    assert "NOT signed by a trusted key" in unsigned.stdout
    assert "format      raw" in unsigned.stdout
    sig = tmp_path / "other.sig"
    _openssl("dgst", "-sha256", "-sign", key["key"], "-out", sig, image)
    env = {**os.environ, "SITELINE_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "siteline", "keys", "add", key["pub"], "--name", "ops", "--yes"],
                   env=env, check=True, capture_output=True, timeout=30)
    signed_image = _image(tmp_path, "signed.img.gz")
    _openssl("dgst", "-sha256", "-sign", key["key"], "-out", sig, signed_image)
    signed = _cli(home, "image", "import", signed_image, "--sig", sig)
    assert signed.returncode == 0, signed.stderr
    assert "trusted key 'ops'" in signed.stdout
    again = _cli(home, "image", "import", signed_image)
    assert again.returncode == 0
    assert "already in the library" in again.stdout
    listed = _cli(home, "image", "list", "--json")
    assert listed.returncode == 0
    rows = json.loads(listed.stdout)
    assert sorted(r["file"] for r in rows) == ["disk.img.gz", "signed.img.gz"]
    assert _cli(home, "image", "list").stdout.count("\t") == 6
    missing = _cli(home, "image", "import", tmp_path / "nope.img")
    assert missing.returncode == 3
    assert "refused" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_sig = _cli(home, "image", "import", image, "--sig", tmp_path / "nope.sig")
    assert bad_sig.returncode == 3
    assert "does not exist" in bad_sig.stderr
    sha = rows[0]["sha256"]
    assert _cli(home, "image", "remove", sha[:10]).returncode == 0
    gone = _cli(home, "image", "remove", sha[:10])
    assert gone.returncode == 3
    assert "no image" in gone.stderr
    assert _cli(home, "image", "remove").returncode == 2
    assert _cli(home, "image", "list", "--bogus").returncode == 2
    trail = json.loads(_cli(home, "audit", "list", "--json").stdout)
    kept = [(r["action"], r["detail"]["file"]) for r in trail if r["action"].startswith("image-")]
    assert sorted(kept) == sorted([("image-import", "disk.img.gz"), ("image-import", "signed.img.gz"),
                                   ("image-remove", rows[0]["file"])])


def test_image_changed_during_import_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = _image(tmp_path)
    lib = ImageLibrary(tmp_path / "lib")

    def describe_then_change(path: Path) -> object:
        info = describe(path)
        image.write_bytes(image.read_bytes() + b"late write")
        return info

    monkeypatch.setattr("siteline.core.images.library.describe", describe_then_change)
    with pytest.raises(LibraryError, match="changed while it was imported"):
        lib.import_image(image)
    assert list((tmp_path / "lib").iterdir()) == []
