"""Guards the Qt binding itself: PySide6 6.12.0 on Python 3.11 drops a reference to None on every call
of a void method (setText, show, click ...), so a GUI that runs for a while dies with
"Fatal Python error: none_dealloc". 6.11.3 is fine. This test fails fast instead of an hour later."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtWidgets import QLabel


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 on")
def test_void_calls_keep_none_alive(qapp) -> None:
    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(500):
        label.setText("x")
        label.hide()
    lost = before - sys.getrefcount(None)
    assert lost < 50, (
        f"the Qt binding lost {lost} references to None in 1000 calls: this PySide6 build crashes "
        "long-running windows; install a different PySide6 version (6.12.0 is known bad, 6.11.3 works)"
    )
