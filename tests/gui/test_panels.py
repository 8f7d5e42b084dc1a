"""The Modem, Network and Slots panels fed with snapshots parsed from the real-format goldens in tests/data."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from siteline.core.device.modem import ModemSignal, SignalReading
from siteline.ui.panels.modem_panel import ModemPanel, headline
from siteline.ui.panels.network_panel import TRAFFIC, NetworkPanel
from siteline.ui.panels.signal_plot import SignalPlot
from siteline.ui.panels.slots_panel import SlotsPanel
from siteline_atmodem.parsers import parse_cesq
from siteline_modemmanager.parsers import parse_modem, parse_signal
from siteline_networkmanager.parsers import network_from_outputs
from siteline_slots.parsers import merge, parse_barebox_state, parse_fw_printenv, parse_grub_editenv, parse_rauc_status

DATA = Path(__file__).resolve().parents[1] / "data"


def golden(path: str) -> str:
    return (DATA / path).read_text()


def network(case: str, since: datetime | None = None):
    return network_from_outputs(
        golden(f"nmcli/device-status-{case}.txt"),
        golden(f"nmcli/connection-show-{case}.txt"),
        golden(f"nmcli/ip-route-default-{case}.txt"),
        golden("nmcli/device-show-ip-iface.txt"),
        since=since,
    )


@pytest.fixture
def modem_panel(qtbot) -> ModemPanel:
    panel = ModemPanel()
    qtbot.addWidget(panel)
    return panel


# --- Modem ---------------------------------------------------------------------------------------------


def test_modem_shows_operator_registration_and_masked_imei(modem_panel: ModemPanel, qtbot) -> None:
    modem = parse_modem(golden("mmcli/modem-3-roaming-5g.json"))
    modem_panel.show_modem(modem)
    assert modem_panel.value("operator") == "Telekom.de (26201)"
    assert modem_panel.value("technology") == "LTE, 5G NR"
    assert modem_panel.value("registration").startswith("roaming")
    assert modem_panel.value("sim") == "present, unlocked"
    assert modem_panel.value("imei") == "86214605*******"
    qtbot.mouseClick(modem_panel.reveal_button, Qt.MouseButton.LeftButton)
    assert modem_panel.value("imei") == "862146050012345"
    modem_panel.reveal_button.setChecked(False)
    assert "*" in modem_panel.value("imei")


def test_missing_sim_is_said_plainly(modem_panel: ModemPanel) -> None:
    modem_panel.show_modem(parse_modem(golden("mmcli/modem-1-sim-missing-human.txt")))
    assert modem_panel.value("state") == "failed (sim-missing)"
    assert modem_panel.value("sim").startswith("missing")
    modem_panel.show_signal(parse_signal(golden("mmcli/signal-get-off.json")), at=1.0)
    assert modem_panel.quality.text() == "No signal: modem failed (sim-missing)"


def test_signal_headline_band_and_figures(modem_panel: ModemPanel) -> None:
    signal = parse_signal(golden("mmcli/signal-get-5g.json"))
    modem_panel.show_signal(signal, at=1_000.0)
    text = modem_panel.quality.text()
    assert "RSRP −102 dBm" in text
    assert "poor" in text
    figures = modem_panel.figures.text()
    assert "LTE: RSRP −102 dBm · RSRQ −12 dB · SNR 11.4 dB · RSSI −73 dBm" in figures
    assert "5G NR: RSRP −95 dBm" in figures
    assert "RSRQ −12 dB: fair" in modem_panel.meaning.text()
    (sample,) = modem_panel.plot.samples
    assert (sample.rsrp, sample.rsrq, sample.snr) == (-102.0, -12.0, 11.4)


@pytest.mark.parametrize(("rsrp", "band"), [(-75.0, "excellent"), (-80.0, "excellent"), (-85.0, "good"),
                                              (-95.0, "fair"), (-100.0, "fair"), (-101.0, "poor")])
def test_rsrp_bands_in_words(rsrp: float, band: str) -> None:
    text, _ = headline(ModemSignal(lte=SignalReading(rsrp=rsrp)))
    assert f"— {band}" in text


def test_polling_off_is_unknown_not_zero(modem_panel: ModemPanel) -> None:
    signal = parse_signal(golden("mmcli/signal-get-off.json"))
    modem_panel.show_signal(signal, at=5.0)
    assert modem_panel.quality.text() == "No signal figures (signal polling is off)"
    assert "Signal polling is off" in modem_panel.problems.text()
    assert not modem_panel.problems.isHidden()
    (sample,) = modem_panel.plot.samples
    assert sample.rsrp is None  # a gap, never 0 dBm
    assert all(math.isnan(y) for y in modem_panel.plot.rsrp_curve.yData)


def test_raw_output_one_click_away(modem_panel: ModemPanel, qtbot) -> None:
    modem_panel.show_signal(parse_signal(golden("mmcli/signal-get-keyvalue.txt")), at=1.0)
    assert modem_panel.raw.view.isHidden()
    modem_panel.raw.toggle.click()
    assert not modem_panel.raw.view.isHidden()
    assert "modem.signal.lte.rsrp" in modem_panel.raw.text()
    assert modem_panel.raw.toggle.text() == "Hide raw output"


def test_unavailable_modem_says_why(modem_panel: ModemPanel) -> None:
    modem_panel.show_unavailable("mmcli printed no modem fields: garbage", "garbage")
    assert modem_panel.problems.text().startswith("⚠ Could not read the modem: mmcli printed")
    assert modem_panel.raw.text() == "garbage"


def test_history_is_bounded_and_markers_age_out(qtbot) -> None:
    plot = SignalPlot(history_seconds=100.0)
    qtbot.addWidget(plot)
    plot.mark(10.0, "wired → cellular")
    for t in range(0, 300, 5):
        plot.add_sample(float(t), -90.0 - t % 20, -10.0, 12.0)
    assert plot.samples[0].t >= 295 - 100
    assert len(plot.samples) <= 21
    assert not plot.markers  # the marker at t=10 fell out of the window with its samples
    plot.mark(290.0, "cellular → wired")
    assert [text for _, text, _ in plot.markers] == ["cellular → wired"]


# --- Network -------------------------------------------------------------------------------------------


def test_network_on_backup_says_so_and_marks_the_carrier(qtbot) -> None:
    panel = NetworkPanel()
    qtbot.addWidget(panel)
    panel.show_network(network("failover", since=datetime(2026, 11, 27, 14, 2)))
    assert panel.sentence.text().startswith("Running on cellular backup ('Telia LTE' on cdc-wdm0) since 14:02")
    rows = {panel.cell(r, "Device"): r for r in range(panel.table.rowCount())}
    modem_row = rows["cdc-wdm0 (wwan0)"]
    assert panel.cell(modem_row, "Traffic") == TRAFFIC
    assert panel.cell(modem_row, "Role") == "backup"
    assert panel.cell(modem_row, "Priority") == "10"
    eth = rows["eth0"]
    assert panel.cell(eth, "State") == "unavailable"
    assert panel.cell(eth, "Connection") == "Wired connection 1 (not active)"
    assert panel.cell(eth, "Role") == "primary"
    assert panel.cell(eth, "Priority") == "100"
    assert "lo" not in rows  # loopback is never an uplink
    assert "wwan0 via 10.64.12.202" in panel.route.text()
    assert "cdc-wdm0" in panel.raw.text()


def test_network_wired_and_path_history(qtbot) -> None:
    panel = NetworkPanel()
    qtbot.addWidget(panel)
    panel.show_network(network("wired"))
    assert panel.sentence.text().startswith("On wired primary")
    panel.note_path_change(datetime(2026, 11, 27, 14, 2, 5), "wired eth0 down → cellular")
    panel.note_path_change(datetime(2026, 11, 27, 14, 9, 0), "cellular → wired eth0")
    assert panel.changes.text().splitlines() == [
        "14:09:00  cellular → wired eth0",
        "14:02:05  wired eth0 down → cellular",
    ]


def test_network_problems_in_words(qtbot) -> None:
    panel = NetworkPanel()
    qtbot.addWidget(panel)
    panel.show_network(network_from_outputs("garbage without colons", "", golden("nmcli/ip-route-default-wired.txt")))
    assert not panel.problems.isHidden()
    assert "could not read the devices" in panel.problems.text()


# --- Slots ---------------------------------------------------------------------------------------------


def test_slots_booted_b_on_trial(qtbot) -> None:
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    slots = merge(None, parse_fw_printenv(golden("fw_printenv/rauc-booted-b-trial.txt")), booted="B")
    panel.show_slots(slots)
    assert [b.slot.bootname for b in panel.boxes] == ["A", "B"]
    a, b = panel.boxes
    assert b.booted_badge.text().startswith("● BOOTED")
    assert b.next_badge.text() == "▶ NEXT BOOT"
    assert not a.next_badge.isVisibleTo(panel)
    assert b.next_badge.isVisibleTo(panel)
    assert "4px" in b.styleSheet()
    assert "1px" in a.styleSheet()
    assert "Attempts left: 2" in b.facts.text()
    assert panel.sentence.text() == "Running slot B on trial (not yet marked good); next boot: slot B, 2 attempts left"
    counters = panel.counters.text()
    assert "BOOT_ORDER=B A" in counters
    assert "bootcount=1" in counters
    assert "baudrate" not in counters


def test_slots_rauc_with_counters_and_versions(qtbot) -> None:
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    rauc = parse_rauc_status(golden("rauc/status-1.8.json"))
    panel.show_slots(merge(rauc, parse_fw_printenv(golden("fw_printenv/rauc-factory-a.txt"))))
    a, b = panel.boxes
    assert a.title.text() == "Slot A  (rootfs.0)"
    assert "Version: 1.1.0" in a.facts.text()
    assert "Version: 1.2.0" in b.facts.text()
    assert "Installed: 2024-03-01 12:00:00 UTC" in b.facts.text()
    assert panel.sentence.text().startswith("Running slot A (1.1.0)")
    assert "compatible: acme-gw" in panel.details.text()
    assert panel.details.text().startswith("Read from: RAUC + U-Boot env")


def test_slots_rauc_misread_env_is_explained(qtbot) -> None:
    """RAUC says both bad (it could not read the env); GRUB's counters say A is good: the panel shows both."""
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    rauc = parse_rauc_status(golden("rauc/status-1.8-env-unreadable.json"))
    panel.show_slots(merge(rauc, parse_grub_editenv(golden("grub-editenv/rauc-b-bad.txt"))))
    a, b = panel.boxes
    assert a.health_badge.text() == "✔ GOOD"
    assert b.health_badge.text() == "✖ BAD"
    assert "A_OK=1" in panel.counters.text()
    assert not panel.problems.isHidden()
    assert "RAUC may not have read the bootloader environment" in panel.problems.text()


def test_slots_unavailable(qtbot) -> None:
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    panel.show_unavailable("rauc status printed no JSON object: command not found", "sh: rauc: not found")
    assert "Could not read the slots" in panel.problems.text()
    assert panel.raw.text() == "sh: rauc: not found"


def test_at_modem_signal_from_cesq(modem_panel: ModemPanel) -> None:
    """A modem without ModemManager: AT+CESQ's figures converted to dBm lead the same way."""
    modem_panel.show_signal(parse_cesq(golden("at/cesq-lte.txt")), at=1.0)
    assert "RSRP" in modem_panel.quality.text()
    assert modem_panel.plot.samples[0].rsrp is not None


def test_slots_from_barebox_state(qtbot) -> None:
    panel = SlotsPanel()
    qtbot.addWidget(panel)
    panel.show_slots(merge(None, parse_barebox_state(golden("barebox-state/system1-marked-bad.txt")), booted="system0"))
    assert panel.boxes
    assert "barebox-state:" in panel.counters.text()
    assert "bootstate." in panel.counters.text()
