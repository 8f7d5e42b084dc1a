"""Light and dark palettes both render with readable text in the key widgets."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QWidget

from siteline.core.inventory import DeviceEntry
from siteline.core.transports.base import Credentials
from siteline.ui.theme import Theme, build_palette
from tests.gui.conftest import close_window, show, until


def _distance(a: QColor, b: QColor) -> int:
    return abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue())


def _luminance(c: QColor) -> float:
    def channel(v: int) -> float:
        s = v / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(c.red()) + 0.7152 * channel(c.green()) + 0.0722 * channel(c.blue())


def contrast(a: QColor, b: QColor) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _rendered_text_pixels(widget: QWidget, text: QColor) -> int:
    image = widget.grab().toImage()
    count = 0
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            if _distance(image.pixelColor(x, y), text) < 60:
                count += 1
    return count


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_palette_renders_readable_text(scheme, make_window, aloop, qapp) -> None:
    theme = Theme(qapp, scheme)
    assert theme.scheme == scheme

    async def scenario() -> None:
        window = make_window(theme=theme)
        window.load_devices([(DeviceEntry("gw-01", "ssh://root@127.0.0.1:22", "Tower 7"), Credentials("root"))])
        await show(window)
        await until(lambda: window.page.overview.filled, what="overview")
        image = window.grab().toImage()
        assert not image.isNull()
        assert image.width() > 600

        checks = [
            (window.tree.viewport(), QPalette.ColorRole.Base, QPalette.ColorRole.Text),
            (window.page._title, QPalette.ColorRole.Window, QPalette.ColorRole.WindowText),
            (window.page.overview._values["kernel"], QPalette.ColorRole.Window, QPalette.ColorRole.WindowText),
            (window.status.devices, QPalette.ColorRole.Window, QPalette.ColorRole.WindowText),
        ]
        for widget, bg_role, fg_role in checks:
            pal = widget.palette()
            bg, fg = pal.color(bg_role), pal.color(fg_role)
            assert contrast(bg, fg) >= 4.5, (widget.objectName(), bg.name(), fg.name())
            assert _rendered_text_pixels(widget, fg) > 5, f"no text drawn in {fg.name()} on {widget!r}"
        tree_bg = window.tree.viewport().grab().toImage()
        corner = tree_bg.pixelColor(tree_bg.width() - 3, tree_bg.height() - 3)
        assert (corner.lightness() < 100) if scheme == "dark" else (corner.lightness() > 180)
        await close_window(window)

    try:
        aloop.run(scenario())
    finally:
        theme.apply("light")


def test_both_palettes_have_contrast() -> None:
    for scheme in ("light", "dark"):
        pal = build_palette(scheme)
        for bg, fg in (
            (QPalette.ColorRole.Window, QPalette.ColorRole.WindowText),
            (QPalette.ColorRole.Base, QPalette.ColorRole.Text),
            (QPalette.ColorRole.Button, QPalette.ColorRole.ButtonText),
            (QPalette.ColorRole.Highlight, QPalette.ColorRole.HighlightedText),
        ):
            assert contrast(pal.color(bg), pal.color(fg)) >= 4.5, (scheme, bg, fg)
