"""Render resources/icons/siteline.svg into the icon files the installers need.

    python installers/icons/make_icons.py [--out DIR]

writes, into DIR (default: this folder):
- siteline.ico   Windows: one PNG-compressed entry per size 16..256 (Vista and later read PNG entries;
                 PyInstaller puts it into the .exe, Inno Setup into the setup and uninstaller);
- siteline.icns  macOS: PNG-based icon types (icp4/icp5, ic07..ic14), what `iconutil` makes from an iconset;
- siteline-256.png  a plain PNG for anything else (Linux menus, the README).

PySide6 (already a dependency) renders the SVG offscreen, so no image library is added. The output
depends only on the SVG and Qt's renderer, so rebuilding on a runner gives the same picture.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SVG = ROOT / "resources" / "icons" / "siteline.svg"
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 96, 128, 256)
# Apple's icon types that hold PNG data (Apple's "icns" type list, as iconutil writes them): type -> pixels.
ICNS_TYPES: tuple[tuple[bytes, int], ...] = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),  # 16 pt @2x
    (b"icp6", 64),
    (b"ic12", 64),  # 32 pt @2x
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),  # 128 pt @2x
    (b"ic09", 512),
    (b"ic14", 512),  # 256 pt @2x
    (b"ic10", 1024),  # 512 pt @2x
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def render_pngs(svg: Path, sizes: set[int]) -> dict[int, bytes]:
    """PNG bytes of the SVG drawn at each size (square, transparent background)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # a build runner has no display
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg} as SVG: fix the file, or check that PySide6's QtSvg is installed")
    out: dict[int, bytes] = {}
    for size in sorted(sizes):
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        if not image.save(buffer, "PNG"):
            raise SystemExit(f"Qt could not encode a {size} px PNG (is the PNG image plugin missing?)")
        buffer.close()
        out[size] = bytes(data.data())
    return out


def build_ico(pngs: dict[int, bytes], sizes: tuple[int, ...] = ICO_SIZES) -> bytes:
    """An .ico file: ICONDIR, one 16-byte ICONDIRENTRY per image, then the PNG streams."""
    header = struct.pack("<HHH", 0, 1, len(sizes))  # reserved, type 1 = icon, count
    offset = len(header) + 16 * len(sizes)
    entries, blobs = [], []
    for size in sizes:
        blob = pngs[size]
        dim = 0 if size >= 256 else size  # a byte: 0 means 256
        # width, height, palette colours, reserved, colour planes, bits per pixel, data size, data offset
        entries.append(struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset))
        blobs.append(blob)
        offset += len(blob)
    return header + b"".join(entries) + b"".join(blobs)


def build_icns(pngs: dict[int, bytes], types: tuple[tuple[bytes, int], ...] = ICNS_TYPES) -> bytes:
    """An .icns file: 'icns' + total length, then (type, length incl. its 8-byte header, PNG) per entry."""
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size] for kind, size in types)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def make_icons(out_dir: Path, svg: Path = SVG) -> list[Path]:
    sizes = set(ICO_SIZES) | {size for _kind, size in ICNS_TYPES}
    pngs = render_pngs(svg, sizes)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        out_dir / "siteline.ico": build_ico(pngs),
        out_dir / "siteline.icns": build_icns(pngs),
        out_dir / "siteline-256.png": pngs[256],
    }
    for path, data in written.items():
        path.write_bytes(data)
    return list(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the Siteline icon into .ico, .icns and .png files.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder")
    parser.add_argument("--svg", type=Path, default=SVG, help="source SVG (default: resources/icons/siteline.svg)")
    args = parser.parse_args(argv)
    for path in make_icons(args.out, args.svg):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
