"""Render Siteline's SVG icon to a square PNG with Qt's own SVG renderer (offscreen; no display needed).

    python installers/linux/render_icon.py resources/icons/siteline.svg out.png 256
"""

from __future__ import annotations

import os
import sys


def render(svg: str, png: str, size: int) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(["render_icon"])
    renderer = QSvgRenderer(svg)
    if not renderer.isValid():
        raise SystemExit(f"render_icon: {svg} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(png, "PNG"):
        raise SystemExit(f"render_icon: cannot write {png}")
    del app


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: render_icon.py ICON.svg OUT.png SIZE")
    render(sys.argv[1], sys.argv[2], int(sys.argv[3]))
