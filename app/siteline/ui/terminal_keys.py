"""What an xterm sends for a key press: the bytes, decided from the Qt key, its modifiers and the modes.

Kept apart from the widget so the table can be read (and tested) in one place. Sequences follow
xterm's defaults (``infocmp xterm-256color``): CSI for cursor keys unless the program switched on
application cursor mode (DECCKM), SS3 for F1-F4, ``CSI n ~`` for the editing keys and F5-F12, and
``CSI 1;m X`` / ``CSI n;m ~`` when Shift/Alt/Ctrl are held (m = 1 + Shift 1 + Alt 2 + Ctrl 4).
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent

K = Qt.Key
M = Qt.KeyboardModifier
# Cursor-style keys: the final letter; CSI in normal mode, SS3 in application mode, CSI 1;m with modifiers.
CURSOR = {K.Key_Up: b"A", K.Key_Down: b"B", K.Key_Right: b"C", K.Key_Left: b"D", K.Key_Home: b"H", K.Key_End: b"F"}
SS3 = {K.Key_F1: b"P", K.Key_F2: b"Q", K.Key_F3: b"R", K.Key_F4: b"S"}
TILDE = {
    K.Key_Insert: 2, K.Key_Delete: 3, K.Key_PageUp: 5, K.Key_PageDown: 6,
    K.Key_F5: 15, K.Key_F6: 17, K.Key_F7: 18, K.Key_F8: 19, K.Key_F9: 20, K.Key_F10: 21, K.Key_F11: 23, K.Key_F12: 24,
}  # fmt: skip
PLAIN = {K.Key_Return: b"\r", K.Key_Enter: b"\r", K.Key_Tab: b"\t", K.Key_Backtab: b"\x1b[Z", K.Key_Escape: b"\x1b"}
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"
# Ctrl with punctuation, as xterm: Ctrl-Space/@ NUL, Ctrl-[ ESC, Ctrl-\ FS, Ctrl-] GS, Ctrl-^ RS, Ctrl-_ and Ctrl-/ US.
CTRL_PUNCT = {
    K.Key_Space: 0x00, K.Key_At: 0x00, K.Key_2: 0x00, K.Key_BracketLeft: 0x1B, K.Key_Backslash: 0x1C,
    K.Key_BracketRight: 0x1D, K.Key_AsciiCircum: 0x1E, K.Key_6: 0x1E, K.Key_Underscore: 0x1F,
    K.Key_Minus: 0x1F, K.Key_Slash: 0x1F, K.Key_Question: 0x7F,
}  # fmt: skip


def _ctrl_modifier() -> M:
    # On macOS Qt reports the Cmd key as Control and the Control key as Meta: a terminal wants the key
    # labelled Control, which is Meta there.
    return M.MetaModifier if sys.platform == "darwin" else M.ControlModifier


def modifier_param(mods: M) -> int:
    """xterm's modifier parameter: 1 + Shift 1 + Alt 2 + Ctrl 4 (1 means none)."""
    return 1 + bool(mods & M.ShiftModifier) + 2 * bool(mods & M.AltModifier) + 4 * bool(mods & _ctrl_modifier())


def key_bytes(event: QKeyEvent, app_cursor: bool) -> bytes:
    """What an xterm sends for this key press; empty for keys a terminal ignores (Shift alone, ...)."""
    return encode_key(Qt.Key(event.key()), event.modifiers(), event.text(), app_cursor)


def encode_key(key: Qt.Key, mods: M, text: str, app_cursor: bool) -> bytes:
    param = modifier_param(mods)
    special = _special(key, param, app_cursor)
    if special is not None:
        return special
    ctrl, alt = bool(mods & _ctrl_modifier()), bool(mods & M.AltModifier)
    prefix = b"\x1b" if alt else b""  # Alt sends ESC first (xterm's metaSendsEscape), as readline expects
    if key == K.Key_Backspace:
        return prefix + (b"\x08" if ctrl else b"\x7f")
    if key in PLAIN:
        return prefix + PLAIN[key] if key != K.Key_Backtab else PLAIN[key]
    if ctrl and K.Key_A <= key <= K.Key_Z:
        return prefix + bytes([key - K.Key_A + 1])  # Ctrl-A 0x01 ... Ctrl-C 0x03, Ctrl-D 0x04, Ctrl-Z 0x1a
    if ctrl and key in CTRL_PUNCT:
        return prefix + bytes([CTRL_PUNCT[key]])
    if alt and K.Key_A <= key <= K.Key_Z and not (text.isascii() and text.isalpha()):
        # Some layouts (macOS Option) turn Alt+letter into another character: the shell wants ESC + letter.
        text = chr(key) if mods & M.ShiftModifier else chr(key).lower()
    return prefix + text.encode("utf-8") if text else b""


def _special(key: Qt.Key, param: int, app_cursor: bool) -> bytes | None:
    if key in CURSOR:
        if param > 1:
            return b"\x1b[1;%d" % param + CURSOR[key]
        return (b"\x1bO" if app_cursor else b"\x1b[") + CURSOR[key]
    if key in SS3:
        return b"\x1b[1;%d" % param + SS3[key] if param > 1 else b"\x1bO" + SS3[key]
    if key in TILDE:
        number = TILDE[key]
        return b"\x1b[%d;%d~" % (number, param) if param > 1 else b"\x1b[%d~" % number
    return None


def paste_bytes(text: str, bracketed: bool) -> bytes:
    """Pasted text as a terminal sends it: Enter is CR; inside ESC[200~ .. ESC[201~ when the program asked.

    A pasted end marker is removed, so a paste cannot end the bracket early and have the rest run as typed.
    """
    data = text.replace("\r\n", "\r").replace("\n", "\r").encode("utf-8")
    if not bracketed:
        return data
    return PASTE_START + data.replace(PASTE_END, b"") + PASTE_END
