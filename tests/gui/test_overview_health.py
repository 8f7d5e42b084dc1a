"""The Overview's health block: one row per area with mark, word and colour; a click or Enter names the area."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from siteline.api import Unavailable
from siteline.core.device.modem import Modem, ModemSignal, SignalReading
from siteline.core.device.network import DefaultRoute, NetConnection, NetDevice, derive_network
from siteline.core.device.slots import Slot, Slots
from siteline.core.device.system import OsRelease, System
from siteline.ui.overview_tab import OverviewTab
from siteline.ui.theme import STATE_COLOURS, build_palette


@dataclass(frozen=True)
class Report:
    modem: Modem
    signal: ModemSignal | None = None
    problems: tuple[str, ...] = ()


def on_backup() -> Any:
    devs = (NetDevice("eth0", "ethernet", "unavailable", None),
            NetDevice("cdc-wdm0", "gsm", "connected", "cellular", ip_iface="wwan0"))
    conns = (NetConnection("Wired", None, "802-3-ethernet", None, True, 10),
             NetConnection("cellular", None, "gsm", "cdc-wdm0", True, 0))
    routes = (DefaultRoute("wwan0", "10.64.0.1", 700),)
    return derive_network(devs, conns, routes, datetime(2026, 11, 27, 14, 2), (), "")


def mixed() -> dict[str, Any]:
    """A device with a poor modem signal, on cellular backup, healthy slots, and unreadable posture."""
    return {
        "modem": Report(Modem(state="connected", registration="home", operator_name="Vodafone",
                              access_technologies=("lte",)), ModemSignal(lte=SignalReading(rsrp=-108.0))),
        "network": on_backup(),
        "slots": Slots(source="rauc", booted="A", primary="rootfs.0", slots=(
            Slot("rootfs.0", bootname="A", booted=True, primary=True, health="good", bundle_version="1.4.2"),
            Slot("rootfs.1", bootname="B", health="good"),
        )),
        "system": System("gw-17", OsRelease(pretty_name="Poky 4.0"), "6.1.55", "aarch64", None, 3600.0, None),
        "posture": Unavailable("posture", "the device closed the link during `sshd -T`"),
    }


@pytest.fixture
def tab(qtbot: Any) -> OverviewTab:
    QApplication.instance().setPalette(build_palette("light"))  # type: ignore[union-attr]
    widget = OverviewTab()
    qtbot.addWidget(widget)
    widget.resize(900, 800)
    widget.show()
    return widget


def test_rows_show_words_marks_and_tones(tab: OverviewTab) -> None:
    tab.show_health(mixed())
    rows = tab.health.rows
    assert list(rows) == ["modem", "network", "slots", "disk", "posture"]  # fixed order, not worst first
    seen = {area: (row.tone, row.mark.text(), row.headline.text()) for area, row in rows.items()}
    assert seen == {
        "modem": ("bad", "\u2716 Problem", "signal poor: RSRP \u2212108 dBm (LTE)"),
        "network": ("warn", "\u25b2 Check", "on cellular backup since 14:02"),
        "slots": ("good", "\u2714 OK", "booted A (1.4.2), the primary"),
        "disk": ("unknown", "? Unknown", "disk use not reported"),
        "posture": ("unknown", "? Unknown", "could not read the security checks"),
    }
    assert rows["network"].reason.text() == "wired eth0 is unavailable"
    assert rows["posture"].reason.text() == "the device closed the link during `sshd -T`"
    assert tab.health.summary.text() == (
        "2 problems: signal poor: RSRP \u2212108 dBm (LTE); on cellular backup since 14:02 "
        "(not known: Disk, Security)"
    )
    light = STATE_COLOURS["light"]
    assert light["down"] in rows["modem"].styleSheet()  # red edge and mark, beside the word
    assert light["retrying"] in rows["network"].styleSheet()
    assert light["up"] in rows["slots"].styleSheet()
    assert "Problem" in rows["modem"].accessibleName()


def test_unread_device_says_not_read_yet(tab: OverviewTab) -> None:
    assert {row.headline.text() for row in tab.health.rows.values()} == {"not read yet"}
    assert tab.health.summary.text() == "Nothing known yet"
    tab.show_health(mixed())
    tab.show_system(mixed()["system"])
    assert tab.filled
    tab.clear()  # another device is shown: none of the last one's health stays
    assert not tab.filled
    assert {row.tone for row in tab.health.rows.values()} == {"unknown"}
    assert tab.health.rows["modem"].headline.text() == "not read yet"


def test_click_and_enter_name_the_area(tab: OverviewTab, qtbot: Any) -> None:
    tab.show_health(mixed())
    with qtbot.waitSignal(tab.sig_area_activated, timeout=2000) as clicked:
        qtbot.mouseClick(tab.health.rows["network"], Qt.MouseButton.LeftButton)
    assert clicked.args == ["network"]
    row = tab.health.rows["slots"]
    row.setFocus()
    with qtbot.waitSignal(tab.sig_area_activated, timeout=2000) as entered:
        qtbot.keyClick(row, Qt.Key.Key_Return)
    assert entered.args == ["slots"]
    with qtbot.assertNotEmitted(tab.sig_area_activated):
        qtbot.mouseClick(row, Qt.MouseButton.RightButton)


def test_rows_are_big_targets_and_reach_by_keyboard(tab: OverviewTab, qtbot: Any) -> None:
    tab.show_health(mixed())
    for row in tab.health.rows.values():
        assert row.height() >= 48
        assert row.focusPolicy() & Qt.FocusPolicy.TabFocus
    tab.health.rows["modem"].setFocus()
    qtbot.keyClick(tab.health.rows["modem"], Qt.Key.Key_Down)
    assert QApplication.focusWidget() is tab.health.rows["network"]


def test_dark_palette_recolours(tab: OverviewTab) -> None:
    tab.show_health(mixed())
    QApplication.instance().setPalette(build_palette("dark"))  # type: ignore[union-attr]
    try:
        QApplication.processEvents()
        assert STATE_COLOURS["dark"]["down"] in tab.health.rows["modem"].styleSheet()
    finally:
        QApplication.instance().setPalette(build_palette("light"))  # type: ignore[union-attr]
