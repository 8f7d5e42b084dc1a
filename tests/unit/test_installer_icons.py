"""installers/icons/make_icons.py: the .ico and .icns it writes parse back, every entry a real PNG of its size."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "installers" / "icons" / "make_icons.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What the Windows shell, PyInstaller and Inno Setup pick from; 256 is the largest an .ico holds.
ICO_SIZES = {16, 20, 24, 32, 40, 48, 64, 96, 128, 256}
# Apple's PNG icon types and their pixel sizes (@2x types hold twice the point size).
ICNS_SIZES = {b"icp4": 16, b"icp5": 32, b"ic11": 32, b"icp6": 64, b"ic12": 64, b"ic07": 128, b"ic08": 256,
              b"ic13": 256, b"ic09": 512, b"ic14": 512, b"ic10": 1024}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first chunk, right after the signature)."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (kind, length) == (b"IHDR", 13)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def icons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A fresh interpreter: the script starts a QGuiApplication, which must not meet the GUI tests' QApplication.
    out = tmp_path_factory.mktemp("icons")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    return out


def test_ico_holds_one_png_per_size(icons: Path) -> None:
    data = (icons / "siteline.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind, count) == (0, 1, len(ICO_SIZES))
    seen, ends = set(), []
    for index in range(count):
        width, height, colours, zero, planes, bits, size, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * index : 22 + 16 * index])
        pixels = width or 256  # a byte: 0 stands for 256
        assert (height or 256, colours, zero, planes, bits) == (pixels, 0, 0, 1, 32)
        blob = data[offset : offset + size]
        assert len(blob) == size
        assert png_size(blob) == (pixels, pixels)
        seen.add(pixels)
        ends.append(offset + size)
    assert seen == ICO_SIZES
    assert max(ends) == len(data)  # the last image ends the file: nothing stray after it


def test_icns_holds_the_png_types(icons: Path) -> None:
    data = (icons / "siteline.icns").read_bytes()
    magic, total = struct.unpack(">4sI", data[:8])
    assert (magic, total) == (b"icns", len(data))
    found: dict[bytes, int] = {}
    position = 8
    while position < len(data):
        kind, length = struct.unpack(">4sI", data[position : position + 8])
        assert length > 8
        width, height = png_size(data[position + 8 : position + length])
        assert width == height
        found[kind] = width
        position += length
    assert position == len(data)
    assert found == ICNS_SIZES


def test_plain_png_is_the_256_rendering(icons: Path) -> None:
    png = (icons / "siteline-256.png").read_bytes()
    assert png_size(png) == (256, 256)
    ico = (icons / "siteline.ico").read_bytes()
    assert png in ico  # the same rendering went into the .ico's 256 entry
    assert len(png) > 1000  # a drawn icon, not an empty transparent square


def test_a_bad_svg_fails_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.svg"
    bad.write_text("<svg this is not")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), "--svg", str(bad)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode != 0
    assert "cannot read" in done.stderr
    assert not (tmp_path / "out" / "siteline.ico").exists()
