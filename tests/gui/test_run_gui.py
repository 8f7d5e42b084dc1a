"""run_gui end to end: qasync loop, hang detector, screenshot-and-quit, clean shutdown; the excepthook."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from PySide6.QtWidgets import QApplication, QMessageBox

from siteline.core.errors import TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.transports.base import Credentials
from siteline.ui.app import install_excepthook, run_gui
from tests.peers import free_port


def test_run_gui_screenshot_stall_and_clean_exit(qapp, home, tmp_path, monkeypatch, caplog) -> None:
    shot = tmp_path / "shot.png"
    monkeypatch.setenv("SITELINE_SCREENSHOT", str(shot))
    monkeypatch.setenv("SITELINE_SCREENSHOT_WHEN", "now")
    monkeypatch.setenv("SITELINE_QUIT_AFTER_SCREENSHOT", "1")
    seen = {}

    def on_ready(window) -> None:
        seen["window"] = window
        seen["watch"] = window.loopwatch
        # A deliberate UI freeze: the hang detector must see it, log it and count it.
        asyncio.get_running_loop().call_later(0.05, time.sleep, 0.4)

    devices = [(DeviceEntry("edge-1", f"ssh://root@127.0.0.1:{free_port()}", "Tower 7"), Credentials("root"))]
    with caplog.at_level(logging.WARNING, logger="siteline.core.loopwatch"):
        code = run_gui(devices, title="Siteline test", on_ready=on_ready, stall_threshold=0.2)
    assert code == 0
    assert shot.is_file()
    assert shot.stat().st_size > 1000
    watch = seen["watch"]
    assert watch.worst_stall >= 0.3, watch.stats
    assert watch.stats.stalls_over_threshold >= 1, watch.stats
    assert not watch.running
    assert "blocked for" in caplog.text, caplog.text
    assert seen["window"].windowTitle() == "Siteline test"
    assert seen["window"].sessions.names() == []  # every session was stopped
    assert (home / "config" / "devices.json").read_text().count("edge-1") == 1
    assert asyncio.get_event_loop_policy()._local._loop is None  # run_gui left no loop behind


def test_excepthook_logs_and_shows(qapp, caplog) -> None:
    previous = install_excepthook()
    try:
        with caplog.at_level(logging.ERROR):
            try:
                raise TransportError("The link to gw-01 broke.", "Check the cable.")
            except TransportError:
                sys.excepthook(*sys.exc_info())
        assert "unexpected error" in caplog.text
        boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
        assert boxes
        assert "The link to gw-01 broke. Check the cable." in boxes[-1].text()
        for box in boxes:
            box.close()
    finally:
        sys.excepthook = previous


def test_screenshot_waits_until_all_up_without_stalls(qapp, home, tmp_path, monkeypatch) -> None:
    """Demo-like start-up with three devices: the screenshot shows a filled Overview; no stall over 2 s."""
    from siteline.ui.app import overview_ready
    from tests.gui.shell_transport import local_shell_factory

    shot = tmp_path / "all-up.png"
    monkeypatch.setenv("SITELINE_SCREENSHOT", str(shot))
    monkeypatch.setenv("SITELINE_SCREENSHOT_WHEN", "all-up")
    monkeypatch.setenv("SITELINE_QUIT_AFTER_SCREENSHOT", "1")
    seen = {}

    def on_ready(window) -> None:
        seen["window"] = window
        window.sig_closed.connect(lambda: seen.setdefault("ready_at_close", overview_ready(window)))

    devices = [
        (DeviceEntry(f"gw-0{i}", "ssh://root@127.0.0.1:22", "Demo site"), Credentials("root")) for i in (1, 2, 3)
    ]
    assert run_gui(devices, on_ready=on_ready, factory=local_shell_factory) == 0
    assert seen["ready_at_close"] is True
    assert shot.is_file()
    assert seen["window"].worst_stall < 2.0
