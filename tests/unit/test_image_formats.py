"""Image metadata from real RAUC bundles, cpio-built .swu archives and raw images with .bmap files.

The images are made here with the real tools (rauc, openssl, cpio or busybox cpio, xz, gzip); the
malicious ones (path traversal, truncation, bombs, a lying .bmap) are built byte by byte.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.core.images import bmap as bmapmod
from siteline.core.images import libconfig, raucb, rawimg, swu
from siteline.core.images.formats import ImageError, compare_versions, compatible_problem, describe, downgrade_problem
from tests.peers import find_tool, require_tool

SW_DESCRIPTION = """software =
{
    version = "2.4.0";
    description = "Siteline test update";
    hardware-compatibility: [ "1.0", "1.2" ];
    images: (
        {
            filename = "rootfs.ext4";
            device = "/dev/mmcblk0p3";
            type = "raw";
            sha256 = "@ROOTFS@";
        }
    );
    files: (
        { filename = "app.conf"; path = "/etc/app.conf"; }
    );
    bootenv: (
        { name = "boot_slot"; value = "B"; }
    );
};
"""


# ---------------------------------------------------------------- RAUC
def _make_bundle(tmp: Path, slots: dict[str, str], bundle_format: str = "plain") -> Path:
    rauc, openssl = require_tool("rauc"), require_tool("openssl")
    require_tool("unsquashfs")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "key.pem"),
                    "-out", str(tmp / "cert.pem"), "-days", "2", "-subj", "/CN=siteline-test"],
                   check=True, capture_output=True, timeout=30)
    content = tmp / "content"
    content.mkdir()
    lines = ["[update]", "compatible=siteline-board", "version=3.1.4", "description=Test bundle", "build=20261127",
             "", "[bundle]", f"format={bundle_format}", ""]
    for slot_class, filename in slots.items():
        (content / filename).write_bytes(os.urandom(8192))
        lines += [f"[image.{slot_class}]", f"filename={filename}", ""]
    (content / "manifest.raucm").write_text("\n".join(lines))
    out = tmp / "update.raucb"
    subprocess.run([rauc, "bundle", f"--cert={tmp / 'cert.pem'}", f"--key={tmp / 'key.pem'}", str(content), str(out)],
                   check=True, capture_output=True, timeout=30)
    return out


def test_rauc_bundle_manifest_is_read(tmp_path: Path) -> None:
    bundle = _make_bundle(tmp_path, {"rootfs": "rootfs.ext4"})
    info = describe(bundle)
    assert info.format == "raucb"
    assert (info.compatible, info.version, info.description, info.build) == (
        "siteline-board", "3.1.4", "Test bundle", "20261127")
    assert [w.kind for w in info.writes] == ["rootfs"]
    assert info.writes[0].size == 8192
    assert len(info.writes[0].sha256) == 64
    assert info.sha256 == hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert info.size == bundle.stat().st_size
    assert not info.writes_bootloader
    assert info.problems == []


@pytest.mark.parametrize(("a", "b", "want"), [
    ("1.10", "1.9", 1), ("2.0", "2.0", 0), ("2.0-rc1", "2.0", -1), ("2.0.1", "2.0", 1), ("v3", "v3.0.0", 0),
    ("1.0", "1.0.1", -1), ("2026.11", "2026.09", 1), ("1.0a", "1.0b", -1)])
def test_compare_versions(a: str, b: str, want: int) -> None:
    assert compare_versions(a, b) == want
    assert compare_versions(b, a) == -want


def test_rauc_bundle_with_bootloader_slot_is_flagged(tmp_path: Path) -> None:
    info = describe(_make_bundle(tmp_path, {"rootfs": "rootfs.ext4", "bootloader": "u-boot.img"}))
    assert info.writes_bootloader
    assert {w.kind: w.bootloader for w in info.writes} == {"rootfs": False, "bootloader": True}


def test_rauc_verity_bundle(tmp_path: Path) -> None:
    info = describe(_make_bundle(tmp_path, {"rootfs": "rootfs.ext4"}, "verity"))
    assert (info.compatible, info.version, info.details["bundle_format"]) == ("siteline-board", "3.1.4", "verity")
    assert info.problems == []


@pytest.mark.parametrize(("cut", "bundle_format"), [("half", "plain"), ("signature", "plain"), ("tail", "verity")])
def test_truncated_rauc_bundle_is_refused(tmp_path: Path, cut: str, bundle_format: str) -> None:
    bundle = _make_bundle(tmp_path, {"rootfs": "rootfs.ext4"}, bundle_format)
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) // 2] if cut == "half" else data[:-100] if cut == "signature" else data[:-3000])
    with pytest.raises(ImageError, match="truncated"):
        describe(bundle)


def test_rauc_manifest_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _make_bundle(tmp_path, {"rootfs": "rootfs.ext4", "uboot": "u-boot.img"})
    monkeypatch.setattr(raucb, "read_manifest", lambda _p: None)
    info = describe(bundle)  # through `rauc info --no-verify --output-format=json`
    assert (info.compatible, info.version, info.build) == ("siteline-board", "3.1.4", "20261127")
    assert {w.kind: w.size for w in info.writes} == {"rootfs": 8192, "uboot": 8192}
    assert info.writes_bootloader
    monkeypatch.setattr(raucb, "read_info_json", lambda _p: None)
    info = describe(bundle)
    assert info.compatible == ""
    assert any("manifest is not readable" in p for p in info.problems)


def test_bounded_output_stops_endless_or_slow_tools() -> None:
    assert raucb._bounded_output([require_tool("busybox"), "yes"], 1000, 5.0) is None
    assert raucb._bounded_output([require_tool("busybox"), "sleep", "5"], 1000, 0.3) is None
    assert raucb._bounded_output([require_tool("busybox"), "echo", "hi"], 1000, 5.0) == b"hi\n"


# ---------------------------------------------------------------- SWUpdate
def _cpio(directory: Path, names: list[str], out: Path) -> Path:
    """Build the archive with GNU cpio (-H crc) when installed, else BusyBox cpio (-H newc)."""
    cpio = find_tool("cpio")
    cmd = [cpio, "-o", "-H", "crc"] if cpio else [require_tool("busybox"), "cpio", "-o", "-H", "newc"]
    with out.open("wb") as f:
        subprocess.run(cmd, input="\n".join(names).encode() + b"\n", cwd=directory, stdout=f, check=True,
                       stderr=subprocess.DEVNULL, timeout=30)
    return out


def _make_swu(tmp: Path, description: str = SW_DESCRIPTION, signed: bool = True) -> Path:
    src = tmp / "swu-src"
    src.mkdir()
    rootfs = os.urandom(5000)
    (src / "rootfs.ext4").write_bytes(rootfs)
    (src / "app.conf").write_text("x=1\n")
    (src / "sw-description").write_text(description.replace("@ROOTFS@", hashlib.sha256(rootfs).hexdigest()))
    names = ["sw-description"]
    if signed:
        openssl = require_tool("openssl")
        subprocess.run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                        str(tmp / "k.pem")], check=True, capture_output=True, timeout=30)
        subprocess.run([openssl, "dgst", "-sha256", "-sign", str(tmp / "k.pem"), "-out",
                        str(src / "sw-description.sig"), str(src / "sw-description")], check=True, timeout=30)
        names.append("sw-description.sig")
    return _cpio(src, [*names, "rootfs.ext4", "app.conf"], tmp / "update.swu")


def test_swu_metadata_is_read(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    info = describe(_make_swu(tmp_path), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (info.size, info.size)
    assert info.format == "swu"
    assert (info.version, info.compatible, info.description) == ("2.4.0", "1.0, 1.2", "Siteline test update")
    assert [(w.name, w.kind, w.target, w.size) for w in info.writes] == [
        ("rootfs.ext4", "raw", "/dev/mmcblk0p3", 5000), ("app.conf", "rawfile", "/etc/app.conf", 4),
        ("boot_slot", "bootenv", "", None)]
    assert info.problems == []
    assert info.details["signed"] is True
    assert "hardware-compatibility" in str(info.details["sw_description"])
    assert info.compatibles == ["1.0", "1.2"]
    assert compatible_problem(info, "1.2") is None
    assert "the device is '2.0'" in (compatible_problem(info, "2.0") or "")
    assert downgrade_problem(info, "2.3.9") is None
    assert "older than the installed 2.10.0" in (downgrade_problem(info, "2.10.0") or "")
    assert not info.writes_bootloader


def test_swu_unsigned_and_wrong_hash_are_problems(tmp_path: Path) -> None:
    text = SW_DESCRIPTION.replace("@ROOTFS@", "00" * 32)
    info = describe(_make_swu(tmp_path, text, signed=False))
    assert any("sw-description.sig" in p for p in info.problems)
    assert any("sha256 does not match" in p for p in info.problems)


@pytest.mark.parametrize("entry", [
    '{ filename = "u-boot.bin"; type = "bootloader"; }',
    '{ filename = "u-boot.bin"; device = "/dev/mmcblk0boot0"; type = "raw"; }',
])
def test_swu_bootloader_writes_are_flagged(tmp_path: Path, entry: str) -> None:
    text = f'software = {{ version = "1"; images: ( {entry} ); }};'
    src = tmp_path / "s"
    src.mkdir()
    (src / "sw-description").write_text(text)
    (src / "u-boot.bin").write_bytes(b"\0" * 100)
    info = describe(_cpio(src, ["sw-description", "u-boot.bin"], tmp_path / "b.swu"))
    assert info.writes_bootloader


def test_swu_json_form(tmp_path: Path) -> None:
    src = tmp_path / "s"
    src.mkdir()
    (src / "sw-description").write_text('{"software": {"version": "9.9", "hardware-compatibility": ["2.0"],'
                                        ' "myboard": {"images": [{"filename": "a.img", "type": "ubootenv"}]}}}')
    (src / "a.img").write_bytes(b"a")
    info = describe(_cpio(src, ["sw-description", "a.img"], tmp_path / "j.swu"))
    assert (info.version, info.compatible, info.writes_bootloader) == ("9.9", "2.0", True)


def _newc_entry(name: bytes, data: bytes) -> bytes:
    fields = [0, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % v for v in fields) + name + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def _crafted_swu(path: Path, names: list[bytes]) -> Path:
    body = _newc_entry(b"sw-description", b'software = { version = "1"; };')
    body += b"".join(_newc_entry(n, b"evil") for n in names) + _newc_entry(b"TRAILER!!!", b"")
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("name", [b"../../etc/passwd", b"/etc/shadow", b"dir/file", b"..", b"a\0b"])
def test_swu_path_traversal_is_refused(tmp_path: Path, name: bytes) -> None:
    with pytest.raises(ImageError, match="unsafe name"):
        describe(_crafted_swu(tmp_path / "evil.swu", [name]))


def test_truncated_swu_is_refused(tmp_path: Path) -> None:
    swu_file = _make_swu(tmp_path)
    data = swu_file.read_bytes()
    for cut in (50, 300, len(data) - 700):
        swu_file.write_bytes(data[:cut])
        with pytest.raises(ImageError, match=r"truncated|ended inside|no cpio trailer"):
            describe(swu_file)


def test_swu_too_many_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swu, "MAX_ENTRIES", 5)
    with pytest.raises(ImageError, match="more than 5 entries"):
        describe(_crafted_swu(tmp_path / "many.swu", [b"f%d" % i for i in range(10)]))


# ---------------------------------------------------------------- raw images, bombs, bmap
BLOCK = 4096


def _image(tmp: Path) -> Path:
    """A 40-block image with data in blocks 0-1, 10 and a partial last block."""
    img = bytearray(40 * BLOCK - 100)
    img[0: 2 * BLOCK] = os.urandom(2 * BLOCK)
    img[10 * BLOCK: 11 * BLOCK] = os.urandom(BLOCK)
    img[39 * BLOCK: 39 * BLOCK + 10] = b"end-blocks"
    path = tmp / "disk.img"
    path.write_bytes(bytes(img))
    return path


def _write_bmap(img: Path, out: Path, *, tamper: bool = False) -> Path:
    """A bmap in bmaptool 2.0's documented format, its own checksum computed the way bmaptool does."""
    data = img.read_bytes()
    blocks = -(-len(data) // BLOCK)
    mapped = [b for b in range(blocks) if data[b * BLOCK:(b + 1) * BLOCK].strip(b"\0")]
    runs: list[tuple[int, int]] = []
    for b in mapped:
        runs = [*runs[:-1], (runs[-1][0], b)] if runs and runs[-1][1] == b - 1 else [*runs, (b, b)]
    ranges = ""
    for first, last in runs:
        chunk = data[first * BLOCK:(last + 1) * BLOCK]
        digest = hashlib.sha256(b"X" + chunk[1:] if tamper and first == 10 else chunk).hexdigest()
        ranges += f'        <Range chksum="{digest}"> {first}-{last} </Range>\n'
    text = (f'<?xml version="1.0" ?>\n<bmap version="2.0">\n    <ImageSize> {len(data)} </ImageSize>\n'
            f"    <BlockSize> {BLOCK} </BlockSize>\n    <BlocksCount> {blocks} </BlocksCount>\n"
            f"    <MappedBlocksCount> {len(mapped)} </MappedBlocksCount>\n    <ChecksumType> sha256 </ChecksumType>\n"
            f"    <BmapFileChecksum> {'0' * 64} </BmapFileChecksum>\n"
            f"    <BlockMap>\n{ranges}    </BlockMap>\n</bmap>\n")
    text = text.replace("0" * 64, hashlib.sha256(text.encode()).hexdigest(), 1)
    out.write_text(text)
    return out


@pytest.mark.parametrize("compress", ["none", "gzip", "xz"])
def test_raw_image_with_matching_bmap(tmp_path: Path, compress: str) -> None:
    img = _image(tmp_path)
    raw = img.read_bytes()
    _write_bmap(img, tmp_path / "disk.bmap")
    if compress == "gzip":
        subprocess.run([require_tool("gzip"), img], check=True, timeout=30)
        img = tmp_path / "disk.img.gz"
    elif compress == "xz":
        subprocess.run([require_tool("xz"), img], check=True, timeout=30)
        img = tmp_path / "disk.img.xz"
    info = describe(img)
    assert info.format == "raw"
    assert info.details["compression"] == compress
    assert info.details["uncompressed_size"] == len(raw)
    assert info.details["bmap_ok"] is True, info.problems
    assert info.details["bmap_mapped_bytes"] == 3 * BLOCK + BLOCK - 100
    assert info.problems == []


def test_bmap_that_does_not_match_blocks_bmap_write(tmp_path: Path) -> None:
    img = _image(tmp_path)
    _write_bmap(img, tmp_path / "disk.img.bmap", tamper=True)
    info = describe(img)
    assert info.details["bmap_ok"] is False
    assert any("blocks 10-10" in p and "bmap write is blocked" in p for p in info.problems)
    # An image of another size: the bmap's ImageSize no longer matches.
    _write_bmap(img, tmp_path / "disk.img.bmap")
    img.write_bytes(img.read_bytes() + b"\0" * BLOCK)
    info = describe(img)
    assert info.details["bmap_ok"] is False
    assert any("says the image is" in p for p in info.problems)


@pytest.mark.parametrize("text", [
    '<?xml version="1.0"?><!DOCTYPE bmap [<!ENTITY a "aaaa">]><bmap>&a;</bmap>',
    "<bmap><ImageSize>10</ImageSize></bmap>",
    "not xml at all",
])
def test_hostile_or_broken_bmap_is_a_problem(tmp_path: Path, text: str) -> None:
    img = _image(tmp_path)
    (tmp_path / "disk.bmap").write_text(text)
    info = describe(img)
    assert info.details["bmap_ok"] is False
    assert "block map disk.bmap is not valid" in info.problems[0]


def _zeros_compressed(path: Path, size: int, kind: str) -> Path:
    comp = lzma.LZMACompressor(preset=0) if kind == "xz" else None
    with path.open("wb") as out:
        gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) if kind == "gzip" else None
        zeros = bytes(1024 * 1024)
        for _ in range(size // len(zeros)):
            if gz is not None:
                gz.write(zeros)
            elif comp is not None:
                out.write(comp.compress(zeros))
        if gz is not None:
            gz.close()
        elif comp is not None:
            out.write(comp.flush())
    return path


def test_gzip_bomb_stops_at_the_cap(tmp_path: Path) -> None:
    bomb = _zeros_compressed(tmp_path / "bomb.img.gz", 32 * 1024 * 1024, "gzip")
    info_limits = rawimg.Limits(max_size=8 * 1024 * 1024)
    with pytest.raises(ImageError, match="decompression bomb: it expands past"):
        for _ in rawimg.stream_image(bomb, info_limits):
            pass
    with pytest.raises(ImageError, match="expands more than 100 times"):
        for _ in rawimg.stream_image(bomb, rawimg.Limits(max_ratio=100, ratio_after=1024 * 1024)):
            pass


def test_xz_bomb_is_refused_with_default_limits(tmp_path: Path) -> None:
    bomb = _zeros_compressed(tmp_path / "bomb.img.xz", 160 * 1024 * 1024, "xz")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageError, match="decompression bomb"):
        describe(bomb)


def test_concatenated_xz_streams(tmp_path: Path) -> None:
    path = tmp_path / "multi.img.xz"
    path.write_bytes(lzma.compress(b"a" * 5000) + lzma.compress(b"b" * 3000))
    assert describe(path).details["uncompressed_size"] == 8000
    gz = tmp_path / "multi.img.gz"
    gz.write_bytes(gzip.compress(b"a" * 5000) + gzip.compress(b"b" * 3000))
    assert describe(gz).details["uncompressed_size"] == 8000


def test_truncated_compressed_images(tmp_path: Path) -> None:
    for kind in ("gzip", "xz"):
        path = _zeros_compressed(tmp_path / f"t.img.{kind}", 2 * 1024 * 1024, kind)
        path.write_bytes(path.read_bytes()[:-20])
        with pytest.raises(ImageError, match="truncated or damaged"):
            describe(path)


def test_zstd_images_are_read_and_a_cut_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.img.zst"
    payload = bytes(3 * 1024 * 1024) + b"x" * 1000
    subprocess.run([require_tool("zstd"), "-q", "-o", str(path), "-"], input=payload, check=True, timeout=30)
    assert describe(path).details["uncompressed_size"] == len(payload)
    whole = path.read_bytes()
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    path.write_bytes(whole + skippable + whole)  # zstd -d reads concatenated frames, skippable ones too
    assert describe(path).details["uncompressed_size"] == 2 * len(payload)
    for cut in (len(whole) - 8, len(whole) + 5, 6):
        path.write_bytes((whole + skippable + whole)[:cut])
        with pytest.raises(ImageError, match="truncated or damaged"):
            describe(path)


def test_unusable_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a file"):
        describe(tmp_path)
    (tmp_path / "e.img").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        describe(tmp_path / "e.img")
    (tmp_path / "x.swu").write_bytes(b"garbage")
    with pytest.raises(ImageError, match="not a SWUpdate archive"):
        describe(tmp_path / "x.swu")


# ---------------------------------------------------------------- fuzz
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([b"070701", b"070702", b"hsqs", b""]))
def test_fuzz_describe_only_raises_image_error(tmp_path: Path, blob: bytes, magic: bytes) -> None:
    path = tmp_path / "fuzz.swu" if magic.startswith(b"0707") else tmp_path / "fuzz.img"
    path.write_bytes(magic + blob)
    with contextlib.suppress(ImageError):
        describe(path)


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=5), st.binary(max_size=300))
def test_fuzz_cpio_entries(tmp_path: Path, names: list[bytes], tail: bytes) -> None:
    path = tmp_path / "f.swu"
    path.write_bytes(b"".join(_newc_entry(n, n[::-1]) for n in [b"sw-description", *names]) + tail)
    with contextlib.suppress(ImageError):
        describe(path)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list('abc=:;,{}()[]"\\#/*\n 0x1.5Le-+')), max_size=200))
def test_fuzz_libconfig(text: str) -> None:
    with contextlib.suppress(ValueError):
        libconfig.loads(text)
    with contextlib.suppress(ImageError):
        swu.parse_description(text)


@FUZZ
@given(st.text(max_size=300), st.sampled_from(["", "<bmap version='2.0'>", "<bmap><BlockMap>"]))
def test_fuzz_bmap(tmp_path: Path, text: str, prefix: str) -> None:
    path = tmp_path / "f.bmap"
    path.write_text(prefix + text, errors="replace")
    with contextlib.suppress(ImageError):
        bmapmod.parse_bmap(path)


@FUZZ
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=30))
def test_fuzz_range_checker_chunking(tmp_path: Path, cuts: list[int]) -> None:
    img = tmp_path / "disk.img"
    if not img.exists():
        _write_bmap(_image(tmp_path), tmp_path / "disk.bmap")
    data, parsed = img.read_bytes(), bmapmod.parse_bmap(tmp_path / "disk.bmap")
    checker = bmapmod.RangeChecker(parsed)
    pos = 0
    for cut in [*cuts, len(data)]:
        checker.feed(data[pos: pos + cut])
        pos += cut
    checker.feed(data[pos:])
    checker.finish()
    assert checker.mismatches == []
