"""The Timeline panel fed a realistic hour: a failover at 14:02, a reboot at 14:05, booted B at 14:06."""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.core.device.history import DeviceHistory
from siteline.core.device.modem import ModemSignal, SignalReading
from siteline.core.device.posture import Clock, Posture
from siteline.core.device.system import OsRelease, System
from siteline.core.logs.record import LogRecord, Source
from siteline.core.paths import PathEvent
from siteline.ui.panels.timeline_panel import GLYPHS, TimelinePanel
from siteline_networkmanager.parsers import network_from_outputs
from siteline_slots.bootenv import parse_fw_printenv
from siteline_slots.parsers import merge

DATA = Path(__file__).resolve().parents[1] / "data"
# 14:00 on the laptop's own clock (the axis and the list show local time).
T0 = time.mktime((2026, 11, 27, 14, 0, 0, 0, 0, -1))
BEHIND = 3 * 3600.0  # the device's clock is three hours behind


def at(minute: float) -> float:
    return T0 + minute * 60


def golden(path: str) -> str:
    return (DATA / path).read_text()


def _network(case: str, since: float | None = None):
    return network_from_outputs(
        golden(f"nmcli/device-status-{case}.txt"), golden(f"nmcli/connection-show-{case}.txt"),
        golden(f"nmcli/ip-route-default-{case}.txt"), golden("nmcli/device-show-ip-iface.txt"),
        since=datetime.fromtimestamp(since).astimezone() if since else None,
    )


def _slots(env_text: str, booted: str):
    return merge(None, parse_fw_printenv(env_text), booted=booted)


def _system(uptime: float) -> System:
    return System("gw-pump-07", OsRelease(id="poky"), "6.1.55", "aarch64", None, uptime, None)


def _rsrp(minute: float) -> float:
    """A realistic trace: good, a dip into poor from 14:20 to 14:30 (a truck parked by the mast), recovery."""
    base = -88 + 3 * math.sin(minute / 4)
    if 20 <= minute <= 30:
        base -= 17 * math.sin((minute - 20) / 10 * math.pi)
    return round(base + 1.5 * math.sin(minute * 7.3), 1)


def _log(minute: float, priority: int, unit: str, message: str) -> LogRecord:
    # The device stamps its own (wrong) clock: three hours behind.
    return LogRecord(at(minute) - BEHIND, "gw-pump-07", unit, None, priority, message, Source.JOURNAL)


def realistic_hour() -> DeviceHistory:
    h = DeviceHistory("gw-pump-07")
    factory = golden("fw_printenv/rauc-factory-a.txt")
    h.observe("posture", Posture((), Clock(at(0), 0.05, at(0) - BEHIND)), at=at(0))
    h.observe("slots", _slots(factory, "A"), at=at(0))
    h.observe("network", _network("wired"), at=at(0))
    booted_at = at(0) - 12 * 86400
    for second in range(0, 3600, 10):
        minute = second / 60
        if 5 <= minute < 6.2:
            continue  # rebooting: the modem says nothing
        h.observe("modem", ModemSignal(10, lte=SignalReading(rsrp=_rsrp(minute), rsrq=-11.0, snr=9.0)), at=at(minute))
        if minute >= 6.2:
            booted_at = at(5)
        if second % 60 == 0:
            h.observe("system", _system(at(minute) - booted_at), at=at(minute))
    h.observe_logs([_log(1.9, 4, "kernel", "fec 30be0000.ethernet eth0: Link is Down")], at=at(2))
    h.observe("network", _network("failover", since=at(2)), at=at(2.1))
    h.observe_path_event(PathEvent("switched", "serial", "SSH to 10.0.0.5 dropped (no route to host); "
                                   "continuing on serial /dev/ttyUSB0", "serial", when=at(2.2)))
    h.observe_logs([_log(3.5, 6, "rauc", "Installing bundle 2026.11.2")], at=at(3.5))
    h.observe("slots", _slots(factory.replace("BOOT_ORDER=A B", "BOOT_ORDER=B A"), "A"), at=at(4.5))
    h.observe_logs([_log(4.9, 4, "systemd", "Rebooting: update installed")], at=at(4.9))
    h.observe("slots", _slots(golden("fw_printenv/rauc-booted-b-trial.txt"), "B"), at=at(6.3))
    h.observe_logs([_log(12, 3, "edge-agent", "MQTT connect to broker.example failed: TLS handshake timeout")],
                   at=at(12))
    h.observe_logs([_log(25, 4, "ModemManager", "Signal quality low (12 %)")], at=at(25))
    h.observe("network", _network("wired"), at=at(41))
    return h


@pytest.fixture
def panel(qtbot) -> TimelinePanel:
    widget = TimelinePanel(now=lambda: at(60))
    widget.resize(1100, 820)
    qtbot.addWidget(widget)
    widget.show_history(realistic_hour())
    return widget


def _rows(panel: TimelinePanel) -> list[tuple[str, str, str]]:
    m = panel.model
    return [tuple(m.data(m.index(r, c)) for c in range(3)) for r in range(m.rowCount())]  # type: ignore[misc]


def test_shows_the_story_in_order(panel: TimelinePanel) -> None:
    rows = _rows(panel)
    texts = [text for _, _, text in rows]
    story = ["wired down → cellular", "next boot tries B", "reboot (up 2 min when seen; had been up 12 d)",
             "booted B, 2 attempts left", "RSRP fell to −102 dBm (poor)", "cellular → wired: back on the primary"]
    positions = [texts.index(s) for s in story]
    assert positions == sorted(positions)
    failover = rows[positions[0]]
    assert failover[0] == "14:02:00"
    assert failover[1] == f"{GLYPHS['warn']} network"
    reboot = rows[positions[2]]
    assert reboot[0] == "14:05:00"
    assert rows[positions[3]][0] == "14:06:18"
    # The device's log times were three hours off: corrected, and said so.
    log = next(r for r in rows if "Link is Down" in r[2])
    assert log[0] == "14:01:54"
    assert panel.note.isVisibleTo(panel)
    assert panel.note.text().startswith("⚠ Device clock was 3 h behind; times corrected")
    assert "events in the last 1 hour" in panel.summary.text()


def test_lanes_have_markers_by_tone(panel: TimelinePanel) -> None:
    total = sum(len(item.data) for item in panel.markers.values())
    assert total == sum(1 for e in panel.model.events if e.kind != "signal")
    assert len(panel.markers["bad"].data) >= 1  # the agent's error
    assert len(panel._lines) == 3  # failover, reboot, back: dashed lines across the signal


def test_clicking_an_event_centres_the_plot(panel: TimelinePanel, qtbot) -> None:
    row = next(i for i, e in enumerate(panel.model.events) if e.text.startswith("wired down"))
    panel.table.scrollTo(panel.model.index(row, 2))
    rect = panel.table.visualRect(panel.model.index(row, 2))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    low, high = panel.x_range()
    assert (low + high) / 2 == pytest.approx(at(2), abs=5)
    assert high - low == pytest.approx(3600, rel=0.05)
    assert panel.cursor_lines[0].isVisible()
    assert panel.cursor_lines[0].value() == at(2)
    # New data keeps the chosen event chosen.
    panel.history.observe_path_event("back on the preferred path ssh://10.0.0.5", at=at(59))
    panel.refresh()
    assert panel.table.selectionModel().selectedRows()[0].row() == row
    # A closer zoom keeps the chosen event in the middle.
    qtbot.mouseClick(panel.zoom_buttons[900.0], Qt.MouseButton.LeftButton)
    low, high = panel.x_range()
    assert (low + high) / 2 == pytest.approx(at(2), abs=5)
    assert high - low == pytest.approx(900, rel=0.05)
    assert panel.latest_button.isEnabled()
    qtbot.mouseClick(panel.latest_button, Qt.MouseButton.LeftButton)
    low, high = panel.x_range()
    assert high == pytest.approx(at(60), abs=30)
    assert not panel.cursor_lines[0].isVisible()


def test_clicking_a_marker_selects_its_event(panel: TimelinePanel) -> None:
    spots = panel.markers["bad"].points()
    log = next(p for p in spots if "edge-agent" in panel.model.events[p.data()].text)
    panel._on_marker_clicked(panel.markers["bad"], [log])
    assert panel.table.selectionModel().selectedRows()[0].row() == log.data()
    low, high = panel.x_range()
    assert (low + high) / 2 == pytest.approx(at(12), abs=5)


def test_zoom_presets_change_the_window(panel: TimelinePanel, qtbot) -> None:
    qtbot.mouseClick(panel.zoom_buttons[900.0], Qt.MouseButton.LeftButton)
    assert all(e.at >= at(45) for e in panel.model.events)
    qtbot.mouseClick(panel.zoom_buttons[86400.0], Qt.MouseButton.LeftButton)
    low, high = panel.x_range()
    assert high - low == pytest.approx(86400, rel=0.05)
    assert any(e.text.startswith("wired down") for e in panel.model.events)


def test_empty_and_refresh_skips_when_unchanged(qtbot) -> None:
    widget = TimelinePanel(now=lambda: at(60))
    qtbot.addWidget(widget)
    widget.show_history(None)
    assert widget.model.rowCount() == 0
    assert widget.summary.text().startswith("No events")
    history = DeviceHistory()
    widget.show_history(history)
    assert widget.model.rowCount() == 0
    history.observe("system", _system(30), at=at(59))
    widget.refresh_soon()
    qtbot.waitUntil(lambda: widget.model.rowCount() == 1, timeout=3000)
    assert widget.model.events[0].text.startswith("booted (up 30 s")


def test_dark_palette_is_readable(qtbot, qapp) -> None:
    from siteline.ui.theme import build_palette

    old = qapp.palette()
    qapp.setPalette(build_palette("dark"))
    try:
        widget = TimelinePanel(now=lambda: at(60))
        qtbot.addWidget(widget)
        widget.show_history(realistic_hour())
        assert widget.graphics.backgroundBrush().color().lightness() < 60
        assert widget.note.palette().color(widget.note.foregroundRole()).lightness() > 120
    finally:
        qapp.setPalette(old)
