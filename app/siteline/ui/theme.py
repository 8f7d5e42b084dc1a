"""Light and dark palettes that follow the system, plus the style sheet sized for gloved hands.

Fusion with explicit palettes looks the same on Linux, Windows and macOS, and it is the one style
whose colours a palette fully controls, so text never ends up the colour of its background.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from siteline.resources import ResourceError, read_resource

log = logging.getLogger(__name__)
Scheme = Literal["light", "dark"]
Mode = Literal["system", "light", "dark"]

_LIGHT = {
    "window": "#f3f4f6", "base": "#ffffff", "alt": "#eef1f4", "text": "#1b1f24", "button": "#e6e8eb",
    "highlight": "#1f5f8b", "highlighted_text": "#ffffff", "link": "#1f5f8b", "mid": "#b8bec6",
    "disabled": "#8a9099", "muted": "#555c66", "tooltip": "#ffffdc", "light": "#ffffff", "midlight": "#e9ebee",
    "dark": "#9aa1aa", "shadow": "#5c636b",
}
_DARK = {
    "window": "#23272e", "base": "#1a1d22", "alt": "#262b33", "text": "#e6e8eb", "button": "#2e343d",
    "highlight": "#2a6cab", "highlighted_text": "#ffffff", "link": "#6cb4ee", "mid": "#4a525d",
    "disabled": "#7d848e", "muted": "#aab1ba", "tooltip": "#2e343d", "light": "#4a525d", "midlight": "#3a414b",
    "dark": "#16191d", "shadow": "#0c0e10",
}
# State colours readable on both palettes (used for text next to icons).
STATE_COLOURS: dict[Scheme, dict[str, str]] = {
    "light": {"up": "#1e7a38", "connecting": "#1f64a0", "retrying": "#9a5b00", "down": "#b22d28"},
    "dark": {"up": "#6fd38a", "connecting": "#7db8ec", "retrying": "#f0b35a", "down": "#f08a85"},
}


def build_palette(scheme: Scheme) -> QPalette:
    c = _DARK if scheme == "dark" else _LIGHT
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: c["window"], QPalette.ColorRole.WindowText: c["text"],
        QPalette.ColorRole.Base: c["base"], QPalette.ColorRole.AlternateBase: c["alt"],
        QPalette.ColorRole.Text: c["text"], QPalette.ColorRole.Button: c["button"],
        QPalette.ColorRole.ButtonText: c["text"], QPalette.ColorRole.Highlight: c["highlight"],
        QPalette.ColorRole.HighlightedText: c["highlighted_text"], QPalette.ColorRole.Link: c["link"],
        QPalette.ColorRole.Mid: c["mid"], QPalette.ColorRole.ToolTipBase: c["tooltip"],
        QPalette.ColorRole.ToolTipText: c["text"], QPalette.ColorRole.PlaceholderText: c["muted"],
        QPalette.ColorRole.BrightText: "#ff5555", QPalette.ColorRole.Light: c["light"],
        QPalette.ColorRole.Midlight: c["midlight"], QPalette.ColorRole.Dark: c["dark"],
        QPalette.ColorRole.Shadow: c["shadow"],
    }
    for role, colour in roles.items():
        pal.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(c["disabled"]))
    # Placeholders and help lines are read outdoors on a laptop screen: about 6:1 against the window, where the
    # disabled grey (3:1) would fade in the sun; they stay lighter than the text so they still read as secondary.
    return pal


def system_scheme() -> Scheme:
    hints = QGuiApplication.styleHints()
    return "dark" if hints.colorScheme() == Qt.ColorScheme.Dark else "light"


def wanted_mode() -> Mode:
    """``SITELINE_THEME=light|dark`` forces a palette (screenshots, tests); otherwise follow the system."""
    value = os.environ.get("SITELINE_THEME", "system").strip().lower()
    return value if value in ("light", "dark") else "system"  # type: ignore[return-value]


class Theme:
    """Applies a palette now and again whenever the system switches between light and dark."""

    def __init__(self, app: QApplication, mode: Mode = "system") -> None:
        self._app = app
        self.mode: Mode = mode
        self.scheme: Scheme = "light"
        app.setStyle("Fusion")
        app.setStyleSheet(_style_sheet())
        hints = QGuiApplication.styleHints()
        hints.colorSchemeChanged.connect(lambda scheme: self._on_system_scheme_changed(scheme))
        self.apply()

    def apply(self, mode: Mode | None = None) -> None:
        if mode is not None:
            self.mode = mode
        self.scheme = system_scheme() if self.mode == "system" else self.mode
        self._app.setPalette(build_palette(self.scheme))

    def state_colour(self, state: str) -> QColor:
        fallback = (_DARK if self.scheme == "dark" else _LIGHT)["text"]
        return QColor(STATE_COLOURS[self.scheme].get(state, fallback))

    def _on_system_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.mode == "system":
            self.apply()


def _style_sheet() -> str:
    try:
        return read_resource("styles/siteline.qss").decode("utf-8", "replace")
    except ResourceError as exc:  # ugly but usable beats not starting
        log.warning("%s", exc)
        return ""


def set_high_dpi_policy() -> None:
    """Call before the QApplication exists: fractional scale factors (125 %, 150 %) stay crisp."""
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
